//! How fast the simulator serves a full scan: 100 000 findings at 500 per
//! page over real HTTP on loopback, the query the connector sends.
//! Run with `cargo bench -p wiz-sim`.

use serde_json::{Value, json};
use std::time::Instant;
use wiz_plugin::wiz::FINDINGS_QUERY;
use wiz_sim::{SimConfig, Simulator};

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
    let token: Value =
        serde_json::from_str(&r.body_mut().read_to_string().expect("body")).expect("json");
    let token = token["access_token"].as_str().expect("token").to_string();
    let started = Instant::now();
    let (mut served, mut bytes, mut after) = (0usize, 0usize, Value::Null);
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
        let text = r
            .body_mut()
            .with_config()
            .limit(64 << 20)
            .read_to_string()
            .expect("body");
        bytes += text.len();
        let v: Value = serde_json::from_str(&text).expect("json");
        let conn = &v["data"]["vulnerabilityFindings"];
        served += conn["nodes"].as_array().map_or(0, Vec::len);
        if conn["pageInfo"]["hasNextPage"] != true {
            break;
        }
        after = conn["pageInfo"]["endCursor"].clone();
    }
    let secs = started.elapsed().as_secs_f64();
    println!("| measure | value |");
    println!("|---|---|");
    println!(
        "| dataset of {findings} generated in | {:.0} ms |",
        generated.as_secs_f64() * 1e3
    );
    println!("| findings served (500/page) | {served} |");
    println!("| wall time | {secs:.2} s |");
    println!("| findings/s served | {:.0} |", served as f64 / secs);
    println!("| response bytes | {:.1} MB |", bytes as f64 / 1e6);
}
