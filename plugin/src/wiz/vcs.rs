//! Repository resolution of findings on repository branches.
//!
//! A finding on a repository branch names the branch's asset, not the
//! repository URL the normalized finding needs. The tenant's branch
//! inventory (`versionControlResources`) maps one to the other: it is
//! cached in tenant storage per branch, and loaded again at most once per
//! instance, when a page has a branch the cache does not know. On the
//! raw-record path the resolution travels inside the record's JSON
//! ([`with_resolved`]), so that mapping the record later needs no lookup.

use super::client::Client;
use super::env::{Env, Level};
use super::error::protocol;
use super::findings::{Nodes, PAGE_SIZE};
use crate::mapping::{RESOLVED_KEY, Resolved};
use crate::types::PluginError;
use serde_json::{Value, json};
use std::collections::HashMap;

/// Storage key prefix of resolved repository-branch assets.
const REPO_KEY_PREFIX: &str = "vcs/branch/";

/// Repository branches with their repository URLs (an INFERENCE from Wiz's
/// Backstage plugin: a branch resource id equals the vulnerable asset id).
const VCS_QUERY: &str = "query VersionControlResources($first: Int, $after: String, $filterBy: VersionControlResourceFilters) {
  versionControlResources(first: $first, after: $after, filterBy: $filterBy) {
    nodes { id name type providerID repository { id name url } }
    pageInfo { hasNextPage endCursor }
  }
}";

/// A node's JSON text with the resolved repository added as
/// [`RESOLVED_KEY`], for the raw-record path.
pub(super) fn with_resolved(node: &str, resolved: Option<&Resolved>) -> String {
    let (Some(resolved), Some(rest)) = (resolved, node.strip_prefix('{')) else {
        return node.to_string();
    };
    let resolved = serde_json::to_string(resolved).unwrap_or_else(|_| "null".into());
    let comma = if rest.trim_start().starts_with('}') {
        ""
    } else {
        ","
    };
    format!("{{\"{RESOLVED_KEY}\":{resolved}{comma}{rest}")
}

impl<E: Env> Client<'_, E> {
    /// Attach to each repository-branch node the repository its branch
    /// belongs to, from the tenant's cache, loading the inventory once per
    /// instance when a branch is unknown.
    pub(super) fn resolve_branches(
        &self,
        nodes: &mut Nodes,
        vcs_refreshed: &mut bool,
    ) -> Result<(), PluginError> {
        // Many findings share a branch: one storage call per branch and page.
        let mut cache: HashMap<String, Option<Resolved>> = HashMap::new();
        let mut missing = false;
        for (_, node) in nodes.iter_mut() {
            if let Some(asset) = node.branch_asset() {
                node.resolved = self.cached_branch(&mut cache, asset);
                missing |= node.resolved.is_none();
            }
        }
        if missing && !*vcs_refreshed {
            *vcs_refreshed = true;
            self.refresh_repositories()?;
            cache.clear();
            for (_, node) in nodes.iter_mut() {
                if node.resolved.is_none()
                    && let Some(asset) = node.branch_asset()
                {
                    node.resolved = self.cached_branch(&mut cache, asset);
                }
            }
        }
        Ok(())
    }

    fn cached_branch(
        &self,
        cache: &mut HashMap<String, Option<Resolved>>,
        asset: &str,
    ) -> Option<Resolved> {
        cache
            .entry(asset.to_string())
            .or_insert_with(|| {
                self.env
                    .get(&format!("{REPO_KEY_PREFIX}{asset}"))
                    .and_then(|raw| serde_json::from_slice::<Resolved>(&raw).ok())
            })
            .clone()
    }

    /// Page through the repository-branch inventory and cache each branch's
    /// repository URL, name and branch name.
    fn refresh_repositories(&self) -> Result<(), PluginError> {
        let mut after: Option<String> = None;
        let mut count = 0u64;
        loop {
            let data = self.graphql(
                VCS_QUERY,
                json!({"first": PAGE_SIZE, "after": after, "filterBy": {"type": ["REPOSITORY_BRANCH"]}}),
            )?;
            let conn = data
                .get("versionControlResources")
                .ok_or_else(|| protocol("response has no versionControlResources"))?;
            for node in conn
                .get("nodes")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let Some(id) = node.get("id").and_then(Value::as_str) else {
                    continue;
                };
                // providerID is `github.com##org/repo##branch`.
                let branch = node
                    .get("providerID")
                    .and_then(Value::as_str)
                    .and_then(|p| p.split("##").nth(2))
                    .map(str::to_string)
                    .or_else(|| node.get("name").and_then(Value::as_str).map(str::to_string));
                let resolved = json!({
                    "url": node.pointer("/repository/url"),
                    "name": node.pointer("/repository/name"),
                    "branch": branch,
                });
                self.env.set(
                    &format!("{REPO_KEY_PREFIX}{id}"),
                    resolved.to_string().as_bytes(),
                );
                count += 1;
            }
            let info = conn.get("pageInfo").unwrap_or(&Value::Null);
            if info.get("hasNextPage").and_then(Value::as_bool) != Some(true) {
                break;
            }
            let next = info
                .get("endCursor")
                .and_then(Value::as_str)
                .map(str::to_string);
            if next.is_none() || next == after {
                return Err(protocol("versionControlResources paging did not advance"));
            }
            after = next;
        }
        self.env.log(
            Level::Info,
            "resolved repository branches",
            &[("count", &count.to_string())],
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splicing_keeps_the_node_valid_json() {
        let r = Resolved {
            url: Some("u".into()),
            name: None,
            branch: Some("b".into()),
        };
        for node in [r#"{"id":"x"}"#, "{}", "{ }"] {
            let v: Value = serde_json::from_str(&with_resolved(node, Some(&r))).expect("json");
            assert_eq!(v[RESOLVED_KEY]["branch"], "b");
        }
        assert_eq!(with_resolved(r#"{"id":"x"}"#, None), r#"{"id":"x"}"#);
    }
}
