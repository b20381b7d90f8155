//! `wiz-sim`: run the Wiz API simulator by hand.

use clap::Parser;
use std::time::Duration;
use wiz_sim::{Faults, SimClient, SimConfig, Simulator};

/// A local Wiz API simulator on 127.0.0.1.
#[derive(Parser)]
#[command(name = "wiz-sim", version)]
struct Args {
    /// Port (0: any free port).
    #[arg(long, default_value_t = 8787)]
    port: u16,
    /// Findings in the tenant.
    #[arg(long, default_value_t = 100_000)]
    findings: usize,
    /// Dataset seed.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Accepted client id.
    #[arg(long, default_value = "sim-client-id")]
    client_id: String,
    /// Accepted client secret.
    #[arg(long, default_value = "sim-client-secret")]
    client_secret: String,
    /// Added latency per response, in milliseconds.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Token lifetime in seconds.
    #[arg(long, default_value_t = 3600)]
    token_ttl_s: u64,
    /// Largest page size accepted.
    #[arg(long, default_value_t = 500)]
    max_page_size: usize,
    /// Answer every Nth GraphQL request with 429.
    #[arg(long)]
    rate_limit_every: Option<u64>,
    /// Retry-After seconds of those 429s.
    #[arg(long)]
    retry_after_s: Option<u32>,
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let config = SimConfig {
        port: args.port,
        findings: args.findings,
        seed: args.seed,
        max_page_size: args.max_page_size,
        token_ttl: Duration::from_secs(args.token_ttl_s),
        latency: Duration::from_millis(args.latency_ms),
        clients: vec![SimClient {
            id: args.client_id.clone(),
            secret: args.client_secret,
            scopes: vec!["read:vulnerabilities".into(), "read:resources".into()],
        }],
        faults: Faults {
            rate_limit_every: args.rate_limit_every,
            retry_after_secs: args.retry_after_s,
            script: Vec::new(),
        },
    };
    let sim = Simulator::start(config).await?;
    println!(
        "Wiz simulator with {} findings (seed {})",
        args.findings, args.seed
    );
    println!("  API endpoint: {}", sim.api_endpoint());
    println!("  auth URL:     {}", sim.token_url());
    println!("  client id:    {}", args.client_id);
    println!(
        "  admin:        POST {0}/_sim/advance?seed=N, POST {0}/_sim/faults, GET {0}/_sim/requests",
        sim.base_url()
    );
    tokio::signal::ctrl_c().await?;
    sim.shutdown();
    Ok(())
}
