//! What a scan asks Wiz for: open findings of the tenant's asset types,
//! a page of a set size at a time, and the nodes such a page holds.
//!
//! Paging the findings (`paging`), resolving their repository branches
//! (`vcs`) and the connection test (`probe`) all build on these, so they
//! live below all three.

use super::client::Client;
use super::env::Env;
use crate::mapping::Node;
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};

/// Page size asked of Wiz. Wiz's maximum is reported as 500 (public sources
/// disagree); staying at it keeps pages few but valid.
pub const PAGE_SIZE: u32 = 500;

/// The GraphQL query of a findings page: only what mapping needs (the
/// simulator benchmark sends the same text).
pub const FINDINGS_QUERY: &str = "query VulnerabilityFindingsPage($filterBy: VulnerabilityFindingFilters, $first: Int, $after: String) {
  vulnerabilityFindings(filterBy: $filterBy, first: $first, after: $after) {
    nodes {
      id name vulnerabilityExternalId status vendorSeverity severity CVSSSeverity score
      firstDetectedAt lastDetectedAt description remediation detailedName version fixedVersion
      locationPath portalUrl hasExploit hasCisaKevExploit epssSeverity epssPercentile
      epssProbability projects { id name }
      vulnerableAsset {
        ... on VulnerableAssetBase { id type name providerUniqueId }
        ... on VulnerableAssetContainerImage { imageId imageTags registry { name } repository { name } }
        ... on VulnerableAssetRepositoryBranch { repositoryId repositoryName }
      }
    }
    pageInfo { hasNextPage endCursor }
    totalCount
  }
}";

/// Every status a Wiz vulnerability finding can have. Named explicitly:
/// whether Wiz returns all of them when `status` is left out is not
/// documented (one public client reports only open ones).
const ALL_STATUSES: [&str; 4] = ["OPEN", "IN_PROGRESS", "RESOLVED", "REJECTED"];

/// The findings a scan asks for, of `asset_types`: a full scan asks for
/// the open ones; an incremental scan for those of any status updated after
/// `updated_since`, so that resolved and reopened ones are seen as such.
///
/// Wiz documents `updatedAt: {after}` without saying whether the bound is
/// inclusive; the host passes a time with a safety overlap, so either
/// reading is safe (a finding seen twice is applied twice, to the same
/// state).
pub(super) fn findings_filter<T: Serialize>(
    asset_types: &[T],
    updated_since: Option<&str>,
) -> Value {
    match updated_since {
        None => json!({"status": ["OPEN"], "assetType": asset_types}),
        Some(since) => json!({
            "status": ALL_STATUSES,
            "assetType": asset_types,
            "updatedAt": {"after": since},
        }),
    }
}

/// A page's nodes, typed, each with its JSON text when it was kept.
pub(super) type Nodes = Vec<(Option<Box<RawValue>>, Node)>;

impl<E: Env> Client<'_, E> {
    /// The asset types the tenant imports, each paged as its own shard.
    pub(super) fn asset_types(&self) -> Vec<&'static str> {
        let mut types = Vec::new();
        if self.config.scan_sca {
            types.push("REPOSITORY_BRANCH");
        }
        if self.config.scan_container_images {
            types.push("CONTAINER_IMAGE");
        }
        types
    }
}
