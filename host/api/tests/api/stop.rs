//! A stopping server: requests that still arrive are refused, an event
//! stream that follows another process's scan ends, and `serve` returns.

use http_body_util::BodyExt;
use hyper::StatusCode;
use scanner_api::Api;
use scanner_runtime::{Progress, Runtime};
use scanner_store::Database;
use scanner_tests::{engine_and_plugin, wiz_settings};
use serde_json::Value;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::oneshot;
use tower::ServiceExt;
use wiz_sim::{Fault, Faults, SimConfig, Simulator};

/// Hands a scan's id over once it has one.
struct Started(Mutex<Option<oneshot::Sender<i64>>>);

impl Progress for Started {
    fn started(&self, scan_id: i64) {
        if let Some(sender) = self.0.lock().expect("lock").take() {
            let _ = sender.send(scan_id);
        }
    }

    fn page(&self, _: u64, _: Option<u64>) {}
}

/// `GET path` with `token` straight into `router`, as a request on a
/// connection the server accepted before it stopped.
async fn get(router: &axum::Router, path: &str, token: &str) -> axum::response::Response {
    let request = axum::http::Request::get(path)
        .header("authorization", format!("Bearer {token}"))
        .body(axum::body::Body::empty())
        .expect("request");
    router.clone().oneshot(request).await.expect("infallible")
}

/// The body of `response`, read to its end (bounded, so a stream that
/// never ends fails the test instead of hanging it).
async fn text(response: axum::response::Response) -> String {
    let body = tokio::time::timeout(Duration::from_secs(60), response.into_body().collect())
        .await
        .expect("the body ended")
        .expect("body")
        .to_bytes();
    String::from_utf8(body.to_vec()).expect("UTF-8")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_server_refuses_requests_ends_streams_of_other_processes_scans_and_returns() {
    let sim = Simulator::start_background(SimConfig {
        findings: 1000,
        ..SimConfig::default()
    })
    .expect("start the simulator");
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("host.db");
    let (engine, plugin) = engine_and_plugin();
    let runtime = |db: &std::path::Path| {
        let store = Arc::new(Database::open(db).expect("open store"));
        Arc::new(Runtime::new(engine.clone(), vec![plugin.clone()], store))
    };
    // Another process scans the tenant; its scan waits on the scanner
    // until the test ends.
    let other = runtime(&db);
    other
        .connect(
            "acme",
            "wiz",
            &wiz_settings(&sim),
            &scanner_tests::loopback_grants(),
        )
        .await
        .expect("connect");
    sim.set_faults(Faults {
        script: vec![Fault::Hang; 8],
        ..Faults::default()
    });
    let (sender, begun) = oneshot::channel();
    let scanning = tokio::spawn({
        let other = other.clone();
        async move {
            let _ = other.scan("acme", &Started(Mutex::new(Some(sender)))).await;
        }
    });
    let id = begun.await.expect("the other process's scan began");

    let served = runtime(&db);
    let token = served
        .database()
        .expect("a SQLite store")
        .create_token("test", &[], true, time::OffsetDateTime::now_utc())
        .expect("create token")
        .token
        .expose()
        .to_string();
    let api = Api::new(served.clone()).expect("a SQLite store");
    let router = scanner_api::router(api.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(scanner_api::serve(listener, api, async {
        let _ = stopped.await;
    }));

    let events = get(
        &router,
        &format!("/v1/integrations/acme/scans/{id}/events"),
        &token,
    )
    .await;
    assert_eq!(events.status(), StatusCode::OK);
    stop.send(()).expect("the server runs");
    // The stream ends although the scan it follows goes on.
    let stream = text(events).await;
    assert!(
        stream.contains("event: error") && stream.contains("shutting-down"),
        "{stream}"
    );
    tokio::time::timeout(Duration::from_secs(60), server)
        .await
        .expect("serve returned")
        .expect("the server task")
        .expect("serve");
    assert!(
        served.shutting_down(),
        "the runtime's shutdown was requested"
    );

    for path in ["/v1/status", "/readyz", "/v1/integrations/acme/scans"] {
        let answer = get(&router, path, &token).await;
        assert_eq!(answer.status(), StatusCode::SERVICE_UNAVAILABLE, "{path}");
        let body: Value = serde_json::from_str(&text(answer).await).expect("JSON");
        assert_eq!(body["error"]["kind"], "shutting-down", "{path}: {body}");
    }
    let health = get(&router, "/healthz", &token).await;
    assert_eq!(health.status(), StatusCode::OK, "the process still answers");
    let scan = served.store().scan(id).expect("scan").expect("stored");
    assert_eq!(scan.state, "running", "the other process's scan goes on");
    scanning.abort();
}
