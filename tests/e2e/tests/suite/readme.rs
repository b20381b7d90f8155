//! The README's "Using the CLI" walkthrough, run as a newcomer would paste
//! it: its fenced `sh` blocks in order, in one `bash -euo pipefail`, at the
//! workspace root, with the workspace's own debug build on `PATH` and every
//! file it writes in a temporary directory. Also the `connect` lines the
//! simulator prints, pasted as they are.

use scanner_tests::{SimProcess, host_bin, plugin_wasm, workspace_root};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The section whose `sh` blocks are run.
const SECTION: &str = "## Using the CLI";

/// A walkthrough that runs longer than this is killed: a command that hangs
/// must fail the test, not stall the suite.
const DEADLINE: Duration = Duration::from_secs(120);

/// One line of the assembled script and the README line it came from.
struct ScriptLine {
    text: String,
    readme_line: usize,
}

/// The lines of the fenced `sh` blocks of `section` in `markdown`, in order.
fn sh_blocks(markdown: &str, section: &str) -> Vec<ScriptLine> {
    let mut in_section = false;
    let mut in_block = false;
    let mut out = Vec::new();
    for (i, line) in markdown.lines().enumerate() {
        if line.starts_with("## ") && !in_block {
            in_section = line.trim_end() == section;
            continue;
        }
        if !in_section {
            continue;
        }
        if in_block {
            if line.trim_start().starts_with("```") {
                in_block = false;
            } else {
                out.push(ScriptLine {
                    text: line.to_string(),
                    readme_line: i + 1,
                });
            }
        } else if line.trim() == "```sh" {
            in_block = true;
        }
    }
    out
}

/// How a walkthrough run ended.
struct Run {
    status: ExitStatus,
    stdout: String,
    stderr: String,
    /// The failing command and its README line, from the ERR trap.
    failed: Option<String>,
}

/// Marks the ERR trap's report on stderr.
const FAILED_MARK: &str = "walkthrough-failed:";

/// Runs `lines` as one `bash -euo pipefail` script in `cwd` with `env`.
/// An ERR trap reports the failing command with its script line, mapped
/// back to the README; an EXIT trap kills background jobs (the simulator)
/// whatever happens; the whole process group is killed after [`DEADLINE`].
fn run_script(lines: &[ScriptLine], cwd: &Path, env: &[(&str, &Path)], scratch: &Path) -> Run {
    use std::os::unix::process::CommandExt;
    let prelude = [
        "trap 'kill $(jobs -p) 2>/dev/null || true' EXIT".to_string(),
        format!("trap 'echo \"{FAILED_MARK}$LINENO:$?:$BASH_COMMAND\" >&2' ERR"),
    ];
    let mut script = prelude.join("\n");
    for l in lines {
        script.push('\n');
        script.push_str(&l.text);
    }
    script.push('\n');
    let script_path = scratch.join("walkthrough.sh");
    std::fs::write(&script_path, script).expect("write script");
    let stdout_path = scratch.join("walkthrough.out");
    let stderr_path = scratch.join("walkthrough.err");
    let mut command = Command::new("bash");
    command
        .args(["-euo", "pipefail"])
        .arg(&script_path)
        .current_dir(cwd)
        .env("PWD", cwd)
        .stdin(Stdio::null())
        // Files, not pipes: the background simulator inherits stderr, and
        // a pipe would stay open as long as it lives.
        .stdout(std::fs::File::create(&stdout_path).expect("stdout file"))
        .stderr(std::fs::File::create(&stderr_path).expect("stderr file"))
        .process_group(0);
    // The walkthrough sets its own database, cache and key; a developer's
    // settings must not leak in.
    for key in [
        "SCANNER_HOST_DB",
        "SCANNER_HOST_CACHE",
        "SCANNER_HOST_KEY",
        "SCANNER_HOST_KEY_FILE",
        "SCANNER_HOST_CA_CERTS",
        "SCANNER_HOST_PLUGINS",
        "SCANNER_HOST_BIN_DIR",
    ] {
        command.env_remove(key);
    }
    for (key, value) in env {
        command.env(key, value);
    }
    let mut child = command.spawn().expect("start bash");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for bash") {
            break status;
        }
        if started.elapsed() > DEADLINE {
            // The group holds bash and everything it started.
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", child.id())])
                .status();
            let _ = child.wait();
            panic!(
                "the walkthrough ran past {DEADLINE:?}; output so far:\n{}\n{}",
                std::fs::read_to_string(&stdout_path).unwrap_or_default(),
                std::fs::read_to_string(&stderr_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stdout = std::fs::read_to_string(&stdout_path).expect("read stdout");
    let stderr = std::fs::read_to_string(&stderr_path).expect("read stderr");
    let failed = stderr.lines().find_map(|l| {
        let rest = l.strip_prefix(FAILED_MARK)?;
        let (line, rest) = rest.split_once(':')?;
        let (code, command) = rest.split_once(':')?;
        let script_line: usize = line.parse().ok()?;
        // Script line 1 and 2 are the prelude.
        let readme_line = script_line
            .checked_sub(prelude.len() + 1)
            .and_then(|i| lines.get(i))
            .map_or_else(|| "?".to_string(), |l| l.readme_line.to_string());
        Some(format!(
            "README.md line {readme_line}: `{command}` exited with status {code}"
        ))
    });
    Run {
        status,
        stdout,
        stderr,
        failed,
    }
}

/// The workspace root without `..` components, so `$PWD` reads cleanly.
fn root() -> PathBuf {
    workspace_root().canonicalize().expect("workspace root")
}

/// The names in the workspace root, to check the walkthrough left it alone.
fn root_entries(root: &Path) -> std::collections::BTreeSet<String> {
    std::fs::read_dir(root)
        .expect("read workspace root")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn the_readme_walkthrough_runs_in_order_and_writes_only_to_its_temp_dir() {
    let root = root();
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README.md");
    let lines = sh_blocks(&readme, SECTION);
    // The walkthrough must keep covering what a newcomer needs.
    for command in [
        "plugins", "connect", "scan", "findings", "repos", "status", "test", "export",
    ] {
        let runs = |l: &ScriptLine| {
            let words: Vec<_> = l.text.split_whitespace().collect();
            words.windows(2).any(|w| w == ["scanner-host", command])
        };
        assert!(
            lines.iter().any(runs),
            "the walkthrough has no `scanner-host {command}`"
        );
    }
    let bin_dir = host_bin().parent().expect("target/debug").to_path_buf();
    let plugin = plugin_wasm();
    let tmp = tempfile::tempdir().expect("tempdir");
    let home = tmp.path().join("home");
    let tmpdir = tmp.path().join("tmp");
    let scratch = tmp.path().join("scratch");
    for d in [&home, &tmpdir, &scratch] {
        std::fs::create_dir(d).expect("mkdir");
    }
    let before = root_entries(&root);

    let run = run_script(
        &lines,
        &root,
        &[
            ("SCANNER_HOST_BIN_DIR", &bin_dir),
            ("SCANNER_HOST_PLUGINS", plugin),
            ("HOME", &home),
            ("TMPDIR", &tmpdir),
        ],
        &scratch,
    );

    assert!(
        run.status.success() && run.failed.is_none(),
        "{}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        run.failed
            .as_deref()
            .unwrap_or("the walkthrough failed without a failing command"),
        run.stdout,
        run.stderr
    );
    // The export reached the simulator and the platform took it.
    assert!(run.stdout.contains("exported "), "{}", run.stdout);
    // Its database and key went to the temp dir, not the repository.
    let written: Vec<_> = std::fs::read_dir(&tmpdir)
        .expect("read tmpdir")
        .flat_map(|work| {
            std::fs::read_dir(work.expect("entry").path())
                .into_iter()
                .flatten()
        })
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        written.iter().any(|n| n.ends_with(".db"))
            && written.iter().any(|n| n.ends_with(".db.key")),
        "no database and key in $work: {written:?}"
    );
    assert_eq!(
        root_entries(&root),
        before,
        "the walkthrough wrote to the repository"
    );
}

#[test]
fn a_failing_walkthrough_command_is_named_with_its_readme_line() {
    let markdown = "# x\n\n## Other\n\n```sh\nexit 9\n```\n\n## Using the CLI\n\ntext\n\n```sh\ntrue\n```\n\n```text\nnot run\n```\n\n```sh\nfalse --flag\necho after\n```\n\n## Next\n\n```sh\nexit 7\n```\n";
    let lines = sh_blocks(markdown, SECTION);
    let texts: Vec<_> = lines.iter().map(|l| l.text.as_str()).collect();
    assert_eq!(texts, ["true", "false --flag", "echo after"]);
    let tmp = tempfile::tempdir().expect("tempdir");
    let run = run_script(&lines, tmp.path(), &[], tmp.path());
    assert!(!run.status.success());
    let line = 1 + markdown
        .lines()
        .position(|l| l == "false --flag")
        .expect("the failing line");
    assert_eq!(
        run.failed,
        Some(format!(
            "README.md line {line}: `false --flag` exited with status 1"
        )),
        "{}",
        run.stderr
    );
    assert!(!run.stdout.contains("after"));
}

#[test]
fn the_simulators_printed_connect_lines_connect_a_tenant_when_pasted() {
    // A secret the shell would mangle unquoted.
    let secret = "it's a $ecret";
    let sim = SimProcess::start_debug(&["--findings", "10", "--client-secret", secret]);
    let pasted: Vec<_> = sim
        .output
        .iter()
        .skip_while(|l| !l.contains("connect a tenant"))
        .skip(1)
        .take_while(|l| !l.trim_start().starts_with("admin:"))
        .collect();
    assert_eq!(pasted.len(), 2, "{:?}", sim.output);
    assert!(pasted[0].trim_start().starts_with("export WIZ_SIM_SECRET="));
    assert!(
        !pasted[1].contains("$ecret") && pasted[1].contains("env:WIZ_SIM_SECRET"),
        "the secret is on the connect line: {}",
        pasted[1]
    );
    let lines: Vec<_> = pasted
        .iter()
        .map(|l| ScriptLine {
            text: (*l).clone(),
            readme_line: 0,
        })
        .chain(std::iter::once(ScriptLine {
            text: "scanner-host status".into(),
            readme_line: 0,
        }))
        .collect();
    let bin_dir = host_bin().parent().expect("target/debug").to_path_buf();
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let run = run_script(
        &lines,
        tmp.path(),
        &[
            ("PATH", Path::new(&path)),
            ("SCANNER_HOST_PLUGINS", plugin_wasm()),
            ("SCANNER_HOST_DB", &tmp.path().join("host.db")),
        ],
        tmp.path(),
    );
    assert!(
        run.status.success(),
        "{:?}\n{}\n{}",
        run.failed,
        run.stdout,
        run.stderr
    );
    assert!(run.stdout.contains("sim"), "{}", run.stdout);
    assert!(!run.stdout.contains(secret) && !run.stderr.contains(secret));
}
