//! One pass over a page (`fetch-findings`: parse + map), the same client
//! code natively and in the component, per record: shared by the `plugin`
//! and `side_by_side` benches.

use scanner_contract::{PageRequest, RawRecord};
use scanner_engine::SourceInstance;
use std::time::{Duration, Instant};
use wiz_sim::Simulator;

/// Per-record cost of one pass, natively and as guest CPU in the component.
pub struct OnePass {
    /// Records each side returned, summed over the rounds (equal on both).
    pub records: u64,
    /// Native wall time over all rounds (single-threaded, CPU-bound).
    pub native: Duration,
    /// The component's guest CPU time over all rounds, reading the body
    /// through wasi:http included.
    pub guest_cpu: Duration,
}

impl OnePass {
    /// Native µs per record.
    pub fn native_us(&self) -> f64 {
        self.native.as_secs_f64() * 1e6 / self.records as f64
    }

    /// Component µs per record (guest CPU).
    pub fn component_us(&self) -> f64 {
        self.guest_cpu.as_secs_f64() * 1e6 / self.records as f64
    }

    /// Component / native.
    pub fn ratio(&self) -> f64 {
        self.guest_cpu.as_secs_f64() / self.native.as_secs_f64()
    }
}

/// Fetches the first page `rounds` times through `instance` (configured
/// against `sim`, unpaced) and parses the same page, held in memory, as
/// often with the same client code compiled natively. `records` is that
/// page's records, from an earlier `fetch_page`.
pub async fn measure(
    instance: &mut SourceInstance,
    sim: &Simulator,
    records: &[RawRecord],
    rounds: usize,
) -> OnePass {
    let kinds = wiz_plugin::mapping::Kinds {
        sca: true,
        images: true,
    };
    let n = records.len();
    // The component fetches the page from the simulator each round; its
    // guest CPU time (parse, map, copy out, and reading the body through
    // wasi:http) is what is compared. Natively the same client code parses
    // the same page from memory.
    let mut guest_cpu = Duration::ZERO;
    let mut one_pass_records = 0u64;
    for _ in 0..rounds {
        let page = instance
            .fetch_findings(&PageRequest {
                cursor: None,
                updated_since: None,
            })
            .await
            .expect("engine")
            .expect("page");
        guest_cpu += instance.last_call_cpu();
        one_pass_records += page.records();
    }
    let page_body = format!(
        r#"{{"data":{{"vulnerabilityFindings":{{"nodes":[{}],"pageInfo":{{"hasNextPage":false,"endCursor":null}},"totalCount":{n}}}}}}}"#,
        records
            .iter()
            .map(|r| r.body.as_str())
            .collect::<Vec<_>>()
            .join(",")
    );
    let native_env = MemoryPage(page_body.into_bytes());
    let config = wiz_plugin::config::parse(&[
        native_text("api-endpoint", &sim.api_endpoint()),
        native_text("auth-url", &sim.token_url()),
        native_text("client-id", "id"),
        wiz_plugin::types::Setting {
            key: "client-secret".into(),
            value: wiz_plugin::types::SettingValue::Secret("secret".into()),
        },
    ])
    .expect("config");
    let client = wiz_plugin::wiz::Client::new(&native_env, &config);
    let started = Instant::now();
    let mut native_records = 0u64;
    for _ in 0..rounds {
        let page = client
            .fetch_findings(
                &wiz_plugin::source::PageRequest {
                    cursor: None,
                    updated_since: None,
                },
                &mut true,
                &mut wiz_plugin::wiz::InFlight::default(),
                kinds,
            )
            .expect("native page");
        native_records += page.findings.len() as u64 + u64::from(page.skipped);
    }
    let native = started.elapsed();
    assert_eq!(native_records, one_pass_records);
    OnePass {
        records: one_pass_records,
        native,
        guest_cpu,
    }
}

fn native_text(key: &str, value: &str) -> wiz_plugin::types::Setting {
    wiz_plugin::types::Setting {
        key: key.into(),
        value: wiz_plugin::types::SettingValue::Text(value.into()),
    }
}

/// The connector's environment, natively, answering every GraphQL request
/// with one page held in memory and every branch lookup with one repository.
struct MemoryPage(Vec<u8>);

impl wiz_plugin::wiz::Env for MemoryPage {
    type Pending = wiz_plugin::wiz::Response;

    fn wait(
        &self,
        pending: wiz_plugin::wiz::Response,
    ) -> Result<wiz_plugin::wiz::Response, wiz_plugin::wiz::TransportError> {
        Ok(pending)
    }

    fn pace(&self, _: Duration) {}

    fn start(
        &self,
        request: &wiz_plugin::wiz::Request,
    ) -> Result<wiz_plugin::wiz::Response, wiz_plugin::wiz::TransportError> {
        let body = if request.url.contains("oauth") {
            br#"{"access_token":"t","token_type":"Bearer","expires_in":86400}"#.to_vec()
        } else {
            self.0.clone()
        };
        Ok(wiz_plugin::wiz::Response {
            status: 200,
            headers: Vec::new(),
            body,
        })
    }

    fn get(&self, _: &str) -> Option<Vec<u8>> {
        Some(br#"{"url":"https://github.com/org/repo","name":"org/repo","branch":"main"}"#.to_vec())
    }

    fn set(&self, _: &str, _: &[u8]) {}

    fn now(&self) -> u64 {
        1_700_000_000
    }

    fn log(&self, _: wiz_plugin::wiz::Level, _: &str, _: &[(&str, &str)]) {}
}
