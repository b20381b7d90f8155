//! `demo`: a Wiz simulator, a demo tenant connected to it, and one scan.

use crate::args::{Format, Global};
use crate::output::{outln, print_findings, print_report, scan_with_progress};
use crate::setup::build_runtime;
use anyhow::{Context, bail};
use scanner_contract::{Secret, SettingValue, Settings};
use scanner_runtime::Grants;
use scanner_store::{FindingQuery, StatusFilter};
use std::io::Write;
use std::process::ExitCode;

/// The Wiz simulator as a child process for the demo, killed when dropped.
///
/// The simulator is a test server: the shipped binary does not link it, the
/// demo starts the `wiz-sim` program that is built and installed beside it.
struct DemoSimulator {
    child: std::process::Child,
    api_endpoint: String,
    token_url: String,
    client_id: String,
    client_secret: String,
}

impl DemoSimulator {
    /// Starts `wiz-sim` from this program's folder and reads its endpoints.
    fn start(findings: usize, seed: u64) -> anyhow::Result<Self> {
        use std::io::BufRead;
        let program = std::env::current_exe()
            .context("finding this program's folder")?
            .with_file_name("wiz-sim");
        if !program.is_file() {
            bail!(
                "the demo runs the Wiz simulator `wiz-sim` from this program's folder ({}), and it is not there: build both with `cargo build -p scanner-host -p wiz-sim` (or `bash scripts/demo.sh`)",
                program.display()
            );
        }
        // A fresh client secret per run: the simulator is throwaway, but a
        // secret shared by every demo would be one more to explain.
        let client_secret = format!("demo-{:032x}", rand::random::<u128>());
        let mut child = std::process::Command::new(&program)
            .args(["--port", "0", "--findings", &findings.to_string()])
            .args([
                "--seed",
                &seed.to_string(),
                "--client-secret",
                &client_secret,
            ])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", program.display()))?;
        let stdout = child.stdout.take().context("the simulator's output")?;
        let mut sim = DemoSimulator {
            child,
            api_endpoint: String::new(),
            token_url: String::new(),
            client_id: String::new(),
            client_secret,
        };
        // It prints its endpoints, then an `admin:` line, then serves.
        for line in std::io::BufReader::new(stdout).lines() {
            let line = line.context("reading the simulator's output")?;
            let line = line.trim();
            let field = |name: &str| line.strip_prefix(name).map(|v| v.trim().to_string());
            if let Some(v) = field("API endpoint:") {
                sim.api_endpoint = v;
            } else if let Some(v) = field("auth URL:") {
                sim.token_url = v;
            } else if let Some(v) = field("client id:") {
                sim.client_id = v;
            } else if line.starts_with("admin:") {
                break;
            }
        }
        if sim.api_endpoint.is_empty() || sim.token_url.is_empty() || sim.client_id.is_empty() {
            bail!(
                "the simulator `{}` did not print its endpoints",
                program.display()
            );
        }
        Ok(sim)
    }
}

impl Drop for DemoSimulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the simulator, connects a demo tenant to it, scans, and shows
/// the counts and the worst findings.
pub(crate) async fn run(
    global: &Global,
    findings: usize,
    seed: u64,
    format: Format,
) -> anyhow::Result<ExitCode> {
    let sim = DemoSimulator::start(findings, seed)?;
    eprintln!(
        "Wiz simulator at {} with {findings} findings (seed {seed})",
        sim.api_endpoint
    );
    let runtime = build_runtime(global, true)?;
    let tenant = "demo";
    let mut settings = Settings::new();
    settings.insert(
        "api-endpoint".into(),
        SettingValue::Text(sim.api_endpoint.clone()),
    );
    settings.insert("auth-url".into(), SettingValue::Text(sim.token_url.clone()));
    settings.insert(
        "client-id".into(),
        SettingValue::Text(sim.client_id.clone()),
    );
    settings.insert(
        "client-secret".into(),
        SettingValue::Secret(Secret::new(sim.client_secret.clone())),
    );
    // The demo's own simulator, started above on 127.0.0.1: its origins and
    // the private network are granted explicitly.
    let grants = Grants::requested().with_private_network();
    let connection = runtime.connect(tenant, "wiz", &settings, &grants).await?;
    eprintln!("connected `{tenant}`: {}", connection.summary);
    let started = std::time::Instant::now();
    let report = scan_with_progress(&runtime, tenant, scanner_runtime::ScanRequest::Full).await?;
    let elapsed = started.elapsed();
    eprintln!("scan took {:.2}s", elapsed.as_secs_f64());
    let mut rows = runtime
        .require_database("the demo")?
        .findings(&FindingQuery {
            tenant: Some(tenant.into()),
            status: StatusFilter::Open,
            include_unmapped: true,
            ..FindingQuery::default()
        })?;
    let count = |kind: &str| rows.iter().filter(|r| r.kind == kind).count();
    let (open, code, images) = (
        rows.len(),
        count("code-dependency"),
        count("container-image"),
    );
    // The store lists the worst first: the first ten are the top ten.
    rows.truncate(10);
    if format == Format::Json {
        // One JSON document on stdout, nothing before it.
        let body = serde_json::json!({
            "scan": report,
            "open_findings": {"total": open, "code-dependency": code, "container-image": images},
            "top_findings": rows,
        });
        outln!("{}", serde_json::to_string_pretty(&body)?);
    } else {
        print_report(&report)?;
        outln!("open findings: {open} ({code} code-dependency, {images} container-image)");
        outln!("top findings:");
        print_findings(&rows, format)?;
    }
    drop(sim);
    Ok(ExitCode::SUCCESS)
}
