//! Instances of a plugin: [`SourceInstance`] and [`SinkInstance`], and
//! the `Core` both run their calls through, which puts every call under the
//! instance's limits, the host's cancel signal and the poison rule.

use crate::bindings::{self, Answer};
use crate::cancel::Cancel;
use crate::error::EngineError;
use crate::limits::{CpuExceeded, CpuMeter, Limits, Metered};
use crate::state::{HostState, MAX_HANDLES};
use scanner_contract as contract;
use std::sync::Arc;
use std::time::Duration;
use wasmtime::{Store, UpdateDeadline};

/// The store of one instance plus the bookkeeping of its calls.
pub(crate) struct Core {
    store: Store<HostState>,
    cancel: Arc<Cancel>,
    plugin: Arc<str>,
    limits: Limits,
    poisoned: Option<String>,
    /// `fetch-page` calls answered so far.
    pages: u32,
}

/// Whether `e` is wasmtime's hostcall fuel running out (see
/// [`Limits::max_transfer_bytes`]). Its error type is private, so the
/// message is the only mark; the sandbox tests fail if an upgrade changes it.
fn transfer_exhausted(e: &wasmtime::Error) -> bool {
    e.chain()
        .any(|c| c.to_string().contains("fuel allocated for hostcalls"))
}

/// What a call runs under, detached from the store it borrows.
struct CallRun {
    meter: Arc<CpuMeter>,
    wall: Duration,
    cancel: Arc<Cancel>,
}

/// The step a call takes besides running, for the calls that need one.
#[derive(Clone, Copy)]
enum CallMode {
    /// None.
    Plain,
    /// Count one page against the instance's page limit first
    /// (`fetch-findings`, `fetch-page`): a source that never ends its scan
    /// is stopped.
    Page,
    /// Refuse all egress during the call, whatever the tenant's grants
    /// (`configure`: the contract promises it needs no network).
    Offline,
}

/// Why a call ended before the guest answered.
enum Stopped {
    /// Its wall-clock deadline passed.
    Deadline,
    /// The host is shutting down.
    Cancelled,
}

impl CallRun {
    async fn run<F: Future>(self, f: F) -> Result<F::Output, Stopped> {
        tokio::select! {
            out = tokio::time::timeout(self.wall, Metered::new(f, self.meter)) => {
                out.map_err(|_| Stopped::Deadline)
            }
            () = self.cancel.stopped() => Err(Stopped::Cancelled),
        }
    }
}

impl Core {
    /// The store of a new instance of `plugin` holding `state`, under
    /// `limits`: memory and tables through the limiter, host-bound data
    /// through hostcall fuel, guest CPU time through epochs.
    pub(crate) fn new(
        engine: &wasmtime::Engine,
        state: HostState,
        limits: Limits,
        cancel: Arc<Cancel>,
        plugin: Arc<str>,
    ) -> Core {
        let mut store = Store::new(engine, state);
        store.limiter(|s| &mut s.limiter);
        // What the host allocates when it copies the guest's data out is not
        // guest memory, so the memory limit does not see it; wasmtime meters
        // it per crossing instead.
        store.set_hostcall_fuel(limits.max_transfer_bytes);
        store.set_max_component_handles(MAX_HANDLES);
        // Checked every epoch tick while guest code runs: trap once the
        // call's CPU budget is spent, otherwise yield to the executor so
        // one busy guest cannot starve the other tenants on this thread.
        store.epoch_deadline_callback(|ctx| {
            if ctx.data().meter.exhausted() {
                Err(wasmtime::Error::new(CpuExceeded))
            } else {
                Ok(UpdateDeadline::Yield(1))
            }
        });
        Core {
            store,
            cancel,
            plugin,
            limits,
            poisoned: None,
            pages: 0,
        }
    }

    fn begin(&mut self, call: &'static str) -> Result<CallRun, EngineError> {
        if let Some(cause) = &self.poisoned {
            return Err(EngineError::Poisoned {
                plugin: self.plugin.to_string(),
                call,
                cause: cause.clone(),
            });
        }
        let data = self.store.data_mut();
        data.flags.reset();
        data.meter.reset(self.limits.cpu_per_call);
        data.limiter.memory_hit = false;
        data.log.reset();
        let meter = data.meter.clone();
        // One tick from now; the callback extends it tick by tick.
        self.store.set_epoch_deadline(1);
        Ok(CallRun {
            meter,
            wall: self.limits.wall_per_call,
            cancel: self.cancel.clone(),
        })
    }

    /// Runs one call of the guest: refused on a poisoned instance, with
    /// the per-call budgets reset, the step `mode` adds, and the guest's
    /// future under the CPU meter, the wall-clock deadline and the host's
    /// cancel signal; the outcome is classified by [`Core::finish`]. `f`
    /// borrows the store only while the call runs, so the bookkeeping
    /// around it can use the store too.
    async fn call<R>(
        &mut self,
        call: &'static str,
        mode: CallMode,
        f: impl AsyncFnOnce(&mut Store<HostState>) -> wasmtime::Result<R>,
    ) -> Result<R, EngineError> {
        let run = self.begin(call)?;
        match mode {
            CallMode::Plain => {}
            CallMode::Page => self.count_page()?,
            CallMode::Offline => self.store.data_mut().set_offline(Some(call)),
        }
        let out = run.run(f(&mut self.store)).await;
        // Cleared whatever the outcome, before `finish` may poison: the
        // flag belongs to this one call only.
        if let CallMode::Offline = mode {
            self.store.data_mut().set_offline(None);
        }
        self.finish(call, out)
    }

    /// Counts one more page against the instance's page limit.
    fn count_page(&mut self) -> Result<(), EngineError> {
        if self.pages >= self.limits.max_pages_per_instance {
            let e = EngineError::PageLimit {
                plugin: self.plugin.to_string(),
                limit: self.limits.max_pages_per_instance,
            };
            return Err(self.poison(e));
        }
        self.pages += 1;
        Ok(())
    }

    fn poison(&mut self, e: EngineError) -> EngineError {
        self.poisoned = Some(e.to_string());
        e
    }

    /// Classifies a call's outcome; any engine error poisons the instance.
    fn finish<R>(
        &mut self,
        call: &'static str,
        out: Result<wasmtime::Result<R>, Stopped>,
    ) -> Result<R, EngineError> {
        // Whatever the outcome: what the plugin kept before it failed is
        // as valid as it was when each write returned.
        self.store.data_mut().save_state(call);
        let dropped = self.store.data_mut().log.take_dropped();
        if dropped > 0 {
            let data = self.store.data();
            tracing::warn!(
                target: "plugin",
                tenant = %data.tenant,
                plugin = %data.plugin,
                call,
                dropped,
                "{dropped} log records dropped: the plugin's log budget was reached"
            );
        }
        let plugin = self.plugin.to_string();
        let e = match out {
            Ok(Ok(r)) => return Ok(r),
            Err(Stopped::Deadline) => EngineError::Deadline {
                plugin,
                call,
                limit: self.limits.wall_per_call,
            },
            Err(Stopped::Cancelled) => EngineError::Cancelled { plugin, call },
            Ok(Err(e)) => {
                let interrupted = e
                    .downcast_ref::<wasmtime::Trap>()
                    .is_some_and(|t| *t == wasmtime::Trap::Interrupt);
                if transfer_exhausted(&e) {
                    EngineError::TransferLimit {
                        plugin,
                        call,
                        limit_bytes: self.limits.max_transfer_bytes,
                    }
                } else if e.is::<CpuExceeded>() || interrupted {
                    EngineError::CpuLimit {
                        plugin,
                        call,
                        limit: self.limits.cpu_per_call,
                    }
                } else if self.store.data().limiter.memory_hit {
                    EngineError::MemoryLimit {
                        plugin,
                        call,
                        limit_bytes: self.limits.memory_bytes,
                    }
                } else if call == "instantiate" {
                    EngineError::Instantiate {
                        plugin,
                        message: format!("{e:#}"),
                    }
                } else {
                    EngineError::Trap {
                        plugin,
                        call,
                        message: format!("{e:#}"),
                    }
                }
            }
        };
        Err(self.poison(e))
    }

    /// A per-call budget or policy the call ran into, as the error to
    /// report when the plugin's own answer was a failure (the plugin's
    /// message would blame the network or the service instead).
    fn violation(&mut self, call: &'static str) -> Option<EngineError> {
        use std::sync::atomic::Ordering::Relaxed;
        let flags = &self.store.data().flags;
        let plugin = self.plugin.to_string();
        let e = if flags.request_limit_hit.load(Relaxed) {
            EngineError::RequestLimit {
                plugin,
                call,
                limit: self.limits.max_requests_per_call,
            }
        } else if flags.body_limit_hit.load(Relaxed) {
            EngineError::BodyLimit { plugin, call }
        } else if flags.egress_denied.load(Relaxed) {
            let denial = flags
                .last_denial
                .lock()
                .ok()
                .and_then(|d| d.clone())
                .unwrap_or_default();
            EngineError::EgressDenied {
                plugin,
                call,
                denial,
            }
        } else {
            return None;
        };
        Some(self.poison(e))
    }

    /// For calls whose answer is a `Result`: a violation replaces a failed
    /// answer; a successful answer stands (the plugin coped).
    fn judge<U>(
        &mut self,
        call: &'static str,
        answer: Answer<U>,
    ) -> Result<Answer<U>, EngineError> {
        if answer.is_err()
            && let Some(e) = self.violation(call)
        {
            return Err(e);
        }
        Ok(answer)
    }

    /// For calls that must not touch the network at all (`describe`,
    /// `map-findings`): any violation fails the call.
    fn judge_offline<T>(&mut self, call: &'static str, answer: T) -> Result<T, EngineError> {
        match self.violation(call) {
            Some(e) => Err(e),
            None => Ok(answer),
        }
    }
}

/// One instance of a plugin's `scanner-source`, for one tenant and one
/// scan. After any [`EngineError`] it refuses further calls.
pub struct SourceInstance {
    core: Core,
    bindings: bindings::Source,
}

impl std::fmt::Debug for SourceInstance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceInstance")
            .field("plugin", &self.core.plugin)
            .field("poisoned", &self.core.poisoned)
            .finish_non_exhaustive()
    }
}

impl SourceInstance {
    /// Instantiates `pre` in `core`'s store.
    pub(crate) async fn instantiate(
        mut core: Core,
        pre: &bindings::SourcePre,
    ) -> Result<SourceInstance, EngineError> {
        let bindings = core
            .call("instantiate", CallMode::Plain, async |store| {
                pre.instantiate(store).await
            })
            .await?;
        Ok(SourceInstance { core, bindings })
    }

    /// Guest CPU time of the last call: the time the guest ran, without
    /// the time it waited for HTTP or host calls (what the CPU limit
    /// charges).
    pub fn last_call_cpu(&self) -> Duration {
        self.core.store.data().meter.used()
    }

    /// Requests this instance's policy refused so far (all calls).
    pub fn egress_denied(&self) -> u64 {
        self.core.store.data().egress_denied()
    }

    /// Whether an earlier failure made this instance unusable.
    pub fn is_poisoned(&self) -> bool {
        self.core.poisoned.is_some()
    }

    /// [`Core::call`] of the instance's `scanner-source` export.
    async fn call<R>(
        &mut self,
        call: &'static str,
        mode: CallMode,
        f: impl AsyncFnOnce(&bindings::Source, &mut Store<HostState>) -> wasmtime::Result<R>,
    ) -> Result<R, EngineError> {
        let plugin = &self.bindings;
        self.core
            .call(call, mode, async move |store| f(plugin, store).await)
            .await
    }

    /// The plugin's name, version and fields.
    pub async fn describe(&mut self) -> Result<contract::PluginInfo, EngineError> {
        const CALL: &str = "describe";
        let info = self
            .call(CALL, CallMode::Plain, async |plugin, store| {
                plugin.describe(store).await
            })
            .await?;
        self.core.judge_offline(CALL, info)
    }

    /// Validate and keep the tenant's settings.
    pub async fn configure(
        &mut self,
        settings: &contract::Settings,
    ) -> Result<Result<contract::Configured, contract::PluginError>, EngineError> {
        const CALL: &str = "configure";
        let answer = self
            .call(CALL, CallMode::Offline, async |plugin, store| {
                plugin.configure(store, settings).await
            })
            .await?;
        self.core.judge(CALL, answer)
    }

    /// Check credentials and API access.
    pub async fn test(
        &mut self,
    ) -> Result<Result<contract::ConnectionInfo, contract::PluginError>, EngineError> {
        const CALL: &str = "test";
        let answer = self
            .call(CALL, CallMode::Plain, async |plugin, store| {
                plugin.test(store).await
            })
            .await?;
        self.core.judge(CALL, answer)
    }

    /// Fetch one page and map it in the same call (`fetch-findings`), the
    /// way scans run.
    pub async fn fetch_findings(
        &mut self,
        req: &contract::PageRequest,
    ) -> Result<Result<contract::FindingPage, contract::PluginError>, EngineError> {
        const CALL: &str = "fetch-findings";
        let answer = self
            .call(CALL, CallMode::Page, async |plugin, store| {
                plugin.fetch_findings(store, req).await
            })
            .await?;
        self.core.judge(CALL, answer)
    }

    /// Fetch one page of raw records (`fetch-page`), to inspect what a
    /// source returns; scans use [`SourceInstance::fetch_findings`].
    pub async fn fetch_page(
        &mut self,
        req: &contract::PageRequest,
    ) -> Result<Result<contract::Page, contract::PluginError>, EngineError> {
        const CALL: &str = "fetch-page";
        let answer = self
            .call(CALL, CallMode::Page, async |plugin, store| {
                plugin.fetch_page(store, req).await
            })
            .await?;
        self.core.judge(CALL, answer)
    }

    /// Map a page of records to findings, one result per record in order.
    pub async fn map_findings(
        &mut self,
        records: Vec<contract::RawRecord>,
    ) -> Result<Vec<Result<Option<contract::Finding>, contract::PluginError>>, EngineError> {
        const CALL: &str = "map-findings";
        let count = records.len();
        let answer = self
            .call(CALL, CallMode::Plain, async |plugin, store| {
                plugin.map_findings(store, records).await
            })
            .await?;
        // The contract promises one entry per record; anything else would
        // silently attach findings to the wrong records.
        if answer.len() != count {
            let e = EngineError::Trap {
                plugin: self.core.plugin.to_string(),
                call: CALL,
                message: format!("returned {} results for {count} records", answer.len()),
            };
            return Err(self.core.poison(e));
        }
        self.core.judge_offline(CALL, answer)
    }
}

/// One instance of a plugin's `findings-sink`, for one tenant and one
/// export. After any [`EngineError`] it refuses further calls.
pub struct SinkInstance {
    core: Core,
    bindings: bindings::Sink,
}

impl std::fmt::Debug for SinkInstance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SinkInstance")
            .field("plugin", &self.core.plugin)
            .field("poisoned", &self.core.poisoned)
            .finish_non_exhaustive()
    }
}

impl SinkInstance {
    /// Instantiates `pre` in `core`'s store.
    pub(crate) async fn instantiate(
        mut core: Core,
        pre: &bindings::SinkPre,
    ) -> Result<SinkInstance, EngineError> {
        let bindings = core
            .call("instantiate", CallMode::Plain, async |store| {
                pre.instantiate(store).await
            })
            .await?;
        Ok(SinkInstance { core, bindings })
    }

    /// Requests this instance's policy refused so far (all calls).
    pub fn egress_denied(&self) -> u64 {
        self.core.store.data().egress_denied()
    }

    /// Whether an earlier failure made this instance unusable.
    pub fn is_poisoned(&self) -> bool {
        self.core.poisoned.is_some()
    }

    /// [`Core::call`] of the instance's `findings-sink` export.
    async fn call<R>(
        &mut self,
        call: &'static str,
        mode: CallMode,
        f: impl AsyncFnOnce(&bindings::Sink, &mut Store<HostState>) -> wasmtime::Result<R>,
    ) -> Result<R, EngineError> {
        let plugin = &self.bindings;
        self.core
            .call(call, mode, async move |store| f(plugin, store).await)
            .await
    }

    /// The sink's name, version and fields.
    pub async fn describe(&mut self) -> Result<contract::PluginInfo, EngineError> {
        const CALL: &str = "describe";
        let info = self
            .call(CALL, CallMode::Plain, async |plugin, store| {
                plugin.describe(store).await
            })
            .await?;
        self.core.judge_offline(CALL, info)
    }

    /// Validate and keep the tenant's settings.
    pub async fn configure(
        &mut self,
        settings: &contract::Settings,
    ) -> Result<Result<contract::Configured, contract::PluginError>, EngineError> {
        const CALL: &str = "configure";
        let answer = self
            .call(CALL, CallMode::Offline, async |plugin, store| {
                plugin.configure(store, settings).await
            })
            .await?;
        self.core.judge(CALL, answer)
    }

    /// Check credentials and that an export could be made.
    pub async fn test(
        &mut self,
    ) -> Result<Result<contract::ConnectionInfo, contract::PluginError>, EngineError> {
        const CALL: &str = "test";
        let answer = self
            .call(CALL, CallMode::Plain, async |plugin, store| {
                plugin.test(store).await
            })
            .await?;
        self.core.judge(CALL, answer)
    }

    /// Send one batch.
    pub async fn export(
        &mut self,
        batch: &contract::ExportBatch,
    ) -> Result<Result<contract::ExportReceipt, contract::PluginError>, EngineError> {
        const CALL: &str = "export";
        let answer = self
            .call(CALL, CallMode::Plain, async |plugin, store| {
                plugin.export(store, batch).await
            })
            .await?;
        self.core.judge(CALL, answer)
    }

    /// Ask how an earlier export went.
    pub async fn export_status(
        &mut self,
        receipt: &contract::ExportReceipt,
    ) -> Result<Result<contract::ExportState, contract::PluginError>, EngineError> {
        const CALL: &str = "export-status";
        let answer = self
            .call(CALL, CallMode::Plain, async |plugin, store| {
                plugin.export_status(store, receipt).await
            })
            .await?;
        self.core.judge(CALL, answer)
    }
}
