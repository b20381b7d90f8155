//! A real PostgreSQL server for tests: `initdb` into a fresh temporary
//! directory, `pg_ctl start` on a free 127.0.0.1 port, one server per test
//! binary shared by the tests, each test in a database of its own. The
//! server is stopped and its directory removed when the test process
//! exits (or the [`PgServer`] is dropped).

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A PostgreSQL server of the tests' own.
pub struct PgServer {
    /// The directory holding the data directory and the log.
    root: PathBuf,
    data: PathBuf,
    bin: PathBuf,
    /// The port it listens on, on 127.0.0.1.
    pub port: u16,
    /// Whether initdb and pg_ctl run as `nobody` (the tests run as root,
    /// which the server refuses).
    as_nobody: bool,
    /// Whether `pg_stat_statements` is loaded.
    pub stat_statements: bool,
    /// The CA that signed the server's certificate (PEM), when TLS is on
    /// (`openssl` was there to make the certificates).
    pub ca_file: Option<PathBuf>,
    stopped: std::sync::atomic::AtomicBool,
}

static SERVER: OnceLock<PgServer> = OnceLock::new();
static DATABASES: AtomicUsize = AtomicUsize::new(0);

unsafe extern "C" {
    fn atexit(callback: extern "C" fn()) -> std::ffi::c_int;
    fn geteuid() -> u32;
}

/// Stop the shared server when the test process exits (statics are never
/// dropped).
extern "C" fn stop_shared_server() {
    if let Some(server) = SERVER.get() {
        server.stop();
    }
}

/// The test binary's server, started on first use.
pub fn server() -> &'static PgServer {
    SERVER.get_or_init(|| {
        let server = PgServer::start();
        // SAFETY: registers a plain function with the C library; it runs
        // once, at exit, and only stops the server.
        unsafe {
            atexit(stop_shared_server);
        }
        server
    })
}

/// The directory of the PostgreSQL binaries.
fn bindir() -> PathBuf {
    let mut candidates: Vec<PathBuf> = vec![PathBuf::from("/usr/lib/postgresql/15/bin")];
    if let Ok(entries) = std::fs::read_dir("/usr/lib/postgresql") {
        let mut others: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path().join("bin"))
            .collect();
        others.sort();
        others.reverse();
        candidates.extend(others);
    }
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output()
        && out.status.success()
    {
        candidates.push(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()));
    }
    if let Some(path) = std::env::var_os("PATH") {
        candidates.extend(std::env::split_paths(&path));
    }
    candidates
        .into_iter()
        .find(|dir| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file())
        .unwrap_or_else(|| {
            panic!(
                "the PostgreSQL server binaries (initdb, pg_ctl) are missing: \
                 apt-get install postgresql"
            )
        })
}

/// A port free on 127.0.0.1 now.
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local address").port()
}

/// The uid and gid of user `nobody`.
fn nobody() -> (u32, u32) {
    let id = |flag: &str| -> u32 {
        let out = Command::new("id")
            .args([flag, "nobody"])
            .output()
            .unwrap_or_else(|e| panic!("id {flag} nobody: {e}"));
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("id {flag} nobody: {e}"))
    };
    (id("-u"), id("-g"))
}

impl PgServer {
    /// initdb and start a server; panics saying what failed.
    pub fn start() -> PgServer {
        let bin = bindir();
        // SAFETY: a plain libc query without arguments.
        let as_nobody = unsafe { geteuid() } == 0;
        // Not `tempfile`'s 0700 directory: `nobody` must reach the data
        // directory inside it.
        let root = tempfile::Builder::new()
            .prefix("scanner-pg-")
            .tempdir_in(std::env::temp_dir())
            .expect("temporary directory")
            .keep();
        let data = root.join("data");
        std::fs::create_dir(&data).expect("data directory");
        if as_nobody {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755))
                .expect("open the temporary directory to nobody");
            let (uid, gid) = nobody();
            std::os::unix::fs::chown(&root, Some(uid), Some(gid)).expect("chown");
            std::os::unix::fs::chown(&data, Some(uid), Some(gid)).expect("chown");
        }
        let stat_statements = bin
            .parent()
            .is_some_and(|d| d.join("lib/pg_stat_statements.so").is_file());
        let port = free_port();
        let mut server = PgServer {
            root,
            data,
            bin,
            port,
            as_nobody,
            stat_statements,
            ca_file: None,
            stopped: std::sync::atomic::AtomicBool::new(false),
        };
        server.run(
            "initdb",
            &[
                "-D",
                &server.data.display().to_string(),
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ],
        );
        let mut options = format!(
            "-p {port} -c listen_addresses=127.0.0.1 -k {} -F -c full_page_writes=off \
             -c synchronous_commit=off -c max_connections=200",
            server.data.display()
        );
        if server.stat_statements {
            options.push_str(" -c shared_preload_libraries=pg_stat_statements");
        }
        if server.make_certificates() {
            // Relative to the data directory, where the key is the
            // server's own.
            options.push_str(" -c ssl=on -c ssl_cert_file=server.pem -c ssl_key_file=server.key");
            server.ca_file = Some(server.root.join("tls/ca.pem"));
        }
        server.run(
            "pg_ctl",
            &[
                "start",
                "-w",
                "-t",
                "60",
                "-D",
                &server.data.display().to_string(),
                "-l",
                &server.root.join("server.log").display().to_string(),
                "-o",
                &options,
            ],
        );
        server
    }

    /// A test CA and a server certificate for 127.0.0.1 it signed (the
    /// key and certificate in the data directory, the server's user's);
    /// false when `openssl` is missing.
    fn make_certificates(&self) -> bool {
        let tls = self.root.join("tls");
        if std::fs::create_dir(&tls).is_err() {
            return false;
        }
        let openssl = |args: &[&str]| {
            Command::new("openssl")
                .args(args)
                .current_dir(&tls)
                .output()
                .is_ok_and(|out| out.status.success())
        };
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        let made = openssl(
            &[
                &["req", "-x509", "-days", "2", "-subj", "/CN=scanner test CA"][..],
                &ec,
                &[
                    "-keyout",
                    "ca.key",
                    "-out",
                    "ca.pem",
                    "-addext",
                    "basicConstraints=critical,CA:TRUE",
                    "-addext",
                    "keyUsage=critical,keyCertSign,cRLSign",
                ],
            ]
            .concat(),
        ) && openssl(
            &[
                &["req", "-subj", "/CN=127.0.0.1"][..],
                &ec,
                &["-keyout", "server.key", "-out", "server.csr"],
            ]
            .concat(),
        ) && std::fs::write(
            tls.join("server.ext"),
            "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
             keyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
        )
        .is_ok()
            && openssl(&[
                "x509",
                "-req",
                "-days",
                "2",
                "-in",
                "server.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-extfile",
                "server.ext",
                "-out",
                "server.pem",
            ]);
        if !made {
            return false;
        }
        for name in ["server.pem", "server.key"] {
            let to = self.data.join(name);
            std::fs::copy(tls.join(name), &to).expect("copy the server's certificate");
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o600)).expect("chmod");
            if self.as_nobody {
                let (uid, gid) = nobody();
                std::os::unix::fs::chown(&to, Some(uid), Some(gid)).expect("chown");
            }
        }
        true
    }

    /// Run one of the server's programs (as `nobody` when root), panicking
    /// with its output when it fails.
    fn run(&self, program: &str, args: &[&str]) {
        let path = self.bin.join(program);
        let mut cmd = if self.as_nobody {
            let mut cmd = Command::new("runuser");
            cmd.args(["-u", "nobody", "--"]).arg(&path);
            cmd
        } else {
            Command::new(&path)
        };
        // A directory `nobody` can enter: the programs change to it.
        cmd.args(args).current_dir(&self.root);
        let out = cmd
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", path.display()));
        if !out.status.success() {
            let log = std::fs::read_to_string(self.root.join("server.log")).unwrap_or_default();
            panic!(
                "{program} failed ({}):\n{}\n{}\n{log}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    /// The URL of database `db`.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// A new empty database (with `pg_stat_statements` when loaded): its URL.
    pub async fn create_database(&self) -> String {
        let n = DATABASES.fetch_add(1, Ordering::Relaxed);
        let name = format!("test_{}_{n}", std::process::id());
        let admin = self.connect("postgres").await;
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create database");
        if self.stat_statements {
            self.connect(&name)
                .await
                .batch_execute("CREATE EXTENSION pg_stat_statements")
                .await
                .expect("pg_stat_statements");
        }
        self.url(&name)
    }

    /// [`PgServer::create_database`] for callers outside async code (a
    /// test's setup that builds a runtime synchronously): run on a thread
    /// of its own with a runtime of its own, so it also works from inside
    /// another runtime's task.
    pub fn create_database_blocking(&'static self) -> String {
        std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime to create the database on")
                .block_on(self.create_database())
        })
        .join()
        .expect("create the database")
    }

    /// The server's main process (`postmaster.pid`'s first line), for
    /// benchmarks that count what the server and its backends use.
    pub fn postmaster_pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.data.join("postmaster.pid"))
            .ok()?
            .lines()
            .next()?
            .trim()
            .parse()
            .ok()
    }

    /// A plain client on database `db` (its connection task spawned).
    pub async fn connect(&self, db: &str) -> tokio_postgres::Client {
        let (client, connection) = tokio_postgres::connect(&self.url(db), tokio_postgres::NoTls)
            .await
            .expect("connect to the test server");
        tokio::spawn(connection);
        client
    }

    /// Stop the server and remove its directory; once.
    pub fn stop(&self) {
        if self.stopped.swap(true, Ordering::SeqCst) {
            return;
        }
        let path = self.bin.join("pg_ctl");
        let mut cmd = if self.as_nobody {
            let mut cmd = Command::new("runuser");
            cmd.args(["-u", "nobody", "--"]).arg(&path);
            cmd
        } else {
            Command::new(&path)
        };
        let _ = cmd
            .args(["stop", "-m", "immediate", "-w", "-D"])
            .arg(&self.data)
            .current_dir(&self.root)
            .output();
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        self.stop();
    }
}
