//! Exports: a branch's SAST findings sent to a sink plugin as one snapshot,
//! after the export policy, followed until the receiving platform says how
//! it went, and recorded in the store.
//!
//! A snapshot replaces the previous one of its repository branch at the
//! platform, so every export reports which findings sent last time are
//! absent now: the platform will mark those fixed. Because an empty or
//! partial snapshot would mark everything fixed, input whose analysis did
//! not complete, input with nothing in it, and a snapshot that would
//! resolve too much of the previous one are refused unless overridden.
//!
//! An export the platform took but had not finished when the host stopped
//! waiting (a deadline, a lost connection, a killed process) is recorded
//! `unknown` with its activity id and settled later by asking the platform
//! again ([`Exporter::settle_exports`]).

pub mod sarif;

use crate::error::RuntimeError;
use crate::export::sarif::SarifFindings;
use crate::retry::{Retries, Verdict};
use crate::runtime::Runtime;
use scanner_contract::{
    ExportBatch, ExportReceipt, ExportState, ExportTarget, SastFinding, SastSeverity, ScanScope,
};
use scanner_engine::SinkInstance;
use scanner_store::{Database, ExportedFinding, StoreError, UnsettledExport, normalize_repo_url};
use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;
use time::format_description::well_known::Rfc3339;

/// What an export sends. Each default keeps to what the receiving platform
/// can correlate and what an operator expects to see there.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportPolicy {
    /// Findings below this severity are left out (default: high).
    pub min_severity: SastSeverity,
    /// Only the repository's default branch is exported (default: yes):
    /// the platform correlates findings with the branch it scans.
    pub default_branch_only: bool,
    /// Diff-aware scans are refused (default: yes). When off, the sink
    /// decides; the Wiz sink refuses them anyway, since each upload replaces
    /// the branch's findings.
    pub full_scans_only: bool,
    /// Only these repositories (URLs, normalized); empty means all.
    pub repositories: Vec<String>,
    /// Send input with no runs or no results as an empty snapshot (default:
    /// no — an empty snapshot marks every earlier finding fixed).
    pub allow_empty: bool,
    /// Send even when a run's invocation failed or the snapshot resolves
    /// more than `max_resolve_ratio` of the previous one (default: no).
    pub force: bool,
    /// Largest share (0..=1) of the previous export's findings of the
    /// branch one export may mark fixed (default: 0.5).
    pub max_resolve_ratio: f64,
}

impl Default for ExportPolicy {
    fn default() -> Self {
        Self {
            min_severity: SastSeverity::High,
            default_branch_only: true,
            full_scans_only: true,
            repositories: Vec::new(),
            allow_empty: false,
            force: false,
            max_resolve_ratio: 0.5,
        }
    }
}

/// How long and how often an export's status is asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportPolling {
    /// First wait after the upload.
    pub first_delay: Duration,
    /// Longest wait between two polls (the wait doubles up to this).
    pub max_delay: Duration,
    /// Stop waiting after this long; the export is recorded as `unknown`
    /// and settled later.
    pub deadline: Duration,
}

impl Default for ExportPolling {
    fn default() -> Self {
        // Public clients poll every 2–15 s for up to 5 minutes.
        Self {
            first_delay: Duration::from_secs(2),
            max_delay: Duration::from_secs(15),
            deadline: Duration::from_secs(300),
        }
    }
}

/// What the input files say about the analysis itself: the guards refuse
/// snapshots built from an analysis that did not run or did not complete.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InputSummary {
    /// Runs in the input.
    pub runs: usize,
    /// Results in the runs (findings and skipped ones).
    pub results: usize,
    /// Files that hold no run.
    pub files_without_runs: Vec<String>,
    /// Runs whose tool said it did not complete, described.
    pub failed_runs: Vec<String>,
}

impl InputSummary {
    /// The summary of findings read from SARIF files.
    pub fn of(read: &SarifFindings) -> Self {
        Self {
            runs: read.runs,
            results: read.results,
            files_without_runs: read.files_without_runs.clone(),
            failed_runs: read.failed_runs.iter().map(ToString::to_string).collect(),
        }
    }
}

/// One export to make.
#[derive(Debug, Clone)]
pub struct ExportRequest {
    /// The repository branch.
    pub target: ExportTarget,
    /// Full or diff scan.
    pub scope: ScanScope,
    /// When the analysis ran.
    pub analysis_date: time::OffsetDateTime,
    /// Every finding of the scan, before the policy.
    pub findings: Vec<SastFinding>,
    /// What the input said about the analysis; `None` when the findings do
    /// not come from files (then only an empty input is guarded against).
    pub input: Option<InputSummary>,
}

/// Why a repository URL names no repository.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` does not name a repository (expected https://HOST/ORG/REPO)")]
pub struct NotARepository(pub String);

/// `org/repo` of a repository URL (`https://HOST/ORG/REPO`, `.git`
/// ignored): the name a platform correlates exports with.
pub fn repository_name(url: &str) -> Result<String, NotARepository> {
    let bad = || NotARepository(url.to_string());
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(bad)?;
    let (host, path) = rest.split_once('/').ok_or_else(bad)?;
    let name = path.trim_matches('/').trim_end_matches(".git");
    if host.is_empty() || !name.contains('/') || name.contains(['?', '#', ' ']) {
        return Err(bad());
    }
    Ok(name.to_string())
}

impl ExportRequest {
    /// The export of `branch` of the repository at `repository_url` with
    /// the findings `read` from SARIF files, analysed now. The branch is
    /// the default one when it is `default_branch`, or, when that is not
    /// known, `main` or `master`. What the CLI's flags and the API's body
    /// both describe.
    pub fn of_branch(
        repository_url: &str,
        branch: &str,
        default_branch: Option<&str>,
        commit: Option<String>,
        diff_scan: bool,
        read: SarifFindings,
    ) -> Result<ExportRequest, NotARepository> {
        let is_default_branch = match default_branch {
            Some(default) => default == branch,
            None => matches!(branch, "main" | "master"),
        };
        Ok(ExportRequest {
            target: ExportTarget {
                repository_name: repository_name(repository_url)?,
                repository_url: repository_url.to_string(),
                branch: branch.to_string(),
                is_default_branch,
                commit,
            },
            scope: if diff_scan {
                ScanScope::Diff
            } else {
                ScanScope::Full
            },
            analysis_date: time::OffsetDateTime::now_utc(),
            input: Some(InputSummary::of(&read)),
            findings: read.findings,
        })
    }
}

/// What an export would send and what the platform would mark fixed,
/// worked out from the store alone: a dry run prints it, an export sends
/// it unless `refusal` says why not.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ExportPlan {
    /// The tenant.
    pub tenant: String,
    /// The repository branch.
    #[serde(skip)]
    pub target: ExportTarget,
    /// Repository URL, as given.
    pub repository_url: String,
    /// Branch.
    pub branch: String,
    /// Full or diff scan.
    #[serde(skip)]
    pub scope: ScanScope,
    /// When the analysis ran (RFC 3339).
    pub analysis_date: String,
    /// Findings in the input.
    pub findings_in: u64,
    /// Left out by the severity policy.
    pub filtered: u64,
    /// Findings to send, by severity.
    pub by_severity: BTreeMap<String, u64>,
    /// The findings to send.
    #[serde(skip)]
    pub findings: Vec<SastFinding>,
    /// Findings of the previous accepted export of the branch.
    pub previous: u64,
    /// Sent last time, absent now: the platform will mark them fixed.
    pub to_be_fixed: Vec<ExportedFinding>,
    /// Why the export is refused, if it is.
    pub refusal: Option<String>,
}

/// Short lower-case name of a severity.
pub fn severity_name(s: SastSeverity) -> &'static str {
    match s {
        SastSeverity::None => "none",
        SastSeverity::Low => "low",
        SastSeverity::Medium => "medium",
        SastSeverity::High => "high",
        SastSeverity::Critical => "critical",
    }
}

/// What an export did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ExportReport {
    /// Its id in the store.
    pub export_id: i64,
    /// Findings in the input.
    pub findings_in: u64,
    /// Left out by the severity policy.
    pub filtered: u64,
    /// Sent.
    pub sent: u64,
    /// What the platform handled.
    pub handled: u64,
    /// The platform's id (Wiz: the system activity id).
    pub activity_id: String,
    /// Sent last time, absent now: the platform marks them fixed.
    pub to_be_fixed: Vec<ExportedFinding>,
}

/// Why an export did not happen or did not succeed. Each one is recorded
/// in the store, except an unknown tenant.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The policy or a guard refused the export; nothing was sent.
    #[error("export refused: {0}")]
    Refused(String),
    /// The platform took the upload and then failed it.
    #[error("the platform failed the export: {reason}")]
    Failed {
        /// The platform's reason.
        reason: String,
        /// Its id of the export.
        activity_id: String,
    },
    /// The platform took the upload but the host stopped waiting before it
    /// said how it went: recorded `unknown`, settled later.
    #[error(
        "outcome unknown: the platform took the export (activity {activity_id}) but {why}; it is recorded as unknown and settled by `scanner-host status` or the next export"
    )]
    Unknown {
        /// Its id of the export.
        activity_id: String,
        /// Why the host stopped waiting.
        why: String,
    },
    /// Connecting or uploading failed.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
}

impl ExportError {
    /// A short kind for JSON output.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Refused(_) => "refused",
            Self::Failed { .. } => "failed",
            Self::Unknown { .. } => "unknown",
            Self::Runtime(e) => e.kind(),
        }
    }
}

/// What an export is doing, for an operator watching it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExportEvent {
    /// Asking the platform again about earlier exports it had not finished.
    Settling {
        /// How many.
        exports: usize,
    },
    /// Requesting an upload slot and uploading the document.
    Uploading {
        /// Findings in it.
        findings: u64,
    },
    /// The platform took the upload.
    Uploaded {
        /// Its id of the export.
        activity_id: String,
    },
    /// One status poll answered: the platform is not done yet.
    Waiting {
        /// Its id of the export.
        activity_id: String,
        /// Polls so far.
        poll: u32,
        /// Since the upload.
        elapsed: Duration,
        /// `not visible yet` or `in progress`.
        state: &'static str,
    },
}

/// Receives [`ExportEvent`]s.
pub trait ExportProgress: Send + Sync {
    /// Something happened.
    fn event(&self, event: &ExportEvent);

    /// The export was recorded in the store under `export_id` (before the
    /// policy's verdict: a refused export is recorded too).
    fn begun(&self, _export_id: i64) {}
}

/// Discards events.
pub struct NoProgress;

impl ExportProgress for NoProgress {
    fn event(&self, _: &ExportEvent) {}
}

/// Works out an export from the store alone: policy, guards, and the
/// comparison with the branch's accepted snapshot. Records nothing and
/// contacts nothing, so a dry run is this and no more.
pub fn plan_export(
    store: &Database,
    tenant: &str,
    request: ExportRequest,
    policy: &ExportPolicy,
) -> Result<ExportPlan, ExportError> {
    if store
        .integration(tenant)
        .map_err(RuntimeError::from)?
        .is_none()
    {
        return Err(RuntimeError::UnknownTenant(tenant.to_string()).into());
    }
    let target = request.target;
    let findings_in = request.findings.len() as u64;
    let (kept, dropped): (Vec<SastFinding>, Vec<SastFinding>) = request
        .findings
        .into_iter()
        .partition(|f| f.severity >= policy.min_severity);
    let mut by_severity = BTreeMap::new();
    for f in &kept {
        *by_severity
            .entry(severity_name(f.severity).to_string())
            .or_insert(0) += 1;
    }
    let previous = store
        .exported_findings(tenant, &target.repository_url, &target.branch)
        .map_err(RuntimeError::from)?;
    let now_ids: HashSet<&str> = kept.iter().map(|f| f.id.as_str()).collect();
    let previous_count = previous.len() as u64;
    let to_be_fixed: Vec<ExportedFinding> = previous
        .into_iter()
        .filter(|f| !now_ids.contains(f.id.as_str()))
        .collect();
    let mut plan = ExportPlan {
        tenant: tenant.to_string(),
        repository_url: target.repository_url.clone(),
        branch: target.branch.clone(),
        target,
        scope: request.scope,
        analysis_date: request
            .analysis_date
            .format(&Rfc3339)
            .unwrap_or_else(|_| "1970-01-01T00:00:00Z".into()),
        findings_in,
        filtered: dropped.len() as u64,
        by_severity,
        findings: kept,
        previous: previous_count,
        to_be_fixed,
        refusal: None,
    };
    plan.refusal = refusal(&plan, request.input.as_ref(), policy);
    Ok(plan)
}

/// Why `plan` must not be sent under `policy`, if it must not.
fn refusal(
    plan: &ExportPlan,
    input: Option<&InputSummary>,
    policy: &ExportPolicy,
) -> Option<String> {
    let target = &plan.target;
    if policy.full_scans_only && plan.scope == ScanScope::Diff {
        return Some(
            "a diff-aware scan is not exported: the platform treats each export as the branch's full set of findings".into(),
        );
    }
    if policy.default_branch_only && !target.is_default_branch {
        return Some(format!(
            "branch `{}` is not the default branch; only default branches are exported",
            target.branch
        ));
    }
    let repo = normalize_repo_url(&target.repository_url);
    if !policy.repositories.is_empty()
        && !policy
            .repositories
            .iter()
            .any(|r| normalize_repo_url(r) == repo)
    {
        return Some(format!(
            "repository {} is not in the export list",
            target.repository_url
        ));
    }
    // An analysis that did not complete reports fewer findings than the
    // code has; sent as a snapshot, it marks the missing ones fixed.
    if let Some(input) = input {
        if !input.failed_runs.is_empty() && !policy.force {
            return Some(format!(
                "the analysis did not complete (executionSuccessful: false in {}); its findings are partial and sending them would mark the rest fixed — fix the scan, or pass --force to send anyway",
                input.failed_runs.join("; ")
            ));
        }
        if !input.files_without_runs.is_empty() && !policy.allow_empty {
            return Some(format!(
                "{} hold{} no runs: the tool analysed nothing, and an empty snapshot would mark every finding of the branch fixed — pass --allow-empty if that is really the result",
                input.files_without_runs.join(", "),
                if input.files_without_runs.len() == 1 {
                    "s"
                } else {
                    ""
                }
            ));
        }
    }
    let results = input.map_or(plan.findings_in as usize, |i| i.results);
    if results == 0 && !policy.allow_empty {
        return Some(
            "the input has no results: an empty snapshot would mark every finding of the branch fixed — pass --allow-empty if the branch really has none".into(),
        );
    }
    let resolved = plan.to_be_fixed.len() as u64;
    if plan.previous > 0 && !policy.force {
        let ratio = resolved as f64 / plan.previous as f64;
        if ratio > policy.max_resolve_ratio {
            return Some(format!(
                "this export would mark {resolved} of the {} findings of the previous export of {}@{} fixed ({:.0} %), more than --max-resolve-ratio {} allows — check the scan, or pass --force if they really are fixed",
                plan.previous,
                target.repository_url,
                target.branch,
                ratio * 100.0,
                policy.max_resolve_ratio
            ));
        }
    }
    None
}

/// Tokens of the process leases this process holds: an export running in
/// this very process is live even when the store has no file beside which
/// a lock could live.
fn live_leases() -> &'static Mutex<HashSet<String>> {
    static LIVE: OnceLock<Mutex<HashSet<String>>> = OnceLock::new();
    LIVE.get_or_init(Mutex::default)
}

/// The lock file of a lease: beside the database, so every process using
/// the same database sees it.
fn lease_path(db: &std::path::Path, token: &str) -> PathBuf {
    let name = db
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "scanner-host.db".into());
    db.with_file_name(format!("{name}.export-{token}.lock"))
}

/// A running export's claim that its process is alive: an exclusive lock
/// on a file the operating system releases when the process dies, however
/// it dies. Dropping it ends the claim.
struct Lease {
    token: String,
    file: Option<(std::fs::File, PathBuf)>,
}

impl Lease {
    fn acquire(store: &Database) -> Result<Lease, RuntimeError> {
        let token = format!("{:032x}", rand::random::<u128>());
        let file = match store.path() {
            Some(db) => {
                let path = lease_path(&db, &token);
                let lock_err = |e: std::io::Error| {
                    RuntimeError::from(StoreError::Open {
                        path: path.clone(),
                        message: format!("cannot lock the export lease: {e}"),
                    })
                };
                let file = std::fs::File::create(&path).map_err(lock_err)?;
                file.try_lock().map_err(|e| lock_err(e.into()))?;
                Some((file, path))
            }
            None => None,
        };
        live_leases()
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(token.clone());
        Ok(Lease { token, file })
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        live_leases()
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.token);
        if let Some((file, path)) = self.file.take() {
            drop(file);
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Whether the process that owns a running export is alive.
fn owner_alive(store: &Database, owner: Option<&str>) -> bool {
    // Rows from before leases existed have no owner; no process of this
    // version can be running them.
    let Some(token) = owner else { return false };
    if live_leases()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .contains(token)
    {
        return true;
    }
    let Some(db) = store.path() else {
        return false;
    };
    let path = lease_path(&db, token);
    let Ok(file) = std::fs::File::open(&path) else {
        // No lock file: its process ended (and removed it) or never got
        // this far.
        return false;
    };
    match file.try_lock_shared() {
        Ok(()) => {
            // Nobody holds it: the process died without cleaning up.
            drop(file);
            let _ = std::fs::remove_file(&path);
            false
        }
        Err(std::fs::TryLockError::WouldBlock) => true,
        // Cannot tell: assume it runs rather than settle under it.
        Err(std::fs::TryLockError::Error(_)) => true,
    }
}

/// Marks exports left `running` by a process that is gone, from the store
/// alone: with an activity id the platform took them and they become
/// `unknown` (settled later); without one they are `interrupted`. Returns
/// how many rows changed.
pub fn mark_orphaned_exports(store: &Database, tenant: Option<&str>) -> Result<usize, StoreError> {
    let mut changed = 0;
    for row in store.unsettled_exports(tenant)? {
        if row.outcome != "running" || owner_alive(store, row.owner.as_deref()) {
            continue;
        }
        match &row.activity_id {
            Some(_) => store.export_unknown(
                row.id,
                "its process ended while the platform was processing it; still to be settled",
            )?,
            None => store.export_ended(
                row.id,
                "interrupted",
                "its process ended before the platform confirmed the upload; run the export again",
                time::OffsetDateTime::now_utc(),
            )?,
        }
        changed += 1;
    }
    Ok(changed)
}

/// An earlier export asked about again.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SettledExport {
    /// Export id.
    pub export_id: i64,
    /// Tenant.
    pub tenant: String,
    /// The platform's id of the export.
    pub activity_id: String,
    /// `succeeded`, `failed` or `unknown` (still processing).
    pub outcome: String,
    /// What the platform handled, when it succeeded.
    pub handled: Option<u64>,
}

/// What settling found.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SettleReport {
    /// The exports asked about.
    pub settled: Vec<SettledExport>,
    /// Why some could not be asked about (a tenant's plugin or platform
    /// could not be reached); they stay `unknown`.
    pub errors: Vec<String>,
}

/// Exports of a runtime's tenants, each through the tenant's sink, and
/// the settling of earlier ones whose outcome is unknown.
pub struct Exporter<'a> {
    runtime: &'a Runtime,
    polling: ExportPolling,
}

impl<'a> Exporter<'a> {
    /// Exports of `runtime`'s tenants, waiting for the platform as
    /// [`ExportPolling::default`] says.
    pub fn new(runtime: &'a Runtime) -> Self {
        Self {
            runtime,
            polling: ExportPolling::default(),
        }
    }

    /// How exports wait for the receiving platform.
    pub fn with_polling(mut self, polling: ExportPolling) -> Self {
        self.polling = polling;
        self
    }

    /// The runtime exported from.
    pub fn runtime(&self) -> &'a Runtime {
        self.runtime
    }

    /// Check that the tenant's integration can export: credentials and the
    /// permission to upload.
    pub async fn test_export(
        &self,
        tenant: &str,
    ) -> Result<scanner_contract::ConnectionInfo, RuntimeError> {
        let mut sink = self.runtime.tenant_sink(tenant).await?;
        Ok(self.runtime.metrics().answered(sink.test().await?)?)
    }

    /// Export one branch's findings under `policy`, wait for the platform's
    /// verdict, and record the export.
    pub async fn export(
        &self,
        tenant: &str,
        request: ExportRequest,
        policy: &ExportPolicy,
    ) -> Result<ExportReport, ExportError> {
        self.export_with_progress(tenant, request, policy, &NoProgress)
            .await
    }

    /// [`Exporter::export`], telling `progress` what it is doing. Earlier
    /// exports of the tenant whose outcome is unknown are settled first:
    /// whether they succeeded decides which snapshot this one replaces.
    pub async fn export_with_progress(
        &self,
        tenant: &str,
        request: ExportRequest,
        policy: &ExportPolicy,
        progress: &dyn ExportProgress,
    ) -> Result<ExportReport, ExportError> {
        let store = self.runtime.require_database("exporting findings")?.clone();
        if store
            .integration(tenant)
            .map_err(RuntimeError::from)?
            .is_none()
        {
            return Err(RuntimeError::UnknownTenant(tenant.to_string()).into());
        }
        let settled = self.settle_exports(Some(tenant), progress).await?;
        for error in &settled.errors {
            tracing::warn!(%error, "an earlier export could not be settled");
        }
        let plan = plan_export(&store, tenant, request, policy)?;
        let lease = Lease::acquire(&store)?;
        let export_id = store
            .begin_export(
                tenant,
                &plan.target.repository_url,
                &plan.target.branch,
                plan.findings_in,
                plan.filtered,
                Some(&lease.token),
                self.runtime.clock().now(),
            )
            .map_err(RuntimeError::from)?;
        progress.begun(export_id);
        let (findings_in, filtered) = (plan.findings_in, plan.filtered);
        let result = match plan.refusal.clone() {
            Some(why) => Err(ExportError::Refused(why)),
            None => self.send_and_wait(tenant, export_id, plan, progress).await,
        };
        let now = self.runtime.clock().now();
        let recorded = match &result {
            Ok(_) => Ok(()),
            Err(ExportError::Refused(why)) => store.export_ended(export_id, "refused", why, now),
            Err(e @ ExportError::Unknown { .. }) => store.export_unknown(export_id, &e.to_string()),
            Err(e) => store.export_ended(export_id, "failed", &e.to_string(), now),
        };
        drop(lease);
        recorded.map_err(RuntimeError::from)?;
        result.map(|mut report| {
            report.findings_in = findings_in;
            report.filtered = filtered;
            report
        })
    }

    /// Upload, record what was sent, wait for the verdict.
    async fn send_and_wait(
        &self,
        tenant: &str,
        export_id: i64,
        plan: ExportPlan,
        progress: &dyn ExportProgress,
    ) -> Result<ExportReport, ExportError> {
        let snapshot: Vec<ExportedFinding> = plan
            .findings
            .iter()
            .map(|f| ExportedFinding {
                id: f.id.clone(),
                title: f.title.clone(),
                file_path: f.file_path.clone(),
            })
            .collect();
        let batch = ExportBatch {
            target: plan.target,
            scope: plan.scope,
            analysis_date: plan.analysis_date,
            findings: plan.findings,
        };
        let mut sink = self.runtime.tenant_sink(tenant).await?;
        progress.event(&ExportEvent::Uploading {
            findings: batch.findings.len() as u64,
        });
        let receipt = self.send_with_retries(&mut sink, &batch).await?;
        self.runtime
            .require_database("exporting findings")?
            .export_sent(
                export_id,
                &receipt.id,
                u64::from(receipt.sent),
                plan.to_be_fixed.len() as u64,
                &snapshot,
            )
            .map_err(RuntimeError::from)?;
        progress.event(&ExportEvent::Uploaded {
            activity_id: receipt.id.clone(),
        });
        let handled = match self.wait_for(&mut sink, &receipt, progress).await {
            Ok(handled) => handled,
            // The platform has the upload: a failure to ask about it says
            // nothing about how it went.
            Err(ExportError::Runtime(e)) => {
                return Err(ExportError::Unknown {
                    activity_id: receipt.id.clone(),
                    why: format!("asking how it went failed: {e}"),
                });
            }
            Err(e) => return Err(e),
        };
        self.runtime
            .require_database("exporting findings")?
            .export_succeeded(export_id, u64::from(handled), self.runtime.clock().now())
            .map_err(RuntimeError::from)?;
        Ok(ExportReport {
            export_id,
            findings_in: 0,
            filtered: 0,
            sent: u64::from(receipt.sent),
            handled: u64::from(handled),
            activity_id: receipt.id,
            to_be_fixed: plan.to_be_fixed,
        })
    }

    /// `export`, retried after rate limits and transient failures like a
    /// scan page.
    async fn send_with_retries(
        &self,
        sink: &mut SinkInstance,
        batch: &ExportBatch,
    ) -> Result<ExportReceipt, RuntimeError> {
        Retries::per_export(self.runtime.retry(), self.runtime.metrics())
            .run(
                &mut (sink, batch),
                |(sink, batch)| Box::pin(sink.export(batch)),
                |e, wait| {
                    tracing::warn!(error = %e, wait_ms = wait.as_millis() as u64, "retrying export");
                },
                None,
            )
            .await
    }

    /// Polls the export's status with backoff until it ends or the deadline
    /// passes; returns what the platform handled.
    async fn wait_for(
        &self,
        sink: &mut SinkInstance,
        receipt: &ExportReceipt,
        progress: &dyn ExportProgress,
    ) -> Result<u32, ExportError> {
        let polling = &self.polling;
        let started = tokio::time::Instant::now();
        let mut delay = polling.first_delay;
        // Status requests that fail in passing count against the same
        // budget as an upload's retries, over the whole wait.
        let mut retries = Retries::per_export(self.runtime.retry(), self.runtime.metrics());
        let mut polls = 0;
        loop {
            tokio::time::sleep(delay).await;
            polls += 1;
            let state = match sink
                .export_status(receipt)
                .await
                .map_err(RuntimeError::from)?
            {
                Ok(ExportState::Succeeded(handled)) => return Ok(handled),
                Ok(ExportState::Failed(reason)) => {
                    return Err(ExportError::Failed {
                        reason,
                        activity_id: receipt.id.clone(),
                    });
                }
                Ok(ExportState::Pending) => "not visible yet",
                Ok(ExportState::InProgress) => "in progress",
                // Retried at the next poll rather than after the retry's
                // backoff: the polls back off on their own, up to the
                // deadline.
                Err(e) => match retries.after(&e) {
                    Verdict::Wait(_) => {
                        tracing::warn!(error = %e, "retrying export status");
                        "status request retried"
                    }
                    Verdict::GiveUp | Verdict::Fail => return Err(RuntimeError::from(e).into()),
                },
            };
            progress.event(&ExportEvent::Waiting {
                activity_id: receipt.id.clone(),
                poll: polls,
                elapsed: started.elapsed(),
                state,
            });
            if started.elapsed() >= polling.deadline {
                return Err(ExportError::Unknown {
                    activity_id: receipt.id.clone(),
                    why: format!(
                        "it was still {state} after {:?} of waiting",
                        polling.deadline
                    ),
                });
            }
            delay = (delay * 2).min(polling.max_delay);
        }
    }

    /// Asks the platform once about every export (of `tenant`, or of all
    /// tenants) whose outcome is not known — `unknown` ones, and `running`
    /// ones whose process is gone — and records what it says. Running
    /// exports of live processes are left to them; a `running` export that
    /// never got an activity id is recorded `interrupted`.
    pub async fn settle_exports(
        &self,
        tenant: Option<&str>,
        progress: &dyn ExportProgress,
    ) -> Result<SettleReport, RuntimeError> {
        let store = self.runtime.require_database("settling exports")?.clone();
        mark_orphaned_exports(&store, tenant)?;
        let rows: Vec<UnsettledExport> = store
            .unsettled_exports(tenant)?
            .into_iter()
            .filter(|r| r.outcome == "unknown" && r.activity_id.is_some())
            .collect();
        let mut report = SettleReport::default();
        if rows.is_empty() {
            return Ok(report);
        }
        progress.event(&ExportEvent::Settling {
            exports: rows.len(),
        });
        let mut sinks: BTreeMap<String, Option<SinkInstance>> = BTreeMap::new();
        for row in rows {
            let Some(activity_id) = row.activity_id.clone() else {
                continue;
            };
            if !sinks.contains_key(&row.tenant) {
                let sink = match self.runtime.tenant_sink(&row.tenant).await {
                    Ok(sink) => Some(sink),
                    Err(e) => {
                        report.errors.push(format!("tenant `{}`: {e}", row.tenant));
                        None
                    }
                };
                sinks.insert(row.tenant.clone(), sink);
            }
            let Some(Some(sink)) = sinks.get_mut(&row.tenant) else {
                continue;
            };
            let receipt = ExportReceipt {
                id: activity_id.clone(),
                sent: u32::try_from(row.sent).unwrap_or(u32::MAX),
            };
            let state = match sink.export_status(&receipt).await {
                Ok(Ok(state)) => state,
                Ok(Err(e)) => {
                    self.runtime.metrics().plugin_error(&e);
                    report
                        .errors
                        .push(format!("export {} (activity {activity_id}): {e}", row.id));
                    continue;
                }
                Err(e) => {
                    report.errors.push(format!(
                        "export {} (activity {activity_id}): {}",
                        row.id,
                        RuntimeError::from(e)
                    ));
                    continue;
                }
            };
            let now = self.runtime.clock().now();
            let (outcome, handled) = match state {
                ExportState::Succeeded(handled) => {
                    store.export_succeeded(row.id, u64::from(handled), now)?;
                    ("succeeded", Some(u64::from(handled)))
                }
                ExportState::Failed(reason) => {
                    store.export_ended(
                        row.id,
                        "failed",
                        &format!("the platform failed the export: {reason}"),
                        now,
                    )?;
                    ("failed", None)
                }
                ExportState::Pending | ExportState::InProgress => ("unknown", None),
            };
            report.settled.push(SettledExport {
                export_id: row.id,
                tenant: row.tenant,
                activity_id,
                outcome: outcome.into(),
                handled,
            });
        }
        Ok(report)
    }
}

#[cfg(test)]
mod repository_name_tests {
    use super::*;

    #[test]
    fn repository_names_come_from_repository_urls_only() {
        for (url, name) in [
            ("https://github.com/acme/shop", "acme/shop"),
            ("https://github.com/acme/shop.git", "acme/shop"),
            ("https://gitlab.example/grp/sub/app/", "grp/sub/app"),
        ] {
            assert_eq!(repository_name(url).expect(url), name);
        }
        for url in [
            "github.com/acme/shop",
            "https://github.com/acme",
            "https:///acme/shop",
            "ftp://github.com/acme/shop",
            "https://github.com/acme/shop?x=1",
        ] {
            assert_eq!(
                repository_name(url),
                Err(NotARepository(url.into())),
                "{url}"
            );
        }
    }
}
