//! Paging open findings: one shard per asset type, paged side by side.
//!
//! Each enabled asset type (repository branches, container images) is its
//! own shard, so that a large type does not hold the others back. While one
//! shard's page is read, mapped and stored, every unfinished shard already
//! has its next request in flight ([`InFlight`], which the instance keeps
//! between calls). The page cursor the host stores is a [`ScanCursor`]
//! holding every shard's Wiz cursor, so a scan resumed by another instance
//! continues each shard where its last stored page ended.

use super::client::Client;
use super::env::Env;
use super::error::protocol;
use super::findings::{FINDINGS_QUERY, Nodes, PAGE_SIZE, findings_filter};
use super::graphql::{graphql_body, unexpected_shape};
use super::vcs::with_resolved;
use crate::mapping::{self, Kinds, Node};
use crate::source::{FindingPage, Page, PageRequest, RawRecord};
use crate::types::PluginError;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Value, json};

/// The `data` of a findings page, with nodes read as `N`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct FindingsData<N> {
    vulnerability_findings: Option<FindingsConnection<N>>,
}

/// A findings connection.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct FindingsConnection<N> {
    nodes: Option<Vec<N>>,
    page_info: Option<Value>,
    total_count: Option<Value>,
}

/// Read a findings page's `data`: the connection's page info and total,
/// and its nodes. Without `keep_raw` the page is parsed once, straight into
/// [`Node`]s; a page with an odd node is read again node by node, each
/// with [`Node::parse`]'s lenient fallback.
fn read_page(data: &str, keep_raw: bool) -> Result<(FindingsConnection<()>, Nodes), PluginError> {
    fn parts<N>(data: FindingsData<N>) -> Result<(FindingsConnection<()>, Vec<N>), PluginError> {
        let conn = data
            .vulnerability_findings
            .ok_or_else(|| protocol("response has no vulnerabilityFindings connection"))?;
        let nodes = conn
            .nodes
            .ok_or_else(|| protocol("vulnerabilityFindings has no nodes list"))?;
        let meta = FindingsConnection {
            nodes: None,
            page_info: conn.page_info,
            total_count: conn.total_count,
        };
        Ok((meta, nodes))
    }
    let typed = (!keep_raw)
        .then(|| serde_json::from_str::<FindingsData<Node>>(data).ok())
        .flatten();
    let (meta, nodes): (_, Nodes) = match typed {
        Some(data) => {
            let (meta, nodes) = parts(data)?;
            (meta, nodes.into_iter().map(|n| (None, n)).collect())
        }
        None => {
            let data: FindingsData<Box<RawValue>> =
                serde_json::from_str(data).map_err(unexpected_shape)?;
            let (meta, raws) = parts(data)?;
            let mut nodes = Vec::with_capacity(raws.len());
            for raw in raws {
                let node = Node::parse(raw.get())
                    .map_err(|_| protocol("a finding node is not a JSON object"))?;
                nodes.push((Some(raw), node));
            }
            (meta, nodes)
        }
    };
    if nodes.iter().any(|(_, n)| n.id().is_none()) {
        return Err(protocol("a finding node has no id"));
    }
    Ok((meta, nodes))
}

/// Page requests sent by one call and answered in a later one; the
/// instance keeps them between calls.
pub struct InFlight<P> {
    /// Request body and the request in flight.
    requests: Vec<(String, P)>,
}

impl<P> Default for InFlight<P> {
    fn default() -> Self {
        Self {
            requests: Vec::new(),
        }
    }
}

impl<P> InFlight<P> {
    /// Requests in flight.
    pub fn len(&self) -> usize {
        self.requests.len()
    }

    /// Whether nothing is in flight.
    pub fn is_empty(&self) -> bool {
        self.requests.is_empty()
    }
}

/// Where a scan stands, as the page cursor the host stores: one Wiz cursor
/// per shard and the shard whose page comes next.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct ScanCursor {
    /// Format version of this cursor text.
    v: u32,
    shards: Vec<Shard>,
    /// Index of the shard whose page the next call returns.
    next: usize,
}

/// One disjoint part of a scan: the findings of some asset types.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Shard {
    types: Vec<String>,
    /// Wiz's cursor after the last page returned; `None` before the first.
    after: Option<String>,
    done: bool,
    /// Wiz's `totalCount` for this shard, once seen.
    total: Option<u64>,
}

impl ScanCursor {
    const VERSION: u32 = 1;

    /// A new scan: one shard per asset type.
    fn start(types: Vec<&str>) -> Self {
        Self {
            v: Self::VERSION,
            shards: types
                .into_iter()
                .map(|t| Shard {
                    types: vec![t.to_string()],
                    after: None,
                    done: false,
                    total: None,
                })
                .collect(),
            next: 0,
        }
    }

    /// A stored cursor. One that is not ours (a plain Wiz cursor written
    /// before scans were sharded) continues as one shard over every type.
    fn parse(text: &str, types: Vec<&str>) -> Self {
        match serde_json::from_str::<ScanCursor>(text) {
            Ok(c) if c.v == Self::VERSION && c.next < c.shards.len() => c,
            _ => Self {
                v: Self::VERSION,
                shards: vec![Shard {
                    types: types.into_iter().map(str::to_string).collect(),
                    after: Some(text.to_string()),
                    done: false,
                    total: None,
                }],
                next: 0,
            },
        }
    }

    /// Move `next` to the following unfinished shard, round robin;
    /// `false` when every shard is done.
    fn advance(&mut self) -> bool {
        let n = self.shards.len();
        match (1..=n)
            .map(|step| (self.next + step) % n)
            .find(|&i| !self.shards[i].done)
        {
            Some(i) => {
                self.next = i;
                true
            }
            None => false,
        }
    }

    /// The scan's total once every shard has reported one.
    fn total(&self) -> Option<u64> {
        self.shards.iter().map(|s| s.total).sum()
    }

    fn to_text(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// One fetched page of nodes.
struct NodePage {
    nodes: Nodes,
    next_cursor: Option<String>,
    total: Option<u64>,
}

impl<E: Env> Client<'_, E> {
    /// Fetch one page of findings as raw records, each node's JSON with
    /// the repository its branch resolved to spliced in.
    pub fn fetch_page(
        &self,
        request: &PageRequest,
        vcs_refreshed: &mut bool,
        inflight: &mut InFlight<E::Pending>,
    ) -> Result<Page, PluginError> {
        let page = self.fetch_nodes(request, vcs_refreshed, inflight, true)?;
        let records = page
            .nodes
            .into_iter()
            .map(|(raw, node)| {
                let text = raw.as_deref().map(RawValue::get).unwrap_or("{}");
                let body = with_resolved(text, node.resolved.as_ref());
                RawRecord {
                    id: node.id.unwrap_or_default(),
                    body,
                }
            })
            .collect();
        Ok(Page {
            records,
            next_cursor: page.next_cursor,
            total: page.total,
            incremental: request.updated_since.is_some(),
        })
    }

    /// Fetch one page of findings and map it: the page is parsed once.
    pub fn fetch_findings(
        &self,
        request: &PageRequest,
        vcs_refreshed: &mut bool,
        inflight: &mut InFlight<E::Pending>,
        kinds: Kinds,
    ) -> Result<FindingPage, PluginError> {
        let page = self.fetch_nodes(request, vcs_refreshed, inflight, false)?;
        let incremental = request.updated_since.is_some();
        let mut findings = Vec::with_capacity(page.nodes.len());
        let mut skipped = 0u32;
        for (_, node) in page.nodes {
            match mapping::map_node(node, kinds, incremental) {
                Some(f) => findings.push(f),
                None => skipped += 1,
            }
        }
        Ok(FindingPage {
            findings,
            skipped,
            rejected: Vec::new(),
            next_cursor: page.next_cursor,
            total: page.total,
            incremental,
        })
    }

    /// One page of nodes, each with its text and its typed fields, with
    /// repository branches resolved.
    ///
    /// A scan pages its shards (one per asset type) side by side: every
    /// unfinished shard has its next request in flight while one shard's
    /// page is read and returned, and while the host stores it. The cursor
    /// records each shard's Wiz cursor, so a resumed scan continues every
    /// shard where its last stored page ended.
    fn fetch_nodes(
        &self,
        request: &PageRequest,
        vcs_refreshed: &mut bool,
        inflight: &mut InFlight<E::Pending>,
        keep_raw: bool,
    ) -> Result<NodePage, PluginError> {
        let mut cursor = match &request.cursor {
            Some(text) => ScanCursor::parse(text, self.asset_types()),
            None => ScanCursor::start(self.asset_types()),
        };
        let serving = cursor.next;
        let since = request.updated_since.as_deref();
        let bodies: Vec<Option<String>> = cursor
            .shards
            .iter()
            .map(|shard| (!shard.done).then(|| self.page_body(shard, since)))
            .collect();
        let Some(Some(body)) = bodies.get(serving).cloned() else {
            return Err(protocol("the scan cursor has no unfinished shard to page"));
        };
        // What an earlier call started for another cursor is of no use.
        inflight
            .requests
            .retain(|(b, _)| bodies.iter().flatten().any(|x| x == b));
        // The page to return first, then every other shard's next page.
        for body in std::iter::once(&body).chain(bodies.iter().flatten()) {
            if !inflight.requests.iter().any(|(b, _)| b == body) {
                let pending = self.start_graphql(body)?;
                inflight.requests.push((body.clone(), pending));
            }
        }
        let at = inflight
            .requests
            .iter()
            .position(|(b, _)| *b == body)
            .ok_or_else(|| protocol("the page request was not started"))?;
        let (_, pending) = inflight.requests.remove(at);
        let raw = self.finish_graphql(&body, pending)?;
        let (conn, mut nodes) = read_page(raw.get(), keep_raw)?;
        drop(raw);
        let info = conn
            .page_info
            .ok_or_else(|| protocol("vulnerabilityFindings has no pageInfo"))?;
        let has_next = info
            .get("hasNextPage")
            .and_then(Value::as_bool)
            .ok_or_else(|| protocol("pageInfo.hasNextPage missing"))?;
        let shard = &mut cursor.shards[serving];
        if has_next {
            let next = info
                .get("endCursor")
                .and_then(Value::as_str)
                .filter(|c| !c.is_empty())
                .ok_or_else(|| protocol("hasNextPage is true but endCursor is missing"))?;
            if shard.after.as_deref() == Some(next) {
                return Err(protocol(
                    "Wiz returned the same cursor again; paging would not end",
                ));
            }
            shard.after = Some(next.to_string());
        } else {
            shard.done = true;
        }
        shard.total = conn.total_count.as_ref().and_then(Value::as_u64);
        if !shard.done {
            // Ask now for this shard's next page: it travels while this one
            // is mapped and stored.
            let body = self.page_body(shard, since);
            let pending = self.start_graphql(&body)?;
            inflight.requests.push((body, pending));
        }
        self.resolve_branches(&mut nodes, vcs_refreshed)?;
        let total = cursor.total();
        let next_cursor = cursor.advance().then(|| cursor.to_text());
        Ok(NodePage {
            nodes,
            next_cursor,
            total,
        })
    }

    /// The GraphQL body of a shard's next page.
    fn page_body(&self, shard: &Shard, updated_since: Option<&str>) -> String {
        let filter = findings_filter(&shard.types, updated_since);
        graphql_body(
            FINDINGS_QUERY,
            &json!({"first": PAGE_SIZE, "after": shard.after, "filterBy": filter}),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mapping::RESOLVED_KEY;
    use crate::source::{FindingKind, Location};
    use crate::wiz::Response;
    use crate::wiz::fake::{BOTH, FakeWiz, config, nodes, page_from};

    /// Pages from `cursor` to the end: ids per page and requests in flight
    /// after each page.
    fn page_all(
        wiz: &FakeWiz,
        mut cursor: Option<String>,
        inflight: &mut InFlight<Response>,
        max_pages: usize,
    ) -> (Vec<Vec<String>>, Vec<usize>, Option<String>) {
        let config = config();
        let client = Client::new(wiz, &config);
        let (mut pages, mut in_flight) = (Vec::new(), Vec::new());
        let mut refreshed = false;
        for _ in 0..max_pages {
            let page = client
                .fetch_findings(&page_from(cursor.clone()), &mut refreshed, inflight, BOTH)
                .expect("page");
            pages.push(page.findings.into_iter().map(|f| f.source_id).collect());
            in_flight.push(inflight.len());
            cursor = page.next_cursor;
            if cursor.is_none() {
                break;
            }
        }
        (pages, in_flight, cursor)
    }

    fn sorted(pages: &[Vec<String>]) -> Vec<String> {
        let mut ids: Vec<String> = pages.iter().flatten().cloned().collect();
        ids.sort();
        ids
    }

    #[test]
    fn shards_page_side_by_side_and_return_every_finding_once() {
        let wiz = FakeWiz::new(
            nodes("r", "REPOSITORY_BRANCH", 5),
            nodes("i", "CONTAINER_IMAGE", 3),
            2,
        );
        let (pages, in_flight, end) = page_all(&wiz, None, &mut InFlight::default(), 20);
        assert_eq!(end, None);
        let mut expected: Vec<String> = (0..5).map(|i| format!("r{i}")).collect();
        expected.extend((0..3).map(|i| format!("i{i}")));
        expected.sort();
        assert_eq!(sorted(&pages), expected, "every finding exactly once");
        // Pages alternate while both shards have pages; then the longer
        // shard finishes alone.
        let first: Vec<&str> = pages.iter().map(|p| &p[0][..1]).collect();
        assert_eq!(first, ["r", "i", "r", "i", "r"]);
        // While both shards run, both have a request in flight after every
        // page; nothing is left in flight at the end.
        assert_eq!(in_flight, [2, 2, 2, 1, 0]);
        // Requests: 5 pages, no request made twice, no prefetch wasted.
        assert_eq!(wiz.graphql_requests.get(), 5 + 1, "pages + inventory");
        assert_eq!(wiz.paced.get(), wiz.graphql_requests.get());
    }

    #[test]
    fn a_scan_resumes_from_its_stored_cursor_in_a_new_instance() {
        let wiz = FakeWiz::new(
            nodes("r", "REPOSITORY_BRANCH", 5),
            nodes("i", "CONTAINER_IMAGE", 3),
            2,
        );
        let (before, _, cursor) = page_all(&wiz, None, &mut InFlight::default(), 3);
        assert!(cursor.is_some());
        // A new instance: nothing in flight, only the stored cursor.
        let (after, _, end) = page_all(&wiz, cursor, &mut InFlight::default(), 20);
        assert_eq!(end, None);
        let all: Vec<Vec<String>> = before.into_iter().chain(after).collect();
        assert_eq!(sorted(&all).len(), 8);
        let mut unique = sorted(&all);
        unique.dedup();
        assert_eq!(unique.len(), 8, "nothing returned twice");
    }

    #[test]
    fn a_plain_wiz_cursor_continues_as_one_shard_over_every_type() {
        let wiz = FakeWiz::new(
            nodes("r", "REPOSITORY_BRANCH", 3),
            nodes("i", "CONTAINER_IMAGE", 3),
            2,
        );
        // Written by a connector that paged both types in one query.
        let (pages, _, end) = page_all(&wiz, Some("2".into()), &mut InFlight::default(), 20);
        assert_eq!(end, None);
        assert_eq!(sorted(&pages), ["i0", "i1", "i2", "r2"]);
    }

    #[test]
    fn one_pass_maps_a_page_and_resolves_branches() {
        let nodes = [
            r#"{"id":"f1","name":"CVE-2024-1111","status":"OPEN","severity":"HIGH","score":"7.5",
                "vulnerableAsset":{"id":"b1","type":"REPOSITORY_BRANCH","repositoryName":"org/repo"}}"#
                .to_string(),
            r#"{"id":"f2","name":"GHSA-aaaa-bbbb-cccc","status":"OPEN",
                "vulnerableAsset":{"id":"i1","type":"CONTAINER_IMAGE"}}"#
                .to_string(),
            r#"{"id":"f3","name":"CVE-2024-3333","status":"OPEN","severity":"SOMETHING_NEW",
                "vulnerableAsset":{"type":"CONTAINER_IMAGE","imageId":"sha256:ab","imageTags":["v1",null],
                "registry":{"name":"ecr"},"repository":null}}"#
                .to_string(),
        ];
        let wiz = FakeWiz::new(nodes[..1].to_vec(), nodes[1..].to_vec(), 10);
        let config = config();
        let client = Client::new(&wiz, &config);
        let mut refreshed = false;
        let mut inflight = InFlight::default();
        let repo_page = client
            .fetch_findings(&page_from(None), &mut refreshed, &mut inflight, BOTH)
            .expect("page");
        assert!(refreshed, "an unknown branch loads the inventory");
        let image_page = client
            .fetch_findings(
                &page_from(repo_page.next_cursor.clone()),
                &mut refreshed,
                &mut inflight,
                BOTH,
            )
            .expect("page");
        assert_eq!(image_page.next_cursor, None);
        assert_eq!(image_page.total, Some(3), "the shards' totals add up");
        assert_eq!(image_page.skipped, 1, "the GHSA finding is not imported");
        let repo = &repo_page.findings[0];
        assert_eq!(repo.kind, FindingKind::CodeDependency);
        // A score of the wrong type is dropped, not fatal.
        assert_eq!(repo.score, None);
        match &repo.location {
            Some(Location::Repository(r)) => {
                assert_eq!(r.url.as_deref(), Some("https://github.com/org/repo"));
                assert_eq!(r.branch.as_deref(), Some("main"));
            }
            other => panic!("{other:?}"),
        }
        match &image_page.findings[0].location {
            Some(Location::ContainerImage(i)) => {
                assert_eq!(i.tags, vec!["v1"]);
                assert_eq!(i.registry.as_deref(), Some("ecr"));
                assert_eq!(i.digest.as_deref(), Some("sha256:ab"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn raw_records_carry_the_resolved_repository_and_map_the_same() {
        let wiz = FakeWiz::new(
            nodes("r", "REPOSITORY_BRANCH", 3),
            nodes("i", "CONTAINER_IMAGE", 2),
            10,
        );
        let config = config();
        let client = Client::new(&wiz, &config);
        let (mut two_step, mut one_pass) = (Vec::new(), Vec::new());
        let (mut a, mut b) = (None, None);
        loop {
            let page = client
                .fetch_page(&page_from(a.clone()), &mut false, &mut InFlight::default())
                .expect("page");
            for r in &page.records {
                let v: Value = serde_json::from_str(&r.body).expect("json");
                if r.id.starts_with('r') {
                    assert_eq!(v[RESOLVED_KEY]["branch"], "main");
                }
                two_step.extend(mapping::map_record(r, BOTH).expect("maps"));
            }
            let page = client
                .fetch_findings(
                    &page_from(b.clone()),
                    &mut true,
                    &mut InFlight::default(),
                    BOTH,
                )
                .expect("page");
            one_pass.extend(page.findings);
            (a, b) = (page.next_cursor.clone(), page.next_cursor);
            if a.is_none() {
                break;
            }
        }
        assert_eq!(two_step.len(), 5);
        assert_eq!(format!("{two_step:?}"), format!("{one_pass:?}"));
    }

    #[test]
    fn a_node_without_id_fails_the_page() {
        let wiz = FakeWiz::new(vec![r#"{"name":"CVE-2024-1"}"#.into()], Vec::new(), 10);
        let config = config();
        let err = Client::new(&wiz, &config)
            .fetch_findings(&page_from(None), &mut true, &mut InFlight::default(), BOTH)
            .expect_err("no id");
        assert!(matches!(err, PluginError::Protocol(_)), "{err:?}");
    }
}
