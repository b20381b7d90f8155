//! The runtime: plugins, engine and store put together, its builders, and
//! the operations on a tenant's integration (connect, test, scan,
//! disconnect, and the sink an export uses).

use crate::clock::{Clock, SystemClock};
use crate::error::RuntimeError;
use crate::grants::Grants;
use crate::inspect::{InspectedRecord, Mapped};
use crate::live::LiveScans;
use crate::lock::{DEFAULT_LEASE_TTL, LockHolder};
use crate::metrics::Metrics;
use crate::plugins::Plugins;
use crate::retry::RetryPolicy;
use crate::scan::{OnOutcome, Progress, Scan, ScanCaps, ScanReport};
use crate::scratch::ScratchKv;
use crate::shutdown::ShutdownSignal;
use crate::sync::{ScanRequest, SyncPolicy};
use crate::tenant::{TenantSetup, check_tenant_name, grants_of};
use scanner_contract::{ConnectionInfo, PluginError, PluginInfo, Settings};
use scanner_engine::{Engine, Plugin, SinkInstance, SourceInstance};
use scanner_store::{Database, Store, TenantLock};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// What [`Runtime::connect_with_options`] does besides testing and saving
/// the settings.
#[derive(Debug, Clone, Default)]
pub struct ConnectOptions {
    /// Run the tenant with the component now loaded under the plugin's
    /// name, although it differs from the one it was connected with.
    pub accept_plugin_update: bool,
    /// CA certificates (DER) the tenant's HTTPS trusts besides the public
    /// web roots, from the connection test on and in every later call of
    /// the tenant, in any process: saved with the integration, replacing
    /// those saved before.
    pub ca_certificates: Vec<Vec<u8>>,
    /// What the operator grants the tenant's sandbox: the default grants
    /// nothing, and a connect whose configuration requests any origin is
    /// refused.
    pub grants: Grants,
}

/// Plugins, engine and store put together.
pub struct Runtime {
    engine: Engine,
    plugins: Plugins,
    store: Arc<dyn Store>,
    /// The same store when it is SQLite: what only SQLite holds yet
    /// (exports, repositories, the findings listing, API tokens).
    database: Option<Arc<Database>>,
    clock: Arc<dyn Clock>,
    retry: RetryPolicy,
    caps: ScanCaps,
    plugin_caps: BTreeMap<String, ScanCaps>,
    running: std::sync::Mutex<std::collections::HashSet<String>>,
    shutdown: Arc<ShutdownSignal>,
    first_scan_delay: Duration,
    sync: SyncPolicy,
    max_empty_pages: u32,
    holder: LockHolder,
    lease_ttl: Duration,
    live: LiveScans,
    metrics: Metrics,
}

impl Runtime {
    /// A runtime over an engine, loaded plugins and a store. Two plugins
    /// that call themselves by one name are both set aside (see
    /// [`Runtime::plugin_conflicts`]): whichever came last must not
    /// silently receive the other's tenants and secrets.
    pub fn new(engine: Engine, plugins: Vec<Plugin>, store: Arc<Database>) -> Self {
        let mut runtime = Self::on_store(engine, plugins, store.clone());
        runtime.database = Some(store);
        runtime
    }

    /// A runtime over a store of any backend (PostgreSQL, say); what only
    /// SQLite holds yet is unavailable ([`Runtime::database`] is `None`).
    pub fn on_store(engine: Engine, plugins: Vec<Plugin>, store: Arc<dyn Store>) -> Self {
        let metrics = Metrics::new(engine.counters());
        Self {
            engine,
            plugins: Plugins::new(plugins),
            store,
            database: None,
            clock: Arc::new(SystemClock),
            retry: RetryPolicy::default(),
            caps: ScanCaps::default(),
            plugin_caps: BTreeMap::new(),
            running: Default::default(),
            shutdown: Arc::default(),
            first_scan_delay: Duration::from_secs(30),
            sync: SyncPolicy::default(),
            max_empty_pages: 1000,
            holder: LockHolder::of_this_process(),
            lease_ttl: DEFAULT_LEASE_TTL,
            live: LiveScans::default(),
            metrics,
        }
    }

    /// How long after connecting the first scan is due (default 30 s).
    pub fn with_first_scan_delay(mut self, delay: Duration) -> Self {
        self.first_scan_delay = delay;
        self
    }

    /// The time from one full scan's end to the next full scan (default
    /// 6 h): a scan run by hand moves the slot as a scheduled one does.
    pub fn with_scan_interval(mut self, interval: Duration) -> Self {
        self.sync.full_every = interval;
        self
    }

    /// The time from one scan's end to the next incremental scan (default
    /// 1 h; `None`: full scans only), for integrations that set none of
    /// their own.
    pub fn with_incremental_interval(mut self, interval: Option<Duration>) -> Self {
        self.sync.incremental_every = interval;
        self
    }

    /// How long a tenant's scan lease lasts unless renewed (default 60 s;
    /// renewed every sixth of it): how long the tenants of a host that
    /// died or froze wait before another host takes them over.
    pub fn with_lease_ttl(mut self, ttl: Duration) -> Self {
        self.lease_ttl = ttl.max(Duration::from_secs(1));
        self
    }

    /// When scans are full or incremental, and due.
    pub fn sync_policy(&self) -> &SyncPolicy {
        &self.sync
    }

    /// Use another clock (tests).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Use another retry policy.
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// The caps of every plugin without caps of its own.
    pub fn with_scan_caps(mut self, caps: ScanCaps) -> Self {
        self.caps = caps;
        self
    }

    /// The caps of one plugin's scans.
    pub fn with_plugin_scan_caps(mut self, plugin: &str, caps: ScanCaps) -> Self {
        self.plugin_caps.insert(plugin.to_string(), caps);
        self
    }

    /// How many pages in a row may come back empty with a next cursor
    /// before a scan is failed as endless (default 1 000).
    pub fn with_max_empty_pages(mut self, pages: u32) -> Self {
        self.max_empty_pages = pages.max(1);
        self
    }

    /// The retry policy.
    pub fn retry(&self) -> &RetryPolicy {
        &self.retry
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The metrics this runtime keeps, for a host to expose.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The store when it is SQLite, which alone holds exports,
    /// repositories, the findings listing and API tokens yet.
    pub fn database(&self) -> Option<&Arc<Database>> {
        self.database.as_ref()
    }

    /// The SQLite store, or an error saying `what` needs it.
    pub fn require_database(&self, what: &str) -> Result<&Arc<Database>, RuntimeError> {
        self.database
            .as_ref()
            .ok_or_else(|| RuntimeError::NotOnBackend {
                what: what.to_string(),
                backend: self.store.backend(),
            })
    }

    /// The clock.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// The loaded plugins' descriptions, by name.
    pub fn plugins(&self) -> impl Iterator<Item = &PluginInfo> {
        self.plugins.infos()
    }

    /// Plugin names claimed by more than one component, with the files.
    pub fn plugin_conflicts(&self) -> &BTreeMap<String, Vec<PathBuf>> {
        self.plugins.conflicts()
    }

    /// Ask running scans to stop after their current page; retry waits end
    /// at once. Calls in flight go on: see [`Runtime::cancel_plugin_calls`].
    pub fn request_shutdown(&self) {
        self.shutdown.request();
    }

    /// Stop plugin calls in flight now (after a shutdown's grace period):
    /// their scans end as interrupted and resume from their last stored
    /// page.
    pub fn cancel_plugin_calls(&self) {
        self.engine.cancel_calls();
    }

    /// Whether shutdown was requested.
    pub fn shutting_down(&self) -> bool {
        self.shutdown.is_requested()
    }

    /// What the plugin loaded under `name` says about itself; an error
    /// when none is, or when two components claim the name.
    pub fn plugin_info(&self, name: &str) -> Result<&PluginInfo, RuntimeError> {
        self.plugins.get(name).map(Plugin::info)
    }

    /// Validate settings with the plugin, test the connection, and save the
    /// integration only when the test passes. The origins the
    /// configuration requests (the source's, and the sink's when the plugin
    /// exports) must all be covered by `grants`, else nothing is contacted
    /// or saved; they are saved as the tenant's grants. Reconnecting an
    /// existing tenant replaces its settings and grants and keeps its
    /// findings and state; CA certificates saved before are dropped (see
    /// [`Runtime::connect_with_options`]).
    pub async fn connect(
        &self,
        tenant: &str,
        plugin_name: &str,
        settings: &Settings,
        grants: &Grants,
    ) -> Result<ConnectionInfo, RuntimeError> {
        let options = ConnectOptions {
            grants: grants.clone(),
            ..ConnectOptions::default()
        };
        self.connect_with_options(tenant, plugin_name, settings, &options)
            .await
    }

    /// The origins `settings` make the plugin request, for the operator to
    /// grant (see [`Grants`]): the source's, then the sink's when the
    /// plugin exports, each once. Nothing is contacted or saved.
    pub async fn requested_origins(
        &self,
        tenant: &str,
        plugin_name: &str,
        settings: &Settings,
        options: &ConnectOptions,
    ) -> Result<Vec<String>, RuntimeError> {
        let plugin = self.trusted_plugin(tenant, plugin_name, options.accept_plugin_update)?;
        let setup = TenantSetup {
            tenant,
            plugin,
            plugin_name,
            settings,
            ca_certificates: &options.ca_certificates,
            kv: Arc::new(ScratchKv::default()),
            metrics: &self.metrics,
        };
        self.requested_by(&setup).await
    }

    /// The origins `setup`'s configuration requests: the source's and, when
    /// the plugin exports, the sink's (an upload bucket), so that exports
    /// run on grants made at connect.
    async fn requested_by(&self, setup: &TenantSetup<'_>) -> Result<Vec<String>, RuntimeError> {
        let mut origins = setup.requested::<SourceInstance>().await?;
        if setup.plugin.has_sink() {
            for origin in setup.requested::<SinkInstance>().await? {
                if !origins.contains(&origin) {
                    origins.push(origin);
                }
            }
        }
        Ok(origins)
    }

    /// [`Runtime::connect`] with `options`: the origins requested must be
    /// covered by `options.grants`; the connection test already trusts
    /// `options.ca_certificates`, and they are saved with the integration,
    /// replacing those saved before (none given: none kept).
    pub async fn connect_with_options(
        &self,
        tenant: &str,
        plugin_name: &str,
        settings: &Settings,
        options: &ConnectOptions,
    ) -> Result<ConnectionInfo, RuntimeError> {
        let accept_plugin_update = options.accept_plugin_update;
        let ca_certificates = &options.ca_certificates;
        let plugin = self.trusted_plugin(tenant, plugin_name, accept_plugin_update)?;
        let setup = TenantSetup {
            tenant,
            plugin,
            plugin_name,
            settings,
            ca_certificates,
            kv: self.store.clone(),
            metrics: &self.metrics,
        };
        let requested = self.requested_by(&setup).await?;
        let grants = options.grants.grant(tenant, plugin_name, &requested)?;
        let mut instance: SourceInstance = setup.with_grants(&grants).await?;
        let info = self.metrics.answered(instance.test().await?)?;
        let now = self.clock.now();
        self.store.upsert_granted_integration(
            tenant,
            plugin_name,
            settings,
            &grants,
            ca_certificates,
            now,
        )?;
        self.store.set_plugin_digest(tenant, plugin.digest())?;
        self.store.set_connected(tenant)?;
        self.store
            .set_next_scan(tenant, now + self.first_scan_delay)?;
        Ok(info)
    }

    /// The plugin loaded as `plugin_name`, to be given `tenant`'s settings:
    /// refused when the tenant name is not acceptable, or when the tenant
    /// is connected to this plugin name and the component loaded under it
    /// is not the one it was connected with (unless the operator accepts
    /// the update). Checked before any instance sees the settings, which
    /// may carry the tenant's stored secret.
    fn trusted_plugin(
        &self,
        tenant: &str,
        plugin_name: &str,
        accept_plugin_update: bool,
    ) -> Result<&Plugin, RuntimeError> {
        check_tenant_name(tenant)?;
        let plugin = self.plugins.get(plugin_name)?;
        let same_plugin = self
            .store
            .integration(tenant)?
            .is_some_and(|i| i.plugin == plugin_name);
        if same_plugin
            && !accept_plugin_update
            && let Some(digest) = self.store.plugin_digest(tenant)?
            && digest != plugin.digest()
        {
            return Err(RuntimeError::PluginChanged {
                tenant: tenant.to_string(),
                plugin: plugin_name.to_string(),
                path: plugin.path().display().to_string(),
            });
        }
        Ok(plugin)
    }

    /// Configure and test `settings` as [`Runtime::connect_with_options`]
    /// would (`options.grants` must cover the origins requested), saving
    /// nothing: the tenant need not exist, its stored
    /// integration and state are left as they were. The plugin's state
    /// lives in memory for this test only, starting empty, so a token
    /// cached for the stored credentials cannot make other credentials
    /// pass.
    pub async fn test_settings(
        &self,
        tenant: &str,
        plugin_name: &str,
        settings: &Settings,
        options: &ConnectOptions,
    ) -> Result<ConnectionInfo, RuntimeError> {
        let plugin = self.trusted_plugin(tenant, plugin_name, options.accept_plugin_update)?;
        let setup = TenantSetup {
            tenant,
            plugin,
            plugin_name,
            settings,
            ca_certificates: &options.ca_certificates,
            kv: Arc::new(ScratchKv::default()),
            metrics: &self.metrics,
        };
        let requested = self.requested_by(&setup).await?;
        let grants = options.grants.grant(tenant, plugin_name, &requested)?;
        let mut instance: SourceInstance = setup.with_grants(&grants).await?;
        Ok(self.metrics.answered(instance.test().await?)?)
    }

    /// Test a saved integration's connection.
    pub async fn test(&self, tenant: &str) -> Result<ConnectionInfo, RuntimeError> {
        let integration = self
            .store
            .integration(tenant)?
            .ok_or_else(|| RuntimeError::UnknownTenant(tenant.to_string()))?;
        let plugin = self.plugins.of_integration(&*self.store, &integration)?;
        let setup = TenantSetup::saved(&integration, plugin, &self.store, &self.metrics);
        let mut instance: SourceInstance = setup.with_grants(&grants_of(&integration)).await?;
        Ok(self.metrics.answered(instance.test().await?)?)
    }

    /// The first page of the tenant's source fetched raw (`fetch-page`),
    /// at most `limit` of its records mapped (`map-findings`), each record
    /// beside what it maps to: what a plugin author debugging a mapping
    /// needs. A full scan's first page, under the integration's grants;
    /// nothing is stored.
    pub async fn inspect(
        &self,
        tenant: &str,
        limit: usize,
    ) -> Result<Vec<InspectedRecord>, RuntimeError> {
        let integration = self
            .store
            .integration(tenant)?
            .ok_or_else(|| RuntimeError::UnknownTenant(tenant.to_string()))?;
        let plugin = self.plugins.of_integration(&*self.store, &integration)?;
        let setup = TenantSetup::saved(&integration, plugin, &self.store, &self.metrics);
        let mut instance: SourceInstance = setup.with_grants(&grants_of(&integration)).await?;
        let request = scanner_contract::PageRequest::default();
        let page = self
            .metrics
            .answered(instance.fetch_page(&request).await?)?;
        let mut records = page.records;
        records.truncate(limit);
        let mapped = instance.map_findings(records.clone()).await?;
        Ok(records
            .into_iter()
            .zip(mapped)
            .map(|(record, result)| InspectedRecord {
                id: record.id,
                body: record.body,
                mapped: Mapped::of(result),
            })
            .collect())
    }

    /// The tenant's sink, to export with: its integration's plugin (the
    /// component it was connected with), configured with the saved
    /// settings and reaching exactly the origins granted at connect. An
    /// error when the tenant is not connected, its plugin does not export,
    /// or the sink's configuration requests an origin not granted (named
    /// in the error; the operator reconnects to grant it).
    pub async fn tenant_sink(&self, tenant: &str) -> Result<SinkInstance, RuntimeError> {
        let integration = self
            .store
            .integration(tenant)?
            .ok_or_else(|| RuntimeError::UnknownTenant(tenant.to_string()))?;
        let plugin = self.plugins.of_integration(&*self.store, &integration)?;
        if !plugin.has_sink() {
            return Err(RuntimeError::Plugin(PluginError::Unsupported(format!(
                "plugin `{}` does not export findings",
                integration.plugin
            ))));
        }
        let setup = TenantSetup::saved(&integration, plugin, &self.store, &self.metrics);
        setup.with_grants(&grants_of(&integration)).await
    }

    /// Run one scan of a tenant to completion (or resume an interrupted
    /// one), storing every page as it arrives. The tenant's lock in the
    /// store keeps any other process from scanning it meanwhile.
    ///
    /// The scan is incremental or full as the schedule says
    /// ([`SyncPolicy`]); see [`Runtime::scan_with`] to ask for a full one.
    pub async fn scan(
        &self,
        tenant: &str,
        progress: &dyn Progress,
    ) -> Result<ScanReport, RuntimeError> {
        self.scan_with(tenant, ScanRequest::Auto, progress).await
    }

    /// [`Runtime::scan`], asking for a full scan or for what the schedule
    /// says. A resumed scan stays what it was.
    pub async fn scan_with(
        &self,
        tenant: &str,
        request: ScanRequest,
        progress: &dyn Progress,
    ) -> Result<ScanReport, RuntimeError> {
        self.scan_job(request, None, None)
            .run(tenant, progress)
            .await
    }

    /// Take the leases of up to `limit` due tenants nobody scans, most
    /// overdue first (see [`scanner_store::Store::claim_due_tenants`]).
    pub(crate) fn claim_due(
        &self,
        first_delay: Duration,
        limit: usize,
    ) -> Result<Vec<(String, TenantLock)>, RuntimeError> {
        let now = self.clock.now();
        let holder = &self.holder;
        Ok(self.store.claim_due_tenants(
            holder,
            now,
            now + self.lease_ttl,
            first_delay,
            limit,
            &|l| holder.is_gone(l),
        )?)
    }

    /// Give back a lease [`Runtime::claim_due`] took, unscanned.
    pub(crate) fn release_claim(&self, tenant: &str) {
        if let Err(e) = self.store.release_tenant_lock(tenant, &self.holder.id) {
            tracing::warn!(tenant, error = %e, "could not give back a claimed tenant");
        }
    }

    /// Scan a tenant whose lease [`Runtime::claim_due`] took; `on_outcome`
    /// runs with the outcome before the lease is given back.
    pub(crate) async fn scan_claimed(
        &self,
        tenant: &str,
        lease: TenantLock,
        on_outcome: &OnOutcome<'_>,
    ) -> Result<ScanReport, RuntimeError> {
        self.scan_job(ScanRequest::Auto, Some(lease), Some(on_outcome))
            .run(tenant, &())
            .await
    }

    fn scan_job<'a>(
        &'a self,
        request: ScanRequest,
        claimed: Option<TenantLock>,
        on_outcome: Option<&'a OnOutcome<'a>>,
    ) -> Scan<'a> {
        Scan {
            store: &self.store,
            clock: &self.clock,
            plugins: &self.plugins,
            retry: &self.retry,
            caps: &self.caps,
            plugin_caps: &self.plugin_caps,
            sync: &self.sync,
            request,
            max_empty_pages: self.max_empty_pages,
            shutdown: &self.shutdown,
            holder: &self.holder,
            running: &self.running,
            live: &self.live,
            metrics: &self.metrics,
            lease_ttl: self.lease_ttl,
            claimed,
            on_outcome,
        }
    }

    /// The scans running in this process, to follow their progress live.
    pub fn live_scans(&self) -> &LiveScans {
        &self.live
    }

    /// Remove a tenant's integration with its findings and state.
    pub fn disconnect(&self, tenant: &str) -> Result<bool, RuntimeError> {
        Ok(self.store.delete_integration(tenant)?)
    }
}
