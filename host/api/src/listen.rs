//! Which addresses the API may listen on without TLS.

use std::net::SocketAddr;

/// Why an address is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ListenError {
    /// Plain HTTP on an address other machines can reach would carry
    /// bearer tokens in clear text.
    #[error(
        "refusing to serve plain HTTP on {0}, which other machines can reach: bearer tokens would cross the network unencrypted. Listen on a loopback address (127.0.0.1 or [::1]) behind a TLS-terminating proxy, or pass --insecure-http to accept the risk; TLS in the host itself is not supported yet"
    )]
    PlainHttpNotLoopback(SocketAddr),
}

/// Accepts a loopback address always, any other only with
/// `insecure_http`: TLS is not served by the host yet.
pub fn check_listen(addr: SocketAddr, insecure_http: bool) -> Result<(), ListenError> {
    if addr.ip().is_loopback() || insecure_http {
        Ok(())
    } else {
        Err(ListenError::PlainHttpNotLoopback(addr))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_is_served_without_insecure_http() {
        for addr in ["127.0.0.1:8080", "[::1]:8080", "127.0.0.2:1"] {
            let addr: SocketAddr = addr.parse().expect("address");
            assert_eq!(check_listen(addr, false), Ok(()), "{addr}");
        }
        for addr in ["0.0.0.0:8080", "[::]:8080", "192.0.2.1:8080"] {
            let addr: SocketAddr = addr.parse().expect("address");
            let error = check_listen(addr, false).expect_err("refused");
            assert!(error.to_string().contains("--insecure-http"), "{error}");
            assert!(error.to_string().contains("TLS"), "{error}");
            assert_eq!(check_listen(addr, true), Ok(()), "{addr}");
        }
    }
}
