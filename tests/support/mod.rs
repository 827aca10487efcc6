//! Starting the real `cello-host` binary on an ephemeral port over a
//! directory of real components, and talking to it over real HTTP.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

pub mod admin;
pub mod browser;
pub mod postgres;
pub mod redis;
pub mod sql;
pub mod upstream;

/// Where the build script put the components.
pub fn components_dir() -> PathBuf {
    PathBuf::from(cello_test_components::DIR)
}

/// The compile cache every test shares, so a component compiles once per run.
fn state_dir() -> PathBuf {
    components_dir().parent().unwrap().join("test-state")
}

/// How long a host may take to start: a cold compile of a Python component
/// while other tests compile too.
const START_TIMEOUT: Duration = Duration::from_secs(300);

/// A directory of components for one test.
pub struct Components {
    dir: tempfile::TempDir,
    /// The key-value store's directory, private to the test.
    kv: tempfile::TempDir,
    /// Where the test's tenants are kept.
    tenants: tempfile::TempDir,
}

impl Components {
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("temp dir"),
            kv: tempfile::tempdir().expect("temp dir"),
            tenants: tempfile::tempdir().expect("temp dir"),
        }
    }

    /// Adds built component `name` (as `NAME.wasm`).
    pub fn with(self, name: &str) -> Self {
        self.with_as(name, name, None)
    }

    /// Adds built component `name` with sidecar text.
    pub fn with_sidecar(self, name: &str, sidecar: &str) -> Self {
        self.with_as(name, name, Some(sidecar))
    }

    /// Adds built component `name` under the name `as_name`.
    pub fn with_as(self, name: &str, as_name: &str, sidecar: Option<&str>) -> Self {
        let source = components_dir().join(format!("{name}.wasm"));
        std::fs::copy(&source, self.path().join(format!("{as_name}.wasm")))
            .unwrap_or_else(|e| panic!("{}: {e}", source.display()));
        if let Some(sidecar) = sidecar {
            std::fs::write(self.path().join(format!("{as_name}.toml")), sidecar).unwrap();
        }
        self
    }

    /// Adds a file with arbitrary bytes.
    pub fn with_file(self, file: &str, bytes: &[u8]) -> Self {
        std::fs::write(self.path().join(file), bytes).unwrap();
        self
    }

    /// The key-value store file this test's hosts share.
    pub fn kv_path(&self) -> PathBuf {
        self.kv.path().join("kv.redb")
    }

    /// The directory of the SQL databases this test's hosts share.
    pub fn sql_dir(&self) -> PathBuf {
        self.kv.path().join("sql")
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Runs `cello-host check` on the directory.
    pub fn check(&self) -> std::process::Output {
        self.check_with(&[])
    }

    /// Runs `cello-host check` on the directory with extra arguments.
    pub fn check_with(&self, args: &[&str]) -> std::process::Output {
        Command::new(env!("CARGO_BIN_EXE_cello-host"))
            .arg("check")
            .arg(self.path())
            .args(args)
            .arg("--state-dir")
            .arg(state_dir())
            .output()
            .expect("cannot run cello-host")
    }

    /// Runs `cello-host serve` and waits until it listens.
    pub fn serve(self) -> Host {
        self.serve_with(&[])
    }

    /// Runs `cello-host serve` with an ops listener and waits until
    /// `/readyz` says every component has loaded: compiling a large one (a
    /// Python or JavaScript engine) the first time takes a while.
    pub async fn serve_ready(self) -> Host {
        let host = self.serve_with(&["--ops-listen", "127.0.0.1:0"]);
        let deadline = std::time::Instant::now() + Duration::from_secs(240);
        while host.ops_get("/readyz").await.status != 200 {
            assert!(
                std::time::Instant::now() < deadline,
                "never ready: {}",
                host.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        host
    }

    /// Runs `cello-host serve` with extra arguments (a `--state-dir` among
    /// them replaces the shared one) and waits until it listens.
    pub fn serve_with(self, args: &[&str]) -> Host {
        let dir = self.path().to_path_buf();
        self.serve_paths(&[dir], args)
    }

    /// Runs `cello-host serve FILE...` over some of the directory's files
    /// (by file name) and waits until it listens.
    pub fn serve_files(self, files: &[&str], args: &[&str]) -> Host {
        let files: Vec<PathBuf> = files.iter().map(|f| self.path().join(f)).collect();
        self.serve_paths(&files, args)
    }

    /// Runs `cello-host serve PATH...` with extra arguments and waits until
    /// it listens.
    fn serve_paths(self, paths: &[PathBuf], args: &[&str]) -> Host {
        let mut command = Command::new(env!("CARGO_BIN_EXE_cello-host"));
        command.arg("serve").args(paths).args(args);
        if !args.contains(&"--listen") {
            command.args(["--listen", "127.0.0.1:0"]);
        }
        if !args.contains(&"--state-dir") {
            command.arg("--state-dir").arg(state_dir());
        }
        if !args.contains(&"--kv-path") {
            command.arg("--kv-path").arg(self.kv_path());
        }
        if !args.contains(&"--sql-dir") {
            command.arg("--sql-dir").arg(self.sql_dir());
        }
        if self.is_empty() {
            command.arg("--allow-empty");
        }
        command.arg("--tenants-dir").arg(self.tenants.path());
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cannot run cello-host");
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let ops = Arc::new(Mutex::new(None));
        let admin = Arc::new(Mutex::new(None));
        // The addresses are announced on stdout, or as JSON log lines on
        // stderr with `--log-format json`.
        let streams: [Box<dyn std::io::Read + Send>; 2] = [
            Box::new(child.stdout.take().unwrap()),
            Box::new(child.stderr.take().unwrap()),
        ];
        for stream in streams {
            let (log, tx, ops, admin) = (log.clone(), tx.clone(), ops.clone(), admin.clone());
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    let said = announced(&line);
                    let addr = |prefix: &str| {
                        let addr = said.strip_prefix(prefix)?;
                        Some(addr.parse::<SocketAddr>().unwrap())
                    };
                    if let Some(addr) = addr("listening on http://") {
                        let _ = tx.send(addr);
                    }
                    if let Some(addr) = addr("ops listening on http://") {
                        *ops.lock().unwrap() = Some(addr);
                    }
                    if let Some(addr) = addr("admin listening on http://") {
                        *admin.lock().unwrap() = Some(addr);
                    }
                    log.lock().unwrap().push_str(&format!("{line}\n"));
                }
            });
        }
        // Only the readers hold the sender now: a host that exits before it
        // listens ends the wait at once.
        drop(tx);
        let addr = match rx.recv_timeout(START_TIMEOUT) {
            Ok(addr) => addr,
            Err(_) => {
                let _ = child.kill();
                let status = child.wait().ok();
                std::thread::sleep(Duration::from_millis(100));
                panic!(
                    "cello-host did not start ({status:?}); its output:\n{}",
                    log.lock().unwrap()
                );
            }
        };
        let ops = *ops.lock().unwrap();
        let admin = *admin.lock().unwrap();
        Host {
            child,
            addr,
            ops,
            admin,
            log,
            components: Some(self),
        }
    }

    /// Whether the directory holds no component.
    fn is_empty(&self) -> bool {
        let files = std::fs::read_dir(self.path()).unwrap();
        !files
            .filter_map(Result::ok)
            .any(|file| file.path().extension().is_some_and(|ext| ext == "wasm"))
    }

    /// Runs `cello-host serve` expecting it to exit at once; returns its
    /// exit status and output.
    pub fn serve_fails(self) -> (std::process::ExitStatus, String) {
        self.serve_fails_with(&[])
    }

    /// Runs `cello-host serve` with extra arguments expecting it to exit
    /// at once; returns its exit status and output.
    pub fn serve_fails_with(self, args: &[&str]) -> (std::process::ExitStatus, String) {
        let mut command = Command::new(env!("CARGO_BIN_EXE_cello-host"));
        command.arg("serve").arg(self.path()).args(args);
        if !args.contains(&"--listen") {
            command.args(["--listen", "127.0.0.1:0"]);
        }
        let output = command
            .arg("--state-dir")
            .arg(state_dir())
            .output()
            .expect("cannot run cello-host");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        (output.status, text)
    }
}

/// What a line of the host's output says: the line, or a JSON log line's
/// message.
fn announced(line: &str) -> String {
    if line.starts_with('{')
        && let Ok(value) = serde_json::from_str::<serde_json::Value>(line)
        && let Some(message) = value["fields"]["message"].as_str()
    {
        return message.to_string();
    }
    line.to_string()
}

/// A running host; killed when dropped.
pub struct Host {
    child: Child,
    pub addr: SocketAddr,
    /// The ops listener, when `--ops-listen` was given.
    pub ops: Option<SocketAddr>,
    /// The admin API, when an admin token was given.
    pub admin: Option<SocketAddr>,
    log: Arc<Mutex<String>>,
    components: Option<Components>,
}

/// A response, read whole.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: String,
    /// The body as it came, for bodies that are not text.
    pub bytes: Vec<u8>,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

impl Host {
    /// Everything the host wrote to stdout and stderr so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Waits until the host's log contains `needle`.
    pub async fn wait_for_log(&self, needle: &str) -> String {
        for _ in 0..100 {
            let log = self.log();
            if log.contains(needle) {
                return log;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the host never logged {needle:?}; its log:\n{}", self.log());
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// GET on the ops listener.
    pub async fn ops_get(&self, path: &str) -> Reply {
        self.ops_get_with(path, &[]).await
    }

    /// GET on the ops listener with `headers`.
    pub async fn ops_get_with(&self, path: &str, headers: &[(&str, &str)]) -> Reply {
        let addr = self.ops.expect("the host was started without --ops-listen");
        let mut request = http::Request::get(format!("http://{addr}{path}"));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request.body(Full::new(Bytes::new())).unwrap();
        send(&client(), request).await
    }

    /// The value of metric `name` with `labels` (as written between the
    /// braces), or 0 when it is absent.
    pub async fn metric(&self, name: &str, labels: &str) -> f64 {
        let text = self.ops_get("/metrics").await.body;
        let key = format!("{name}{{{labels}}} ");
        text.lines()
            .find_map(|line| line.strip_prefix(&key))
            .map_or(0.0, |value| value.trim().parse().unwrap())
    }

    /// Sends a GET without waiting for it.
    pub fn spawn_get(&self, path: &str) -> tokio::task::JoinHandle<Reply> {
        let client = client();
        let request = self.request(http::Method::GET, path, &[], Vec::new());
        tokio::spawn(async move { send(&client, request).await })
    }

    /// Polls `path` until it answers 200, for writes made after a response.
    pub async fn get_until_ok(&self, path: &str) -> Reply {
        for _ in 0..100 {
            let reply = self.get(path).await;
            if reply.status == 200 {
                return reply;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{path} never answered 200; log:\n{}", self.log());
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.send(http::Method::GET, path, &[], Vec::new()).await
    }

    pub async fn post(&self, path: &str, content_type: &str, body: impl Into<Vec<u8>>) -> Reply {
        self.send(
            http::Method::POST,
            path,
            &[("content-type", content_type)],
            body.into(),
        )
        .await
    }

    pub async fn send(
        &self,
        method: http::Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Reply {
        send(&client(), self.request(method, path, headers, body)).await
    }

    pub fn request(
        &self,
        method: http::Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> http::Request<Full<Bytes>> {
        let mut builder = http::Request::builder().method(method).uri(self.url(path));
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(Full::new(Bytes::from(body))).unwrap()
    }

    /// The host's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM, as an operator's `kill` or an orchestrator would.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Shuts the host down gracefully and hands back its components, to
    /// serve them again.
    pub fn stop(mut self) -> Components {
        self.terminate();
        self.wait_exit(Duration::from_secs(20));
        self.components.take().expect("components")
    }

    /// The directory of components this host serves.
    pub fn served_dir(&self) -> PathBuf {
        let components = self.components.as_ref().expect("components");
        components.path().to_path_buf()
    }

    /// Where this host keeps its tenants.
    pub fn tenants_dir(&self) -> PathBuf {
        let components = self.components.as_ref().expect("components");
        components.tenants.path().to_path_buf()
    }

    /// Kills the host at once (SIGKILL), as a crash would, and hands back
    /// its components.
    pub fn kill(mut self) -> Components {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.components.take().expect("components")
    }

    /// Sends a request to the admin API with `token`.
    pub async fn admin(
        &self,
        method: http::Method,
        path: &str,
        token: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> Reply {
        let addr = self
            .admin
            .expect("the host was started without an admin token");
        let request = http::Request::builder()
            .method(method)
            .uri(format!("http://{addr}{path}"))
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", content_type)
            .body(Full::new(Bytes::from(body)))
            .unwrap();
        send(&client(), request).await
    }

    /// Uploads `component` with its `settings` text to the admin API as a
    /// multipart form, with `token`.
    pub async fn upload(
        &self,
        tenant: &str,
        name: &str,
        token: &str,
        component: Vec<u8>,
        settings: &str,
    ) -> Reply {
        use std::io::Write as _;
        let boundary = "cello-test-boundary";
        let mut body = Vec::new();
        for (field, data) in [
            ("component", component),
            ("settings", settings.as_bytes().to_vec()),
        ] {
            write!(
                body,
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"\r\n\r\n"
            )
            .unwrap();
            body.extend_from_slice(&data);
            body.extend_from_slice(b"\r\n");
        }
        write!(body, "--{boundary}--\r\n").unwrap();
        let path = format!("/v1/tenants/{tenant}/components/{name}");
        let content_type = format!("multipart/form-data; boundary={boundary}");
        self.admin(http::Method::PUT, &path, token, &content_type, body)
            .await
    }

    /// Waits for the process to exit after [`Host::terminate`].
    pub fn wait_exit(&mut self, within: Duration) -> std::process::ExitStatus {
        let deadline = std::time::Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the host did not exit within {within:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP/1.1 client with keep-alive.
/// Runs `script` in `sh`, with its standard input a pipe: the test
/// servers' harnesses start a server in the script and stop it once that
/// pipe closes (when the test drops it, or its process exits).
pub fn watcher_shell(script: &str) -> (Child, std::process::ChildStdin) {
    let mut shell = Command::new("sh")
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("cannot run sh");
    let stop = shell.stdin.take().unwrap();
    (shell, stop)
}

pub fn client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

/// An HTTP/2 client (prior knowledge, cleartext).
pub fn h2_client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http()
}

pub async fn send(
    client: &Client<HttpConnector, Full<Bytes>>,
    req: http::Request<Full<Bytes>>,
) -> Reply {
    let response = client.request(req).await.expect("request failed");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    Reply {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
        bytes: body.to_vec(),
    }
}
