//! How fast the simulator serves a full scan: 100 000 findings at 500 per
//! page over real HTTP on loopback, with the query the connector sends.
//! The client only checks the shape (`nodes` are skipped, not built), so
//! the figure is the simulator's. Two passes, to show the spread.
//! Run with `cargo bench -p wiz-sim`.

use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::json;
use std::time::Instant;
use wiz_plugin::wiz::FINDINGS_QUERY;
use wiz_sim::{SimConfig, Simulator};

#[derive(Deserialize)]
struct Response {
    data: Data,
}

#[derive(Deserialize)]
struct Data {
    #[serde(rename = "vulnerabilityFindings")]
    connection: Connection,
}

#[derive(Deserialize)]
struct Connection {
    nodes: Vec<IgnoredAny>,
    #[serde(rename = "pageInfo")]
    page_info: PageInfo,
}

#[derive(Deserialize)]
struct PageInfo {
    #[serde(rename = "hasNextPage")]
    has_next_page: bool,
    #[serde(rename = "endCursor")]
    end_cursor: Option<String>,
}

/// One full pass: (findings, bytes, seconds).
fn pass(sim: &Simulator, agent: &ureq::Agent, token: &str) -> (usize, usize, f64) {
    let started = Instant::now();
    let (mut served, mut bytes, mut after) = (0usize, 0usize, None::<String>);
    loop {
        let mut r = agent
            .post(&sim.api_endpoint())
            .header("content-type", "application/json")
            .header("authorization", &format!("Bearer {token}"))
            .send(
                json!({"query": FINDINGS_QUERY, "variables": {"first": 500, "after": after}})
                    .to_string(),
            )
            .expect("page");
        let body = r
            .body_mut()
            .with_config()
            .limit(64 << 20)
            .read_to_vec()
            .expect("body");
        bytes += body.len();
        let page: Response = serde_json::from_slice(&body).expect("a findings page");
        let conn = page.data.connection;
        served += conn.nodes.len();
        if !conn.page_info.has_next_page {
            break;
        }
        after = conn.page_info.end_cursor;
    }
    (served, bytes, started.elapsed().as_secs_f64())
}

fn main() {
    let findings = 100_000;
    let started = Instant::now();
    let sim = Simulator::start_background(SimConfig {
        findings,
        ..SimConfig::default()
    })
    .expect("sim");
    let generated = started.elapsed();
    let agent: ureq::Agent = ureq::Agent::config_builder().build().into();
    let mut r = agent
        .post(&sim.token_url())
        .header("content-type", "application/x-www-form-urlencoded")
        .send("grant_type=client_credentials&client_id=sim-client-id&client_secret=sim-client-secret&audience=wiz-api")
        .expect("token");
    let token: serde_json::Value =
        serde_json::from_str(&r.body_mut().read_to_string().expect("body")).expect("json");
    let token = token["access_token"].as_str().expect("token").to_string();
    let (served, bytes, cold) = pass(&sim, &agent, &token);
    let (again, _, warm) = pass(&sim, &agent, &token);
    assert_eq!(served, again, "both passes see every finding");
    println!("| measure | value |");
    println!("|---|---|");
    println!(
        "| dataset of {findings} generated in | {:.0} ms |",
        generated.as_secs_f64() * 1e3
    );
    println!("| findings served per pass (500/page) | {served} |");
    println!("| response bytes per pass | {:.1} MB |", bytes as f64 / 1e6);
    println!(
        "| pass 1 | {cold:.2} s, {:.0} findings/s |",
        served as f64 / cold
    );
    println!(
        "| pass 2 | {warm:.2} s, {:.0} findings/s |",
        served as f64 / warm
    );
}
