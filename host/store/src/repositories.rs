//! Repositories the platform knows, and the rules that map images to them.

use crate::columns::timestamp;
use crate::database::Database;
use crate::error::StoreError;
use crate::normalize::{image_name_key, last_two_segments, normalize_image, normalize_repo_url};
use rusqlite::{OptionalExtension, params};
use serde::Serialize;
use time::OffsetDateTime;

/// A known repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct RepositoryRow {
    /// URL as added.
    pub url: String,
    /// `org/repo`.
    pub name: String,
    /// Images mapped to it by rule.
    pub images: Vec<String>,
}

/// A repository to add, checked and normalised: built by
/// [`NewRepository::parse`], added by [`Database::add_repositories`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRepository {
    url: String,
    url_norm: String,
    name: String,
    name_key: String,
    /// `(image_key, image_name_key)` of each image built from it.
    images: Vec<(String, String)>,
}

impl NewRepository {
    /// Check a repository URL (`https://HOST/ORG/REPO`, any form
    /// [`normalize_repo_url`] accepts) and the images built from it
    /// (`REGISTRY/REPOSITORY`, tag or digest ignored).
    pub fn parse(url: &str, images: &[String]) -> Result<NewRepository, StoreError> {
        let norm = normalize_repo_url(url);
        let mut parts = norm.split('/');
        let (Some(host), Some(_), Some(_)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(StoreError::Invalid(format!(
                "`{url}` is not a repository URL (expected https://HOST/ORG/REPO)"
            )));
        };
        if host.is_empty() || norm.contains(char::is_whitespace) || norm.contains("//") {
            return Err(StoreError::Invalid(format!(
                "`{url}` is not a repository URL"
            )));
        }
        let name = norm.split('/').skip(1).collect::<Vec<_>>().join("/");
        let images = images
            .iter()
            .map(|image| {
                let key = normalize_image(image);
                match image_name_key(&key) {
                    Some(name_key) if key.contains('/') && !key.contains(char::is_whitespace) => {
                        Ok((key, name_key))
                    }
                    _ => Err(StoreError::Invalid(format!(
                        "image `{image}` must be REGISTRY/REPOSITORY"
                    ))),
                }
            })
            .collect::<Result<_, _>>()?;
        Ok(NewRepository {
            url: url.trim().to_string(),
            name_key: last_two_segments(&name),
            url_norm: norm,
            name,
            images,
        })
    }

    /// The normalised URL (what identifies the repository).
    pub fn url_norm(&self) -> &str {
        &self.url_norm
    }

    /// The normalised images (`registry/repository`) mapped to it.
    pub fn image_keys(&self) -> impl Iterator<Item = &str> {
        self.images.iter().map(|(key, _)| key.as_str())
    }

    /// The URL as given (trimmed): what listings show.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// `org/repo` (the normalised URL's path).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The name rule's key: the lower-case last two segments of the name,
    /// which an image's [`image_name_key`] is compared with.
    pub fn name_key(&self) -> &str {
        &self.name_key
    }

    /// Each image rule as `(image key, its name rule key)`, for a backend
    /// that re-attaches the findings of those images.
    pub fn image_rules(&self) -> impl Iterator<Item = (&str, &str)> {
        self.images
            .iter()
            .map(|(key, name_key)| (key.as_str(), name_key.as_str()))
    }
}

/// Which rule maps an image to a repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum MappingRule {
    /// A rule added with the repository (`repos add URL --image …`).
    Explicit,
    /// The image's owner/name equals the repository's.
    Name,
}

impl MappingRule {
    /// The rule's name as listings show it.
    pub fn as_str(self) -> &'static str {
        match self {
            MappingRule::Explicit => "explicit",
            MappingRule::Name => "name",
        }
    }
}

/// One line of `repos rules`: an image and the repository it maps to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ImageMappingRow {
    /// The image (`registry/repository`), or an explicit rule's pattern.
    pub image: String,
    /// URL of the repository, as added.
    pub repository: String,
    /// Which rule maps it.
    pub rule: MappingRule,
    /// Stored findings of the image mapped this way.
    pub findings: u64,
}

impl Database {
    /// Add a repository the platform knows, with images built from it
    /// (`REGISTRY/REPOSITORY`, tag ignored). Adding it again adds rules.
    pub fn add_repository(&self, url: &str, images: &[String]) -> Result<(), StoreError> {
        self.add_repositories(&[NewRepository::parse(url, images)?])
    }

    /// Add repositories and their image rules in one transaction (all or
    /// none), and re-attach the image findings they now decide: one
    /// UPDATE per new repository (its name rule) and per rule, each
    /// reaching only the findings of that owner/name through an index.
    pub fn add_repositories(&self, repositories: &[NewRepository]) -> Result<(), StoreError> {
        let now = timestamp(OffsetDateTime::now_utc());
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO repositories (url, url_norm, name, name_key, added_at)
                 VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT(url_norm) DO NOTHING",
            )?;
            let mut id_of = tx.prepare_cached("SELECT id FROM repositories WHERE url_norm = ?1")?;
            let mut rule = tx.prepare_cached(
                "INSERT INTO image_rules (image_key, repository_id) VALUES (?1, ?2)
                 ON CONFLICT(image_key) DO UPDATE SET repository_id = excluded.repository_id",
            )?;
            let mut by_name = tx.prepare_cached(REMAP_BY_NAME)?;
            let mut by_image = tx.prepare_cached(REMAP_BY_IMAGE)?;
            for repo in repositories {
                let added = insert.execute(params![
                    repo.url,
                    repo.url_norm,
                    repo.name,
                    repo.name_key,
                    now
                ])? > 0;
                let id: i64 = id_of.query_row([&repo.url_norm], |r| r.get(0))?;
                if added {
                    by_name.execute([&repo.name_key])?;
                }
                for (key, name_key) in &repo.images {
                    rule.execute(params![key, id])?;
                    by_image.execute(params![name_key, key])?;
                }
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Remove a known repository (any URL form) and its image rules; the
    /// image findings it held go to the rule or repository that now matches
    /// them, else back to unmapped. Code findings of its URL are hidden
    /// again, as for any unknown repository.
    pub fn remove_repository(&self, url: &str) -> Result<(), StoreError> {
        let norm = normalize_repo_url(url);
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let (id, name_key): (i64, String) = tx
            .query_row(
                "SELECT id, name_key FROM repositories WHERE url_norm = ?1",
                [&norm],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?
            .ok_or_else(|| StoreError::UnknownRepository(url.trim().to_string()))?;
        let rules: Vec<String> = tx
            .prepare("DELETE FROM image_rules WHERE repository_id = ?1 RETURNING image_key")?
            .query_map([id], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        tx.execute("DELETE FROM repositories WHERE id = ?1", [id])?;
        // The findings it held are exactly those of its owner/name and of
        // its rules' images.
        tx.execute(REMAP_BY_NAME, [&name_key])?;
        for key in &rules {
            if let Some(rule_name) = image_name_key(key) {
                tx.execute(REMAP_BY_IMAGE, params![rule_name, key])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// How images map to repositories: every explicit rule, then every
    /// image mapped by the name rule, with the stored findings each holds.
    pub fn image_mappings(&self) -> Result<Vec<ImageMappingRow>, StoreError> {
        let conn = self.conn();
        let mut rules: Vec<ImageMappingRow> = conn
            .prepare(
                "SELECT ir.image_key, r.url FROM image_rules ir
                 JOIN repositories r ON r.id = ir.repository_id ORDER BY ir.image_key",
            )?
            .query_map([], |r| {
                Ok(ImageMappingRow {
                    image: r.get(0)?,
                    repository: r.get(1)?,
                    rule: MappingRule::Explicit,
                    findings: 0,
                })
            })?
            .collect::<Result<_, _>>()?;
        let mut count = conn.prepare(
            "SELECT COUNT(*) FROM findings WHERE image_name_key = ?1 AND image_key = ?2",
        )?;
        for row in &mut rules {
            if let Some(name_key) = image_name_key(&row.image) {
                row.findings = count.query_row(params![name_key, row.image], |r| r.get(0))?;
            }
        }
        // Per repository, its owner/name's findings through the index; an
        // image with a rule is the rule's, whichever repository that is.
        let mut by_name = conn.prepare(
            "SELECT f.image_key, r.url, COUNT(*) FROM repositories r
             JOIN findings f ON f.image_name_key = r.name_key AND f.image_repository_id = r.id
             WHERE NOT EXISTS (SELECT 1 FROM image_rules ir WHERE ir.image_key = f.image_key)
             GROUP BY r.id, f.image_key ORDER BY f.image_key, r.url",
        )?;
        let named = by_name.query_map([], |r| {
            Ok(ImageMappingRow {
                image: r.get(0)?,
                repository: r.get(1)?,
                rule: MappingRule::Name,
                findings: r.get(2)?,
            })
        })?;
        for row in named {
            rules.push(row?);
        }
        Ok(rules)
    }

    /// Known repositories, in URL order.
    pub fn repositories(&self) -> Result<Vec<RepositoryRow>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT r.url, r.name, (SELECT json_group_array(image_key) FROM image_rules WHERE repository_id = r.id)
             FROM repositories r ORDER BY r.url_norm",
        )?;
        let rows = stmt.query_map([], |r| {
            let images: Option<String> = r.get(2)?;
            Ok(RepositoryRow {
                url: r.get(0)?,
                name: r.get(1)?,
                images: images
                    .and_then(|i| serde_json::from_str(&i).ok())
                    .unwrap_or_default(),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

/// The repository an image finding maps to, given SQL expressions for its
/// `image_key` and `image_name_key`: its explicit rule's, else the
/// first-added repository whose owner/name is the image's. Both lookups
/// are index probes.
macro_rules! image_mapping {
    ($key:literal, $name:literal) => {
        concat!(
            "COALESCE((SELECT repository_id FROM image_rules WHERE image_key = ",
            $key,
            "), (SELECT id FROM repositories WHERE name_key = ",
            $name,
            " ORDER BY id LIMIT 1))"
        )
    };
}

// Statements of other modules attach findings as these re-attach them.
pub(crate) use image_mapping;

/// Re-attach the image findings whose owner/name is `?1` (those a new or
/// removed repository's name rule decides).
const REMAP_BY_NAME: &str = concat!(
    "UPDATE findings SET image_repository_id = ",
    image_mapping!("findings.image_key", "findings.image_name_key"),
    " WHERE image_name_key = ?1"
);

/// Re-attach the image findings of image `?2` (owner/name `?1`): those an
/// added, moved or removed explicit rule decides.
const REMAP_BY_IMAGE: &str = concat!(
    "UPDATE findings SET image_repository_id = ",
    image_mapping!("findings.image_key", "findings.image_name_key"),
    " WHERE image_name_key = ?1 AND image_key = ?2"
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scans::UPSERT_FINDING;
    use rusqlite::Connection;

    fn plan(conn: &Connection, sql: &str, args: impl rusqlite::Params) -> String {
        let mut plan = conn
            .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
            .expect("explain");
        let steps: Vec<String> = plan
            .query_map(args, |r| r.get::<_, String>(3))
            .expect("plan")
            .collect::<Result<_, _>>()
            .expect("rows");
        steps.join("\n")
    }

    /// Re-attaching findings when a repository or rule changes must reach
    /// only that owner/name's findings through the index: a scan of all
    /// findings per change makes `repos add` (and imports of many
    /// repositories) quadratic in a large store.
    #[test]
    fn remapping_and_storing_image_findings_use_indexes() {
        let store = Database::open_in_memory().expect("store");
        let conn = store.conn();
        let by_name = plan(&conn, REMAP_BY_NAME, params!["acme/shop"]);
        assert!(
            by_name.contains("SEARCH findings USING INDEX findings_image (image_name_key=?)"),
            "{by_name}"
        );
        let by_image = plan(
            &conn,
            REMAP_BY_IMAGE,
            params!["acme/shop", "ghcr.io/acme/shop"],
        );
        assert!(
            by_image.contains(
                "SEARCH findings USING INDEX findings_image (image_name_key=? AND image_key=?)"
            ),
            "{by_image}"
        );
        for text in [&by_name, &by_image] {
            assert!(!text.contains("SCAN"), "{text}");
        }
        let mut args: Vec<rusqlite::types::Value> = vec![rusqlite::types::Value::Null; 39];
        args[19] = "ghcr.io/acme/shop".to_string().into();
        args[20] = "acme/shop".to_string().into();
        let upsert = plan(&conn, UPSERT_FINDING, rusqlite::params_from_iter(args));
        assert!(!upsert.contains("SCAN"), "{upsert}");
    }
}
