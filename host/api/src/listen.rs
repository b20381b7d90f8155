//! Which addresses the API may listen on without TLS.

use std::net::SocketAddr;

/// Why an address is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ListenError {
    /// Plain HTTP on an address other machines can reach would carry
    /// bearer tokens in clear text.
    #[error(
        "refusing to serve plain HTTP on {0}, which other machines can reach: bearer tokens would cross the network unencrypted. Serve HTTPS with --tls-cert and --tls-key, listen on a loopback address (127.0.0.1 or [::1]) behind a TLS-terminating proxy, or pass --insecure-http to accept the risk"
    )]
    PlainHttpNotLoopback(SocketAddr),
}

/// Accepts HTTPS (`tls`) and a loopback address always, any other
/// address for plain HTTP only with `insecure_http`.
pub fn check_listen(addr: SocketAddr, tls: bool, insecure_http: bool) -> Result<(), ListenError> {
    if tls || addr.ip().is_loopback() || insecure_http {
        Ok(())
    } else {
        Err(ListenError::PlainHttpNotLoopback(addr))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_elsewhere_than_loopback_needs_insecure_http() {
        for addr in ["127.0.0.1:8080", "[::1]:8080", "127.0.0.2:1"] {
            let addr: SocketAddr = addr.parse().expect("address");
            assert_eq!(check_listen(addr, false, false), Ok(()), "{addr}");
        }
        for addr in ["0.0.0.0:8080", "[::]:8080", "192.0.2.1:8080"] {
            let addr: SocketAddr = addr.parse().expect("address");
            let error = check_listen(addr, false, false).expect_err("refused");
            assert!(error.to_string().contains("--insecure-http"), "{error}");
            assert!(error.to_string().contains("--tls-cert"), "{error}");
            assert_eq!(check_listen(addr, false, true), Ok(()), "{addr}");
            assert_eq!(check_listen(addr, true, false), Ok(()), "{addr}");
        }
    }
}
