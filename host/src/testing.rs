//! Testing components with `cargo test`: a [`TestHost`] serves built
//! components in-process, with their sidecar settings and grants, and
//! answers requests without a socket. Every request goes through the same
//! pipeline as over HTTP (routing, CORS, auth, rate limits, cache, the
//! guest), and the guest's log lines and key-value entries can be read.
//!
//! ```no_run
//! # async fn example() -> anyhow::Result<()> {
//! use cello_host::testing::TestHost;
//!
//! let host = TestHost::new("target/wasm32-wasip2/release/items.wasm").await?;
//! let response = host.get("/items/1").await;
//! assert_eq!(response.status, 200);
//! assert_eq!(response.json::<serde_json::Value>()?["id"], 1);
//! # Ok(())
//! # }
//! ```

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use http_body_util::{BodyExt, Full};

use crate::config::HostConfig;
use crate::guest_log::{GuestLine, GuestLogs};
use crate::host::{Host, HostBuilder};

/// Where in-process requests seem to come from.
const TEST_PEER: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 40000);

/// A host serving components in-process, for tests.
pub struct TestHost {
    host: Host,
    logs: GuestLogs,
    /// The state directory (compile cache, key-value store) and the copies
    /// of the components with their sidecars; removed on drop.
    _dir: tempfile::TempDir,
}

/// Says what a [`TestHost`] serves.
#[derive(Default)]
pub struct TestHostBuilder {
    components: Vec<(PathBuf, Option<String>)>,
    config: Option<String>,
}

impl TestHostBuilder {
    /// Serves the component at `wasm` with the sidecar beside it
    /// (`NAME.toml`), if there is one.
    pub fn component(mut self, wasm: impl Into<PathBuf>) -> Self {
        self.components.push((wasm.into(), None));
        self
    }

    /// Serves the component at `wasm` with `sidecar` (the text of a
    /// `NAME.toml`: `[grants]`, `[limits]`, `[config]`, ...) instead of the
    /// file beside it.
    pub fn component_with(mut self, wasm: impl Into<PathBuf>, sidecar: &str) -> Self {
        self.components.push((wasm.into(), Some(sidecar.into())));
        self
    }

    /// The host config, as the text of a `cello.toml`.
    pub fn host_config(mut self, config: &str) -> Self {
        self.config = Some(config.into());
        self
    }

    /// Loads the components and puts them in service; the error names
    /// every component that did not load and why.
    pub async fn build(self) -> anyhow::Result<TestHost> {
        let dir = tempfile::tempdir().context("cannot make a state directory")?;
        let config = match &self.config {
            Some(text) => HostConfig::parse(text).map_err(anyhow::Error::msg)?,
            None => HostConfig::default(),
        };
        let served = dir.path().join("components");
        std::fs::create_dir_all(&served)?;
        let mut paths = Vec::new();
        for (wasm, sidecar) in &self.components {
            let name = wasm
                .file_name()
                .with_context(|| format!("{} names no file", wasm.display()))?;
            let copy = served.join(name);
            std::fs::copy(wasm, &copy)
                .with_context(|| format!("cannot read the component {}", wasm.display()))?;
            let beside = wasm.with_extension("toml");
            let sidecar = match sidecar {
                Some(text) => Some(text.clone()),
                None if beside.exists() => Some(std::fs::read_to_string(&beside)?),
                None => None,
            };
            if let Some(text) = sidecar {
                std::fs::write(copy.with_extension("toml"), text)?;
            }
            paths.push(copy);
        }
        let logs = GuestLogs::default();
        let host = HostBuilder::new(config, dir.path().join("state"))
            .compile_cache(false)
            .guest_logs(logs.clone())
            .build()?;
        let report = host.load(&paths).await?;
        if !report.problems.is_empty() {
            let problems: Vec<String> = report.problems.iter().map(ToString::to_string).collect();
            anyhow::bail!("components did not load:\n  {}", problems.join("\n  "));
        }
        host.put_in_service(report.loaded)
            .await
            .map_err(|problems| anyhow::anyhow!("cannot serve: {}", problems.join("; ")))?;
        host.ready().set_started();
        host.ready().set_serving(true);
        Ok(TestHost {
            host,
            logs,
            _dir: dir,
        })
    }
}

impl TestHost {
    /// A host serving the component at `wasm`, with the sidecar beside it.
    pub async fn new(wasm: impl AsRef<Path>) -> anyhow::Result<Self> {
        Self::builder().component(wasm.as_ref()).build().await
    }

    /// Says what the host serves.
    pub fn builder() -> TestHostBuilder {
        TestHostBuilder::default()
    }

    /// Answers `GET path`.
    pub async fn get(&self, path: &str) -> TestResponse {
        let request = http::Request::get(path).body(Bytes::new());
        self.request(request.expect("a GET with a valid path"))
            .await
    }

    /// Answers `POST path` with a JSON body.
    pub async fn post_json(&self, path: &str, body: &serde_json::Value) -> TestResponse {
        let request = http::Request::post(path)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Bytes::from(body.to_string()));
        self.request(request.expect("a POST with a valid path"))
            .await
    }

    /// Answers `request`, as the host would over HTTP.
    pub async fn request(&self, request: http::Request<impl Into<Bytes>>) -> TestResponse {
        let request = request.map(|body| {
            Full::new(body.into())
                .map_err(|never| match never {})
                .boxed_unsync()
        });
        let response = self.host.handle(request, TEST_PEER).await;
        let (parts, body) = response.into_parts();
        let body = match body.collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(e) => Bytes::from(format!("(the response body failed: {e})")),
        };
        TestResponse {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    }

    /// Every line the guests logged or printed so far, oldest first.
    pub fn logs(&self) -> Vec<GuestLine> {
        self.logs.lines()
    }

    /// The value `component` stored under `key` in its key-value store.
    pub fn kv_get(&self, component: &str, key: &str) -> anyhow::Result<Option<Vec<u8>>> {
        let kv = self.host.loader().kv();
        kv.open().map_err(anyhow::Error::msg)?;
        kv.namespace(component)
            .get(key)
            .map_err(|e| anyhow::anyhow!("{e:?}"))
    }

    /// The host underneath, for what this API does not cover.
    pub fn host(&self) -> &Host {
        &self.host
    }
}

/// A response, read whole.
#[derive(Debug)]
pub struct TestResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl TestResponse {
    /// The body as text (lossily, if it is not UTF-8).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> anyhow::Result<T> {
        serde_json::from_slice(&self.body)
            .with_context(|| format!("the body is not the JSON expected: {}", self.text()))
    }

    /// A header's value as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}
