//! `wiz-sim`: run the Wiz API simulator by hand.

use clap::Parser;
use std::time::Duration;
use wiz_sim::{Faults, SimClient, SimConfig, Simulator, UploadConfig};

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
    /// A token bucket per service account: at most N GraphQL requests per
    /// second (Wiz reportedly allows ~10).
    #[arg(long)]
    rate_limit_rps: Option<u32>,
    /// Polls of a new upload's system activity answered NOT_FOUND.
    #[arg(long, default_value_t = 1)]
    activity_hidden_polls: u32,
    /// Polls answered IN_PROGRESS after that.
    #[arg(long, default_value_t = 1)]
    activity_running_polls: u32,
    /// Serve HTTPS with a fresh self-signed certificate for 127.0.0.1 and
    /// localhost, written to this file (PEM) for clients to trust.
    #[arg(long)]
    tls_cert: Option<std::path::PathBuf>,
}

/// The environment variable the printed `connect` line reads the client
/// secret from.
const SECRET_VAR: &str = "WIZ_SIM_SECRET";

/// `text` as one POSIX shell word: bare when it holds only characters the
/// shell leaves alone, else single-quoted.
fn shell_quote(text: &str) -> String {
    let plain = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=@%+,".contains(c));
    if plain {
        text.to_string()
    } else {
        format!("'{}'", text.replace('\'', "'\\''"))
    }
}

/// PEM text of one DER certificate.
fn pem(der: &[u8]) -> String {
    use base64::Engine as _;
    let text = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in text.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
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
            secret: args.client_secret.clone(),
            scopes: SimClient::ALL_SCOPES.map(String::from).to_vec(),
        }],
        faults: Faults {
            rate_limit_every: args.rate_limit_every,
            retry_after_secs: args.retry_after_s,
            rate_limit_rps: args.rate_limit_rps,
            ..Faults::default()
        },
        tls: args.tls_cert.is_some(),
        uploads: UploadConfig {
            hidden_polls: args.activity_hidden_polls,
            running_polls: args.activity_running_polls,
            ..UploadConfig::default()
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
    if let (Some(path), Some(der)) = (&args.tls_cert, sim.certificate_der()) {
        std::fs::write(path, pem(der))?;
        println!("  certificate:  {} (PEM)", path.display());
    }
    // Lines a user can paste as they are: the secret goes through the
    // environment, the way the CLI accepts secrets, never on its command line.
    let ca_cert = match &args.tls_cert {
        Some(path) => format!(" --ca-cert {}", shell_quote(&path.display().to_string())),
        None => String::new(),
    };
    println!("  connect a tenant `sim` to it with these two lines:");
    println!(
        "    export {SECRET_VAR}={}",
        shell_quote(&args.client_secret)
    );
    println!(
        "    scanner-host{ca_cert} connect sim --plugin wiz --allow-requested --allow-private-network --set api-endpoint={} --set auth-url={} --set client-id={} --secret client-secret=env:{SECRET_VAR}",
        shell_quote(&sim.api_endpoint()),
        shell_quote(&sim.token_url()),
        shell_quote(&args.client_id),
    );
    println!(
        "  admin:        POST {0}/_sim/advance?seed=N, POST {0}/_sim/faults, GET {0}/_sim/requests, GET {0}/_sim/ingested, GET {0}/_sim/activities",
        sim.base_url()
    );
    tokio::signal::ctrl_c().await?;
    sim.shutdown();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::shell_quote;

    #[test]
    fn shell_quote_leaves_plain_words_bare_and_single_quotes_the_rest() {
        assert_eq!(
            shell_quote("http://127.0.0.1:8787/graphql"),
            "http://127.0.0.1:8787/graphql"
        );
        assert_eq!(shell_quote("sim-client-id"), "sim-client-id");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("a b$c"), "'a b$c'");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
    }
}
