//! The simulator over real HTTP: OAuth, validation, filters, pagination,
//! faults and evolution.

use serde_json::{Value, json};
use std::collections::BTreeSet;
use wiz_sim::{Fault, Faults, SimAsset, SimClient, SimConfig, Simulator};

const QUERY: &str =
    "query Page($filterBy: VulnerabilityFindingFilters, $first: Int, $after: String) {
  vulnerabilityFindings(filterBy: $filterBy, first: $first, after: $after) {
    nodes { id name status severity firstDetectedAt updatedAt
      vulnerableAsset {
        ... on VulnerableAssetBase { id type name }
        ... on VulnerableAssetContainerImage { imageTags registry { name } repository { name } }
        ... on VulnerableAssetRepositoryBranch { repositoryName }
      } }
    pageInfo { hasNextPage endCursor }
    totalCount
  }
}";

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into()
}

fn token_for(sim: &Simulator, id: &str, secret: &str) -> (u16, Value) {
    let mut r = agent()
        .post(&sim.token_url())
        .header("content-type", "application/x-www-form-urlencoded")
        .send(format!(
            "grant_type=client_credentials&client_id={id}&client_secret={secret}&audience=wiz-api"
        ))
        .expect("token request");
    let status = r.status().as_u16();
    let body: Value =
        serde_json::from_str(&r.body_mut().read_to_string().expect("body")).unwrap_or(Value::Null);
    (status, body)
}

fn token(sim: &Simulator) -> String {
    let (status, body) = token_for(sim, "sim-client-id", "sim-client-secret");
    assert_eq!(status, 200, "{body}");
    body["access_token"].as_str().expect("token").to_string()
}

fn gql(sim: &Simulator, token: &str, query: &str, variables: Value) -> (u16, Value) {
    let mut r = agent()
        .post(&sim.api_endpoint())
        .header("content-type", "application/json")
        .header("authorization", &format!("Bearer {token}"))
        .send(json!({"query": query, "variables": variables}).to_string())
        .expect("graphql request");
    let status = r.status().as_u16();
    let text = r.body_mut().read_to_string().expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// Page through everything matching `filter`; returns the ids in order.
fn all_ids(sim: &Simulator, token: &str, filter: Value, first: u32) -> Vec<String> {
    let mut ids = Vec::new();
    let mut after = Value::Null;
    loop {
        let (status, body) = gql(
            sim,
            token,
            QUERY,
            json!({"filterBy": filter, "first": first, "after": after}),
        );
        assert_eq!(status, 200, "{body}");
        let conn = &body["data"]["vulnerabilityFindings"];
        for n in conn["nodes"].as_array().expect("nodes") {
            ids.push(n["id"].as_str().expect("id").to_string());
        }
        if conn["pageInfo"]["hasNextPage"] != true {
            return ids;
        }
        after = conn["pageInfo"]["endCursor"].clone();
    }
}

fn sim(findings: usize) -> Simulator {
    Simulator::start_background(SimConfig {
        findings,
        ..SimConfig::default()
    })
    .expect("sim")
}

#[test]
fn oauth_issues_tokens_and_refuses_bad_credentials() {
    let sim = sim(10);
    let (status, body) = token_for(&sim, "sim-client-id", "sim-client-secret");
    assert_eq!(status, 200);
    assert_eq!(body["token_type"], "Bearer");
    assert!(body["expires_in"].as_u64().is_some());
    let (status, body) = token_for(&sim, "sim-client-id", "nope");
    assert_eq!(status, 401);
    assert_eq!(body["error"], "invalid_client");
}

#[test]
fn graphql_requires_a_valid_token_and_json() {
    let sim = sim(10);
    let (status, body) = gql(&sim, "bogus", QUERY, json!({}));
    assert_eq!(status, 401);
    assert_eq!(body["errors"][0]["extensions"]["code"], "UNAUTHENTICATED");
    let r = agent()
        .post(&sim.api_endpoint())
        .header("content-type", "text/plain")
        .send("{}")
        .expect("request");
    assert_eq!(r.status().as_u16(), 415);
    let t = token(&sim);
    sim.revoke_tokens();
    assert_eq!(gql(&sim, &t, QUERY, json!({})).0, 401);
}

#[test]
fn invalid_documents_and_variables_are_validation_errors() {
    let sim = sim(10);
    let t = token(&sim);
    let (status, body) = gql(
        &sim,
        &t,
        "{ vulnerabilityFindings { nodes { id noSuchField } } }",
        json!({}),
    );
    assert_eq!(status, 400);
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "GRAPHQL_VALIDATION_FAILED",
        "{body}"
    );
    let (status, body) = gql(
        &sim,
        &t,
        "{ vulnerabilityFindings { nodes { vulnerableAsset { id } } } }",
        json!({}),
    );
    assert_eq!(status, 400, "a union needs fragments: {body}");
    let (status, body) = gql(
        &sim,
        &t,
        QUERY,
        json!({"filterBy": {"severity": {"equals": ["HIGH"]}}}),
    );
    assert_eq!(status, 400);
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "VALIDATION_INVALID_TYPE_VARIABLE",
        "{body}"
    );
    let (status, body) = gql(&sim, &t, QUERY, json!({"first": 501}));
    assert_eq!(status, 400);
    assert_eq!(body["errors"][0]["extensions"]["code"], "BAD_USER_INPUT");
}

#[test]
fn pagination_returns_every_finding_exactly_once() {
    let sim = sim(2345);
    let t = token(&sim);
    let ids = all_ids(&sim, &t, json!({}), 500);
    let unique: BTreeSet<&String> = ids.iter().collect();
    assert_eq!(ids.len(), 2345);
    assert_eq!(unique.len(), 2345);
    // Stable cursors: the same walk twice gives the same order.
    assert_eq!(all_ids(&sim, &t, json!({}), 500), ids);
}

#[test]
fn filters_select_what_they_name() {
    let sim = sim(3000);
    let t = token(&sim);
    let truth = sim.findings();
    let count =
        |pred: &dyn Fn(&wiz_sim::SimFinding) -> bool| truth.iter().filter(|f| pred(f)).count();

    assert_eq!(
        all_ids(&sim, &t, json!({"status": ["OPEN"]}), 500).len(),
        count(&|f| f.status == "OPEN")
    );
    assert_eq!(
        all_ids(&sim, &t, json!({"severity": ["CRITICAL", "HIGH"]}), 500).len(),
        count(&|f| f.severity == "CRITICAL" || f.severity == "HIGH")
    );
    assert_eq!(
        all_ids(&sim, &t, json!({"assetType": ["CONTAINER_IMAGE"]}), 500).len(),
        count(&|f| matches!(f.asset, SimAsset::ContainerImage { .. }))
    );
    assert_eq!(
        all_ids(
            &sim,
            &t,
            json!({"projectIdV2": {"equals": ["proj-1"]}}),
            500
        )
        .len(),
        count(&|f| f.project_id == "proj-1")
    );
    let cut = "2025-06-01T00:00:00Z";
    let parse = |s: &str| {
        time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
            .expect("time")
    };
    let cut_t = parse(cut);
    assert_eq!(
        all_ids(&sim, &t, json!({"updatedAt": {"after": cut}}), 500).len(),
        count(&|f| parse(&f.updated_at) > cut_t)
    );
    assert_eq!(
        all_ids(&sim, &t, json!({"firstSeenAt": {"before": cut}}), 500).len(),
        count(&|f| parse(&f.first_detected_at) < cut_t)
    );
}

#[test]
fn repository_branches_resolve_to_repository_urls() {
    let sim = sim(10);
    let t = token(&sim);
    let (status, body) = gql(
        &sim,
        &t,
        "query($first: Int, $filterBy: VersionControlResourceFilters) { versionControlResources(first: $first, filterBy: $filterBy) { nodes { id providerID repository { name url } } pageInfo { hasNextPage endCursor } } }",
        json!({"first": 5, "filterBy": {"type": ["REPOSITORY_BRANCH"]}}),
    );
    assert_eq!(status, 200, "{body}");
    let node = &body["data"]["versionControlResources"]["nodes"][0];
    assert!(
        node["repository"]["url"]
            .as_str()
            .expect("url")
            .starts_with("https://")
    );
    assert_eq!(
        node["providerID"]
            .as_str()
            .expect("provider")
            .split("##")
            .count(),
        3
    );
}

#[test]
fn a_client_without_the_scope_is_unauthorized() {
    let mut config = SimConfig {
        findings: 10,
        ..SimConfig::default()
    };
    config.clients.push(SimClient {
        id: "ro".into(),
        secret: "ro-secret".into(),
        scopes: vec![],
    });
    let sim = Simulator::start_background(config).expect("sim");
    let (_, body) = token_for(&sim, "ro", "ro-secret");
    let t = body["access_token"].as_str().expect("token");
    let (status, body) = gql(&sim, t, QUERY, json!({}));
    assert_eq!(status, 200);
    assert_eq!(body["errors"][0]["extensions"]["code"], "UNAUTHORIZED");
}

#[test]
fn faults_happen_in_order_and_are_logged() {
    let sim = sim(10);
    let t = token(&sim);
    sim.set_faults(Faults {
        script: vec![
            Fault::RateLimited {
                retry_after: Some(7),
            },
            Fault::Status { status: 503 },
            Fault::Malformed,
            Fault::Truncated,
            Fault::GraphqlError {
                code: "INTERNAL".into(),
                message: "boom".into(),
            },
        ],
        ..Faults::default()
    });
    let r = agent()
        .post(&sim.api_endpoint())
        .header("content-type", "application/json")
        .header("authorization", &format!("Bearer {t}"))
        .send(json!({"query": QUERY}).to_string())
        .expect("request");
    assert_eq!(r.status().as_u16(), 429);
    assert_eq!(
        r.headers().get("retry-after").and_then(|v| v.to_str().ok()),
        Some("7")
    );
    assert_eq!(gql(&sim, &t, QUERY, json!({})).0, 503);
    let (status, body) = gql(&sim, &t, QUERY, json!({}));
    assert_eq!(status, 200);
    assert!(body.is_string(), "malformed body is not JSON");
    let (_, body) = gql(&sim, &t, QUERY, json!({}));
    assert!(body.is_string(), "truncated body is not JSON");
    let (status, body) = gql(&sim, &t, QUERY, json!({}));
    assert_eq!(
        (status, &body["errors"][0]["extensions"]["code"]),
        (200, &json!("INTERNAL"))
    );
    assert_eq!(gql(&sim, &t, QUERY, json!({})).0, 200, "script exhausted");
    let statuses: Vec<u16> = sim
        .requests()
        .iter()
        .filter(|r| r.path == "/graphql")
        .map(|r| r.status)
        .collect();
    assert_eq!(statuses, vec![429, 503, 200, 200, 200, 200]);

    sim.set_faults(Faults {
        rate_limit_every: Some(2),
        retry_after_secs: None,
        ..Faults::default()
    });
    let codes: Vec<u16> = (0..4).map(|_| gql(&sim, &t, QUERY, json!({})).0).collect();
    assert_eq!(codes.iter().filter(|c| **c == 429).count(), 2);
}

#[test]
fn advance_resolves_reopens_and_adds() {
    let sim = sim(2000);
    let before = sim.findings();
    let summary = sim.advance(9);
    let after = sim.findings();
    assert_eq!(after.len(), before.len() + summary.added as usize);
    let resolved = before
        .iter()
        .zip(&after)
        .filter(|(b, a)| b.status == "OPEN" && a.status == "RESOLVED")
        .count();
    let reopened = before
        .iter()
        .zip(&after)
        .filter(|(b, a)| b.status == "RESOLVED" && a.status == "OPEN")
        .count();
    assert_eq!(
        (resolved as u64, reopened as u64),
        (summary.resolved, summary.reopened)
    );
    assert!(summary.resolved > 0 && summary.reopened > 0 && summary.added > 0);
    // Deterministic: the same seed gives the same tenant.
    let again = Simulator::start_background(SimConfig {
        findings: 2000,
        ..SimConfig::default()
    })
    .expect("sim");
    again.advance(9);
    let key = |fs: Vec<wiz_sim::SimFinding>| {
        fs.into_iter()
            .map(|f| (f.id, f.status, f.name))
            .collect::<Vec<_>>()
    };
    assert_eq!(key(again.findings()), key(after));
}

#[test]
fn dropped_connections_and_the_token_bucket() {
    let sim = sim(10);
    let t = token(&sim);
    sim.set_faults(Faults {
        script: vec![Fault::DropConnection],
        ..Faults::default()
    });
    let dropped = agent()
        .post(&sim.api_endpoint())
        .header("content-type", "application/json")
        .header("authorization", &format!("Bearer {t}"))
        .send(json!({"query": QUERY}).to_string());
    assert!(dropped.is_err(), "no response expected: {dropped:?}");
    assert_eq!(gql(&sim, &t, QUERY, json!({})).0, 200, "next one answers");

    // A bucket of 5 requests/s: the burst passes, then 429s with a
    // Retry-After. 50 requests would have to take 9 s for none to fail.
    sim.set_faults(Faults {
        rate_limit_rps: Some(5),
        ..Faults::default()
    });
    let codes: Vec<u16> = (0..50).map(|_| gql(&sim, &t, QUERY, json!({})).0).collect();
    assert_eq!(codes[..5], [200; 5], "{codes:?}");
    assert!(codes.contains(&429), "{codes:?}");
    let limited = agent()
        .post(&sim.api_endpoint())
        .header("content-type", "application/json")
        .header("authorization", &format!("Bearer {t}"))
        .send(json!({"query": QUERY}).to_string())
        .expect("request");
    if limited.status().as_u16() == 429 {
        let after: u32 = limited
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .expect("Retry-After");
        assert!(after >= 1);
    }
}

// The upload flow, with the query texts public clients send (§5.2, §5.4).
const REQUEST_UPLOAD: &str = "query RequestSecurityScanUpload($filename: String!) {
  requestSecurityScanUpload(filename: $filename) {
    upload { id url systemActivityId }
  }
}";

const SYSTEM_ACTIVITY: &str = "query SystemActivity($id: ID!) {
  systemActivity(id: $id) {
    id status statusInfo
    result {
      ...on SystemActivityEnrichmentIntegrationResult {
        dataSources { ...IngestionStatsDetails }
        findings { ...IngestionStatsDetails }
        events { ...IngestionStatsDetails }
        tags { ...IngestionStatsDetails }
        unresolvedAssets { ...UnresolvedAssetsDetails }
      }
    }
    context { ... on SystemActivityEnrichmentIntegrationContext { fileUploadId } }
  }
}
fragment IngestionStatsDetails on EnrichmentIntegrationStats { incoming handled }
fragment UnresolvedAssetsDetails on EnrichmentIntegrationUnresolvedAssets { count ids }";

const SAMPLE: &str = include_str!("../../fixtures/sast-upload-example.json");
const SAMPLE_SOURCE: &str = "29A4E640-4BFD-4779-833333343";

/// Requests a slot and PUTs `doc`; returns (upload id, activity id, PUT status).
fn upload(sim: &Simulator, token: &str, doc: &str) -> (String, String, u16) {
    let (status, body) = gql(sim, token, REQUEST_UPLOAD, json!({"filename": "f.json"}));
    assert_eq!(status, 200, "{body}");
    let slot = &body["data"]["requestSecurityScanUpload"]["upload"];
    let url = slot["url"].as_str().expect("url");
    let put = agent()
        .put(url)
        .header("content-type", "application/json")
        .send(doc)
        .expect("put");
    (
        slot["id"].as_str().expect("id").to_string(),
        slot["systemActivityId"]
            .as_str()
            .expect("activity")
            .to_string(),
        put.status().as_u16(),
    )
}

/// Polls until the activity leaves NOT_FOUND and IN_PROGRESS; returns
/// every status seen and the last answer.
fn poll(sim: &Simulator, token: &str, activity: &str) -> (Vec<String>, Value) {
    let mut seen = Vec::new();
    for _ in 0..10 {
        let (status, body) = gql(sim, token, SYSTEM_ACTIVITY, json!({"id": activity}));
        assert_eq!(status, 200, "{body}");
        let state = match body["errors"][0]["extensions"]["code"].as_str() {
            Some(code) => code.to_string(),
            None => body["data"]["systemActivity"]["status"]
                .as_str()
                .expect("status")
                .to_string(),
        };
        seen.push(state.clone());
        if state != "NOT_FOUND" && state != "IN_PROGRESS" {
            return (seen, body);
        }
    }
    (seen, Value::Null)
}

#[test]
fn an_upload_is_validated_ingested_and_replaces_the_last_snapshot() {
    let sim = sim(10);
    let t = token(&sim);
    let (id, activity, put) = upload(&sim, &t, SAMPLE);
    assert_eq!(put, 200);
    let (seen, body) = poll(&sim, &t, &activity);
    assert_eq!(seen, ["NOT_FOUND", "IN_PROGRESS", "SUCCESS"]);
    let a = &body["data"]["systemActivity"];
    assert_eq!(
        a["result"]["findings"],
        json!({"incoming": 3, "handled": 3})
    );
    assert_eq!(a["result"]["dataSources"]["handled"], 1);
    assert_eq!(a["context"]["fileUploadId"], json!(id));
    let open = sim.ingested()[SAMPLE_SOURCE].open_ids();
    assert_eq!(open.len(), 3);

    // The next upload of the data source leaves one finding out: Wiz
    // resolves it.
    let mut doc: Value = serde_json::from_str(SAMPLE).expect("json");
    let gone = doc["dataSources"][0]["assets"][0]["sastFindings"]
        .as_array_mut()
        .expect("findings")
        .remove(1);
    let (_, activity, put) = upload(&sim, &t, &doc.to_string());
    assert_eq!(put, 200);
    assert_eq!(
        poll(&sim, &t, &activity).0.last().map(String::as_str),
        Some("SUCCESS")
    );
    let held = &sim.ingested()[SAMPLE_SOURCE];
    assert_eq!(held.uploads, 2);
    assert_eq!(held.open_ids().len(), 2);
    assert!(held.findings[gone["id"].as_str().expect("id")].resolved);

    // The log shows the PUT carried no credentials.
    let puts: Vec<_> = sim
        .requests()
        .into_iter()
        .filter(|r| r.method == "PUT")
        .collect();
    assert_eq!(puts.len(), 2);
    assert!(
        puts.iter()
            .all(|r| r.authorization.is_none() && r.status == 200)
    );
}

#[test]
fn bad_uploads_fail_with_reasons() {
    let sim = sim(10);
    let t = token(&sim);

    // A property the ingestion model forbids: the activity fails and names it.
    let mut doc: Value = serde_json::from_str(SAMPLE).expect("json");
    doc["dataSources"][0]["assets"][0]["assetEndpoint"] = json!("x");
    let (_, activity, put) = upload(&sim, &t, &doc.to_string());
    assert_eq!(put, 200, "S3 takes any body; ingestion judges it");
    let (seen, body) = poll(&sim, &t, &activity);
    assert_eq!(seen.last().map(String::as_str), Some("FAILED"));
    let info = body["data"]["systemActivity"]["statusInfo"]
        .as_str()
        .expect("statusInfo");
    assert!(info.contains("assetEndpoint"), "{info}");
    assert!(sim.ingested().is_empty(), "nothing ingested");

    // A wrong signature is refused by "S3" itself.
    let (_, body) = gql(&sim, &t, REQUEST_UPLOAD, json!({"filename": "f.json"}));
    let url = body["data"]["requestSecurityScanUpload"]["upload"]["url"]
        .as_str()
        .expect("url")
        .replace("Signature=", "Signature=0");
    let r = agent().put(&url).send(SAMPLE).expect("put");
    assert_eq!(r.status().as_u16(), 403);

    // An unknown integration id: the activity never registers.
    let mut doc: Value = serde_json::from_str(SAMPLE).expect("json");
    doc["integrationId"] = json!("not-a-registered-integration");
    let (_, activity, _) = upload(&sim, &t, &doc.to_string());
    let (seen, _) = poll(&sim, &t, &activity);
    assert!(seen.iter().all(|s| s == "NOT_FOUND"), "{seen:?}");

    // A failure on Wiz's side.
    sim.set_faults(Faults {
        upload_failure: Some("internal ingestion error".into()),
        ..Faults::default()
    });
    let (_, activity, _) = upload(&sim, &t, SAMPLE);
    let (_, body) = poll(&sim, &t, &activity);
    assert_eq!(
        body["data"]["systemActivity"]["statusInfo"],
        "internal ingestion error"
    );
    assert!(sim.ingested().is_empty());

    // A service account without the upload scope.
    let mut config = SimConfig {
        findings: 1,
        ..SimConfig::default()
    };
    config.clients[0].scopes = vec!["read:vulnerabilities".into()];
    let ro = Simulator::start_background(config).expect("sim");
    let (status, body) = gql(&ro, &token(&ro), REQUEST_UPLOAD, json!({"filename": "f"}));
    assert_eq!(status, 200);
    assert_eq!(body["errors"][0]["extensions"]["code"], "UNAUTHORIZED");
}

// Public clients' queries (fixtures/clients: the text each sends, and the
// variables it sends with it).
const CLIENTS: &[(&str, &str, &str)] = &[
    (
        "backstage",
        include_str!("fixtures/clients/backstage.graphql"),
        include_str!("fixtures/clients/backstage.variables.json"),
    ),
    (
        "backstage-entity",
        include_str!("fixtures/clients/backstage.graphql"),
        include_str!("fixtures/clients/backstage-entity.variables.json"),
    ),
    (
        "elastic",
        include_str!("fixtures/clients/elastic.graphql"),
        include_str!("fixtures/clients/elastic.variables.json"),
    ),
    (
        "port",
        include_str!("fixtures/clients/port.graphql"),
        include_str!("fixtures/clients/port.variables.json"),
    ),
    (
        "port-partition",
        include_str!("fixtures/clients/port.graphql"),
        include_str!("fixtures/clients/port-partition.variables.json"),
    ),
    (
        "port-count",
        include_str!("fixtures/clients/port-count.graphql"),
        include_str!("fixtures/clients/port-count.variables.json"),
    ),
    (
        "paramify",
        include_str!("fixtures/clients/paramify.graphql"),
        include_str!("fixtures/clients/paramify.variables.json"),
    ),
    (
        "paramify-summary",
        include_str!("fixtures/clients/paramify-summary.graphql"),
        include_str!("fixtures/clients/paramify-summary.variables.json"),
    ),
];

/// Checks a response against the query's selection set, independently of
/// the simulator's executor: exactly the selected keys, each value of its
/// schema type (non-null where the schema says so, lists, scalars, enum
/// values, objects walked recursively). Records the paths seen non-null.
struct ShapeChecker<'a> {
    schema: &'a apollo_compiler::Schema,
    doc: &'a apollo_compiler::ExecutableDocument,
    vars: Value,
    errors: Vec<String>,
    seen: BTreeSet<String>,
    selected: BTreeSet<String>,
}

impl<'a> ShapeChecker<'a> {
    fn included(&self, directives: &apollo_compiler::executable::DirectiveList) -> bool {
        let flag = |name: &str| {
            directives.get(name).map(|d| {
                match d.specified_argument_by_name("if").map(|v| v.as_ref()) {
                    Some(apollo_compiler::ast::Value::Variable(v)) => {
                        self.vars[v.as_str()] == json!(true)
                    }
                    Some(apollo_compiler::ast::Value::Boolean(b)) => *b,
                    _ => false,
                }
            })
        };
        flag("include").unwrap_or(true) && !flag("skip").unwrap_or(false)
    }

    /// The fields selected on an object of `typename`, by response key.
    fn fields(
        &self,
        set: &'a apollo_compiler::executable::SelectionSet,
        typename: &str,
        out: &mut Vec<(String, &'a apollo_compiler::executable::Field)>,
    ) {
        use apollo_compiler::executable::Selection;
        for s in &set.selections {
            match s {
                Selection::Field(f) if self.included(&f.directives) => {
                    let key = f.response_key().to_string();
                    if !out.iter().any(|(k, _)| *k == key) {
                        out.push((key, f));
                    }
                }
                Selection::Field(_) => {}
                Selection::InlineFragment(i) => {
                    let applies = i.type_condition.as_ref().is_none_or(|c| {
                        c == typename || self.schema.is_subtype(c.as_str(), typename)
                    });
                    if applies && self.included(&i.directives) {
                        self.fields(&i.selection_set, typename, out);
                    }
                }
                Selection::FragmentSpread(sp) => {
                    let doc: &'a apollo_compiler::ExecutableDocument = self.doc;
                    let frag = &doc.fragments[&sp.fragment_name];
                    let c = frag.type_condition();
                    if (c == typename || self.schema.is_subtype(c.as_str(), typename))
                        && self.included(&sp.directives)
                    {
                        self.fields(&frag.selection_set, typename, out);
                    }
                }
            }
        }
    }

    /// Every leaf path the query can select, whatever the concrete types.
    fn all_leaves(&mut self, set: &apollo_compiler::executable::SelectionSet, path: &str) {
        use apollo_compiler::executable::Selection;
        for s in &set.selections {
            match s {
                Selection::Field(f) => {
                    let p = format!("{path}.{}", f.response_key());
                    if f.selection_set.selections.is_empty() {
                        self.selected.insert(p);
                    } else {
                        self.all_leaves(&f.selection_set, &p);
                    }
                }
                Selection::InlineFragment(i) => self.all_leaves(&i.selection_set, path),
                Selection::FragmentSpread(sp) => {
                    let doc = self.doc;
                    self.all_leaves(&doc.fragments[&sp.fragment_name].selection_set, path)
                }
            }
        }
    }

    fn object(
        &mut self,
        set: &'a apollo_compiler::executable::SelectionSet,
        declared: &str,
        v: &Value,
        path: &str,
    ) {
        let Some(map) = v.as_object() else {
            self.errors.push(format!("{path}: not an object: {v}"));
            return;
        };
        // The concrete type of an abstract one, from the asset's `type`.
        let typename = if self.schema.get_object(declared).is_some() {
            declared.to_string()
        } else {
            match map.get("type").and_then(Value::as_str) {
                Some("VIRTUAL_MACHINE") => "VulnerableAssetVirtualMachine",
                Some("SERVERLESS") => "VulnerableAssetServerless",
                Some("CONTAINER_IMAGE") => "VulnerableAssetContainerImage",
                Some("CONTAINER") => "VulnerableAssetContainer",
                Some("REPOSITORY_BRANCH") => "VulnerableAssetRepositoryBranch",
                _ => "VulnerableAssetCommon",
            }
            .to_string()
        };
        let mut fields = Vec::new();
        self.fields(set, &typename, &mut fields);
        let keys: BTreeSet<&str> = fields.iter().map(|(k, _)| k.as_str()).collect();
        let got: BTreeSet<&str> = map.keys().map(String::as_str).collect();
        if keys != got {
            self.errors
                .push(format!("{path}: keys {got:?}, selected {keys:?}"));
        }
        for (key, f) in fields {
            let p = format!("{path}.{key}");
            let value = map.get(&key).unwrap_or(&Value::Null);
            self.value(f, f.ty(), value, &p);
        }
    }

    fn value(
        &mut self,
        f: &'a apollo_compiler::executable::Field,
        ty: &apollo_compiler::ast::Type,
        v: &Value,
        path: &str,
    ) {
        use apollo_compiler::ast::Type;
        if v.is_null() {
            if ty.is_non_null() {
                self.errors.push(format!("{path}: null for {ty}"));
            }
            return;
        }
        match ty {
            Type::List(inner) | Type::NonNullList(inner) => match v.as_array() {
                Some(items) => {
                    for item in items {
                        self.value(f, inner, item, path);
                    }
                }
                None => self.errors.push(format!("{path}: not a list: {v}")),
            },
            Type::Named(name) | Type::NonNullNamed(name) => {
                let ok = match name.as_str() {
                    "Int" => v.is_i64(),
                    "Float" => v.is_number(),
                    "Boolean" => v.is_boolean(),
                    "String" | "ID" => v.is_string(),
                    "DateTime" => v.as_str().is_some_and(|s| {
                        time::OffsetDateTime::parse(
                            s,
                            &time::format_description::well_known::Rfc3339,
                        )
                        .is_ok()
                    }),
                    "JSON" => v.is_object(),
                    other => match self.schema.get_enum(other) {
                        Some(e) => v.as_str().is_some_and(|s| e.values.keys().any(|k| k == s)),
                        None => {
                            self.object(&f.selection_set, other, v, path);
                            true
                        }
                    },
                };
                if !ok {
                    self.errors.push(format!("{path}: {v} is not a {name}"));
                }
                if f.selection_set.selections.is_empty() {
                    self.seen.insert(path.to_string());
                }
            }
        }
    }
}

/// Leaf fields the simulator leaves null or never meets, by design:
/// Wiz fills `dataSourceName` only for third-party findings and
/// `resolutionReason` with values no source shows; the simulated tenant
/// has no running containers (the `VulnerableAssetContainer` fields), no
/// plugin or CI-component artifacts, and no ignore rule that expires.
const NEVER_SET: &[&str] = &[
    ".vulnerabilityFindings.nodes.artifactType.plugin",
    ".vulnerabilityFindings.nodes.artifactType.ciComponent",
    ".vulnerabilityFindings.nodes.dataSourceName",
    ".vulnerabilityFindings.nodes.resolutionReason",
    ".vulnerabilityFindings.nodes.vulnerableAsset.ImageExternalId",
    ".vulnerabilityFindings.nodes.vulnerableAsset.VmExternalId",
    ".vulnerabilityFindings.nodes.vulnerableAsset.ServerlessContainer",
    ".vulnerabilityFindings.nodes.vulnerableAsset.PodNamespace",
    ".vulnerabilityFindings.nodes.vulnerableAsset.PodName",
    ".vulnerabilityFindings.nodes.vulnerableAsset.NodeName",
    ".vulnerabilityFindings.nodes.ignoreRules.expiredAt",
];

#[test]
fn public_clients_queries_are_answered_in_shape() {
    let sim = sim(1500);
    let t = token(&sim);
    let truth = sim.findings();
    for (client, query, variables) in CLIENTS {
        let mut vars: Value = serde_json::from_str(variables).expect("variables fixture");
        let doc = apollo_compiler::ExecutableDocument::parse_and_validate(
            wiz_sim::graphql::schema(),
            *query,
            "client.graphql",
        )
        .unwrap_or_else(|e| panic!("{client}: the fixture is not valid against the schema: {e}"));
        let mut checker = ShapeChecker {
            schema: wiz_sim::graphql::schema(),
            doc: &doc,
            vars: Value::Null,
            errors: Vec::new(),
            seen: BTreeSet::new(),
            selected: BTreeSet::new(),
        };
        let operation = doc.operations.get(None).expect("one operation");
        checker.all_leaves(&operation.selection_set, "");
        let mut ids = Vec::new();
        let mut pages = 0;
        loop {
            let (status, body) = gql(&sim, &t, query, vars.clone());
            assert_eq!(status, 200, "{client}: {body}");
            assert!(body.get("errors").is_none(), "{client}: {body}");
            checker.vars = vars.clone();
            checker.object(&operation.selection_set, "Query", &body["data"], "");
            let conn = &body["data"]["vulnerabilityFindings"];
            for n in conn["nodes"].as_array().into_iter().flatten() {
                ids.push(n["id"].as_str().expect("id").to_string());
            }
            pages += 1;
            if conn["pageInfo"]["hasNextPage"] != true {
                break;
            }
            assert!(pages < 100, "{client}: paging does not end");
            let cursor = conn["pageInfo"]["endCursor"].clone();
            assert!(cursor.is_string(), "{client}: no endCursor");
            vars["after"] = cursor;
        }
        assert!(checker.errors.is_empty(), "{client}: {:#?}", checker.errors);
        let unique: BTreeSet<&String> = ids.iter().collect();
        assert_eq!(unique.len(), ids.len(), "{client}: a finding served twice");
        if *client == "port-count" {
            let want = truth
                .iter()
                .filter(|f| {
                    ["OPEN", "IN_PROGRESS"].contains(&f.status.as_str()) && f.severity == "CRITICAL"
                })
                .count();
            let (_, body) = gql(&sim, &t, query, vars.clone());
            assert_eq!(body["data"]["vulnerabilityFindings"]["totalCount"], want);
            continue;
        }
        assert!(pages > 1, "{client}: the walk should take several pages");
        // Every selected field is served with a value somewhere.
        // Only resolved findings have `resolvedAt`.
        let resolved_asked = vars["filterBy"]["status"]
            .as_array()
            .is_none_or(|s| s.contains(&json!("RESOLVED")));
        let unset: Vec<&String> = checker
            .selected
            .difference(&checker.seen)
            .filter(|p| !NEVER_SET.contains(&p.as_str()))
            .filter(|p| resolved_asked || !p.ends_with(".nodes.resolvedAt"))
            .collect();
        assert!(unset.is_empty(), "{client}: never set: {unset:?}");
    }
}

const ORDERED: &str = "query Ordered($filterBy: VulnerabilityFindingFilters, $first: Int, $after: String, $orderBy: VulnerabilityFindingOrder) {
  vulnerabilityFindings(filterBy: $filterBy, first: $first, after: $after, orderBy: $orderBy) {
    nodes { id relatedIssueAnalytics { issueCount criticalSeverityCount highSeverityCount mediumSeverityCount lowSeverityCount informationalSeverityCount } }
    pageInfo { hasNextPage endCursor }
  }
}";

/// Walks an ordered query; returns (id, analytics key) in the order served.
fn ordered_walk(sim: &Simulator, t: &str, order: Value, first: u32) -> Vec<(String, Vec<i64>)> {
    let mut out = Vec::new();
    let mut after = Value::Null;
    loop {
        let (status, body) = gql(
            sim,
            t,
            ORDERED,
            json!({"first": first, "after": after, "orderBy": order, "filterBy": {"status": ["OPEN"]}}),
        );
        assert_eq!(status, 200, "{body}");
        let conn = &body["data"]["vulnerabilityFindings"];
        for n in conn["nodes"].as_array().expect("nodes") {
            let a = &n["relatedIssueAnalytics"];
            let key: Vec<i64> = [
                "criticalSeverityCount",
                "highSeverityCount",
                "mediumSeverityCount",
                "lowSeverityCount",
                "informationalSeverityCount",
                "issueCount",
            ]
            .iter()
            .map(|k| a[*k].as_i64().expect("count"))
            .collect();
            assert_eq!(
                key[5],
                key[..5].iter().sum::<i64>(),
                "issueCount is the sum"
            );
            out.push((n["id"].as_str().expect("id").to_string(), key));
        }
        if conn["pageInfo"]["hasNextPage"] != true {
            return out;
        }
        after = conn["pageInfo"]["endCursor"].clone();
    }
}

#[test]
fn related_issue_severity_orders_every_page_and_pages_stay_stable() {
    let sim = sim(1200);
    let t = token(&sim);
    let open = sim.findings().iter().filter(|f| f.is_open()).count();
    let desc = ordered_walk(
        &sim,
        &t,
        json!({"field": "RELATED_ISSUE_SEVERITY", "direction": "DESC"}),
        37,
    );
    assert_eq!(desc.len(), open);
    assert!(desc.windows(2).all(|w| w[0].1 >= w[1].1), "not descending");
    assert!(
        desc[0].1[5] > 0 && desc[desc.len() - 1].1[5] == 0,
        "a mix of findings with and without issues"
    );
    let asc = ordered_walk(
        &sim,
        &t,
        json!({"field": "RELATED_ISSUE_SEVERITY", "direction": "ASC"}),
        500,
    );
    assert!(asc.windows(2).all(|w| w[0].1 <= w[1].1), "not ascending");
    // Page size does not change the order (ties go by the tenant's order).
    assert_eq!(
        ordered_walk(
            &sim,
            &t,
            json!({"field": "RELATED_ISSUE_SEVERITY", "direction": "DESC"}),
            500
        ),
        desc
    );

    // The tenant changes between two pages: the walk still serves no
    // finding twice and stays in order.
    let (_, body) = gql(
        &sim,
        &t,
        ORDERED,
        json!({"first": 100, "orderBy": {"field": "RELATED_ISSUE_SEVERITY", "direction": "DESC"}, "filterBy": {"status": ["OPEN"]}}),
    );
    let cursor = body["data"]["vulnerabilityFindings"]["pageInfo"]["endCursor"].clone();
    sim.advance(3);
    let (_, body) = gql(
        &sim,
        &t,
        ORDERED,
        json!({"first": 100, "after": cursor, "orderBy": {"field": "RELATED_ISSUE_SEVERITY", "direction": "DESC"}, "filterBy": {"status": ["OPEN"]}}),
    );
    let first: BTreeSet<&str> = desc[..100].iter().map(|(id, _)| id.as_str()).collect();
    let next = body["data"]["vulnerabilityFindings"]["nodes"]
        .as_array()
        .expect("nodes");
    assert!(
        next.iter()
            .all(|n| !first.contains(n["id"].as_str().expect("id")))
    );

    // A cursor of one order is refused under another.
    let (status, body) = gql(
        &sim,
        &t,
        ORDERED,
        json!({"first": 10, "after": cursor, "orderBy": {"field": "CREATED_AT", "direction": "ASC"}}),
    );
    assert_eq!(
        (status, &body["errors"][0]["extensions"]["code"]),
        (400, &json!("BAD_USER_INPUT"))
    );
}

#[test]
fn include_and_skip_follow_their_variables() {
    let sim = sim(50);
    let t = token(&sim);
    let query = "query Q($first: Int, $withCount: Boolean = false, $noIssues: Boolean!) {
      vulnerabilityFindings(first: $first) {
        nodes { id relatedIssueAnalytics @skip(if: $noIssues) { issueCount } }
        totalCount @include(if: $withCount)
      }
    }";
    let (status, body) = gql(&sim, &t, query, json!({"first": 2, "noIssues": true}));
    assert_eq!(status, 200, "{body}");
    let conn = &body["data"]["vulnerabilityFindings"];
    assert!(conn.get("totalCount").is_none(), "{body}");
    assert!(
        conn["nodes"][0].get("relatedIssueAnalytics").is_none(),
        "{body}"
    );
    let (_, body) = gql(
        &sim,
        &t,
        query,
        json!({"first": 2, "withCount": true, "noIssues": false}),
    );
    let conn = &body["data"]["vulnerabilityFindings"];
    assert_eq!(conn["totalCount"], 50);
    assert!(conn["nodes"][0]["relatedIssueAnalytics"]["issueCount"].is_u64());
}

#[test]
fn derived_signals_are_consistent_and_filterable() {
    let sim = sim(2000);
    let t = token(&sim);
    let truth = sim.findings();
    let mut exploits = 0;
    for f in &truth {
        let e = f.exploitability();
        assert!(
            !e.cisa_kev || e.has_exploit,
            "KEV only where an exploit is known"
        );
        if let Some((p, pct)) = e.epss {
            assert!((0.0..=1.0).contains(&p) && (0.0..=100.0).contains(&pct));
            assert_eq!(
                f.field("epssSeverity"),
                json!(wiz_sim::data::epss_severity(p))
            );
        } else {
            assert!(!f.name.starts_with("CVE-"));
            assert!(f.field("epssSeverity").is_null());
        }
        exploits += usize::from(e.has_exploit);
    }
    assert!(exploits > 0 && exploits < truth.len() / 2);
    let count =
        |pred: &dyn Fn(&wiz_sim::SimFinding) -> bool| truth.iter().filter(|f| pred(f)).count();
    assert_eq!(
        all_ids(&sim, &t, json!({"hasExploit": true}), 500).len(),
        count(&|f| f.exploitability().has_exploit)
    );
    assert_eq!(
        all_ids(&sim, &t, json!({"hasCisaKevExploit": true}), 500).len(),
        count(&|f| f.exploitability().cisa_kev)
    );
    assert_eq!(
        all_ids(&sim, &t, json!({"hasFix": false}), 500).len(),
        count(&|f| f.fixed_version.is_none())
    );
    let prod = json!({"containsAny": [{"key": "environment", "value": "prod"}]});
    let tagged = all_ids(&sim, &t, json!({"assetTags": prod}), 500).len();
    assert_eq!(
        tagged,
        count(&|f| f.asset_tags().get("environment") == Some(&json!("prod")))
    );
    assert!(tagged > 0);
    let some = &truth[3];
    let cve = some.external_id.clone().unwrap_or(some.name.clone());
    assert!(all_ids(&sim, &t, json!({"vulnerabilityExternalId": [cve]}), 500).contains(&some.id));
}

const UPDATED: &str =
    "query Updated($filterBy: VulnerabilityFindingFilters, $first: Int, $after: String) {
  vulnerabilityFindings(filterBy: $filterBy, first: $first, after: $after) {
    nodes { id updatedAt }
    pageInfo { hasNextPage endCursor }
  }
}";

#[test]
fn updated_after_with_every_status_returns_exactly_what_advance_changed() {
    let sim = sim(1500);
    let t = token(&sim);
    let parse = |s: &str| {
        time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
            .expect("time")
    };
    let all = json!(["OPEN", "IN_PROGRESS", "RESOLVED", "REJECTED"]);
    for round in 0..2u64 {
        let before = sim.findings();
        // T: the newest change the scanner has seen.
        let cut = before
            .iter()
            .map(|f| f.updated_at.clone())
            .max_by_key(|s| parse(s))
            .expect("findings");
        sim.advance(11 + round);
        let after = sim.findings();
        let mut changed = BTreeSet::new();
        for (i, a) in after.iter().enumerate() {
            match before.get(i) {
                Some(b)
                    if (&b.status, &b.last_detected_at, &b.resolved_at)
                        == (&a.status, &a.last_detected_at, &a.resolved_at) =>
                {
                    assert_eq!(
                        b.updated_at, a.updated_at,
                        "an unchanged finding kept its updatedAt"
                    );
                }
                _ => {
                    assert!(
                        parse(&a.updated_at) > parse(&cut),
                        "a change is stamped after T"
                    );
                    changed.insert(a.id.clone());
                }
            }
        }
        // Some of each kind of change.
        assert!(after.len() > before.len());
        assert!(after.iter().zip(&before).any(|(a, b)| a.status != b.status));
        let mut served = BTreeSet::new();
        let mut cursor = Value::Null;
        loop {
            let (status, body) = gql(
                &sim,
                &t,
                UPDATED,
                json!({"first": 500, "after": cursor, "filterBy": {"status": all, "updatedAt": {"after": cut}}}),
            );
            assert_eq!(status, 200, "{body}");
            let conn = &body["data"]["vulnerabilityFindings"];
            for n in conn["nodes"].as_array().expect("nodes") {
                assert!(parse(n["updatedAt"].as_str().expect("updatedAt")) > parse(&cut));
                served.insert(n["id"].as_str().expect("id").to_string());
            }
            if conn["pageInfo"]["hasNextPage"] != true {
                break;
            }
            cursor = conn["pageInfo"]["endCursor"].clone();
        }
        assert_eq!(served, changed, "round {round}");
        // `before` bounds too, exclusively: nothing is newer than the last change.
        let newest = after
            .iter()
            .map(|f| f.updated_at.clone())
            .max_by_key(|s| parse(s))
            .expect("findings");
        assert!(
            all_ids(
                &sim,
                &t,
                json!({"status": all, "updatedAt": {"after": cut, "before": newest}}),
                500
            )
            .is_empty()
        );
    }
}
