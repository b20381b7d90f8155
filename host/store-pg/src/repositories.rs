//! Repositories the platform knows and the rules that map images to them,
//! with the SQLite store's semantics. Which repository an image finding
//! maps to is decided when findings are listed (see `listing`), so adding
//! or removing a repository or rule rewrites no finding.

use crate::error::PgStoreError;
use crate::store::PgStore;
use scanner_store::{ImageMappingRow, MappingRule, NewRepository, RepositoryRow, image_name_key};
use time::OffsetDateTime;

impl PgStore {
    /// Add repositories and their image rules in one transaction (all or
    /// none): a repository already known (by normalised URL) keeps its
    /// first URL and adds the rules; a rule for an image that has one
    /// moves it.
    pub(crate) async fn add_repositories(
        &self,
        repositories: &[NewRepository],
        now: OffsetDateTime,
    ) -> Result<(), PgStoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let insert = tx
            .prepare_cached(
                "INSERT INTO repositories (url, url_norm, name, name_key, added_at)
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (url_norm) DO NOTHING",
            )
            .await?;
        let id_of = tx
            .prepare_cached("SELECT id FROM repositories WHERE url_norm = $1")
            .await?;
        let rule = tx
            .prepare_cached(
                "INSERT INTO image_rules (image_key, repository_id) VALUES ($1, $2)
                 ON CONFLICT (image_key) DO UPDATE SET repository_id = excluded.repository_id",
            )
            .await?;
        for repo in repositories {
            tx.execute(
                &insert,
                &[
                    &repo.url(),
                    &repo.url_norm(),
                    &repo.name(),
                    &repo.name_key(),
                    &now,
                ],
            )
            .await?;
            let id: i64 = tx.query_one(&id_of, &[&repo.url_norm()]).await?.get(0);
            for image in repo.image_keys() {
                tx.execute(&rule, &[&image, &id]).await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// Remove the repository of normalised URL `url_norm` and its image
    /// rules; false if there is none.
    pub(crate) async fn remove_repository(&self, url_norm: &str) -> Result<bool, PgStoreError> {
        let client = self.client().await?;
        // Its rules go with it (ON DELETE CASCADE).
        let removed = client
            .execute("DELETE FROM repositories WHERE url_norm = $1", &[&url_norm])
            .await?;
        Ok(removed > 0)
    }

    /// Known repositories with the images of their rules (in the order
    /// the rules were first added), by normalised URL.
    pub(crate) async fn repositories(&self) -> Result<Vec<RepositoryRow>, PgStoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT r.url, r.name,
                    ARRAY(SELECT ir.image_key FROM image_rules ir
                          WHERE ir.repository_id = r.id ORDER BY ir.id)
                 FROM repositories r ORDER BY r.url_norm COLLATE \"C\"",
                &[],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| RepositoryRow {
                url: r.get(0),
                name: r.get(1),
                images: r.get(2),
            })
            .collect())
    }

    /// Every explicit rule with the stored findings of its image, then
    /// every image the name rule maps (no rule of its own) with its
    /// repository and findings.
    pub(crate) async fn image_mappings(&self) -> Result<Vec<ImageMappingRow>, PgStoreError> {
        let client = self.client().await?;
        let mut explicit: Vec<ImageMappingRow> = client
            .query(
                "SELECT ir.image_key, r.url
                 FROM image_rules ir JOIN repositories r ON r.id = ir.repository_id
                 ORDER BY ir.image_key COLLATE \"C\"",
                &[],
            )
            .await?
            .iter()
            .map(|r| ImageMappingRow {
                image: r.get(0),
                repository: r.get(1),
                rule: MappingRule::Explicit,
                findings: 0,
            })
            .collect();
        // Each rule's findings through the image index (its owner/name
        // leads it).
        let count = client
            .prepare("SELECT count(*) FROM findings WHERE image_name_key = $1 AND image_key = $2")
            .await?;
        for row in &mut explicit {
            if let Some(name_key) = image_name_key(&row.image) {
                let n: i64 = client
                    .query_one(&count, &[&name_key, &row.image])
                    .await?
                    .get(0);
                row.findings = u64::try_from(n).unwrap_or_default();
            }
        }
        // The name rule maps an image to the first-added repository of its
        // owner/name.
        let named = client
            .query(
                "SELECT f.image_key, r.url, count(*) FROM repositories r
                 JOIN findings f ON f.image_name_key = r.name_key
                 WHERE r.id = (SELECT min(o.id) FROM repositories o WHERE o.name_key = r.name_key)
                   AND NOT EXISTS (SELECT 1 FROM image_rules ir WHERE ir.image_key = f.image_key)
                 GROUP BY r.id, r.url, f.image_key
                 ORDER BY f.image_key COLLATE \"C\", r.url COLLATE \"C\"",
                &[],
            )
            .await?;
        explicit.extend(named.iter().map(|r| ImageMappingRow {
            image: r.get(0),
            repository: r.get(1),
            rule: MappingRule::Name,
            findings: u64::try_from(r.get::<_, i64>(2)).unwrap_or_default(),
        }));
        Ok(explicit)
    }
}
