//! Scans started in the background, polled and followed as Server-Sent
//! Events, and exports of uploaded SARIF files polled until they settle.

use crate::support::{TestApi, error_kind};
use http_body_util::{BodyExt, Empty};
use hyper::StatusCode;
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use scanner_contract::SettingValue;
use scanner_runtime::export::ExportPolling;
use scanner_tests::{engine_and_plugin, wiz_settings};
use serde_json::{Value, json};
use std::time::Duration;
use wiz_sim::{Fault, Faults};

/// Findings in the simulator: at least three pages of up to 500 records
/// (the plugin pages each asset type on its own).
const FINDINGS: usize = 3000;

/// A scan's record, read until it is no longer running.
async fn until_ended(api: &TestApi, tenant: &str, id: i64, token: &str) -> Value {
    loop {
        let answer = api
            .get(&format!("/v1/integrations/{tenant}/scans/{id}"), token)
            .await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
        if answer.json["state"] != "running" {
            return answer.json;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Starts a scan of `tenant` and returns its id, checking the 202 answer.
async fn start_scan(api: &TestApi, tenant: &str, token: &str) -> i64 {
    let started = api
        .post(&format!("/v1/integrations/{tenant}/scans"), token)
        .await;
    assert_eq!(started.status, StatusCode::ACCEPTED, "{}", started.text);
    let id = started.json["scan"]["id"].as_i64().expect("scan id");
    assert_eq!(
        started.location.as_deref(),
        Some(&*format!("/v1/integrations/{tenant}/scans/{id}"))
    );
    assert_eq!(started.json["scan"]["tenant"], tenant);
    id
}

/// Connects `tenant` to the simulator with the plugin's request timeout
/// at `seconds`.
async fn connect_with_timeout(api: &TestApi, tenant: &str, seconds: u32) {
    let mut settings = wiz_settings(&api.sim);
    settings.insert(
        "request-timeout-s".into(),
        SettingValue::Text(seconds.to_string()),
    );
    api.runtime
        .connect(tenant, "wiz", &settings, &scanner_tests::loopback_grants())
        .await
        .expect("connect");
}

/// One Server-Sent Event: its name and its data as JSON.
#[derive(Debug)]
struct SseEvent {
    name: String,
    data: Value,
}

/// Reads `path`'s event stream as it arrives until its `end` (or `error`)
/// event, and returns every event in order (keep-alive comments left out).
async fn read_events(api: &TestApi, path: &str, token: &str) -> Vec<SseEvent> {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let request = hyper::Request::get(format!("http://{}{path}", api.addr))
        .header("authorization", format!("Bearer {token}"))
        .body(Empty::new())
        .expect("request");
    let response = client.request(request).await.expect("events");
    assert_eq!(response.status(), StatusCode::OK);
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().expect("text").to_string());
    assert_eq!(content_type.as_deref(), Some("text/event-stream"));
    let mut body = response.into_body();
    let mut buffer = String::new();
    let mut events = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.expect("frame");
        let Some(data) = frame.data_ref() else {
            continue;
        };
        buffer.push_str(std::str::from_utf8(data).expect("UTF-8"));
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            let mut name = None;
            let mut data = String::new();
            for line in block.lines() {
                if let Some(value) = line.strip_prefix("event:") {
                    name = Some(value.trim().to_string());
                } else if let Some(value) = line.strip_prefix("data:") {
                    data.push_str(value.trim_start());
                }
            }
            // A block of comments only: a keep-alive.
            let Some(name) = name else { continue };
            let data = serde_json::from_str(&data).unwrap_or_else(|e| panic!("{e}: {data}"));
            let last = name == "end" || name == "error";
            events.push(SseEvent { name, data });
            if last {
                return events;
            }
        }
    }
    panic!("the stream ended without an end event: {events:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_started_scan_is_answered_at_once_and_polled_until_completed_with_the_stores_counts() {
    let api = TestApi::start(FINDINGS).await;
    api.connect("acme").await;
    let token = api.token(&["acme"], false);
    let id = start_scan(&api, "acme", &token).await;
    let ended = until_ended(&api, "acme", id, &token).await;
    assert_eq!(ended["state"], "completed", "{ended}");
    let stored = api.store().scan(id).expect("read").expect("stored");
    assert_eq!(ended, serde_json::to_value(&stored).expect("JSON"));
    assert!(stored.pages >= 3, "{stored:?}");
    assert_eq!(
        stored.new,
        api.store().finding_count("acme").expect("count"),
        "every finding is new in the first scan"
    );
    assert!(ended["ended_at"].is_string() && ended["error"].is_null());

    // Waiting for its end answers 200 with the ended scan; the list holds
    // both, newest first.
    let again = api
        .post("/v1/integrations/acme/scans?wait=true", &token)
        .await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.text);
    assert_eq!(again.json["scan"]["state"], "completed");
    assert_eq!(again.json["scan"]["new"], 0, "nothing new the second time");
    assert_eq!(
        ended["mode"], "full",
        "the first scan after connect is full"
    );
    assert_eq!(
        again.json["scan"]["mode"], "incremental",
        "between full scans, what changed"
    );
    let second = again.json["scan"]["id"].as_i64().expect("id");
    let full = api
        .post("/v1/integrations/acme/scans?wait=true&full=true", &token)
        .await;
    assert_eq!(full.status, StatusCode::OK, "{}", full.text);
    assert_eq!(full.json["scan"]["mode"], "full", "asked for");
    assert_eq!(full.json["scan"]["resolved"], 0);
    let third = full.json["scan"]["id"].as_i64().expect("id");
    let list = api.get("/v1/integrations/acme/scans", &token).await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.text);
    let ids: Vec<i64> = list.json["scans"]
        .as_array()
        .expect("scans")
        .iter()
        .map(|s| s["id"].as_i64().expect("id"))
        .collect();
    assert_eq!(ids, [third, second, id]);
    let one = api.get("/v1/integrations/acme/scans?limit=1", &token).await;
    assert_eq!(one.json["scans"].as_array().expect("scans").len(), 1);
    for bad in ["limit=0", "limit=many", "colour=red"] {
        let answer = api
            .get(&format!("/v1/integrations/acme/scans?{bad}"), &token)
            .await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(error_kind(&answer), "invalid-input");
    }
    // An ended scan's stream is its end event alone.
    let events = read_events(
        &api,
        &format!("/v1/integrations/acme/scans/{id}/events"),
        &token,
    )
    .await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].name, "end");
    assert_eq!(events[0].data, ended);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scans_event_stream_delivers_its_wait_and_pages_in_order_and_ends_with_its_counts() {
    let api = TestApi::start(FINDINGS).await;
    // The first page's request gets no answer until the plugin's timeout:
    // the stream is followed from before the scan's first page, and sees
    // the wait before the retry.
    connect_with_timeout(&api, "acme", 3).await;
    api.sim.set_faults(Faults {
        script: vec![Fault::Hang],
        ..Faults::default()
    });
    let token = api.token(&["acme"], false);
    let id = start_scan(&api, "acme", &token).await;
    let events = read_events(
        &api,
        &format!("/v1/integrations/acme/scans/{id}/events"),
        &token,
    )
    .await;
    let (end, before) = events.split_last().expect("events");
    assert_eq!(end.name, "end", "{events:?}");
    assert_eq!(end.data["state"], "completed", "{events:?}");
    assert_eq!(before[0].name, "waiting", "{events:?}");
    assert!(before[0].data["seconds"].as_f64().is_some());
    assert!(before[0].data["why"].is_string());
    let progress: Vec<&Value> = before[1..]
        .iter()
        .map(|e| {
            assert_eq!(e.name, "progress", "{events:?}");
            &e.data
        })
        .collect();
    assert!(progress.len() >= 3, "{events:?}");
    for (n, p) in progress.iter().enumerate() {
        assert_eq!(p["pages"], n as u64 + 1, "every page, in order: {events:?}");
        assert!(p["rate"].as_f64().expect("rate") >= 0.0);
    }
    let records: Vec<u64> = progress
        .iter()
        .map(|p| p["records"].as_u64().expect("records"))
        .collect();
    assert!(records.windows(2).all(|w| w[0] < w[1]), "{records:?}");
    let last = progress.last().expect("a page");
    assert_eq!(end.data["pages"], last["pages"]);
    assert_eq!(end.data["records"], last["records"]);
    let stored = api.store().scan(id).expect("read").expect("stored");
    assert_eq!(end.data, serde_json::to_value(&stored).expect("JSON"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_start_while_a_scan_runs_is_a_conflict_and_a_shutdown_interrupts_it() {
    let api = TestApi::start(FINDINGS).await;
    connect_with_timeout(&api, "acme", 2).await;
    // Every request of the first page hangs until the plugin's timeout,
    // again and again: the scan runs until it is stopped. (Plugin calls
    // are not cancelled: the tests of this process share the engine.)
    api.sim.set_faults(Faults {
        script: vec![Fault::Hang; 8],
        ..Faults::default()
    });
    let token = api.token(&["acme"], false);
    let id = start_scan(&api, "acme", &token).await;
    let running = api
        .get(&format!("/v1/integrations/acme/scans/{id}"), &token)
        .await;
    assert_eq!(running.json["state"], "running", "{}", running.text);
    let busy = api.post("/v1/integrations/acme/scans", &token).await;
    assert_eq!(busy.status, StatusCode::CONFLICT, "{}", busy.text);
    assert_eq!(error_kind(&busy), "scan-running");
    let waiting = api
        .post("/v1/integrations/acme/scans?wait=true", &token)
        .await;
    assert_eq!(waiting.status, StatusCode::CONFLICT, "{}", waiting.text);

    // The request in flight times out, and the retry is not made.
    api.runtime.request_shutdown();
    let ended = until_ended(&api, "acme", id, &token).await;
    assert_eq!(ended["state"], "interrupted", "{ended}");
    let events = read_events(
        &api,
        &format!("/v1/integrations/acme/scans/{id}/events"),
        &token,
    )
    .await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!((events[0].name.as_str(), &events[0].data), ("end", &ended));
    let stopping = api.post("/v1/integrations/acme/scans", &token).await;
    assert_eq!(stopping.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(error_kind(&stopping), "shutting-down");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_tenants_scans_and_exports_are_not_found() {
    let api = TestApi::start(20).await;
    api.connect("acme").await;
    api.connect("globex").await;
    let admin = api.token(&[], true);
    let acme = api.token(&["acme"], false);
    let scan = api
        .post("/v1/integrations/globex/scans?wait=true", &admin)
        .await;
    assert_eq!(scan.status, StatusCode::OK, "{}", scan.text);
    let id = scan.json["scan"]["id"].as_i64().expect("id");
    let export = api
        .store()
        .begin_export(
            "globex",
            "https://github.com/acme/shop",
            "main",
            0,
            0,
            None,
            time::OffsetDateTime::now_utc(),
        )
        .expect("export");
    for (token, path) in [
        (&admin, format!("/v1/integrations/acme/scans/{id}")),
        (&admin, format!("/v1/integrations/acme/scans/{id}/events")),
        (&admin, format!("/v1/integrations/acme/scans/{}", id + 100)),
        (&admin, format!("/v1/integrations/acme/exports/{export}")),
        (&acme, format!("/v1/integrations/acme/scans/{id}")),
        (&acme, format!("/v1/integrations/globex/scans/{id}")),
        (&acme, format!("/v1/integrations/globex/scans/{id}/events")),
        (&acme, "/v1/integrations/globex/scans".to_string()),
        (&acme, "/v1/integrations/globex/exports".to_string()),
        (&acme, format!("/v1/integrations/globex/exports/{export}")),
    ] {
        let answer = api.get(&path, token).await;
        assert_eq!(
            answer.status,
            StatusCode::NOT_FOUND,
            "{path}: {}",
            answer.text
        );
        assert_eq!(error_kind(&answer), "not-found", "{path}");
    }
    let shown = api
        .get(&format!("/v1/integrations/globex/scans/{id}"), &admin)
        .await;
    assert_eq!(shown.status, StatusCode::OK, "{}", shown.text);
    assert_eq!(shown.json["tenant"], "globex");
    let exported = api
        .get(&format!("/v1/integrations/globex/exports/{export}"), &admin)
        .await;
    assert_eq!(exported.status, StatusCode::OK, "{}", exported.text);
    assert_eq!(exported.json["id"], export);
    // And none of these routes answers without a token.
    for (method, path) in [
        ("GET", format!("/v1/integrations/globex/scans/{id}")),
        ("GET", format!("/v1/integrations/globex/scans/{id}/events")),
        ("GET", "/v1/integrations/globex/exports".to_string()),
        ("POST", "/v1/integrations/globex/exports".to_string()),
    ] {
        let answer = api.request(method, &path, None).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{path}");
    }
}

/// The findings of the Semgrep fixture, as an upload's file.
fn semgrep_file(name: &str) -> Value {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/semgrep.sarif");
    let content = std::fs::read_to_string(path).expect("the SARIF fixture");
    json!({"name": name, "content": content})
}

/// An export's record, read until its state is final.
async fn until_settled(api: &TestApi, path: &str, token: &str) -> Value {
    loop {
        let answer = api.get(path, token).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
        if !matches!(answer.json["state"].as_str(), Some("running" | "unknown")) {
            return answer.json;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_uploaded_sarif_export_is_polled_until_it_succeeds_and_bad_input_is_refused() {
    let (engine, plugin) = engine_and_plugin();
    // The simulator settles an upload in a few polls: ask every few
    // milliseconds rather than seconds.
    let api = TestApi::start_adjusted(10, engine, vec![plugin], |api| {
        api.with_export_polling(ExportPolling {
            first_delay: Duration::from_millis(5),
            max_delay: Duration::from_millis(20),
            deadline: Duration::from_secs(30),
        })
    })
    .await;
    api.connect("acme").await;
    let token = api.token(&["acme"], false);
    let body = json!({
        "repo": "https://github.com/acme/shop",
        "branch": "main",
        "commit": "4f2a9c1",
        "files": [semgrep_file("semgrep.sarif")],
    });
    let started = api
        .send_json("POST", "/v1/integrations/acme/exports", &token, &body)
        .await;
    assert_eq!(started.status, StatusCode::ACCEPTED, "{}", started.text);
    let id = started.json["export"]["id"].as_i64().expect("export id");
    let path = format!("/v1/integrations/acme/exports/{id}");
    assert_eq!(started.location.as_deref(), Some(&*path));
    let settled = until_settled(&api, &path, &token).await;
    assert_eq!(settled["state"], "succeeded", "{settled}");
    // Two SQL injections and one XSS are high; two findings are lower.
    assert_eq!(
        (
            &settled["findings"],
            &settled["filtered"],
            &settled["sent"],
            &settled["handled"]
        ),
        (&json!(5), &json!(2), &json!(3), &json!(3)),
        "{settled}"
    );
    assert_eq!(settled["repository"], "github.com/acme/shop");
    let activity = settled["activity_id"].as_str().expect("activity");
    assert!(
        api.sim.activities().iter().any(|a| a.id == activity),
        "the simulator has the upload"
    );
    let held = &api.sim.ingested()["scanner-host:sast:https://github.com/acme/shop#main"];
    assert_eq!(held.open_ids().len(), 3);

    // A branch that is not the default one is recorded as refused.
    let mut feature = body.clone();
    feature["branch"] = json!("feature");
    let refused = api
        .send_json("POST", "/v1/integrations/acme/exports", &token, &feature)
        .await;
    assert_eq!(refused.status, StatusCode::ACCEPTED, "{}", refused.text);
    let refused_id = refused.json["export"]["id"].as_i64().expect("id");
    let refused = until_settled(
        &api,
        &format!("/v1/integrations/acme/exports/{refused_id}"),
        &token,
    )
    .await;
    assert_eq!(refused["state"], "refused", "{refused}");
    assert!(refused["error"].is_string(), "{refused}");
    let list = api.get("/v1/integrations/acme/exports", &token).await;
    let ids: Vec<i64> = list.json["exports"]
        .as_array()
        .expect("exports")
        .iter()
        .map(|e| e["id"].as_i64().expect("id"))
        .collect();
    assert_eq!(ids, [refused_id, id]);

    // Input that is not acceptable is refused before anything is recorded,
    // naming the file and what is wrong.
    let broken = json!({"name": "broken.sarif", "content": "{\"version\": "});
    let old = json!({"name": "old.sarif", "content": "{\"version\": \"1.0.0\", \"runs\": []}"});
    for (files, expected) in [
        (json!([semgrep_file("ok.sarif"), broken]), "broken.sarif"),
        (json!([old]), "old.sarif"),
        (json!([]), "at least one"),
    ] {
        let mut bad = body.clone();
        bad["files"] = files;
        let answer = api
            .send_json("POST", "/v1/integrations/acme/exports", &token, &bad)
            .await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{}", answer.text);
        assert_eq!(error_kind(&answer), "invalid-input");
        let message = answer.json["error"]["message"].as_str().expect("message");
        assert!(message.contains(expected), "{message}");
    }
    let mut version = body.clone();
    version["files"] = json!([old]);
    let answer = api
        .send_json("POST", "/v1/integrations/acme/exports", &token, &version)
        .await;
    assert!(answer.text.contains("1.0.0"), "{}", answer.text);
    for (key, value) in [
        ("repo", json!("github.com/acme/shop")),
        ("min_severity", json!("urgent")),
        ("max_resolve_ratio", json!(2.0)),
        ("colour", json!("red")),
    ] {
        let mut bad = body.clone();
        bad[key] = value;
        let answer = api
            .send_json("POST", "/v1/integrations/acme/exports", &token, &bad)
            .await;
        assert_eq!(
            answer.status,
            StatusCode::BAD_REQUEST,
            "{key}: {}",
            answer.text
        );
    }
    assert_eq!(
        api.store()
            .exports(Some("acme"), 10)
            .expect("exports")
            .len(),
        2,
        "nothing recorded for refused input"
    );
}
