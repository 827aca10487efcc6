//! A throwaway PostgreSQL server for tests: `initdb` in a temporary
//! directory, `postgres` on a free loopback port (as the `postgres` OS
//! user when the tests run as root, which PostgreSQL refuses to be), and
//! an admin role `cello` with a password, owning database `cello`.
//!
//! The server is stopped (and its directory removed) when the value is
//! dropped, or when the test process exits, whichever comes first: a
//! watcher shell stops it once the pipe from this process closes.
//!
//! A test of outages starts a server of its own and may [`Postgres::stop`]
//! and [`Postgres::restart`] it, on the same port and data directory; the
//! [`shared`] server is never stopped.

use std::io::Write;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The admin's password; the host derives each component role's from
/// the URL.
const PASSWORD: &str = "admin-secret";

/// A running PostgreSQL server.
pub struct Postgres {
    port: u16,
    dir: PathBuf,
    as_root: bool,
    watcher: Child,
    stop: Option<ChildStdin>,
}

/// The server the tests of this binary share, started on first use.
pub fn shared() -> &'static Postgres {
    static SERVER: OnceLock<Postgres> = OnceLock::new();
    SERVER.get_or_init(Postgres::start)
}

impl Postgres {
    /// Starts a new server and waits until it takes connections.
    pub fn start() -> Self {
        let bin = bin_dir();
        let dir = tempfile::Builder::new()
            .prefix("cello-pg-")
            .tempdir()
            .unwrap()
            .keep();
        let as_root = is_root();
        if as_root {
            run(Command::new("chown").arg("-R").arg("postgres:").arg(&dir));
        }
        let data = dir.join("data");
        let pwfile = dir.join("pw");
        std::fs::write(&pwfile, PASSWORD).unwrap();
        if as_root {
            run(Command::new("chown").arg("postgres:").arg(&pwfile));
        }
        run(as_postgres(as_root, &bin.join("initdb"))
            .args([
                "-U",
                "postgres",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
            ])
            .arg(format!("--pwfile={}", pwfile.display()))
            .arg("-D")
            .arg(&data)
            .stdout(Stdio::null()));
        let port = free_port();
        // The watcher starts the server, and stops it (fast shutdown) and
        // removes its files when its standard input closes.
        let user = if as_root {
            "runuser -u postgres -- "
        } else {
            ""
        };
        let script = format!(
            "{user}{postgres} -D {data} {options} >{dir}/log 2>&1 & \
             read _; {user}{pg_ctl} stop -D {data} -m fast -w >/dev/null 2>&1; wait; rm -rf {dir}",
            options = options(port, &dir),
            postgres = bin.join("postgres").display(),
            pg_ctl = bin.join("pg_ctl").display(),
            data = data.display(),
            dir = dir.display(),
        );
        let (watcher, stop) = super::watcher_shell(&script);
        let stop = Some(stop);
        let server = Self {
            port,
            dir: dir.clone(),
            as_root,
            watcher,
            stop,
        };
        let psql = |sql: &str| {
            as_postgres(as_root, &bin.join("psql"))
                .args(["-h", &dir.display().to_string(), "-p", &port.to_string()])
                .args([
                    "-U",
                    "postgres",
                    "-d",
                    "postgres",
                    "-v",
                    "ON_ERROR_STOP=1",
                    "-qc",
                    sql,
                ])
                .output()
                .expect("cannot run psql")
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !psql("SELECT 1").status.success() {
            assert!(
                Instant::now() < deadline,
                "PostgreSQL did not start: {}",
                std::fs::read_to_string(dir.join("log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        for sql in [
            format!("CREATE ROLE cello LOGIN SUPERUSER PASSWORD '{PASSWORD}'"),
            "CREATE DATABASE cello OWNER cello".to_string(),
        ] {
            let done = psql(&sql);
            assert!(
                done.status.success(),
                "{sql}: {}",
                String::from_utf8_lossy(&done.stderr)
            );
        }
        server
    }

    /// Stops the server (fast: connections are cut), keeping its data.
    pub fn stop(&self) {
        run(self.pg_ctl().args(["stop", "-m", "fast", "-w"]));
    }

    /// Starts the stopped server again, on the same port and data, and
    /// waits until it takes connections.
    pub fn restart(&self) {
        // The first log is the watcher's (root's, when the tests run as root).
        let log = self.dir.join("log.restarted");
        run(self
            .pg_ctl()
            .args([
                "start",
                "-w",
                "-t",
                "60",
                "-o",
                &options(self.port, &self.dir),
            ])
            .arg("-l")
            .arg(&log)
            .stdout(Stdio::null()));
    }

    fn pg_ctl(&self) -> Command {
        let mut command = as_postgres(self.as_root, &bin_dir().join("pg_ctl"));
        command.arg("-D").arg(self.dir.join("data"));
        command
    }

    /// The admin URL for the host's `[sql] postgres`.
    pub fn url(&self) -> String {
        format!("postgres://cello:{PASSWORD}@127.0.0.1:{}/cello", self.port)
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if let Some(mut stop) = self.stop.take() {
            let _ = stop.write_all(b"\n");
        }
        let _ = self.watcher.wait();
    }
}

/// The server's options: its port, socket directory and loopback
/// address, and durability traded for speed.
fn options(port: u16, dir: &std::path::Path) -> String {
    format!(
        "-p {port} -k {dir} -c listen_addresses=127.0.0.1 -c fsync=off \
         -c synchronous_commit=off -c full_page_writes=off -c max_connections=200",
        dir = dir.display()
    )
}

/// The newest installed PostgreSQL's programs (Debian's layout).
fn bin_dir() -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is not installed: `make setup` installs it")
        .filter_map(|entry| Some(entry.ok()?.path().join("bin")))
        .filter(|bin| bin.join("initdb").exists())
        .collect();
    versions.sort_by_key(|bin| {
        let version = bin.parent().and_then(|v| v.file_name()).unwrap_or_default();
        version.to_string_lossy().parse::<u32>().unwrap_or_default()
    });
    versions
        .pop()
        .expect("no PostgreSQL with initdb under /usr/lib/postgresql")
}

fn is_root() -> bool {
    let id = Command::new("id")
        .arg("-u")
        .output()
        .expect("cannot run id");
    String::from_utf8_lossy(&id.stdout).trim() == "0"
}

fn as_postgres(as_root: bool, program: &std::path::Path) -> Command {
    if as_root {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}

fn run(command: &mut Command) {
    let output = command.output().expect("cannot run a PostgreSQL tool");
    assert!(
        output.status.success(),
        "{command:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}
