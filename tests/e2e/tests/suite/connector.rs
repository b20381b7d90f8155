//! The connector's authentication, `test()` and error handling,
//! through the real host against the simulator.

use scanner_contract::{PluginError, SettingValue};
use scanner_runtime::{RetryPolicy, RuntimeError};
use scanner_tests::{TestEnv, expected_open, wiz_settings, wiz_settings_with};
use std::collections::BTreeSet;
use std::time::Duration;
use wiz_sim::{Fault, Faults, SimClient, SimConfig, Simulator};

const SECRET: &str = "sim-client-secret";

fn imported(runtime: &scanner_runtime::Runtime) -> BTreeSet<String> {
    scanner_tests::open_ids(runtime, "t")
}

/// Settings of a tenant that imports code-repository findings only: one
/// shard, so its requests, and the faults scripted for them, come in order.
fn one_shard(sim: &Simulator) -> scanner_contract::Settings {
    let mut settings = wiz_settings(sim);
    settings.insert("scan-container-images".into(), SettingValue::Boolean(false));
    settings
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
    let env = TestEnv::new(config);
    let (sim, runtime) = (env.sim(), env.runtime());

    let ok = runtime
        .connect(
            "t",
            "wiz",
            &wiz_settings(sim),
            &scanner_tests::loopback_grants(),
        )
        .await
        .expect("good credentials");
    assert!(ok.summary.contains("authenticated"), "{ok:?}");

    let err = runtime
        .connect(
            "t2",
            "wiz",
            &wiz_settings_with(sim, "sim-client-id", "wrong"),
            &scanner_tests::loopback_grants(),
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
            &wiz_settings_with(sim, &limited.id, &limited.secret),
            &scanner_tests::loopback_grants(),
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
    let mut wrong = wiz_settings(sim);
    wrong.insert(
        "api-endpoint".into(),
        SettingValue::Text(format!("{}/not-graphql", sim.base_url())),
    );
    let err = runtime
        .connect("t4", "wiz", &wrong, &scanner_tests::loopback_grants())
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
    let mut unreachable = wiz_settings(sim);
    unreachable.insert(
        "api-endpoint".into(),
        SettingValue::Text(format!("http://127.0.0.1:{port}/graphql")),
    );
    let err = runtime
        .connect("t5", "wiz", &unreachable, &scanner_tests::loopback_grants())
        .await
        .expect_err("unreachable endpoint");
    // A refused connection is usually passing (a restart, a deploy): it is
    // retried, not reported as a configuration problem.
    match &err {
        RuntimeError::Plugin(PluginError::Transient { message, .. }) => assert_eq!(
            message,
            &format!("cannot reach http://127.0.0.1:{port}/graphql: connection refused")
        ),
        other => panic!("a refused connection must be transient, got {other:?}"),
    }
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
async fn an_unreachable_token_endpoint_is_a_network_error_not_bad_credentials() {
    let env = TestEnv::new(SimConfig {
        findings: 10,
        ..SimConfig::default()
    });
    let dead = std::net::TcpListener::bind("127.0.0.1:0").expect("port");
    let port = dead.local_addr().expect("addr").port();
    drop(dead);
    let (sim, runtime) = (env.sim(), env.runtime());
    let mut settings = wiz_settings(sim);
    let token_url = format!("http://127.0.0.1:{port}/oauth/token");
    settings.insert("auth-url".into(), SettingValue::Text(token_url.clone()));
    let err = runtime
        .connect("t", "wiz", &settings, &scanner_tests::loopback_grants())
        .await
        .expect_err("nothing listens at the token URL");
    match &err {
        RuntimeError::Plugin(PluginError::Transient { message, .. }) => {
            assert_eq!(
                message,
                &format!("cannot reach {token_url}: connection refused")
            )
        }
        other => panic!("a refused connection must be transient, got {other:?}"),
    }
    assert!(!err.needs_attention(), "{err}");
}

#[tokio::test]
async fn the_token_request_carries_its_length_for_servers_that_read_no_chunked_body() {
    // The simulator's token endpoint, like Python's `http.server`, reads
    // no chunked body: without Content-Length the form is empty and the
    // credentials unknown.
    let env = TestEnv::connected(SimConfig {
        findings: 600,
        ..SimConfig::default()
    })
    .await;
    let (sim, runtime) = (env.sim(), env.runtime());
    runtime.scan("t", &()).await.expect("scan");
    assert_eq!(imported(runtime), expected_open(sim, true, true));
    assert!(
        sim.requests()
            .iter()
            .filter(|r| r.path == "/oauth/token")
            .all(|r| r.status == 200),
        "every token request was read"
    );
}

#[tokio::test]
async fn a_server_that_never_answers_times_out_as_a_transient_error_naming_the_url() {
    let env = TestEnv::new(SimConfig {
        findings: 2500,
        ..SimConfig::default()
    })
    .with_runtime(|r| {
        r.with_retry(RetryPolicy {
            max_retries_per_page: 2,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(5),
            ..RetryPolicy::default()
        })
    });
    let (sim, runtime) = (env.sim(), env.runtime());
    let mut settings = one_shard(sim);
    settings.insert("request-timeout-s".into(), SettingValue::Text("1".into()));
    runtime
        .connect("t", "wiz", &settings, &scanner_tests::loopback_grants())
        .await
        .expect("connect");

    // Stuck for longer than the retries last: the scan fails, retryable.
    sim.set_faults(Faults {
        script: vec![Fault::Hang, Fault::Hang, Fault::Hang],
        ..Faults::default()
    });
    let err = runtime.scan("t", &()).await.expect_err("never answered");
    assert_eq!(err.kind(), "transient", "{err}");
    assert!(!err.needs_attention(), "{err}");
    let text = err.to_string();
    assert!(
        text.contains(&format!(
            "request to {} timed out after 1 s",
            sim.api_endpoint()
        )),
        "{text}"
    );

    // Stuck once: the retry completes the scan.
    sim.set_faults(Faults {
        script: vec![Fault::Hang],
        ..Faults::default()
    });
    let report = runtime.scan("t", &()).await.expect("scan completes");
    assert_eq!(report.retries, 1);
    assert_eq!(imported(runtime), expected_open(sim, true, false));
}

#[tokio::test]
async fn garbled_answers_mid_scan_are_fetched_again_to_an_exact_import() {
    let env = TestEnv::new(SimConfig {
        findings: 2500,
        ..SimConfig::default()
    });
    let (sim, runtime) = (env.sim(), env.runtime());
    runtime
        .connect(
            "t",
            "wiz",
            &one_shard(sim),
            &scanner_tests::loopback_grants(),
        )
        .await
        .expect("connect");
    // A 429 first, so the garbled answers come mid-scan.
    sim.set_faults(Faults {
        script: vec![
            Fault::RateLimited {
                retry_after: Some(0),
            },
            Fault::Malformed,
            Fault::Truncated,
        ],
        ..Faults::default()
    });
    let env = env.with_runtime(|r| r.with_retry(fast_retries()));
    let (sim, runtime) = (env.sim(), env.runtime());
    let report = runtime.scan("t", &()).await.expect("scan completes");
    assert_eq!(report.retries, 1, "only the 429 reached the host");
    assert_eq!(imported(runtime), expected_open(sim, true, false));
}

#[tokio::test]
async fn expiring_and_revoked_tokens_lose_nothing() {
    let env = TestEnv::connected(SimConfig {
        findings: 2500,
        // Shorter than the plugin's one-minute renewal margin: it is
        // renewed a quarter of its life early instead, not per request.
        token_ttl: Duration::from_secs(30),
        ..SimConfig::default()
    })
    .await;
    let (sim, runtime) = (env.sim(), env.runtime());
    // Revoke mid-scan: the page after the first is refused once.
    sim.set_faults(Faults {
        script: vec![Fault::RevokeTokens],
        ..Faults::default()
    });
    runtime.scan("t", &()).await.expect("scan");
    assert_eq!(imported(runtime), expected_open(sim, true, true));
    let tokens = sim
        .requests()
        .iter()
        .filter(|r| r.path == "/oauth/token")
        .count();
    // One at connect, and one for each of the two shards' requests the
    // revocation caught in flight; the short-lived token served every
    // other request (renewing it per request took one per page).
    let pages = sim
        .requests()
        .iter()
        .filter(|r| r.path == "/graphql")
        .count();
    assert!(pages >= 6, "{pages} GraphQL requests");
    assert!((2..=3).contains(&tokens), "{tokens} token requests");
}

#[tokio::test]
async fn rate_limits_and_server_errors_are_retried_to_a_complete_scan() {
    let env = TestEnv::new(SimConfig {
        findings: 2500,
        ..SimConfig::default()
    })
    .with_runtime(|r| r.with_retry(fast_retries()));
    let (sim, runtime) = (env.sim(), env.runtime());
    env.connect("t").await.expect("connect");
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
    assert_eq!(imported(runtime), expected_open(sim, true, true));
}

/// Rate limits spread over a long scan: each page has its own budget, so
/// a few 429s here and there never add up to a failed scan (a budget per
/// scan of one retry would fail this one at its second 429).
#[tokio::test]
async fn rate_limits_spread_over_a_long_scan_are_budgeted_per_page() {
    let env = TestEnv::new(SimConfig {
        findings: 12_000,
        ..SimConfig::default()
    })
    .with_runtime(|r| {
        r.with_retry(RetryPolicy {
            max_retries_per_page: 1,
            ..fast_retries()
        })
    });
    let (sim, runtime) = (env.sim(), env.runtime());
    runtime
        .connect(
            "t",
            "wiz",
            &one_shard(sim),
            &scanner_tests::loopback_grants(),
        )
        .await
        .expect("connect");
    sim.set_faults(Faults {
        rate_limit_every: Some(4),
        retry_after_secs: Some(0),
        ..Faults::default()
    });
    let report = runtime.scan("t", &()).await.expect("scan completes");
    assert!(report.retries >= 3, "{report:?}");
    assert!(report.pages >= 6, "{report:?}");
    assert_eq!(imported(runtime), expected_open(sim, true, false));
}

#[tokio::test]
async fn broken_answers_fail_the_scan_with_a_typed_error_and_resolve_nothing() {
    let env = TestEnv::new(SimConfig {
        findings: 2500,
        ..SimConfig::default()
    })
    .with_runtime(|r| r.with_retry(fast_retries()));
    let (sim, runtime) = (env.sim(), env.runtime());
    runtime
        .connect(
            "t",
            "wiz",
            &one_shard(sim),
            &scanner_tests::loopback_grants(),
        )
        .await
        .expect("connect");
    runtime.scan("t", &()).await.expect("first scan");
    let before = imported(runtime);
    for (faults, kind) in [
        // The plugin sends a garbled request twice more, then gives up.
        (vec![Fault::Malformed; 3], "protocol"),
        (vec![Fault::Truncated; 3], "protocol"),
        (
            vec![Fault::GraphqlError {
                code: "BAD_USER_INPUT".into(),
                message: "nope".into(),
            }],
            "request-rejected",
        ),
    ] {
        // A 429 first, so the broken answer arrives on a retried request.
        let mut script = vec![Fault::RateLimited {
            retry_after: Some(0),
        }];
        script.extend(faults);
        sim.set_faults(Faults {
            script,
            ..Faults::default()
        });
        let err = runtime.scan("t", &()).await.expect_err("broken answer");
        assert_eq!(err.kind(), kind, "{err}");
        assert_eq!(imported(runtime), before, "a failed scan resolves nothing");
    }
}

#[tokio::test]
async fn rate_limit_exhaustion_is_reported_not_silently_short() {
    let env = TestEnv::new(SimConfig {
        findings: 600,
        faults: Faults {
            rate_limit_every: Some(1),
            retry_after_secs: Some(0),
            ..Faults::default()
        },
        ..SimConfig::default()
    })
    .with_runtime(|r| r.with_retry(fast_retries()));
    let (sim, runtime) = (env.sim(), env.runtime());
    // connect's test query is rate limited too: it reports it.
    let err = runtime
        .connect(
            "t",
            "wiz",
            &wiz_settings(sim),
            &scanner_tests::loopback_grants(),
        )
        .await
        .expect_err("limited");
    assert_eq!(err.kind(), "rate-limited", "{err}");
}

#[tokio::test]
async fn request_log_shows_the_secret_only_at_the_token_endpoint_and_pages_within_the_maximum() {
    let env = TestEnv::connected(SimConfig {
        findings: 3000,
        ..SimConfig::default()
    })
    .await;
    let (sim, runtime) = (env.sim(), env.runtime());
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
