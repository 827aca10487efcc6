//! The host's grantable capabilities: key-value, config, outbound HTTP.
//! A component imports only the ones it calls, and the host refuses one it
//! was not granted in the sidecar's `[grants]`.

/// The component's own key-value store (`kv = true`). Calls block the
/// instance briefly (the store is local); values survive restarts.
pub mod kv {
    use crate::bindings::cello::component::kv;

    /// The value under `key`, if any and not expired.
    pub fn get(key: &str) -> Result<Option<Vec<u8>>, String> {
        kv::get(key)
    }

    /// The value under `key` as UTF-8 text.
    pub fn get_text(key: &str) -> Result<Option<String>, String> {
        Ok(get(key)?.map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    /// Stores `value` under `key`; with `ttl_seconds`, it expires.
    pub fn set(key: &str, value: impl AsRef<[u8]>, ttl_seconds: Option<u32>) -> Result<(), String> {
        kv::set(key, value.as_ref(), ttl_seconds)
    }

    /// Removes `key`; true if it was there.
    pub fn delete(key: &str) -> Result<bool, String> {
        kv::delete(key)
    }

    /// Keys starting with `prefix`, in order.
    pub fn list_keys(prefix: &str) -> Result<Vec<String>, String> {
        kv::list_keys(prefix)
    }

    /// Adds `delta` to the integer under `key` atomically; the new value.
    pub fn increment(key: &str, delta: i64) -> Result<i64, String> {
        kv::increment(key, delta)
    }
}

/// Variables and secrets from the sidecar (`config = true`).
pub mod config {
    use crate::bindings::cello::component::config;

    /// The variable `name` from `[variables]`.
    pub fn get(name: &str) -> Option<String> {
        config::get(name)
    }

    /// The secret `name` from `[secrets]`.
    pub fn secret(name: &str) -> Option<Secret> {
        config::get_secret(name).map(Secret)
    }

    /// A secret that prints as `***`; [`Secret::reveal`] gives the value.
    #[derive(Clone, PartialEq, Eq)]
    pub struct Secret(String);

    impl Secret {
        pub fn reveal(&self) -> &str {
            &self.0
        }
    }

    impl std::fmt::Debug for Secret {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("Secret(***)")
        }
    }

    impl std::fmt::Display for Secret {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("***")
        }
    }
}

/// Outbound HTTP within the sidecar's allow-list (`outbound = [...]`).
/// Calls are async: they free the instance for other requests meanwhile.
pub mod http {
    use crate::bindings::cello::component::outbound::{self, Error, OutgoingRequest};

    /// Why an outbound request failed.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum HttpError {
        /// Outside the allow-list, or not a valid URL.
        Denied(String),
        /// No complete response in time.
        Timeout,
        /// The connection failed.
        Failed(String),
    }

    impl std::fmt::Display for HttpError {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            match self {
                Self::Denied(why) => write!(f, "denied: {why}"),
                Self::Timeout => f.write_str("timed out"),
                Self::Failed(why) => write!(f, "failed: {why}"),
            }
        }
    }

    impl std::error::Error for HttpError {}

    /// A response to an outbound request.
    #[derive(Debug, Clone)]
    pub struct HttpResponse {
        pub status: u16,
        pub headers: Vec<(String, String)>,
        pub body: Vec<u8>,
    }

    impl HttpResponse {
        /// The first value of header `name`.
        pub fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        }

        /// The body as UTF-8 text.
        pub fn text(&self) -> String {
            String::from_utf8_lossy(&self.body).into_owned()
        }

        /// The body parsed as JSON.
        pub fn json<T: serde::de::DeserializeOwned>(&self) -> serde_json::Result<T> {
            serde_json::from_slice(&self.body)
        }
    }

    /// A request to send: `Request::get(url).header(..).send().await`.
    #[derive(Debug, Clone)]
    pub struct Request {
        method: String,
        url: String,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
        timeout_ms: Option<u32>,
    }

    impl Request {
        pub fn new(method: &str, url: &str) -> Self {
            Self {
                method: method.to_ascii_uppercase(),
                url: url.to_string(),
                headers: Vec::new(),
                body: Vec::new(),
                timeout_ms: None,
            }
        }

        pub fn get(url: &str) -> Self {
            Self::new("GET", url)
        }

        pub fn post(url: &str) -> Self {
            Self::new("POST", url)
        }

        pub fn header(mut self, name: &str, value: &str) -> Self {
            self.headers
                .push((name.to_ascii_lowercase(), value.to_string()));
            self
        }

        pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
            self.body = body.into();
            self
        }

        /// A JSON body, with its content type.
        pub fn json<T: serde::Serialize>(self, value: &T) -> Self {
            let body = serde_json::to_vec(value).expect("a serialisable value");
            self.header("content-type", "application/json").body(body)
        }

        /// A shorter timeout than the component's.
        pub fn timeout(mut self, timeout: std::time::Duration) -> Self {
            self.timeout_ms = Some(timeout.as_millis().min(u32::MAX as u128) as u32);
            self
        }

        pub async fn send(self) -> Result<HttpResponse, HttpError> {
            let request = OutgoingRequest {
                method: self.method,
                url: self.url,
                headers: self.headers,
                body: self.body,
                timeout_ms: self.timeout_ms,
            };
            match outbound::send(request).await {
                Ok(r) => Ok(HttpResponse {
                    status: r.status,
                    headers: r.headers,
                    body: r.body,
                }),
                Err(Error::Denied(why)) => Err(HttpError::Denied(why)),
                Err(Error::Timeout) => Err(HttpError::Timeout),
                Err(Error::Failed(why)) => Err(HttpError::Failed(why)),
            }
        }
    }

    /// `GET url`.
    pub async fn get(url: &str) -> Result<HttpResponse, HttpError> {
        Request::get(url).send().await
    }
}

/// Work that runs after the response has been sent.
pub mod background {
    use std::cell::RefCell;
    use std::collections::HashMap;
    use std::future::Future;
    use std::pin::Pin;

    type Task = Pin<Box<dyn Future<Output = ()>>>;

    thread_local! {
        static TASKS: RefCell<HashMap<String, Vec<Task>>> = RefCell::default();
    }

    /// Queues `task` to run after the response to `req` is sent; the host
    /// keeps the instance until it ends (or its time limit passes).
    pub fn spawn(req: &crate::Request, task: impl Future<Output = ()> + 'static) {
        TASKS.with(|tasks| {
            tasks
                .borrow_mut()
                .entry(req.request_id.clone())
                .or_default()
                .push(Box::pin(task));
        });
    }

    pub(crate) fn has(request_id: &str) -> bool {
        TASKS.with(|tasks| tasks.borrow().contains_key(request_id))
    }

    pub(crate) async fn run(request_id: &str) {
        let queued = TASKS.with(|tasks| tasks.borrow_mut().remove(request_id));
        for task in queued.unwrap_or_default() {
            task.await;
        }
    }
}
