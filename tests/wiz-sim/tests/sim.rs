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
