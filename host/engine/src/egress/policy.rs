//! Which origins a tenant may reach, and which resolved addresses never:
//! the allow-list and the address vetting every connection passes.

use super::address::{AddressClass, classify};
use super::denial::EgressDenial;
use crate::EngineError;
use crate::counters::EngineCounters;
use crate::limits::CallFlags;
use crate::plugin_log::escape_untrusted;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// `http` or `https`: the only schemes a plugin may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OriginScheme {
    /// Plain HTTP (allowed by the policy only when an origin names it).
    Http,
    /// HTTP over TLS.
    Https,
}

/// One allowed origin: scheme, normalised host and port.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Origin {
    /// The scheme.
    pub scheme: OriginScheme,
    /// The host, lower-cased; IP literals in canonical form.
    pub host: url::Host<String>,
    /// The port, the scheme's default when the text had none.
    pub port: u16,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = match self.scheme {
            OriginScheme::Http => "http",
            OriginScheme::Https => "https",
        };
        write!(f, "{scheme}://{}:{}", self.host, self.port)
    }
}

impl Origin {
    /// Parses `scheme://host[:port][/]`; anything more (a path, a query,
    /// credentials) is refused, since an origin is all the policy grants.
    pub fn parse(text: &str) -> Result<Origin, EgressDenial> {
        let bad = |why: &str| EgressDenial::InvalidOrigin {
            origin: text.to_string(),
            reason: why.to_string(),
        };
        let url = url::Url::parse(text).map_err(|e| bad(&e.to_string()))?;
        let origin = Self::from_url(&url).map_err(|e| bad(&e))?;
        if url.path() != "/" && !url.path().is_empty() {
            return Err(bad("an origin has no path"));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(bad("an origin has no query or fragment"));
        }
        Ok(origin)
    }

    fn from_url(url: &url::Url) -> Result<Origin, String> {
        let scheme = match url.scheme() {
            "http" => OriginScheme::Http,
            "https" => OriginScheme::Https,
            other => return Err(format!("scheme `{other}` is not http or https")),
        };
        if !url.username().is_empty() || url.password().is_some() {
            return Err("credentials in the URL are not allowed".into());
        }
        let host = url.host().ok_or("no host")?.to_owned();
        let port = url.port_or_known_default().ok_or("no port")?;
        Ok(Origin { scheme, host, port })
    }
}

/// A tenant's egress allow-list: the origins the operator granted it,
/// whether it may reach private networks, and a count of the requests
/// refused. Clones share the counter, so the copy the host keeps sees the
/// denials of the instance's copy.
#[derive(Clone, Debug, Default)]
pub struct EgressPolicy {
    origins: Arc<[Origin]>,
    private_network: bool,
    denied: Arc<AtomicU64>,
}

impl EgressPolicy {
    /// Allows exactly `origins` (`https://api.example.com:443`, port
    /// optional). Refuses origins that are not http(s), carry a path or
    /// credentials, or are IP literals that are never reachable (link-local,
    /// metadata, unspecified, multicast).
    pub fn from_origins(origins: &[String]) -> Result<EgressPolicy, EngineError> {
        let mut parsed = Vec::with_capacity(origins.len());
        for text in origins {
            let origin = Origin::parse(text).map_err(EngineError::InvalidEgress)?;
            let literal = match &origin.host {
                url::Host::Ipv4(ip) => Some(IpAddr::V4(*ip)),
                url::Host::Ipv6(ip) => Some(IpAddr::V6(*ip)),
                url::Host::Domain(_) => None,
            };
            let forbidden =
                literal.filter(|ip| matches!(classify(*ip), AddressClass::Forbidden(_)));
            if let Some(ip) = forbidden {
                return Err(EngineError::InvalidEgress(EgressDenial::InvalidOrigin {
                    origin: text.clone(),
                    reason: format!("{ip} is never reachable from a plugin"),
                }));
            }
            if !parsed.contains(&origin) {
                parsed.push(origin);
            }
        }
        Ok(EgressPolicy {
            origins: parsed.into(),
            private_network: false,
            denied: Arc::default(),
        })
    }

    /// The same policy, letting the allowed origins reach private and
    /// special networks (loopback, RFC 1918, carrier-grade NAT,
    /// unique-local…) when `allowed`: the operator's per-integration
    /// allowance. Metadata, link-local, multicast, unspecified and
    /// broadcast addresses stay refused either way.
    pub fn with_private_network(mut self, allowed: bool) -> EgressPolicy {
        self.private_network = allowed;
        self
    }

    /// Whether the allowed origins may reach private networks.
    pub fn allows_private_network(&self) -> bool {
        self.private_network
    }

    /// Allows nothing: for calls that must not touch the network
    /// (`describe`, `configure`).
    pub fn deny_all() -> EgressPolicy {
        EgressPolicy::default()
    }

    /// The allowed origins.
    pub fn origins(&self) -> &[Origin] {
        &self.origins
    }

    /// Requests refused so far under this policy (and its clones).
    pub fn denied(&self) -> u64 {
        self.denied.load(Ordering::Relaxed)
    }

    /// First step of the decision: whether `url`'s scheme, host and port
    /// match an allowed origin. Returns the matched origin.
    pub fn check_url(&self, url: &str) -> Result<Origin, EgressDenial> {
        let shown = url.split(['?', '#']).next().unwrap_or(url).to_string();
        let parsed = url::Url::parse(url).map_err(|e| EgressDenial::BadUrl {
            url: shown.clone(),
            reason: e.to_string(),
        })?;
        let origin = Origin::from_url(&parsed)
            .map_err(|reason| EgressDenial::BadUrl { url: shown, reason })?;
        if self.origins.contains(&origin) {
            Ok(origin)
        } else {
            Err(EgressDenial::NotAllowed {
                origin: origin.to_string(),
            })
        }
    }

    /// Second step: whether an address the allowed `origin` resolved to
    /// may be connected to. Called after resolution and before any
    /// connection is attempted. Private networks are reachable only with
    /// the allowance ([`EgressPolicy::with_private_network`]), whatever
    /// the origin names: `localhost` is no exception.
    pub fn check_address(&self, origin: &Origin, address: IpAddr) -> Result<(), EgressDenial> {
        match classify(address) {
            AddressClass::Public => Ok(()),
            AddressClass::Private(_) if self.private_network => Ok(()),
            AddressClass::Private(range) => Err(EgressDenial::PrivateAddress {
                origin: origin.to_string(),
                address,
                range,
            }),
            AddressClass::Forbidden(range) => Err(EgressDenial::ForbiddenAddress {
                origin: origin.to_string(),
                address,
                range,
            }),
        }
    }

    fn count_denial(&self) {
        self.denied.fetch_add(1, Ordering::Relaxed);
    }
}

/// Records a denial: counted on the policy and in the engine's totals,
/// flagged for the current call, logged as a policy event.
pub(super) fn deny(
    policy: &EgressPolicy,
    counters: &EngineCounters,
    flags: &CallFlags,
    tenant: &str,
    plugin: &str,
    why: &EgressDenial,
) {
    policy.count_denial();
    counters.count_denial();
    flags
        .egress_denied
        .store(true, std::sync::atomic::Ordering::Relaxed);
    if let Ok(mut last) = flags.last_denial.lock() {
        *last = Some(why.to_string());
    }
    // The denial names a URL the plugin chose.
    let denial = escape_untrusted(&why.to_string()).into_owned();
    tracing::warn!(target: "policy", tenant, plugin, denial, "egress denied");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(origins: &[&str]) -> EgressPolicy {
        let origins: Vec<String> = origins.iter().map(|s| s.to_string()).collect();
        EgressPolicy::from_origins(&origins).expect("valid origins")
    }

    #[test]
    fn exact_origin_matches_with_default_port() {
        let p = policy(&["https://api.example.com"]);
        assert!(p.check_url("https://api.example.com/graphql?x=1").is_ok());
        assert!(p.check_url("https://API.Example.com:443/").is_ok());
        assert!(p.check_url("https://api.example.com:8443/").is_err());
        assert!(p.check_url("http://api.example.com/").is_err());
        assert!(p.check_url("https://evil.example.com/").is_err());
        assert!(p.check_url("https://user@api.example.com/").is_err());
    }

    #[test]
    fn ip_spellings_normalise_before_matching() {
        let p = policy(&["http://127.0.0.1:8080"]);
        assert!(p.check_url("http://127.0.0.1:8080/x").is_ok());
        assert!(p.check_url("http://0x7f.1:8080/x").is_ok());
        assert!(p.check_url("http://2130706433:8080/x").is_ok());
        assert!(p.check_url("http://127.0.0.2:8080/x").is_err());
    }

    #[test]
    fn forbidden_origins_are_refused_at_parse() {
        for o in [
            "http://169.254.169.254",
            "http://[fe80::1]:80",
            "http://0.0.0.0:80",
            "http://[::ffff:169.254.169.254]",
            "ftp://example.com",
            "https://example.com/path",
            "https://u:p@example.com",
        ] {
            assert!(
                EgressPolicy::from_origins(&[o.to_string()]).is_err(),
                "{o} should be refused"
            );
        }
    }

    #[test]
    fn resolved_addresses_are_vetted() {
        let remote = Origin::parse("https://api.example.com").expect("origin");
        let local = Origin::parse("http://127.0.0.1:9000").expect("origin");
        let p = policy(&["https://api.example.com", "http://127.0.0.1:9000"]);
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        assert!(p.check_address(&remote, ip("93.184.216.34")).is_ok());
        for forbidden in [
            "169.254.169.254",
            "::ffff:169.254.169.254",
            "fe80::1",
            "fd00:ec2::254",
            "224.0.0.1",
            "0.0.0.0",
        ] {
            assert!(matches!(
                p.check_address(&remote, ip(forbidden)),
                Err(EgressDenial::ForbiddenAddress { .. })
            ));
        }
        // Without the allowance, loopback is refused even for an origin
        // that names it.
        for private in ["127.0.0.1", "::1", "10.0.0.1", "::ffff:192.168.1.1"] {
            assert!(matches!(
                p.check_address(&remote, ip(private)),
                Err(EgressDenial::PrivateAddress { .. })
            ));
        }
        assert!(matches!(
            p.check_address(&local, ip("127.0.0.1")),
            Err(EgressDenial::PrivateAddress { .. })
        ));
    }

    #[test]
    fn private_network_allowance_opens_private_ranges_only() {
        let local = Origin::parse("http://127.0.0.1:9000").expect("origin");
        let p = policy(&["http://127.0.0.1:9000"]).with_private_network(true);
        assert!(p.allows_private_network());
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        for private in ["127.0.0.1", "::1", "10.0.0.1", "100.64.0.1", "fd12::1"] {
            assert!(p.check_address(&local, ip(private)).is_ok(), "{private}");
        }
        for forbidden in [
            "169.254.169.254",
            "100.100.100.200",
            "fd00:ec2::254",
            "ff02::1",
            "239.1.1.1",
            "::",
            "0.0.0.0",
            "255.255.255.255",
            "::ffff:169.254.169.254",
        ] {
            assert!(
                p.check_address(&local, ip(forbidden)).is_err(),
                "{forbidden}"
            );
        }
    }

    #[test]
    fn deny_all_refuses_everything_and_counter_is_shared() {
        let p = EgressPolicy::deny_all();
        assert!(p.check_url("https://example.com/").is_err());
        let clone = p.clone();
        let flags = CallFlags::default();
        let counters = EngineCounters::default();
        deny(
            &clone,
            &counters,
            &flags,
            "t",
            "p",
            &EgressDenial::NotAllowed { origin: "x".into() },
        );
        assert_eq!(p.denied(), 1);
        assert_eq!(counters.egress_denied(), 1);
        assert!(flags.egress_denied.load(Ordering::Relaxed));
    }
}
