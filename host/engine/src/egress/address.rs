//! What a resolved address is, for the egress policy: reachable on the
//! public internet, on a private or special network (reachable only when
//! the operator allows private networks for the integration), or never
//! reachable from a plugin.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The class of an address, with the range it fell in (for messages).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddressClass {
    /// A globally reachable address.
    Public,
    /// A private or special network (loopback, RFC 1918, carrier-grade
    /// NAT, unique-local, documentation…): reachable only when the
    /// integration was allowed private networks.
    Private(&'static str),
    /// Never reachable from a plugin, whatever was allowed: cloud metadata,
    /// link-local, multicast, unspecified, broadcast, "this network".
    Forbidden(&'static str),
}

impl AddressClass {
    /// The range the address fell in; `public` for a public one.
    pub fn range(self) -> &'static str {
        match self {
            AddressClass::Public => "public",
            AddressClass::Private(range) | AddressClass::Forbidden(range) => range,
        }
    }
}

/// Classifies `ip`. IPv6 forms that carry an IPv4 address (mapped
/// `::ffff:a.b.c.d`, the deprecated compatible `::a.b.c.d` and the NAT64
/// well-known prefix `64:ff9b::/96`, whose translator connects to the
/// embedded address) are judged as that IPv4 address.
pub fn classify(ip: IpAddr) -> AddressClass {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

/// Whether `ip` lies in `base/prefix`.
fn in_v4(ip: Ipv4Addr, base: [u8; 4], prefix: u32) -> bool {
    let mask = u32::MAX.checked_shl(32 - prefix).unwrap_or(0);
    u32::from(ip) & mask == u32::from(Ipv4Addr::from(base)) & mask
}

/// Whether `ip` lies in `base/prefix`.
fn in_v6(ip: Ipv6Addr, base: Ipv6Addr, prefix: u32) -> bool {
    let mask = u128::MAX.checked_shl(128 - prefix).unwrap_or(0);
    u128::from(ip) & mask == u128::from(base) & mask
}

fn classify_v4(ip: Ipv4Addr) -> AddressClass {
    use AddressClass::{Forbidden, Private, Public};
    // Order matters: the metadata addresses lie inside ranges (link-local,
    // carrier-grade NAT) that are judged less strictly.
    const RANGES: &[([u8; 4], u32, AddressClass)] = &[
        ([0, 0, 0, 0], 32, Forbidden("unspecified")),
        // "This network": connecting to it reaches the host itself on Linux.
        ([0, 0, 0, 0], 8, Forbidden("this-network (0.0.0.0/8)")),
        ([255, 255, 255, 255], 32, Forbidden("broadcast")),
        ([169, 254, 169, 254], 32, Forbidden("cloud metadata")),
        // Alibaba Cloud's metadata endpoint, inside carrier-grade NAT.
        ([100, 100, 100, 200], 32, Forbidden("cloud metadata")),
        // Link-local stays refused even with the private-network
        // allowance: clouds put several metadata services in it
        // (169.254.169.254, 169.254.170.2 for container credentials,
        // 169.254.169.123 …), not only the one named above.
        (
            [169, 254, 0, 0],
            16,
            Forbidden("link-local (169.254.0.0/16)"),
        ),
        ([224, 0, 0, 0], 4, Forbidden("multicast")),
        ([127, 0, 0, 0], 8, Private("loopback")),
        ([10, 0, 0, 0], 8, Private("private (RFC 1918)")),
        ([172, 16, 0, 0], 12, Private("private (RFC 1918)")),
        ([192, 168, 0, 0], 16, Private("private (RFC 1918)")),
        (
            [100, 64, 0, 0],
            10,
            Private("carrier-grade NAT (100.64.0.0/10)"),
        ),
        // The ranges below are not routed on the public internet either, so
        // a public name resolving into them is a misconfiguration or an
        // attempt to reach something inside; yet some networks use them
        // inside (benchmarking space for fake-IP DNS proxies, the reserved
        // class E in some clouds), so they count as private: reachable only
        // with the operator's allowance, never by default.
        (
            [192, 0, 0, 0],
            24,
            Private("IETF protocol assignments (192.0.0.0/24)"),
        ),
        ([192, 0, 2, 0], 24, Private("documentation (192.0.2.0/24)")),
        (
            [198, 51, 100, 0],
            24,
            Private("documentation (198.51.100.0/24)"),
        ),
        (
            [203, 0, 113, 0],
            24,
            Private("documentation (203.0.113.0/24)"),
        ),
        ([198, 18, 0, 0], 15, Private("benchmarking (198.18.0.0/15)")),
        ([240, 0, 0, 0], 4, Private("reserved (240.0.0.0/4)")),
    ];
    RANGES
        .iter()
        .find(|(base, prefix, _)| in_v4(ip, *base, *prefix))
        .map_or(Public, |(_, _, class)| *class)
}

fn classify_v6(ip: Ipv6Addr) -> AddressClass {
    use AddressClass::{Forbidden, Private, Public};
    if ip.is_unspecified() {
        return Forbidden("unspecified");
    }
    if ip.is_loopback() {
        return Private("loopback");
    }
    let segments = ip.segments();
    let embedded = Ipv4Addr::from((u128::from(ip) as u32).to_be_bytes());
    let mapped = segments[..5] == [0; 5] && segments[5] == 0xffff;
    let compatible = segments[..6] == [0; 6];
    let nat64 = in_v6(ip, Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0, 0), 96);
    if mapped || compatible || nat64 {
        return classify_v4(embedded);
    }
    let v6 = |a, b, c, d, e, f, g, h| Ipv6Addr::new(a, b, c, d, e, f, g, h);
    // First match wins: the metadata address lies inside unique-local.
    let ranges: [(Ipv6Addr, u32, AddressClass); 11] = [
        (
            v6(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254),
            128,
            Forbidden("cloud metadata"),
        ),
        (v6(0xff00, 0, 0, 0, 0, 0, 0, 0), 8, Forbidden("multicast")),
        (
            v6(0xfe80, 0, 0, 0, 0, 0, 0, 0),
            10,
            Forbidden("link-local (fe80::/10)"),
        ),
        (
            v6(0xfc00, 0, 0, 0, 0, 0, 0, 0),
            7,
            Private("unique-local (fc00::/7)"),
        ),
        // Deprecated, but still routed inside some old networks.
        (
            v6(0xfec0, 0, 0, 0, 0, 0, 0, 0),
            10,
            Private("site-local (fec0::/10)"),
        ),
        // Local-use NAT64: translates into whatever the network chose.
        (
            v6(0x64, 0xff9b, 1, 0, 0, 0, 0, 0),
            48,
            Private("local-use NAT64 (64:ff9b:1::/48)"),
        ),
        // Not routed on the public internet: as for IPv4's, see above.
        (
            v6(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0),
            32,
            Private("documentation (2001:db8::/32)"),
        ),
        (
            v6(0x3fff, 0, 0, 0, 0, 0, 0, 0),
            20,
            Private("documentation (3fff::/20)"),
        ),
        (
            v6(0x2001, 2, 0, 0, 0, 0, 0, 0),
            48,
            Private("benchmarking (2001:2::/48)"),
        ),
        (
            v6(0x100, 0, 0, 0, 0, 0, 0, 0),
            64,
            Private("discard-only (100::/64)"),
        ),
        // Teredo tunnels to an address hidden in the suffix.
        (
            v6(0x2001, 0, 0, 0, 0, 0, 0, 0),
            32,
            Private("Teredo (2001::/32)"),
        ),
    ];
    ranges
        .iter()
        .find(|(base, prefix, _)| in_v6(ip, *base, *prefix))
        .map_or(Public, |(_, _, class)| *class)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Eq)]
    enum Kind {
        Public,
        Private,
        Forbidden,
    }

    fn kind(ip: &str) -> Kind {
        let ip: IpAddr = ip.parse().expect("address");
        match classify(ip) {
            AddressClass::Public => Kind::Public,
            AddressClass::Private(_) => Kind::Private,
            AddressClass::Forbidden(_) => Kind::Forbidden,
        }
    }

    /// Every range, at its first and last address, and the addresses just
    /// outside it.
    const V4: &[(&str, Kind)] = &[
        // 0.0.0.0/8 and unspecified
        ("0.0.0.0", Kind::Forbidden),
        ("0.0.0.1", Kind::Forbidden),
        ("0.255.255.255", Kind::Forbidden),
        ("1.0.0.0", Kind::Public),
        // 10.0.0.0/8
        ("9.255.255.255", Kind::Public),
        ("10.0.0.0", Kind::Private),
        ("10.255.255.255", Kind::Private),
        ("11.0.0.0", Kind::Public),
        // 100.64.0.0/10, with the Alibaba metadata address inside
        ("100.63.255.255", Kind::Public),
        ("100.64.0.0", Kind::Private),
        ("100.100.100.199", Kind::Private),
        ("100.100.100.200", Kind::Forbidden),
        ("100.100.100.201", Kind::Private),
        ("100.127.255.255", Kind::Private),
        ("100.128.0.0", Kind::Public),
        // 127.0.0.0/8
        ("126.255.255.255", Kind::Public),
        ("127.0.0.0", Kind::Private),
        ("127.0.0.1", Kind::Private),
        ("127.255.255.255", Kind::Private),
        ("128.0.0.0", Kind::Public),
        // 169.254.0.0/16 with the metadata address
        ("169.253.255.255", Kind::Public),
        ("169.254.0.0", Kind::Forbidden),
        ("169.254.169.254", Kind::Forbidden),
        ("169.254.170.2", Kind::Forbidden),
        ("169.254.255.255", Kind::Forbidden),
        ("169.255.0.0", Kind::Public),
        // 172.16.0.0/12
        ("172.15.255.255", Kind::Public),
        ("172.16.0.0", Kind::Private),
        ("172.31.255.255", Kind::Private),
        ("172.32.0.0", Kind::Public),
        // 192.0.0.0/24 and 192.0.2.0/24
        ("191.255.255.255", Kind::Public),
        ("192.0.0.0", Kind::Private),
        ("192.0.0.255", Kind::Private),
        ("192.0.1.0", Kind::Public),
        ("192.0.2.0", Kind::Private),
        ("192.0.2.255", Kind::Private),
        ("192.0.3.0", Kind::Public),
        // 192.168.0.0/16
        ("192.167.255.255", Kind::Public),
        ("192.168.0.0", Kind::Private),
        ("192.168.255.255", Kind::Private),
        ("192.169.0.0", Kind::Public),
        // 198.18.0.0/15
        ("198.17.255.255", Kind::Public),
        ("198.18.0.0", Kind::Private),
        ("198.19.255.255", Kind::Private),
        ("198.20.0.0", Kind::Public),
        // 198.51.100.0/24
        ("198.51.99.255", Kind::Public),
        ("198.51.100.0", Kind::Private),
        ("198.51.100.255", Kind::Private),
        ("198.51.101.0", Kind::Public),
        // 203.0.113.0/24
        ("203.0.112.255", Kind::Public),
        ("203.0.113.0", Kind::Private),
        ("203.0.113.255", Kind::Private),
        ("203.0.114.0", Kind::Public),
        // 224.0.0.0/4
        ("223.255.255.255", Kind::Public),
        ("224.0.0.0", Kind::Forbidden),
        ("239.255.255.255", Kind::Forbidden),
        // 240.0.0.0/4 and broadcast
        ("240.0.0.0", Kind::Private),
        ("255.255.255.254", Kind::Private),
        ("255.255.255.255", Kind::Forbidden),
        // ordinary public addresses
        ("8.8.8.8", Kind::Public),
        ("93.184.216.34", Kind::Public),
    ];

    const V6: &[(&str, Kind)] = &[
        ("::", Kind::Forbidden),
        ("::1", Kind::Private),
        // fc00::/7 with the AWS metadata address inside
        ("fbff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", Kind::Public),
        ("fc00::", Kind::Private),
        ("fd00:ec2::253", Kind::Private),
        ("fd00:ec2::254", Kind::Forbidden),
        ("fd00:ec2::255", Kind::Private),
        ("fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", Kind::Private),
        // fe80::/10
        ("fe7f:ffff:ffff:ffff:ffff:ffff:ffff:ffff", Kind::Public),
        ("fe80::", Kind::Forbidden),
        ("fe80::1", Kind::Forbidden),
        ("febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff", Kind::Forbidden),
        // fec0::/10
        ("fec0::", Kind::Private),
        ("feff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", Kind::Private),
        // ff00::/8
        ("ff00::", Kind::Forbidden),
        ("ff02::1", Kind::Forbidden),
        ("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", Kind::Forbidden),
        // documentation and benchmarking
        ("2001:db7:ffff:ffff:ffff:ffff:ffff:ffff", Kind::Public),
        ("2001:db8::", Kind::Private),
        ("2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", Kind::Private),
        ("2001:db9::", Kind::Public),
        ("3fff::", Kind::Private),
        ("3fff:fff:ffff:ffff:ffff:ffff:ffff:ffff", Kind::Private),
        ("3fff:1000::", Kind::Public),
        ("2001:2::", Kind::Private),
        ("2001:2:0:ffff:ffff:ffff:ffff:ffff", Kind::Private),
        ("2001:2:1::", Kind::Public),
        // Teredo
        ("2001::", Kind::Private),
        ("2001:0:ffff:ffff:ffff:ffff:ffff:ffff", Kind::Private),
        ("2001:1::", Kind::Public),
        // discard-only
        ("100::", Kind::Private),
        ("100::ffff:ffff:ffff:ffff", Kind::Private),
        ("100:0:0:1::", Kind::Public),
        // local-use NAT64
        ("64:ff9b:1::", Kind::Private),
        ("64:ff9b:1:ffff:ffff:ffff:ffff:ffff", Kind::Private),
        // ordinary public addresses
        ("2606:4700:4700::1111", Kind::Public),
        ("2a00:1450:4001::1", Kind::Public),
    ];

    #[test]
    fn ipv4_ranges_are_classified_at_their_edges() {
        for (ip, expected) in V4 {
            assert_eq!(&kind(ip), expected, "{ip}");
        }
    }

    #[test]
    fn ipv6_ranges_are_classified_at_their_edges() {
        for (ip, expected) in V6 {
            assert_eq!(&kind(ip), expected, "{ip}");
        }
    }

    #[test]
    fn ipv6_forms_carrying_ipv4_are_judged_as_that_ipv4_address() {
        // Every IPv4 case again, in each form that carries it.
        for (v4, expected) in V4 {
            for form in [format!("::ffff:{v4}"), format!("64:ff9b::{v4}")] {
                assert_eq!(&kind(&form), expected, "{form}");
            }
            // The compatible form `::a.b.c.d` of 0.0.0.0 and 0.0.0.1 is
            // `::` and `::1`, which are IPv6's own.
            if !matches!(*v4, "0.0.0.0" | "0.0.0.1") {
                let form = format!("::{v4}");
                assert_eq!(&kind(&form), expected, "{form}");
            }
        }
    }

    #[test]
    fn every_class_names_its_range() {
        let ip = |s: &str| s.parse::<IpAddr>().expect("address");
        assert_eq!(classify(ip("10.1.2.3")).range(), "private (RFC 1918)");
        assert_eq!(
            classify(ip("::ffff:169.254.169.254")).range(),
            "cloud metadata"
        );
        assert_eq!(classify(ip("8.8.8.8")).range(), "public");
    }
}
