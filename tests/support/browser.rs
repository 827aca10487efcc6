//! A real headless browser: Debian's Chromium, driven by its ChromeDriver
//! over the W3C WebDriver protocol (JSON over HTTP), so a test sees a page
//! as a person does: its scripts run, its buttons are clicked.
//!
//! `make setup` installs both (`apt-get install chromium chromium-driver`).
//! Chromium may reach only this machine: every other host name fails to
//! resolve, so a page that asks the internet for anything shows it.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use serde_json::{Value, json};

use super::{client, send};

/// The key under which WebDriver names an element.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A browser session; the browser and its driver end when it is dropped.
pub struct Browser {
    driver: Child,
    addr: SocketAddr,
    session: String,
    _profile: tempfile::TempDir,
}

/// An element of the page, as WebDriver names it.
pub struct Element(String);

impl Browser {
    /// Starts ChromeDriver and a headless Chromium session.
    pub async fn start() -> Browser {
        let chromedriver = std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".into());
        let port = {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let driver = Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run {chromedriver} ({e}). The browser tests need Debian's Chromium \
                     and ChromeDriver: run `make setup`, or `apt-get install chromium \
                     chromium-driver`."
                )
            });
        let profile = tempfile::tempdir().unwrap();
        let mut browser = Browser {
            driver,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            session: String::new(),
            _profile: profile,
        };
        browser.wait_ready().await;
        let mut options = json!({
            "args": [
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-quic",
                "--window-size=1280,2000",
                "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
                format!("--user-data-dir={}", browser._profile.path().display()),
            ],
        });
        let binary = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
        if std::path::Path::new(&binary).exists() {
            options["binary"] = binary.into();
        }
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": options,
        }}});
        let created = browser
            .call(http::Method::POST, "/session", capabilities)
            .await;
        browser.session = created["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {created}"))
            .to_string();
        browser
    }

    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.driver.try_wait().unwrap() {
                panic!("chromedriver exited at once ({status})");
            }
            if TcpStream::connect(self.addr).is_ok() {
                let status = self.call(http::Method::GET, "/status", Value::Null).await;
                if status["ready"] == true {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "chromedriver never became ready");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A WebDriver command; its `value`, or a panic naming the error.
    async fn call(&self, method: http::Method, path: &str, body: Value) -> Value {
        let body = if body.is_null() {
            Bytes::new()
        } else {
            Bytes::from(body.to_string())
        };
        let request = http::Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", self.addr))
            .header("content-type", "application/json")
            .body(Full::new(body))
            .unwrap();
        let reply = send(&client(), request).await;
        let value = reply.json()["value"].clone();
        assert_eq!(reply.status, 200, "{path}: {value}");
        value
    }

    async fn command(&self, method: http::Method, path: &str, body: Value) -> Value {
        let path = format!("/session/{}{path}", self.session);
        self.call(method, &path, body).await
    }

    /// Loads `url` and waits until its document has loaded.
    pub async fn open(&self, url: &str) {
        self.command(http::Method::POST, "/url", json!({"url": url}))
            .await;
    }

    /// Runs `script` (a function body; `arguments` holds `args`) in the
    /// page and returns what it returns.
    pub async fn script(&self, script: &str, args: Value) -> Value {
        let body = json!({"script": script, "args": args});
        self.command(http::Method::POST, "/execute/sync", body)
            .await
    }

    /// The elements `css` selects now.
    pub async fn select(&self, css: &str) -> Vec<Element> {
        let body = json!({"using": "css selector", "value": css});
        let found = self.command(http::Method::POST, "/elements", body).await;
        let found = found.as_array().expect("a list of elements");
        let ids = found.iter().map(|e| e[ELEMENT].as_str().unwrap());
        ids.map(|id| Element(id.to_string())).collect()
    }

    /// The elements `css` selects, once there is at least one; a panic
    /// with the page's text after `within`.
    pub async fn wait_for(&self, css: &str, within: Duration) -> Vec<Element> {
        let deadline = Instant::now() + within;
        loop {
            let found = self.select(css).await;
            if !found.is_empty() {
                return found;
            }
            if Instant::now() > deadline {
                let text = self
                    .script("return document.body.innerText", json!([]))
                    .await;
                panic!("nothing matched {css} within {within:?}; the page says:\n{text}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The text `css` selects, once it contains `needle`; a panic with what
    /// it said after `within`.
    pub async fn wait_for_text(&self, css: &str, needle: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            let text = self.text_of(css).await;
            if text.contains(needle) {
                return text;
            }
            assert!(
                Instant::now() < deadline,
                "{css} never said {needle:?} within {within:?}; it says: {text:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The text of every element `css` selects, one per line.
    pub async fn text_of(&self, css: &str) -> String {
        let script = "return [...document.querySelectorAll(arguments[0])]\
                      .map(e => e.textContent).join('\\n')";
        let text = self.script(script, json!([css])).await;
        text.as_str().unwrap_or_default().to_string()
    }

    /// Clicks `element` as a person would.
    pub async fn click(&self, element: &Element) {
        let path = format!("/element/{}/click", element.0);
        self.command(http::Method::POST, &path, json!({})).await;
    }

    /// The address of every file the page has loaded: its scripts, styles,
    /// images and the requests its scripts made.
    pub async fn loaded(&self) -> Vec<String> {
        let script = "return performance.getEntriesByType('resource').map(e => e.name)";
        let names = self.script(script, json!([])).await;
        let names = names.as_array().expect("a list");
        names
            .iter()
            .map(|n| n.as_str().unwrap().to_string())
            .collect()
    }
}

impl Drop for Browser {
    /// Ends the session, which closes Chromium (a driver killed first would
    /// leave it running), then the driver.
    fn drop(&mut self) {
        if !self.session.is_empty()
            && let Ok(mut stream) = TcpStream::connect(self.addr)
        {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
            let request = format!(
                "DELETE /session/{} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
                self.session, self.addr
            );
            if stream.write_all(request.as_bytes()).is_ok() {
                let _ = stream.read_to_end(&mut Vec::new());
            }
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
