//! The `wasi:http` hook of one instance, where each outgoing request is
//! judged: the call's request budget, the offline flag, the allow-list and
//! the declared body size, before the instance's own client sends it.

use super::body::{Capped, Direction};
use super::connector::{Connections, PinnedConnector, client_error};
use super::denial::EgressDenial;
use super::policy::{EgressPolicy, deny};
use super::timeouts::{ConnectScope, Phase, REQUEST_CONNECT, Timeouts, wait_for_head};
use crate::counters::EngineCounters;
use crate::limits::CallFlags;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

/// The [`WasiHttpHooks`] of one instance: its tenant's policy, the per-call
/// budgets and the instance's own connection pool.
pub(crate) struct EgressHooks {
    pub(crate) policy: EgressPolicy,
    /// Set while a call that must not use the network runs: every request
    /// is refused, whatever the policy grants.
    pub(crate) offline: Option<&'static str>,
    tenant: Arc<str>,
    plugin: Arc<str>,
    counters: Arc<EngineCounters>,
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
    /// The engine's totals, where denials are counted too.
    pub(crate) counters: Arc<EngineCounters>,
    pub(crate) flags: Arc<CallFlags>,
    pub(crate) max_requests: u32,
    pub(crate) max_request_body: u64,
    pub(crate) max_response_body: u64,
    pub(crate) connections: Connections,
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
            counters: settings.counters.clone(),
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
            counters: settings.counters,
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
            deny(
                &self.policy,
                &self.counters,
                &self.flags,
                &self.tenant,
                &self.plugin,
                &why,
            );
            return Box::new(async { Err(HttpError::HttpRequestDenied) });
        }
        if let Err(why) = self.policy.check_url(&uri) {
            deny(
                &self.policy,
                &self.counters,
                &self.flags,
                &self.tenant,
                &self.plugin,
                &why,
            );
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
