//! The single egress path of every plugin: a per-tenant allow-list of
//! origins, enforced in [`WasiHttpHooks::send_request`].
//!
//! Every outgoing request is checked in two steps:
//!
//! 1. the URL's scheme, host and port must equal one allowed origin (the
//!    `url` crate normalises the host first, so `0x7f.1` reads as
//!    `127.0.0.1`);
//! 2. the host is resolved here, every resolved address is vetted
//!    (no unspecified, multicast, broadcast, link-local or metadata
//!    addresses; loopback only when the allowed origin is itself loopback),
//!    and the connection is made to exactly those vetted addresses. The
//!    request is never handed to a client that would resolve the name a
//!    second time, so DNS rebinding between check and connect is not
//!    possible.
//!
//! Redirects are not followed here: each hop is a new request from the
//! plugin and passes through the same checks.

use super::limits::CallFlags;
use bytes::Bytes;
use http_body::{Body, Frame};
use hyper_util::rt::TokioIo;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

/// Longest time to open a connection (TCP and TLS), whatever the plugin asks.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest wait for the response head after sending the request.
pub(crate) const FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(120);
/// Longest silence between two chunks of a response body.
pub(crate) const BETWEEN_BYTES_TIMEOUT: Duration = Duration::from_secs(60);

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

    /// Whether the origin names the local machine, which is what allows
    /// its requests to reach loopback addresses (the simulator in tests).
    fn is_loopback(&self) -> bool {
        match &self.host {
            url::Host::Domain(d) => d == "localhost",
            url::Host::Ipv4(ip) => ip.is_loopback(),
            url::Host::Ipv6(ip) => ip.is_loopback(),
        }
    }
}

/// Why the policy refused a request or an origin.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EgressDenial {
    /// An origin given to [`EgressPolicy::from_origins`] does not parse or
    /// names a forbidden address.
    #[error("invalid egress origin `{origin}`: {reason}")]
    InvalidOrigin {
        /// The text given.
        origin: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The request's URL does not parse as an http(s) URL.
    #[error("malformed request URL `{url}`: {reason}")]
    BadUrl {
        /// The URL (without query).
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// The request's origin is not on the allow-list.
    #[error("origin {origin} is not allowed for this tenant")]
    NotAllowed {
        /// The origin asked for.
        origin: String,
    },
    /// The plugin tried a request during a call that runs with no network
    /// at all (`configure`).
    #[error("{call} runs without network; the request to {url} was refused")]
    Offline {
        /// The call.
        call: &'static str,
        /// The URL (without query).
        url: String,
    },
    /// The allowed name resolved to an address that is never reachable
    /// from a plugin (link-local, metadata, loopback for a remote name…).
    #[error("origin {origin} resolved to forbidden address {address}")]
    ForbiddenAddress {
        /// The origin asked for.
        origin: String,
        /// The offending address.
        address: IpAddr,
    },
}

/// A tenant's egress allow-list: the origins its configuration named, and
/// a count of the requests refused. Clones share the counter, so the copy
/// the host keeps sees the denials of the instance's copy.
#[derive(Clone, Debug, Default)]
pub struct EgressPolicy {
    origins: Arc<[Origin]>,
    denied: Arc<AtomicU64>,
}

impl EgressPolicy {
    /// Allows exactly `origins` (`https://api.example.com:443`, port
    /// optional). Refuses origins that are not http(s), carry a path or
    /// credentials, or are IP literals that are never reachable (link-local,
    /// metadata, unspecified, multicast).
    pub fn from_origins(origins: &[String]) -> Result<EgressPolicy, super::EngineError> {
        let mut parsed = Vec::with_capacity(origins.len());
        for text in origins {
            let origin = Origin::parse(text).map_err(super::EngineError::InvalidEgress)?;
            let literal = match &origin.host {
                url::Host::Ipv4(ip) => Some(IpAddr::V4(*ip)),
                url::Host::Ipv6(ip) => Some(IpAddr::V6(*ip)),
                url::Host::Domain(_) => None,
            };
            if let Some(ip) = literal.filter(|ip| always_forbidden(*ip)) {
                return Err(super::EngineError::InvalidEgress(
                    EgressDenial::InvalidOrigin {
                        origin: text.clone(),
                        reason: format!("{ip} is never reachable from a plugin"),
                    },
                ));
            }
            if !parsed.contains(&origin) {
                parsed.push(origin);
            }
        }
        Ok(EgressPolicy {
            origins: parsed.into(),
            denied: Arc::default(),
        })
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
    /// may be connected to.
    pub fn check_address(&self, origin: &Origin, address: IpAddr) -> Result<(), EgressDenial> {
        let address = canonical(address);
        let forbidden =
            always_forbidden(address) || (address.is_loopback() && !origin.is_loopback());
        if forbidden {
            Err(EgressDenial::ForbiddenAddress {
                origin: origin.to_string(),
                address,
            })
        } else {
            Ok(())
        }
    }

    fn count_denial(&self) {
        self.denied.fetch_add(1, Ordering::Relaxed);
    }
}

/// IPv4-mapped IPv6 addresses (`::ffff:169.254.169.254`) are judged as the
/// IPv4 address they carry.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

/// Addresses no plugin may reach, whatever its allow-list says.
fn always_forbidden(ip: IpAddr) -> bool {
    match canonical(ip) {
        IpAddr::V4(v4) => {
            v4.is_unspecified()
                || v4.is_multicast()
                || v4.is_broadcast()
                // 169.254.0.0/16, which includes the cloud metadata
                // endpoint 169.254.169.254.
                || v4.is_link_local()
                // 0.0.0.0/8: "this network", reaches the host on Linux.
                || v4.octets()[0] == 0
                // Alibaba Cloud's metadata endpoint.
                || v4 == Ipv4Addr::new(100, 100, 100, 200)
        }
        IpAddr::V6(v6) => {
            v6.is_unspecified()
                || v6.is_multicast()
                // fe80::/10
                || (v6.segments()[0] & 0xffc0) == 0xfe80
                // AWS's IPv6 metadata endpoint.
                || v6 == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254)
        }
    }
}

/// The [`WasiHttpHooks`] of one instance: its tenant's policy, the per-call
/// budgets and the instance's own connection pool.
pub(crate) struct EgressHooks {
    pub(crate) policy: EgressPolicy,
    /// Set while a call that must not use the network runs: every request
    /// is refused, whatever the policy grants.
    pub(crate) offline: Option<&'static str>,
    tenant: Arc<str>,
    plugin: Arc<str>,
    flags: Arc<CallFlags>,
    max_requests: u32,
    max_request_body: u64,
    max_response_body: u64,
    client: PooledClient,
}

/// What [`EgressHooks::new`] needs besides the policy.
pub(crate) struct HookSettings {
    pub(crate) tenant: Arc<str>,
    pub(crate) plugin: Arc<str>,
    pub(crate) flags: Arc<CallFlags>,
    pub(crate) max_requests: u32,
    pub(crate) max_request_body: u64,
    pub(crate) max_response_body: u64,
    pub(crate) connections: Connections,
}

/// How an instance's connections are made.
pub(crate) struct Connections {
    /// Keep connections open between the requests of the instance.
    pub(crate) reuse: bool,
    /// The TLS client configuration (the engine's roots, plus the
    /// tenant's own CA certificates when it stored any).
    pub(crate) tls: Arc<rustls::ClientConfig>,
}

/// The instance's HTTP client. The pool lives and dies with the instance
/// (one scan, one tenant), so a connection is never shared between tenants;
/// its connector is the only place connections are opened, and it dials
/// only addresses the policy accepted.
type PooledClient = hyper_util::client::legacy::Client<PinnedConnector, WasiBody>;

impl EgressHooks {
    pub(crate) fn new(policy: EgressPolicy, settings: HookSettings) -> Self {
        let connector = PinnedConnector {
            tls: tokio_rustls::TlsConnector::from(settings.connections.tls.clone()),
            policy: policy.clone(),
            flags: settings.flags.clone(),
            tenant: settings.tenant.clone(),
            plugin: settings.plugin.clone(),
        };
        let mut builder =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new());
        builder
            .pool_timer(hyper_util::rt::TokioTimer::new())
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            // One connection per origin is what a sequential plugin needs;
            // a second one in flight at the same time opens its own.
            .pool_max_idle_per_host(if settings.connections.reuse { 4 } else { 0 });
        Self {
            policy,
            offline: None,
            tenant: settings.tenant,
            plugin: settings.plugin,
            flags: settings.flags,
            max_requests: settings.max_requests,
            max_request_body: settings.max_request_body,
            max_response_body: settings.max_response_body,
            client: builder.build(connector),
        }
    }
}

/// How long an idle pooled connection stays open: longer than the pause
/// between two pages (mapping and storing one page), shorter than the
/// time servers usually keep idle connections.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

type SendFuture = Box<
    dyn Future<
            Output = Result<
                (
                    http::Response<WasiBody>,
                    Box<dyn Future<Output = Result<(), HttpError>> + Send>,
                ),
                HttpError,
            >,
        > + Send,
>;

/// Records a denial: counted on the policy, flagged for the current call,
/// logged as a policy event.
fn deny(policy: &EgressPolicy, flags: &CallFlags, tenant: &str, plugin: &str, why: &EgressDenial) {
    policy.count_denial();
    flags
        .egress_denied
        .store(true, std::sync::atomic::Ordering::Relaxed);
    if let Ok(mut last) = flags.last_denial.lock() {
        *last = Some(why.to_string());
    }
    // The denial names a URL the plugin chose.
    let denial = super::plugin_log::escape_untrusted(&why.to_string()).into_owned();
    tracing::warn!(target: "policy", tenant, plugin, denial, "egress denied");
}

impl WasiHttpHooks for EgressHooks {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ) -> SendFuture {
        let n = self.flags.requests.fetch_add(1, Ordering::Relaxed) + 1;
        if n > self.max_requests {
            self.flags.request_limit_hit.store(true, Ordering::Relaxed);
            tracing::warn!(
                target: "policy",
                tenant = %self.tenant,
                plugin = %self.plugin,
                limit = self.max_requests,
                "request limit of the call reached"
            );
            return Box::new(async { Err(HttpError::ConnectionLimitReached) });
        }
        let uri = request.uri().to_string();
        if let Some(call) = self.offline {
            let url = uri.split('?').next().unwrap_or_default().to_string();
            let why = EgressDenial::Offline { call, url };
            deny(&self.policy, &self.flags, &self.tenant, &self.plugin, &why);
            return Box::new(async { Err(HttpError::HttpRequestDenied) });
        }
        if let Err(why) = self.policy.check_url(&uri) {
            deny(&self.policy, &self.flags, &self.tenant, &self.plugin, &why);
            return Box::new(async { Err(HttpError::HttpRequestDenied) });
        }
        let declared = request
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > self.max_request_body) {
            self.flags.body_limit_hit.store(true, Ordering::Relaxed);
            return Box::new(async move { Err(HttpError::HttpRequestBodySize(declared)) });
        }
        let timeouts = Timeouts::from_options(options);
        let flags = self.flags.clone();
        let (max_req, max_resp) = (self.max_request_body, self.max_response_body);
        let client = self.client.clone();
        Box::new(async move {
            let request = request.map(|body| {
                Capped::new(body, max_req, Direction::Request, flags.clone(), None).boxed()
            });
            // The pooled client opens a connection only when no idle one to
            // the same origin is left, and then through `PinnedConnector`,
            // which reads this request's connect timeout from the scope and
            // reports when the connection is up.
            let (phase, mut changes) = tokio::sync::watch::channel(Phase::Waiting);
            let phase = Arc::new(phase);
            let scope = ConnectScope {
                timeout: timeouts.connect,
                phase: phase.clone(),
            };
            let head = REQUEST_CONNECT.scope(scope, client.request(request));
            let response = wait_for_head(head, timeouts, &mut changes)
                .await?
                .map_err(client_error)?;
            let response = response.map(|body| {
                Capped::new(
                    body,
                    max_resp,
                    Direction::Response,
                    flags,
                    Some(timeouts.between_bytes),
                )
                .boxed()
            });
            // The pooled connection's errors reach the plugin through the
            // body; there is no per-request connection task to wait for.
            let io: Box<dyn Future<Output = Result<(), HttpError>> + Send> =
                Box::new(async { Ok(()) });
            Ok((response, io))
        })
    }
}

/// Where a request's connection stands, as its connector reports it.
#[derive(Clone, Copy, Debug)]
enum Phase {
    /// No connection is being opened: a pooled one serves the request.
    Waiting,
    /// The connector is resolving, connecting and handshaking.
    Connecting,
    /// The connection was ready at this instant.
    Connected(tokio::time::Instant),
}

/// What a request's connection attempt needs to know about the request.
#[derive(Clone)]
struct ConnectScope {
    /// The plugin's connect timeout (never above [`CONNECT_TIMEOUT`]).
    timeout: Duration,
    /// Where the connection stands, for the first-byte timeout.
    phase: Arc<tokio::sync::watch::Sender<Phase>>,
}

tokio::task_local! {
    /// Set around a request while the pooled client serves it: the pool
    /// calls the connector from the request's own task, and the connector
    /// takes no per-request arguments besides the URI.
    static REQUEST_CONNECT: ConnectScope;
}

/// Waits for a response head: the connect timeout bounds opening a
/// connection (enforced by the connector), and the first-byte timeout runs
/// from when the connection is ready (from the start when a pooled one
/// serves the request).
async fn wait_for_head<F: Future>(
    head: F,
    timeouts: Timeouts,
    changes: &mut tokio::sync::watch::Receiver<Phase>,
) -> Result<F::Output, HttpError> {
    let started = tokio::time::Instant::now();
    let mut head = std::pin::pin!(head);
    loop {
        let phase = *changes.borrow_and_update();
        let (deadline, error) = match phase {
            Phase::Waiting => (
                started + timeouts.first_byte,
                HttpError::ConnectionReadTimeout,
            ),
            // A safety net: the connector fails first. A pooled connection
            // that frees up while a new one is still being opened serves
            // the request; it gets the same bound.
            Phase::Connecting => (
                started + timeouts.connect + timeouts.first_byte,
                HttpError::ConnectionTimeout,
            ),
            Phase::Connected(at) => (at + timeouts.first_byte, HttpError::ConnectionReadTimeout),
        };
        tokio::select! {
            output = &mut head => return Ok(output),
            () = tokio::time::sleep_until(deadline) => return Err(error),
            changed = changes.changed() => {
                // `send_request` holds a sender until the head arrives, so
                // this does not happen; if it did, no phase change is left
                // to wait for.
                if changed.is_err() {
                    return Ok(head.await);
                }
            }
        }
    }
}

/// The error to give the plugin for a failed pooled request: the
/// connector's own error when it refused or failed to connect, otherwise
/// hyper's.
fn client_error(e: hyper_util::client::legacy::Error) -> HttpError {
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

/// Opens the instance's connections: resolves the origin, refuses the
/// connection if any resolved address is forbidden, and dials exactly the
/// vetted addresses (TLS for `https`, the name used only to verify the
/// certificate). Every request was already checked against the allow-list
/// in `send_request`, and the pool keys connections by scheme and
/// authority, so a connection only ever carries requests to the origin it
/// was vetted for.
#[derive(Clone)]
struct PinnedConnector {
    tls: tokio_rustls::TlsConnector,
    policy: EgressPolicy,
    flags: Arc<CallFlags>,
    tenant: Arc<str>,
    plugin: Arc<str>,
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
                    deny(&this.policy, &this.flags, &this.tenant, &this.plugin, &why);
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
                    deny(&this.policy, &this.flags, &this.tenant, &this.plugin, &why);
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

#[derive(Clone, Copy, Debug)]
struct Timeouts {
    connect: Duration,
    first_byte: Duration,
    between_bytes: Duration,
}

impl Timeouts {
    /// The plugin may ask for shorter timeouts, never longer ones.
    fn from_options(options: Option<RequestOptions>) -> Self {
        let o = options.unwrap_or_default();
        let pick = |asked: Option<Duration>, max: Duration| {
            asked
                .map_or(max, |a| a.min(max))
                .max(Duration::from_millis(1))
        };
        Timeouts {
            connect: pick(o.connect_timeout, CONNECT_TIMEOUT),
            first_byte: pick(o.first_byte_timeout, FIRST_BYTE_TIMEOUT),
            between_bytes: pick(o.between_bytes_timeout, BETWEEN_BYTES_TIMEOUT),
        }
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
                    super::sha256_hex(der)
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
enum PinnedStream {
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

#[derive(Clone, Copy, Debug)]
enum Direction {
    Request,
    Response,
}

/// A body that fails once more than `limit` bytes pass, and (for
/// responses) when the peer is silent longer than the between-bytes
/// timeout.
struct Capped<B> {
    inner: B,
    seen: u64,
    limit: u64,
    direction: Direction,
    flags: Arc<CallFlags>,
    idle: Option<(Duration, Pin<Box<tokio::time::Sleep>>)>,
}

impl<B> Capped<B> {
    fn new(
        inner: B,
        limit: u64,
        direction: Direction,
        flags: Arc<CallFlags>,
        idle: Option<Duration>,
    ) -> Self {
        Self {
            inner,
            seen: 0,
            limit,
            direction,
            flags,
            idle: idle.map(|d| (d, Box::pin(tokio::time::sleep(d)))),
        }
    }
}

impl<B> Capped<B>
where
    B: Body<Data = Bytes> + Unpin + Send + 'static,
    B::Error: Into<HttpError>,
{
    fn boxed(self) -> WasiBody {
        http_body_util::BodyExt::boxed_unsync(self)
    }
}

impl<B> Body for Capped<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<HttpError>,
{
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.seen = this.seen.saturating_add(data.len() as u64);
                    if this.seen > this.limit {
                        this.flags.body_limit_hit.store(true, Ordering::Relaxed);
                        return Poll::Ready(Some(Err(match this.direction {
                            Direction::Request => HttpError::HttpRequestBodySize(Some(this.seen)),
                            Direction::Response => HttpError::HttpResponseBodySize(Some(this.seen)),
                        })));
                    }
                }
                if let Some((d, sleep)) = this.idle.as_mut() {
                    sleep.as_mut().reset(tokio::time::Instant::now() + *d);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                if let Some((_, sleep)) = this.idle.as_mut()
                    && sleep.as_mut().poll(cx).is_ready()
                {
                    return Poll::Ready(Some(Err(HttpError::ConnectionReadTimeout)));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }
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
        assert!(p.check_address(&remote, ip("127.0.0.1")).is_err());
        assert!(p.check_address(&remote, ip("::1")).is_err());
        assert!(p.check_address(&remote, ip("169.254.169.254")).is_err());
        assert!(
            p.check_address(&remote, ip("::ffff:169.254.169.254"))
                .is_err()
        );
        assert!(p.check_address(&remote, ip("fe80::1")).is_err());
        assert!(p.check_address(&remote, ip("fd00:ec2::254")).is_err());
        assert!(p.check_address(&remote, ip("224.0.0.1")).is_err());
        assert!(p.check_address(&remote, ip("0.0.0.0")).is_err());
        assert!(p.check_address(&local, ip("127.0.0.1")).is_ok());
        assert!(p.check_address(&local, ip("169.254.1.1")).is_err());
    }

    #[test]
    fn deny_all_refuses_everything_and_counter_is_shared() {
        let p = EgressPolicy::deny_all();
        assert!(p.check_url("https://example.com/").is_err());
        let clone = p.clone();
        let flags = CallFlags::default();
        deny(
            &clone,
            &flags,
            "t",
            "p",
            &EgressDenial::NotAllowed { origin: "x".into() },
        );
        assert_eq!(p.denied(), 1);
        assert!(flags.egress_denied.load(Ordering::Relaxed));
    }

    #[test]
    fn plugin_may_shorten_but_not_lengthen_timeouts() {
        let t = Timeouts::from_options(Some(RequestOptions {
            connect_timeout: Some(Duration::from_secs(5)),
            first_byte_timeout: Some(Duration::from_secs(10_000)),
            between_bytes_timeout: None,
        }));
        assert_eq!(t.connect, Duration::from_secs(5));
        assert_eq!(t.first_byte, FIRST_BYTE_TIMEOUT);
        assert_eq!(t.between_bytes, BETWEEN_BYTES_TIMEOUT);
    }

    fn timeouts(connect: Duration, first_byte: Duration) -> Timeouts {
        Timeouts {
            connect,
            first_byte,
            between_bytes: BETWEEN_BYTES_TIMEOUT,
        }
    }

    const SHORT: Duration = Duration::from_millis(20);
    const LONG: Duration = Duration::from_secs(3600);

    #[tokio::test]
    async fn a_pooled_connection_waits_only_the_first_byte_timeout() {
        let (_phase, mut changes) = tokio::sync::watch::channel(Phase::Waiting);
        // Before, the wait was connect + first byte: an hour here.
        let waited = wait_for_head(
            std::future::pending::<()>(),
            timeouts(LONG, SHORT),
            &mut changes,
        )
        .await;
        assert!(
            matches!(waited, Err(HttpError::ConnectionReadTimeout)),
            "{waited:?}"
        );
    }

    #[tokio::test]
    async fn the_first_byte_timeout_runs_from_when_the_connection_is_ready() {
        let (phase, mut changes) = tokio::sync::watch::channel(Phase::Waiting);
        let phase = Arc::new(phase);
        let connector = phase.clone();
        tokio::spawn(async move {
            connector.send_replace(Phase::Connecting);
            // Longer than the first-byte timeout: connecting is not
            // waiting for the first byte.
            tokio::time::sleep(SHORT * 3).await;
            connector.send_replace(Phase::Connected(tokio::time::Instant::now()));
        });
        let waited = wait_for_head(
            std::future::pending::<()>(),
            timeouts(LONG, SHORT),
            &mut changes,
        )
        .await;
        assert!(
            matches!(waited, Err(HttpError::ConnectionReadTimeout)),
            "{waited:?}"
        );
        assert!(
            matches!(*phase.borrow(), Phase::Connected(_)),
            "timed out while connecting"
        );
    }

    #[tokio::test]
    async fn a_connection_that_is_never_ready_times_out_as_a_connect_timeout() {
        let (phase, mut changes) = tokio::sync::watch::channel(Phase::Connecting);
        let waited = wait_for_head(
            std::future::pending::<()>(),
            timeouts(SHORT, SHORT),
            &mut changes,
        )
        .await;
        assert!(
            matches!(waited, Err(HttpError::ConnectionTimeout)),
            "{waited:?}"
        );
        drop(phase);
    }

    #[tokio::test]
    async fn an_answer_in_time_is_returned() {
        let (_phase, mut changes) = tokio::sync::watch::channel(Phase::Waiting);
        let waited = wait_for_head(async { 7 }, timeouts(LONG, LONG), &mut changes).await;
        assert!(matches!(waited, Ok(7)), "{waited:?}");
    }

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
            err.contains(&super::super::sha256_hex(&garbage)) && err.contains("not usable"),
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
