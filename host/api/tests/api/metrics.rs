//! `GET /metrics`: open without a token, counting what the runtime did as
//! the store recorded it, and naming no tenant.

use crate::support::TestApi;
use hyper::StatusCode;
use scanner_store::{FindingQuery, StatusFilter};
use scanner_tests::wiz_settings_with;
use std::collections::BTreeMap;
use wiz_sim::SimConfig;

/// A tenant name no metric could contain by chance.
const TENANT: &str = "metrics-tenant-zq7";

/// The samples of an OpenMetrics text exposition, keyed by the metric name
/// with its labels as written (`name{a="b"}`); panics on a line that is
/// not a comment, a sample or the closing `# EOF`.
fn samples(text: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    let mut ended = false;
    for line in text.lines() {
        assert!(!ended, "a line after `# EOF`: {line:?}");
        if line == "# EOF" {
            ended = true;
            continue;
        }
        if let Some(comment) = line.strip_prefix("# ") {
            let kind = comment.split(' ').next().unwrap_or_default();
            assert!(
                ["HELP", "TYPE", "UNIT"].contains(&kind),
                "unknown comment: {line:?}"
            );
            continue;
        }
        let (key, rest) = split_sample(line);
        // A timestamp may follow the value; this exposition has none.
        let value = rest.split(' ').next().unwrap_or_default();
        let value: f64 = value
            .parse()
            .unwrap_or_else(|e| panic!("{line:?}: value {value:?}: {e}"));
        assert!(
            out.insert(key.to_string(), value).is_none(),
            "sample twice: {line:?}"
        );
    }
    assert!(ended, "no `# EOF` at the end");
    out
}

/// `name{labels}` and what follows its space. Label values are quoted and
/// may hold spaces, braces and escaped quotes.
fn split_sample(line: &str) -> (&str, &str) {
    let name_end = line
        .find(['{', ' '])
        .unwrap_or_else(|| panic!("no value: {line:?}"));
    let name = &line[..name_end];
    assert!(
        !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
        "bad metric name in {line:?}"
    );
    let mut end = name_end;
    if line[name_end..].starts_with('{') {
        let (mut quoted, mut escaped) = (false, false);
        let mut close = None;
        for (i, c) in line[name_end..].char_indices() {
            match (quoted, escaped, c) {
                (true, true, _) => escaped = false,
                (true, false, '\\') => escaped = true,
                (_, false, '"') => quoted = !quoted,
                (false, _, '}') => {
                    close = Some(name_end + i + 1);
                    break;
                }
                _ => {}
            }
        }
        end = close.unwrap_or_else(|| panic!("unclosed labels: {line:?}"));
    }
    let rest = line[end..]
        .strip_prefix(' ')
        .unwrap_or_else(|| panic!("no space before the value: {line:?}"));
    (&line[..end], rest)
}

/// `GET /metrics` without a token: 200 with OpenMetrics text, and its
/// samples.
async fn scrape(api: &TestApi) -> (String, BTreeMap<String, f64>) {
    let answer = api.request("GET", "/metrics", None).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    assert_eq!(
        answer.content_type.as_deref(),
        Some("application/openmetrics-text; version=1.0.0; charset=utf-8")
    );
    let parsed = samples(&answer.text);
    (answer.text, parsed)
}

fn value(samples: &BTreeMap<String, f64>, key: &str) -> f64 {
    *samples
        .get(key)
        .unwrap_or_else(|| panic!("no sample {key} in {samples:?}"))
}

/// How many findings of `status` the store lists.
fn stored(api: &TestApi, status: StatusFilter) -> f64 {
    api.store()
        .findings(&FindingQuery {
            status,
            include_unmapped: true,
            ..Default::default()
        })
        .expect("findings")
        .len() as f64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scan_is_counted_as_the_store_recorded_it_without_a_token_or_a_tenant_name() {
    let api = TestApi::start(700).await;
    let (_, before) = scrape(&api).await;
    assert_eq!(value(&before, "scanner_pages_stored_total"), 0.0);
    assert_eq!(
        value(
            &before,
            "scanner_scans_finished_total{outcome=\"completed\"}"
        ),
        0.0
    );

    api.connect_and_scan(TENANT).await;
    let (text, after) = scrape(&api).await;

    // The first scan of a fresh store is scan 1.
    let summary = api
        .store()
        .scan_summary(1)
        .expect("summary")
        .expect("scan 1");
    assert!(summary.pages >= 2, "700 findings take several pages");
    assert_eq!(
        value(&after, "scanner_pages_stored_total"),
        summary.pages as f64
    );
    assert_eq!(
        value(&after, "scanner_records_stored_total"),
        (summary.new + summary.updated + summary.reopened) as f64
    );
    let (open, resolved) = (
        stored(&api, StatusFilter::Open),
        stored(&api, StatusFilter::Resolved),
    );
    assert!(open > 0.0);
    assert_eq!(value(&after, "scanner_findings{status=\"open\"}"), open);
    assert_eq!(
        value(&after, "scanner_findings{status=\"resolved\"}"),
        resolved
    );
    // A first scan stores every finding once.
    assert_eq!(
        value(&after, "scanner_records_stored_total"),
        open + resolved
    );
    assert_eq!(
        value(
            &after,
            "scanner_scans_finished_total{outcome=\"completed\"}"
        ),
        1.0
    );
    assert_eq!(
        value(&after, "scanner_scans_finished_total{outcome=\"failed\"}"),
        0.0
    );
    assert_eq!(value(&after, "scanner_scan_duration_seconds_count"), 1.0);
    assert_eq!(value(&after, "scanner_scans_running"), 0.0);
    // Shared with the other tests' runtimes (one engine per process), so
    // only its presence is certain here.
    assert!(after.contains_key("scanner_instances_live"));
    assert!(
        !text.contains(TENANT),
        "the open metrics name a tenant:\n{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_the_egress_policy_refuses_is_counted() {
    let api = TestApi::start(10).await;
    api.connect(TENANT).await;
    // The saved grants keep their origins but lose the private-network
    // allowance: the plugin's requests to the simulator on 127.0.0.1 are
    // refused after resolution.
    let integration = api
        .store()
        .integration(TENANT)
        .expect("integration")
        .expect("connected");
    api.store()
        .upsert_integration(
            TENANT,
            &integration.plugin,
            &integration.settings,
            &integration.egress,
            time::OffsetDateTime::now_utc(),
        )
        .expect("save the grants without the allowance");
    let (_, before) = scrape(&api).await;

    api.runtime
        .test(TENANT)
        .await
        .expect_err("the connection test cannot reach the simulator");
    let (text, after) = scrape(&api).await;

    // The engine's totals are shared with the other tests of this process,
    // which may add to them meanwhile: at least this test's denial.
    assert!(
        value(&after, "scanner_egress_denied_total")
            >= value(&before, "scanner_egress_denied_total") + 1.0,
        "{text}"
    );
    assert!(!text.contains(TENANT), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_the_plugin_answers_is_counted_by_its_kind() {
    let api = TestApi::start(10).await;
    let key = "scanner_plugin_errors_total{kind=\"authentication-failed\"}";
    let (_, before) = scrape(&api).await;
    assert_eq!(before.get(key), None, "no such error yet");
    let client = &SimConfig::default().clients[0];
    let wrong = wiz_settings_with(&api.sim, &client.id, "not-the-secret");
    api.runtime
        .connect(TENANT, "wiz", &wrong, &scanner_tests::loopback_grants())
        .await
        .expect_err("a wrong secret fails the connection test");
    let (text, after) = scrape(&api).await;
    assert_eq!(value(&after, key), 1.0, "{text}");
    assert!(!text.contains(TENANT), "{text}");
    assert!(!text.contains("not-the-secret"), "{text}");
}
