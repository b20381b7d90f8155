//! Why the engine failed: [`EngineError`], one variant per kind of
//! failure, each naming the plugin and the call.

use crate::egress::EgressDenial;
use std::path::PathBuf;
use std::time::Duration;

/// Why the engine failed. Errors about a call name the plugin
/// (`name@version`) and the call.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// wasmtime could not be configured.
    #[error("engine setup failed: {message}")]
    Setup {
        /// What failed.
        message: String,
    },
    /// A component could not be read or compiled.
    #[error("cannot compile plugin {}: {message}", path.display())]
    Compile {
        /// The component file.
        path: PathBuf,
        /// What failed.
        message: String,
    },
    /// The compiled-component cache could not be used.
    #[error("plugin cache {}: {message}", path.display())]
    Cache {
        /// The cache file.
        path: PathBuf,
        /// What failed.
        message: String,
    },
    /// A component could not be linked or instantiated.
    #[error("cannot instantiate plugin {plugin}: {message}")]
    Instantiate {
        /// The plugin (or its file before `describe`).
        plugin: String,
        /// What failed.
        message: String,
    },
    /// The component is built against a `scanner:plugin` version the host
    /// does not load.
    #[error(
        "cannot load plugin {plugin}: it is built against scanner:plugin@{version}; this host loads {}",
        supported_list(supported)
    )]
    UnsupportedContract {
        /// The plugin's file.
        plugin: String,
        /// The version the component names (empty when it names none).
        version: String,
        /// The versions the host loads.
        supported: &'static [&'static str],
    },
    /// The plugin does not export the interface asked for.
    #[error("plugin {plugin} does not export {interface}")]
    NotExported {
        /// The plugin.
        plugin: String,
        /// The missing interface.
        interface: &'static str,
    },
    /// The guest trapped (a panic, an unreachable, an out-of-bounds access).
    #[error("plugin {plugin} trapped in {call}: {message}")]
    Trap {
        /// The plugin.
        plugin: String,
        /// The call.
        call: &'static str,
        /// The trap.
        message: String,
    },
    /// The call used more guest CPU time than allowed.
    #[error("plugin {plugin} exceeded its CPU limit of {limit:?} in {call}")]
    CpuLimit {
        /// The plugin.
        plugin: String,
        /// The call.
        call: &'static str,
        /// The limit.
        limit: Duration,
    },
    /// The guest's memory (or a table) could not grow further.
    #[error("plugin {plugin} exceeded its memory limit of {limit_bytes} bytes in {call}")]
    MemoryLimit {
        /// The plugin.
        plugin: String,
        /// The call.
        call: &'static str,
        /// The limit.
        limit_bytes: usize,
    },
    /// The call took longer than its wall-clock deadline.
    #[error("plugin {plugin} exceeded its deadline of {limit:?} in {call}")]
    Deadline {
        /// The plugin.
        plugin: String,
        /// The call.
        call: &'static str,
        /// The limit.
        limit: Duration,
    },
    /// The call made more outgoing requests than allowed, and failed.
    #[error("plugin {plugin} exceeded its limit of {limit} requests in {call}")]
    RequestLimit {
        /// The plugin.
        plugin: String,
        /// The call.
        call: &'static str,
        /// The limit.
        limit: u32,
    },
    /// A request or response body was over its size limit, and the call
    /// failed.
    #[error("plugin {plugin} exceeded an HTTP body size limit in {call}")]
    BodyLimit {
        /// The plugin.
        plugin: String,
        /// The call.
        call: &'static str,
    },
    /// The guest tried to pass more data into the host in one crossing (a
    /// call's results or a host call's arguments) than its limit.
    #[error("plugin {plugin} tried to pass more than {limit_bytes} bytes to the host in {call}")]
    TransferLimit {
        /// The plugin.
        plugin: String,
        /// The call.
        call: &'static str,
        /// The limit.
        limit_bytes: usize,
    },
    /// The instance already answered as many `fetch-page` calls as its
    /// limit allows: the scan does not end.
    #[error("plugin {plugin} reached its limit of {limit} pages in one scan")]
    PageLimit {
        /// The plugin.
        plugin: String,
        /// The limit.
        limit: u32,
    },
    /// The call failed after the egress policy refused one of its requests.
    #[error("plugin {plugin} was refused egress in {call}: {denial}")]
    EgressDenied {
        /// The plugin.
        plugin: String,
        /// The call.
        call: &'static str,
        /// The last denial, as text.
        denial: String,
    },
    /// The instance failed earlier and must not be used again.
    #[error(
        "plugin {plugin} instance is unusable after an earlier failure ({cause}); {call} refused"
    )]
    Poisoned {
        /// The plugin.
        plugin: String,
        /// The refused call.
        call: &'static str,
        /// The earlier failure.
        cause: String,
    },
    /// An egress origin is malformed or forbidden.
    #[error(transparent)]
    InvalidEgress(EgressDenial),
    /// The host is shutting down and stopped the call.
    #[error("plugin {plugin}: {call} was stopped because the host is shutting down")]
    Cancelled {
        /// The plugin.
        plugin: String,
        /// The call.
        call: &'static str,
    },
    /// The CA certificates stored with a tenant's integration cannot be
    /// used as TLS roots.
    #[error("the CA certificates of tenant `{tenant}` cannot be used: {message}")]
    RootCertificates {
        /// The tenant.
        tenant: String,
        /// Which certificate, and why.
        message: String,
    },
    /// The plugin described itself with a name the host cannot use.
    #[error("plugin {} describes itself with an invalid name `{name}`: {reason}", path.display())]
    InvalidName {
        /// The component file.
        path: PathBuf,
        /// The name, made safe to print.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
}

/// `scanner:plugin@0.2.0 and scanner:plugin@0.3.0 plugins`.
fn supported_list(versions: &[&str]) -> String {
    let names: Vec<String> = versions
        .iter()
        .map(|v| format!("scanner:plugin@{v}"))
        .collect();
    match names.as_slice() {
        [] => "no plugins".into(),
        [one] => format!("{one} plugins"),
        [rest @ .., last] => format!("{} and {last} plugins", rest.join(", ")),
    }
}

impl EngineError {
    /// Whether this is a resource limit (CPU, memory, deadline, request
    /// count, body size): the plugin misbehaved or the limits are too tight,
    /// and retrying unchanged will likely fail again.
    pub fn is_limit(&self) -> bool {
        matches!(
            self,
            Self::CpuLimit { .. }
                | Self::MemoryLimit { .. }
                | Self::Deadline { .. }
                | Self::RequestLimit { .. }
                | Self::BodyLimit { .. }
                | Self::TransferLimit { .. }
                | Self::PageLimit { .. }
        )
    }
}
