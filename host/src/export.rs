//! Exports: a branch's SAST findings sent to a sink plugin as one snapshot,
//! after the export policy, followed until the receiving platform says how
//! it went, and recorded in the store.
//!
//! A snapshot replaces the previous one of its repository branch at the
//! platform, so every export reports which findings sent last time are
//! absent now: the platform will mark those fixed.

use crate::contract::{
    ExportBatch, ExportReceipt, ExportState, ExportTarget, PluginError, SastFinding, SastSeverity,
    ScanScope,
};
use crate::engine::{EgressPolicy, SinkInstance};
use crate::runtime::{Runtime, RuntimeError};
use crate::store::{ExportedFinding, normalize_repo_url};
use std::collections::HashSet;
use std::time::Duration;
use time::format_description::well_known::Rfc3339;

/// What an export sends. Each default keeps to what the receiving platform
/// can correlate and what an operator expects to see there.
#[derive(Debug, Clone, PartialEq, Eq)]
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
}

impl Default for ExportPolicy {
    fn default() -> Self {
        Self {
            min_severity: SastSeverity::High,
            default_branch_only: true,
            full_scans_only: true,
            repositories: Vec::new(),
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
    /// Give up after this long; the export is recorded as failed.
    pub deadline: Duration,
}

impl Default for ExportPolling {
    fn default() -> Self {
        // Public clients poll every 2–15 s for up to 5 minutes (wiz-api.md
        // §5.4).
        Self {
            first_delay: Duration::from_secs(2),
            max_delay: Duration::from_secs(15),
            deadline: Duration::from_secs(300),
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
    /// The policy refused the export; nothing was sent.
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
    /// The platform did not finish in time.
    #[error("the platform had not finished the export after {0:?}")]
    TimedOut(Duration),
    /// Connecting, uploading or polling failed.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
}

impl ExportError {
    /// A short kind for JSON output.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Refused(_) => "refused",
            Self::Failed { .. } => "failed",
            Self::TimedOut(_) => "timed-out",
            Self::Runtime(e) => e.kind(),
        }
    }
}

impl Runtime {
    async fn configured_sink(&self, tenant: &str) -> Result<(SinkInstance, String), RuntimeError> {
        let integration = self
            .store()
            .integration(tenant)?
            .ok_or_else(|| RuntimeError::UnknownTenant(tenant.to_string()))?;
        let plugin = self.plugin(&integration.plugin)?;
        if !plugin.has_sink() {
            return Err(RuntimeError::Plugin(PluginError::Unsupported(format!(
                "plugin `{}` does not export findings",
                integration.plugin
            ))));
        }
        // The sink's configuration may need other origins than the
        // source's (an upload bucket): ask it, with no network at all.
        let mut probe = plugin
            .sink(&self.sandbox(tenant, EgressPolicy::deny_all()))
            .await?;
        let egress = probe.configure(&integration.settings).await??.egress;
        let policy = self.policy_of(&integration.plugin, &egress)?;
        let mut instance = plugin.sink(&self.sandbox(tenant, policy)).await?;
        instance.configure(&integration.settings).await??;
        Ok((instance, integration.plugin))
    }

    /// Check that the tenant's integration can export: credentials and the
    /// permission to upload.
    pub async fn test_export(
        &self,
        tenant: &str,
    ) -> Result<crate::contract::ConnectionInfo, RuntimeError> {
        let (mut sink, _) = self.configured_sink(tenant).await?;
        Ok(sink.test().await??)
    }

    /// Export one branch's findings under `policy`, wait for the platform's
    /// verdict, and record the export.
    pub async fn export(
        &self,
        tenant: &str,
        request: ExportRequest,
        policy: &ExportPolicy,
    ) -> Result<ExportReport, ExportError> {
        let store = self.store().clone();
        if store
            .integration(tenant)
            .map_err(RuntimeError::from)?
            .is_none()
        {
            return Err(RuntimeError::UnknownTenant(tenant.to_string()).into());
        }
        let target = request.target.clone();
        let findings_in = request.findings.len() as u64;
        let (kept, dropped): (Vec<SastFinding>, Vec<SastFinding>) = request
            .findings
            .into_iter()
            .partition(|f| f.severity >= policy.min_severity);
        let filtered = dropped.len() as u64;
        let export_id = store
            .begin_export(
                tenant,
                &target.repository_url,
                &target.branch,
                findings_in,
                filtered,
                self.clock().now(),
            )
            .map_err(RuntimeError::from)?;
        let batch = ExportBatch {
            target,
            scope: request.scope,
            analysis_date: request
                .analysis_date
                .format(&Rfc3339)
                .unwrap_or_else(|_| "1970-01-01T00:00:00Z".into()),
            findings: kept,
        };
        let result = self.export_recorded(tenant, export_id, batch, policy).await;
        let now = self.clock().now();
        let recorded = match &result {
            Ok(_) => Ok(()),
            Err(ExportError::Refused(why)) => store.export_ended(export_id, "refused", why, now),
            Err(e) => store.export_ended(export_id, "failed", &e.to_string(), now),
        };
        recorded.map_err(RuntimeError::from)?;
        result.map(|mut report| {
            report.findings_in = findings_in;
            report.filtered = filtered;
            report
        })
    }

    /// The export after its start is recorded: policy, snapshot
    /// comparison, upload, verdict.
    async fn export_recorded(
        &self,
        tenant: &str,
        export_id: i64,
        batch: ExportBatch,
        policy: &ExportPolicy,
    ) -> Result<ExportReport, ExportError> {
        let (target, scope) = (&batch.target, batch.scope);
        let repo = normalize_repo_url(&target.repository_url);
        if policy.full_scans_only && scope == ScanScope::Diff {
            return Err(ExportError::Refused(
                "a diff-aware scan is not exported: the platform treats each export as the branch's full set of findings".into(),
            ));
        }
        if policy.default_branch_only && !target.is_default_branch {
            return Err(ExportError::Refused(format!(
                "branch `{}` is not the default branch; only default branches are exported",
                target.branch
            )));
        }
        if !policy.repositories.is_empty()
            && !policy
                .repositories
                .iter()
                .any(|r| normalize_repo_url(r) == repo)
        {
            return Err(ExportError::Refused(format!(
                "repository {} is not in the export list",
                target.repository_url
            )));
        }
        let previous = self
            .store()
            .exported_findings(tenant, &target.repository_url, &target.branch)
            .map_err(RuntimeError::from)?;
        let now_ids: HashSet<&str> = batch.findings.iter().map(|f| f.id.as_str()).collect();
        let to_be_fixed: Vec<ExportedFinding> = previous
            .into_iter()
            .filter(|f| !now_ids.contains(f.id.as_str()))
            .collect();
        let snapshot: Vec<ExportedFinding> = batch
            .findings
            .iter()
            .map(|f| ExportedFinding {
                id: f.id.clone(),
                title: f.title.clone(),
                file_path: f.file_path.clone(),
            })
            .collect();
        let (mut sink, _) = self.configured_sink(tenant).await?;
        let receipt = self.send_with_retries(&mut sink, &batch).await?;
        self.store()
            .export_sent(
                export_id,
                &receipt.id,
                u64::from(receipt.sent),
                to_be_fixed.len() as u64,
            )
            .map_err(RuntimeError::from)?;
        let handled = self.wait_for(&mut sink, &receipt).await?;
        self.store()
            .export_succeeded(export_id, u64::from(handled), &snapshot, self.clock().now())
            .map_err(RuntimeError::from)?;
        Ok(ExportReport {
            export_id,
            findings_in: 0,
            filtered: 0,
            sent: u64::from(receipt.sent),
            handled: u64::from(handled),
            activity_id: receipt.id,
            to_be_fixed,
        })
    }

    /// `export`, retried after rate limits and transient failures like a
    /// scan page.
    async fn send_with_retries(
        &self,
        sink: &mut SinkInstance,
        batch: &ExportBatch,
    ) -> Result<ExportReceipt, RuntimeError> {
        let mut retries = 0;
        loop {
            match sink.export(batch).await? {
                Ok(receipt) => return Ok(receipt),
                Err(e) => match e.retry_hint() {
                    Some(after) if retries < self.retry().max_retries_per_page => {
                        let wait = self.retry().delay(retries, after);
                        tracing::warn!(error = %e, wait_ms = wait.as_millis() as u64, "retrying export");
                        retries += 1;
                        tokio::time::sleep(wait).await;
                    }
                    Some(_) => return Err(RuntimeError::RetriesExhausted { retries, last: e }),
                    None => return Err(e.into()),
                },
            }
        }
    }

    /// Polls the export's status with backoff until it ends or the deadline
    /// passes; returns what the platform handled.
    async fn wait_for(
        &self,
        sink: &mut SinkInstance,
        receipt: &ExportReceipt,
    ) -> Result<u32, ExportError> {
        let polling = &self.export_polling;
        let started = tokio::time::Instant::now();
        let mut delay = polling.first_delay;
        let mut retries = 0;
        loop {
            tokio::time::sleep(delay).await;
            match sink
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
                Ok(ExportState::Pending | ExportState::InProgress) => {}
                Err(e)
                    if e.retry_hint().is_some() && retries < self.retry().max_retries_per_page =>
                {
                    retries += 1;
                    tracing::warn!(error = %e, "retrying export status");
                }
                Err(e) => return Err(RuntimeError::from(e).into()),
            }
            if started.elapsed() >= polling.deadline {
                return Err(ExportError::TimedOut(polling.deadline));
            }
            delay = (delay * 2).min(polling.max_delay);
        }
    }
}
