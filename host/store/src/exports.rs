//! Exports: their runs and outcomes, and the snapshot of each repository
//! branch the platform last accepted.

use crate::columns::timestamp;
use crate::database::Database;
use crate::error::StoreError;
use crate::normalize::normalize_repo_url;
use rusqlite::{OptionalExtension, params};
use serde::Serialize;
use time::OffsetDateTime;

/// One export, as `status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ExportRecord {
    /// Export id.
    pub id: i64,
    /// Tenant.
    pub tenant: String,
    /// Repository URL (normalized).
    pub repository_url: String,
    /// Branch.
    pub branch: String,
    /// Start.
    pub started_at: String,
    /// End.
    pub finished_at: Option<String>,
    /// `running`, `succeeded`, `failed`, `refused`, `unknown` (sent, the
    /// platform had not finished when the host stopped waiting) or
    /// `interrupted` (its process ended before the platform took it).
    pub outcome: String,
    /// Findings read from the input.
    pub findings_in: u64,
    /// Left out by the export policy.
    pub filtered: u64,
    /// Sent to the platform.
    pub sent: u64,
    /// Handled by the platform, once it said so.
    pub handled: Option<u64>,
    /// Sent last time, absent now: the platform will mark them fixed.
    pub to_be_fixed: u64,
    /// The platform's id of the export (Wiz: system activity id).
    pub activity_id: Option<String>,
    /// Why it failed or was refused.
    pub message: Option<String>,
}

/// An export whose outcome is not settled: `running` or `unknown`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsettledExport {
    /// Export id.
    pub id: i64,
    /// Tenant.
    pub tenant: String,
    /// `running` or `unknown`.
    pub outcome: String,
    /// The platform's id of the export, once it took the upload.
    pub activity_id: Option<String>,
    /// Findings sent.
    pub sent: u64,
    /// The lease of the process running it (see `begin_export`).
    pub owner: Option<String>,
}

/// A finding of an accepted export snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExportedFinding {
    /// The stable finding id.
    pub id: String,
    /// Its title.
    pub title: String,
    /// Its file.
    pub file_path: String,
}

impl Database {
    /// Record the start of an export; returns its id. `owner` is the lease
    /// of the process running it (`None` when no other process needs to
    /// tell whether it is still running).
    #[allow(clippy::too_many_arguments)]
    pub fn begin_export(
        &self,
        tenant: &str,
        repository_url: &str,
        branch: &str,
        findings_in: u64,
        filtered: u64,
        owner: Option<&str>,
        now: OffsetDateTime,
    ) -> Result<i64, StoreError> {
        let conn = self.conn();
        conn.execute(
            "INSERT INTO exports (tenant, repository_url, branch, started_at, outcome, findings_in, filtered, owner)
             VALUES (?1, ?2, ?3, ?4, 'running', ?5, ?6, ?7)",
            params![
                tenant,
                normalize_repo_url(repository_url),
                branch,
                timestamp(now),
                findings_in as i64,
                filtered as i64,
                owner
            ],
        )?;
        Ok(conn.last_insert_rowid())
    }

    /// Record that the platform took the export, with the findings it was
    /// sent: they become the branch's snapshot once the platform says it
    /// succeeded, even if that is only learnt later.
    pub fn export_sent(
        &self,
        export: i64,
        activity_id: &str,
        sent: u64,
        to_be_fixed: u64,
        snapshot: &[ExportedFinding],
    ) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        tx.execute(
            "UPDATE exports SET activity_id = ?2, sent = ?3, to_be_fixed = ?4 WHERE id = ?1",
            params![export, activity_id, sent as i64, to_be_fixed as i64],
        )?;
        {
            let mut insert = tx.prepare_cached(
                "INSERT OR REPLACE INTO export_sent_findings (export_id, finding_id, title, file_path)
                 VALUES (?1, ?2, ?3, ?4)",
            )?;
            for f in snapshot {
                insert.execute(params![export, f.id, f.title, f.file_path])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Record a successful export and make the findings it sent the
    /// branch's accepted snapshot, in one transaction — unless a later
    /// export of the branch already succeeded (an export settled late must
    /// not replace a newer snapshot).
    pub fn export_succeeded(
        &self,
        export: i64,
        handled: u64,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let (tenant, repo, branch): (String, String, String) = tx.query_row(
            "SELECT tenant, repository_url, branch FROM exports WHERE id = ?1",
            [export],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )?;
        // Only an unsettled export changes: two processes settling the same
        // one must not apply it twice (the second would find its findings
        // gone and empty the snapshot).
        let changed = tx.execute(
            "UPDATE exports SET outcome = 'succeeded', handled = ?2, finished_at = ?3, message = NULL
             WHERE id = ?1 AND outcome IN ('running', 'unknown')",
            params![export, handled as i64, timestamp(now)],
        )?;
        if changed == 0 {
            return Ok(());
        }
        let newer: bool = tx.query_row(
            "SELECT EXISTS (SELECT 1 FROM exports WHERE tenant = ?1 AND repository_url = ?2
                AND branch = ?3 AND id > ?4 AND outcome = 'succeeded')",
            params![tenant, repo, branch, export],
            |r| r.get(0),
        )?;
        if !newer {
            tx.execute(
                "DELETE FROM exported_findings WHERE tenant = ?1 AND repository_url = ?2 AND branch = ?3",
                params![tenant, repo, branch],
            )?;
            tx.execute(
                "INSERT OR REPLACE INTO exported_findings (tenant, repository_url, branch, finding_id, title, file_path)
                 SELECT ?1, ?2, ?3, finding_id, title, file_path FROM export_sent_findings
                 WHERE export_id = ?4",
                params![tenant, repo, branch, export],
            )?;
        }
        tx.execute(
            "DELETE FROM export_sent_findings WHERE export_id = ?1",
            [export],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Record a failed (`failed`), refused (`refused`) or interrupted
    /// (`interrupted`) export; the accepted snapshot stays as it was. An
    /// export already settled is left as it is.
    pub fn export_ended(
        &self,
        export: i64,
        outcome: &str,
        message: &str,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        tx.execute(
            "UPDATE exports SET outcome = ?2, message = ?3, finished_at = ?4
             WHERE id = ?1 AND outcome IN ('running', 'unknown')",
            params![export, outcome, message, timestamp(now)],
        )?;
        tx.execute(
            "DELETE FROM export_sent_findings WHERE export_id = ?1",
            [export],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Record that the platform took the export but its outcome is not
    /// known yet (`unknown`): the findings sent are kept so it can be
    /// settled later.
    pub fn export_unknown(&self, export: i64, message: &str) -> Result<(), StoreError> {
        self.conn().execute(
            "UPDATE exports SET outcome = 'unknown', message = ?2
             WHERE id = ?1 AND outcome IN ('running', 'unknown')",
            params![export, message],
        )?;
        Ok(())
    }

    /// Exports still `running` or `unknown`, oldest first (all tenants when
    /// `tenant` is `None`).
    pub fn unsettled_exports(
        &self,
        tenant: Option<&str>,
    ) -> Result<Vec<UnsettledExport>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT id, tenant, outcome, activity_id, sent, owner FROM exports
             WHERE outcome IN ('running', 'unknown') AND (?1 IS NULL OR tenant = ?1) ORDER BY id",
        )?;
        let rows = stmt.query_map(params![tenant], |r| {
            Ok(UnsettledExport {
                id: r.get(0)?,
                tenant: r.get(1)?,
                outcome: r.get(2)?,
                activity_id: r.get(3)?,
                sent: r.get(4)?,
                owner: r.get(5)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The snapshot last accepted for a repository branch.
    pub fn exported_findings(
        &self,
        tenant: &str,
        repository_url: &str,
        branch: &str,
    ) -> Result<Vec<ExportedFinding>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT finding_id, title, file_path FROM exported_findings
             WHERE tenant = ?1 AND repository_url = ?2 AND branch = ?3 ORDER BY finding_id",
        )?;
        let rows = stmt.query_map(
            params![tenant, normalize_repo_url(repository_url), branch],
            |r| {
                Ok(ExportedFinding {
                    id: r.get(0)?,
                    title: r.get(1)?,
                    file_path: r.get(2)?,
                })
            },
        )?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The latest exports, newest first (all tenants when `tenant` is
    /// `None`).
    pub fn exports(
        &self,
        tenant: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ExportRecord>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT id, tenant, repository_url, branch, started_at, finished_at, outcome,
                findings_in, filtered, sent, handled, to_be_fixed, activity_id, message
             FROM exports WHERE ?1 IS NULL OR tenant = ?1 ORDER BY id DESC LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![tenant, limit as i64], export_record)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// One export by id, of whichever tenant (callers check the tenant).
    pub fn export(&self, export: i64) -> Result<Option<ExportRecord>, StoreError> {
        Ok(self
            .conn()
            .query_row(
                "SELECT id, tenant, repository_url, branch, started_at, finished_at, outcome,
                    findings_in, filtered, sent, handled, to_be_fixed, activity_id, message
                 FROM exports WHERE id = ?1",
                [export],
                export_record,
            )
            .optional()?)
    }
}

/// An [`ExportRecord`] from a row of the columns [`Database::exports`]
/// selects, in its order.
fn export_record(r: &rusqlite::Row<'_>) -> rusqlite::Result<ExportRecord> {
    Ok(ExportRecord {
        id: r.get(0)?,
        tenant: r.get(1)?,
        repository_url: r.get(2)?,
        branch: r.get(3)?,
        started_at: r.get(4)?,
        finished_at: r.get(5)?,
        outcome: r.get(6)?,
        findings_in: r.get(7)?,
        filtered: r.get(8)?,
        sent: r.get(9)?,
        handled: r.get(10)?,
        to_be_fixed: r.get(11)?,
        activity_id: r.get(12)?,
        message: r.get(13)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(id: &str) -> ExportedFinding {
        ExportedFinding {
            id: id.into(),
            title: format!("title {id}"),
            file_path: format!("{id}.py"),
        }
    }

    /// An export settled late (its outcome was unknown) becomes the
    /// branch's snapshot only if no newer export of the branch succeeded.
    #[test]
    fn a_late_success_does_not_replace_a_newer_snapshot() {
        let store = Database::open_in_memory().expect("store");
        let now = OffsetDateTime::now_utc();
        let repo = "https://github.com/acme/shop";
        let older = store
            .begin_export("t", repo, "main", 2, 0, None, now)
            .expect("begin");
        store
            .export_sent(older, "a-1", 2, 0, &[found("a"), found("b")])
            .expect("sent");
        store
            .export_unknown(older, "still processing")
            .expect("unknown");
        let newer = store
            .begin_export("t", repo, "main", 1, 0, None, now)
            .expect("begin");
        store
            .export_sent(newer, "a-2", 1, 0, &[found("c")])
            .expect("sent");
        store.export_succeeded(newer, 1, now).expect("newer");
        store.export_succeeded(older, 2, now).expect("older");
        // Settled twice (two processes at once): the second changes nothing.
        store.export_succeeded(newer, 1, now).expect("again");
        let snapshot = store
            .exported_findings("t", repo, "main")
            .expect("snapshot");
        assert_eq!(snapshot, [found("c")]);
        let outcomes: Vec<String> = store
            .exports(Some("t"), 10)
            .expect("exports")
            .into_iter()
            .map(|e| e.outcome)
            .collect();
        assert_eq!(outcomes, ["succeeded", "succeeded"]);
        let read = store.export(newer).expect("export").expect("exists");
        assert_eq!((read.id, read.outcome.as_str()), (newer, "succeeded"));
        assert_eq!(read, store.exports(Some("t"), 1).expect("exports")[0]);
        assert_eq!(store.export(newer + 100).expect("export"), None);
        assert!(store.unsettled_exports(None).expect("unsettled").is_empty());

        // Without a newer success, the late one's findings are the snapshot.
        let late = store
            .begin_export("t", repo, "release", 1, 0, None, now)
            .expect("begin");
        store
            .export_sent(late, "a-3", 1, 0, &[found("d")])
            .expect("sent");
        store
            .export_unknown(late, "still processing")
            .expect("unknown");
        assert_eq!(
            store.unsettled_exports(Some("t")).expect("unsettled").len(),
            1
        );
        store.export_succeeded(late, 1, now).expect("late");
        assert_eq!(
            store
                .exported_findings("t", repo, "release")
                .expect("snapshot"),
            [found("d")]
        );
    }
}
