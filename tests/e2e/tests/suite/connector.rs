//! Issue 5: the connector's authentication, `test()` and error handling,
//! through the real host against the simulator.

use scanner_host::contract::{PluginError, SettingValue};
use scanner_host::runtime::{RetryPolicy, RuntimeError};
use scanner_tests::{expected_open, runtime_in, wiz_settings, wiz_settings_with};
use std::collections::BTreeSet;
use std::time::Duration;
use wiz_sim::{Fault, Faults, SimClient, SimConfig, Simulator};

const SECRET: &str = "sim-client-secret";

fn sim(config: SimConfig) -> Simulator {
    Simulator::start_background(config).expect("simulator")
}

fn imported(runtime: &scanner_host::runtime::Runtime) -> BTreeSet<String> {
    scanner_tests::open_ids(runtime, "t")
}

fn fast_retries() -> RetryPolicy {
    RetryPolicy {
        max_retries_per_page: 8,
        base_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(5),
        ..RetryPolicy::default()
    }
}

#[tokio::test]
async fn test_tells_bad_credentials_from_endpoint_problems() {
    let limited = SimClient {
        id: "no-scope".into(),
        secret: "no-scope-secret".into(),
        scopes: vec!["read:resources".into()],
    };
    let mut config = SimConfig {
        findings: 50,
        ..SimConfig::default()
    };
    config.clients.push(limited.clone());
    let sim = sim(config);
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = runtime_in(dir.path());

    let ok = runtime
        .connect("t", "wiz", &wiz_settings(&sim))
        .await
        .expect("good credentials");
    assert!(ok.summary.contains("authenticated"), "{ok:?}");

    let err = runtime
        .connect(
            "t2",
            "wiz",
            &wiz_settings_with(&sim, "sim-client-id", "wrong"),
        )
        .await
        .expect_err("bad secret");
    assert!(
        matches!(
            err,
            RuntimeError::Plugin(PluginError::AuthenticationFailed { .. })
        ),
        "{err:?}"
    );
    assert!(
        !err.to_string().contains("wrong"),
        "the secret leaked: {err}"
    );

    let err = runtime
        .connect(
            "t3",
            "wiz",
            &wiz_settings_with(&sim, &limited.id, &limited.secret),
        )
        .await
        .expect_err("missing scope");
    match &err {
        RuntimeError::Plugin(PluginError::EndpointError { code, .. }) => {
            assert_eq!(code.as_deref(), Some("UNAUTHORIZED"))
        }
        other => panic!("missing scope must be an endpoint error, got {other:?}"),
    }

    // Authentication works, but the endpoint is not a GraphQL API.
    let mut wrong = wiz_settings(&sim);
    wrong.insert(
        "api-endpoint".into(),
        SettingValue::Text(format!("{}/not-graphql", sim.base_url())),
    );
    let err = runtime
        .connect("t4", "wiz", &wrong)
        .await
        .expect_err("wrong endpoint");
    assert!(
        matches!(err, RuntimeError::Plugin(PluginError::EndpointError { .. })),
        "{err:?}"
    );

    // Authentication works, but nothing listens at the endpoint.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").expect("port");
    let port = dead.local_addr().expect("addr").port();
    drop(dead);
    let mut unreachable = wiz_settings(&sim);
    unreachable.insert(
        "api-endpoint".into(),
        SettingValue::Text(format!("http://127.0.0.1:{port}/graphql")),
    );
    let err = runtime
        .connect("t5", "wiz", &unreachable)
        .await
        .expect_err("unreachable endpoint");
    assert!(
        matches!(
            err,
            RuntimeError::Plugin(PluginError::EndpointError { .. })
                | RuntimeError::Plugin(PluginError::Transient { .. })
        ),
        "{err:?}"
    );
    assert!(
        runtime.store().integration("t2").expect("read").is_none(),
        "failed connects save nothing"
    );

    for r in sim.requests() {
        if r.path != "/oauth/token" {
            assert!(
                !r.body.contains(SECRET) && !r.body.contains("no-scope-secret"),
                "secret sent to {}",
                r.path
            );
        }
    }
}

#[tokio::test]
async fn expiring_and_revoked_tokens_lose_nothing() {
    let sim = sim(SimConfig {
        findings: 2500,
        // Shorter than the plugin's renewal margin: every request renews.
        token_ttl: Duration::from_secs(30),
        ..SimConfig::default()
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = runtime_in(dir.path());
    runtime
        .connect("t", "wiz", &wiz_settings(&sim))
        .await
        .expect("connect");
    // Revoke mid-scan: the page after the first is refused once.
    sim.set_faults(Faults {
        script: vec![Fault::RevokeTokens],
        ..Faults::default()
    });
    runtime.scan("t", &()).await.expect("scan");
    assert_eq!(imported(&runtime), expected_open(&sim, true, true));
    let tokens = sim
        .requests()
        .iter()
        .filter(|r| r.path == "/oauth/token")
        .count();
    assert!(tokens >= 3, "tokens were renewed ({tokens} token requests)");
}

#[tokio::test]
async fn rate_limits_and_server_errors_are_retried_to_a_complete_scan() {
    let sim = sim(SimConfig {
        findings: 2500,
        ..SimConfig::default()
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = runtime_in(dir.path()).with_retry(fast_retries());
    runtime
        .connect("t", "wiz", &wiz_settings(&sim))
        .await
        .expect("connect");
    sim.set_faults(Faults {
        script: vec![
            Fault::RateLimited {
                retry_after: Some(0),
            },
            Fault::Status { status: 503 },
            Fault::Status { status: 502 },
            Fault::GraphqlError {
                code: "INTERNAL".into(),
                message: "try again".into(),
            },
            Fault::DropConnection,
        ],
        ..Faults::default()
    });
    let report = runtime.scan("t", &()).await.expect("scan completes");
    assert_eq!(report.retries, 5);
    assert_eq!(imported(&runtime), expected_open(&sim, true, true));
}

#[tokio::test]
async fn broken_answers_fail_the_scan_with_a_typed_error_and_resolve_nothing() {
    let sim = sim(SimConfig {
        findings: 2500,
        ..SimConfig::default()
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = runtime_in(dir.path()).with_retry(fast_retries());
    runtime
        .connect("t", "wiz", &wiz_settings(&sim))
        .await
        .expect("connect");
    runtime.scan("t", &()).await.expect("first scan");
    let before = imported(&runtime);
    for (fault, kind) in [
        (Fault::Malformed, "protocol"),
        (Fault::Truncated, "protocol"),
        (
            Fault::GraphqlError {
                code: "BAD_USER_INPUT".into(),
                message: "nope".into(),
            },
            "request-rejected",
        ),
    ] {
        // A 429 first, so the broken answer arrives on a retried request.
        sim.set_faults(Faults {
            script: vec![
                Fault::RateLimited {
                    retry_after: Some(0),
                },
                fault,
            ],
            ..Faults::default()
        });
        let err = runtime.scan("t", &()).await.expect_err("broken answer");
        assert_eq!(err.kind(), kind, "{err}");
        assert_eq!(imported(&runtime), before, "a failed scan resolves nothing");
    }
}

#[tokio::test]
async fn rate_limit_exhaustion_is_reported_not_silently_short() {
    let sim = sim(SimConfig {
        findings: 600,
        faults: Faults {
            rate_limit_every: Some(1),
            retry_after_secs: Some(0),
            ..Faults::default()
        },
        ..SimConfig::default()
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = runtime_in(dir.path()).with_retry(fast_retries());
    // connect's test query is rate limited too: it reports it.
    let err = runtime
        .connect("t", "wiz", &wiz_settings(&sim))
        .await
        .expect_err("limited");
    assert_eq!(err.kind(), "rate-limited", "{err}");
}

#[tokio::test]
async fn request_log_shows_the_secret_only_at_the_token_endpoint_and_pages_within_the_maximum() {
    let sim = sim(SimConfig {
        findings: 3000,
        ..SimConfig::default()
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = runtime_in(dir.path());
    runtime
        .connect("t", "wiz", &wiz_settings(&sim))
        .await
        .expect("connect");
    runtime.scan("t", &()).await.expect("scan");
    let log = sim.requests();
    assert!(
        log.iter()
            .any(|r| r.path == "/oauth/token" && r.body.contains(SECRET))
    );
    for r in &log {
        if r.path != "/oauth/token" {
            assert!(
                !r.body.contains(SECRET),
                "secret in a request to {}",
                r.path
            );
            assert!(
                !r.authorization
                    .as_deref()
                    .unwrap_or_default()
                    .contains(SECRET)
            );
        }
        if let Some(first) = r.first {
            assert!(first <= 500, "page size {first} over the maximum");
        }
    }
    assert!(
        log.iter().filter(|r| r.path == "/graphql").count() >= 4,
        "several pages were fetched"
    );
}
