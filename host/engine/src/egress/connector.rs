//! Opening an instance's connections: DNS resolution with every address
//! vetted, connecting to exactly the vetted addresses, and the TLS client
//! configurations (web roots, the engine's and the tenants' CA sets).

use super::policy::{EgressPolicy, Origin, OriginScheme, deny};
use super::timeouts::{CONNECT_TIMEOUT, ConnectScope, Phase, REQUEST_CONNECT};
use crate::counters::EngineCounters;
use crate::digest::sha256_hex;
use crate::limits::CallFlags;
use hyper_util::rt::TokioIo;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use wasmtime_wasi_http::Error as HttpError;

/// How an instance's connections are made.
pub(crate) struct Connections {
    /// Keep connections open between the requests of the instance.
    pub(crate) reuse: bool,
    /// The TLS client configuration (the engine's roots, plus the
    /// tenant's own CA certificates when it stored any).
    pub(crate) tls: Arc<rustls::ClientConfig>,
}

/// Opens the instance's connections: resolves the origin, refuses the
/// connection if any resolved address is forbidden, and dials exactly the
/// vetted addresses (TLS for `https`, the name used only to verify the
/// certificate). Every request was already checked against the allow-list
/// in `send_request`, and the pool keys connections by scheme and
/// authority, so a connection only ever carries requests to the origin it
/// was vetted for.
#[derive(Clone)]
pub(super) struct PinnedConnector {
    pub(super) tls: tokio_rustls::TlsConnector,
    pub(super) policy: EgressPolicy,
    pub(super) counters: Arc<EngineCounters>,
    pub(super) flags: Arc<CallFlags>,
    pub(super) tenant: Arc<str>,
    pub(super) plugin: Arc<str>,
}

type ConnectFuture = Pin<Box<dyn Future<Output = Result<TokioIo<PinnedStream>, HttpError>> + Send>>;

impl tower_service::Service<http::Uri> for PinnedConnector {
    type Response = TokioIo<PinnedStream>;
    type Error = HttpError;
    type Future = ConnectFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let this = self.clone();
        // Read now, in the request's task: the returned future may finish
        // in the background after another connection served the request.
        let scope = REQUEST_CONNECT.try_with(ConnectScope::clone).ok();
        let connect_timeout = scope.as_ref().map_or(CONNECT_TIMEOUT, |s| s.timeout);
        let phase = scope.map(|s| s.phase);
        Box::pin(async move {
            // Checked again here so that a connection can only ever be
            // opened to an allowed origin, whoever asks for it.
            let origin = match this.policy.check_url(&uri.to_string()) {
                Ok(origin) => origin,
                Err(why) => {
                    deny(
                        &this.policy,
                        &this.counters,
                        &this.flags,
                        &this.tenant,
                        &this.plugin,
                        &why,
                    );
                    return Err(HttpError::HttpRequestDenied);
                }
            };
            let deadline = tokio::time::Instant::now() + connect_timeout;
            if let Some(phase) = &phase {
                phase.send_replace(Phase::Connecting);
            }
            let addrs = resolve(&origin, connect_timeout).await?;
            for addr in &addrs {
                if let Err(why) = this.policy.check_address(&origin, addr.ip()) {
                    deny(
                        &this.policy,
                        &this.counters,
                        &this.flags,
                        &this.tenant,
                        &this.plugin,
                        &why,
                    );
                    return Err(HttpError::HttpRequestDenied);
                }
            }
            let connect = connect_pinned(&origin, &addrs, &this.tls);
            let stream = tokio::time::timeout_at(deadline, connect)
                .await
                .map_err(|_| HttpError::ConnectionTimeout)
                .and_then(|r| r)
                .inspect_err(|e| {
                    // The plugin only sees an error code; the operator
                    // needs the cause, such as which certificate check
                    // failed.
                    tracing::warn!(
                        tenant = %this.tenant,
                        plugin = %this.plugin,
                        %origin,
                        error = %e,
                        "connection failed"
                    );
                })
                .map_err(connect_error_code)?;
            if let Some(phase) = &phase {
                phase.send_replace(Phase::Connected(tokio::time::Instant::now()));
            }
            Ok(TokioIo::new(stream))
        })
    }
}

async fn resolve(origin: &Origin, timeout: Duration) -> Result<Vec<SocketAddr>, HttpError> {
    let addrs: Vec<SocketAddr> = match &origin.host {
        url::Host::Ipv4(ip) => vec![SocketAddr::new(IpAddr::V4(*ip), origin.port)],
        url::Host::Ipv6(ip) => vec![SocketAddr::new(IpAddr::V6(*ip), origin.port)],
        url::Host::Domain(name) => {
            let lookup = tokio::net::lookup_host((name.as_str(), origin.port));
            match tokio::time::timeout(timeout, lookup).await {
                Err(_) => return Err(HttpError::DnsTimeout),
                Ok(Err(e)) => {
                    return Err(HttpError::DnsError {
                        rcode: Some(e.to_string()),
                        info_code: None,
                    });
                }
                Ok(Ok(addrs)) => addrs.collect(),
            }
        }
    };
    if addrs.is_empty() {
        return Err(HttpError::DestinationNotFound);
    }
    Ok(addrs)
}

/// A connection to one of the vetted `addrs`, TLS for `https`; the name is
/// used only for certificate verification, never resolved again.
async fn connect_pinned(
    origin: &Origin,
    addrs: &[SocketAddr],
    tls: &tokio_rustls::TlsConnector,
) -> Result<PinnedStream, HttpError> {
    let mut last = None;
    let mut tcp = None;
    for addr in addrs {
        match tokio::net::TcpStream::connect(addr).await {
            Ok(s) => {
                tcp = Some(s);
                break;
            }
            Err(e) => last = Some(e),
        }
    }
    let Some(tcp) = tcp else {
        return Err(HttpError::Connect(last.unwrap_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::NotFound, "no address")
        })));
    };
    // Requests are small and sequential: send each at once.
    let _ = tcp.set_nodelay(true);
    match origin.scheme {
        OriginScheme::Http => Ok(PinnedStream::Plain(tcp)),
        OriginScheme::Https => {
            let name = match &origin.host {
                url::Host::Domain(d) => rustls::pki_types::ServerName::try_from(d.clone())?,
                url::Host::Ipv4(ip) => IpAddr::V4(*ip).into(),
                url::Host::Ipv6(ip) => IpAddr::V6(*ip).into(),
            };
            let tls = tls.connect(name, tcp).await.map_err(HttpError::Tls)?;
            Ok(PinnedStream::Tls(Box::new(tls)))
        }
    }
}

/// A connection the connector opened.
pub(super) enum PinnedStream {
    Plain(tokio::net::TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>),
}

impl hyper_util::client::legacy::connect::Connection for PinnedStream {
    fn connected(&self) -> hyper_util::client::legacy::connect::Connected {
        hyper_util::client::legacy::connect::Connected::new()
    }
}

impl tokio::io::AsyncRead for PinnedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            PinnedStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            PinnedStream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl tokio::io::AsyncWrite for PinnedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            PinnedStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            PinnedStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            PinnedStream::Plain(s) => Pin::new(s).poll_flush(cx),
            PinnedStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            PinnedStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            PinnedStream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// The error to give the plugin for a failed pooled request: the
/// connector's own error when it refused or failed to connect, otherwise
/// hyper's.
pub(super) fn client_error(e: hyper_util::client::legacy::Error) -> HttpError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(&e);
    while let Some(err) = source {
        if let Some(http) = err.downcast_ref::<HttpError>() {
            return clone_connect_error(http);
        }
        if let Some(hyper) = err.downcast_ref::<hyper::Error>() {
            if hyper.is_timeout() {
                return HttpError::ConnectionReadTimeout;
            }
            if hyper.is_incomplete_message() || hyper.is_closed() || hyper.is_canceled() {
                return HttpError::ConnectionTerminated;
            }
            return HttpError::HttpProtocolError;
        }
        source = err.source();
    }
    if e.is_connect() {
        HttpError::ConnectionRefused
    } else {
        HttpError::HttpProtocolError
    }
}

/// The code the plugin sees for a failed connection: TLS failures say
/// whether the certificate was refused, I/O failures whether the peer
/// refused or was unreachable.
fn connect_error_code(e: HttpError) -> HttpError {
    match e {
        HttpError::Tls(io) => {
            match io
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
            {
                Some(
                    rustls::Error::InvalidCertificate(_)
                    | rustls::Error::NoCertificatesPresented
                    | rustls::Error::UnsupportedNameType,
                ) => HttpError::TlsCertificateError,
                Some(rustls::Error::AlertReceived(alert)) => HttpError::TlsAlertReceived {
                    alert_id: Some(u8::from(*alert)),
                    alert_message: Some(format!("{alert:?}")),
                },
                _ => HttpError::TlsProtocolError,
            }
        }
        HttpError::Connect(io) => match io.kind() {
            std::io::ErrorKind::ConnectionRefused => HttpError::ConnectionRefused,
            std::io::ErrorKind::TimedOut => HttpError::ConnectionTimeout,
            std::io::ErrorKind::HostUnreachable | std::io::ErrorKind::NetworkUnreachable => {
                HttpError::DestinationUnavailable
            }
            _ => HttpError::Connect(io),
        },
        other => other,
    }
}

/// The connector's errors come back by reference inside hyper's error; the
/// ones it produces are rebuilt here (io errors keep their kind and text).
fn clone_connect_error(e: &HttpError) -> HttpError {
    match e {
        HttpError::Connect(io) => {
            HttpError::Connect(std::io::Error::new(io.kind(), io.to_string()))
        }
        HttpError::Tls(io) => HttpError::Tls(std::io::Error::new(io.kind(), io.to_string())),
        HttpError::DnsError { rcode, info_code } => HttpError::DnsError {
            rcode: rcode.clone(),
            info_code: *info_code,
        },
        HttpError::DnsTimeout => HttpError::DnsTimeout,
        HttpError::DestinationNotFound => HttpError::DestinationNotFound,
        HttpError::HttpRequestDenied => HttpError::HttpRequestDenied,
        HttpError::ConnectionTimeout => HttpError::ConnectionTimeout,
        HttpError::ConnectionRefused => HttpError::ConnectionRefused,
        HttpError::DestinationUnavailable => HttpError::DestinationUnavailable,
        HttpError::TlsCertificateError => HttpError::TlsCertificateError,
        HttpError::TlsProtocolError => HttpError::TlsProtocolError,
        HttpError::TlsAlertReceived {
            alert_id,
            alert_message,
        } => HttpError::TlsAlertReceived {
            alert_id: *alert_id,
            alert_message: alert_message.clone(),
        },
        HttpError::HttpRequestUriInvalid => HttpError::HttpRequestUriInvalid,
        _ => HttpError::ConnectionRefused,
    }
}

/// The TLS client configuration: the public web PKI roots plus `extra`
/// (DER certificates). Errors name the certificate that was refused.
pub(crate) fn tls_config(extra: &[Vec<u8>]) -> Result<Arc<rustls::ClientConfig>, String> {
    tls_config_with(extra, &[])
}

/// [`tls_config`] with a tenant's own CA certificates on top of the
/// engine's `extra` ones.
fn tls_config_with(
    extra: &[Vec<u8>],
    tenant: &[Vec<u8>],
) -> Result<Arc<rustls::ClientConfig>, String> {
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.into(),
    };
    for (i, der) in extra.iter().enumerate() {
        roots
            .add(rustls::pki_types::CertificateDer::from(der.clone()))
            .map_err(|e| format!("extra root certificate #{} is not usable: {e}", i + 1))?;
    }
    // Named by fingerprint, as `status` shows them: the set is sorted by
    // then, so a position would not be the one given at connect.
    for der in tenant {
        roots
            .add(rustls::pki_types::CertificateDer::from(der.clone()))
            .map_err(|e| {
                format!(
                    "the CA certificate with SHA-256 {} is not usable: {e}",
                    sha256_hex(der)
                )
            })?;
    }
    // The provider is named explicitly: relying on the process default
    // panics when more than one provider is compiled in.
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| format!("TLS setup failed: {e}"))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The TLS client configurations of an engine: the engine-wide one, and
/// one per distinct set of tenant CA certificates, built on first use and
/// shared by every tenant that stored the same set (tenants behind one
/// company proxy all trust its one CA). Distinct sets are few — one per
/// private CA in use — so built configurations are kept for the engine's
/// lifetime.
pub(crate) struct TlsConfigs {
    /// The engine's own extra roots, trusted by every tenant.
    extra: Vec<Vec<u8>>,
    /// Web roots plus `extra`: what tenants without CAs of their own use.
    base: Arc<rustls::ClientConfig>,
    /// Keyed by the tenant's certificates, sorted and without duplicates,
    /// so the order given at connect does not matter.
    by_roots: std::sync::Mutex<std::collections::HashMap<Vec<Vec<u8>>, Arc<rustls::ClientConfig>>>,
}

impl TlsConfigs {
    /// The engine-wide configuration trusts the web roots plus `extra`.
    pub(crate) fn new(extra: &[Vec<u8>]) -> Result<Self, String> {
        Ok(Self {
            extra: extra.to_vec(),
            base: tls_config(extra)?,
            by_roots: Default::default(),
        })
    }

    /// The configuration for a tenant whose integration stored `tenant`
    /// CA certificates (DER): the engine-wide one when there are none,
    /// else the web roots, the engine's extra roots and those.
    pub(crate) fn for_tenant(
        &self,
        tenant: &[Vec<u8>],
    ) -> Result<Arc<rustls::ClientConfig>, String> {
        if tenant.is_empty() {
            return Ok(self.base.clone());
        }
        let mut key = tenant.to_vec();
        key.sort();
        key.dedup();
        // A poisoned lock only means another thread panicked while
        // building; the map itself is always consistent.
        let mut by_roots = self.by_roots.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(config) = by_roots.get(&key) {
            return Ok(config.clone());
        }
        let config = tls_config_with(&self.extra, &key)?;
        by_roots.insert(key, config.clone());
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenants_with_the_same_ca_certificates_share_one_tls_configuration() {
        let cert = |name: &str| {
            rcgen::generate_simple_self_signed(vec![name.to_string()])
                .expect("certificate")
                .cert
                .der()
                .to_vec()
        };
        let (a, b) = (cert("a.test"), cert("b.test"));
        let configs = TlsConfigs::new(&[]).expect("configs");
        let base = configs.for_tenant(&[]).expect("engine-wide");
        assert!(Arc::ptr_eq(&base, &configs.for_tenant(&[]).expect("again")));
        let ab = configs
            .for_tenant(&[a.clone(), b.clone()])
            .expect("a and b");
        assert!(!Arc::ptr_eq(&base, &ab), "own roots, own configuration");
        // Order and repetition do not make another set.
        let ba = configs
            .for_tenant(&[b.clone(), a.clone(), b.clone()])
            .expect("b and a");
        assert!(Arc::ptr_eq(&ab, &ba), "one configuration per set");
        let only_a = configs.for_tenant(std::slice::from_ref(&a)).expect("a");
        assert!(!Arc::ptr_eq(&ab, &only_a), "another set, another one");
        let garbage = b"not a certificate".to_vec();
        let err = configs
            .for_tenant(&[a, garbage.clone()])
            .expect_err("garbage is no root");
        assert!(
            err.contains(&sha256_hex(&garbage)) && err.contains("not usable"),
            "{err}"
        );
    }

    #[test]
    fn an_untrusted_certificate_is_told_from_other_tls_failures() {
        let tls = |e: rustls::Error| {
            connect_error_code(HttpError::Tls(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                e,
            )))
        };
        let unknown = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        assert!(matches!(tls(unknown), HttpError::TlsCertificateError));
        assert!(matches!(
            tls(rustls::Error::AlertReceived(
                rustls::AlertDescription::HandshakeFailure
            )),
            HttpError::TlsAlertReceived { .. }
        ));
        assert!(matches!(
            tls(rustls::Error::DecryptError),
            HttpError::TlsProtocolError
        ));
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert!(matches!(
            connect_error_code(HttpError::Connect(refused)),
            HttpError::ConnectionRefused
        ));
    }
}
