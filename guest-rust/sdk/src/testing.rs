//! Running an app natively in `cargo test`, without Wasm or a host, as the
//! Python SDK's `TestClient` does:
//!
//! ```ignore
//! #[test]
//! fn hello() {
//!     let client = app().test_client();
//!     let reply = client.get("/hello/ann").send();
//!     assert_eq!(reply.status(), StatusCode::OK);
//!     assert_eq!(reply.text(), "Hello, ann!");
//! }
//! ```
//!
//! Routing follows the host: a static segment beats a `{param}`, an
//! unknown path is 404, another method is 405 with `Allow`, and HEAD is
//! answered by a GET route. `on_start` hooks run before the first request,
//! background tasks right after each response, and `on_stop` hooks when
//! the client is dropped. A streamed response is collected by `send`
//! (its chunks kept apart), or read chunk by chunk from `send_streaming`. Key-value and config
//! are in memory; outbound HTTP goes to a stub. The host's own policies
//! (auth, rate limits, the response cache, CORS) are not applied.

use std::cell::Cell;
use std::future::Future;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use http::{HeaderMap, Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::outbound::{OutgoingRequest, Reply, SendError};
use crate::request::Incoming;
use crate::streaming::ChunkStream;
use crate::sys::native::{self, NativeHost};
use crate::{App, IntoResponse, Response, background};

impl App {
    /// A client that runs this app's handlers natively.
    pub fn test_client(self) -> TestClient {
        TestClient::new(self)
    }
}

/// Sends requests straight to an app's handlers.
pub struct TestClient {
    app: App,
    router: matchit::Router<usize>,
    /// Per distinct path pattern, the routes declared for it.
    endpoints: Vec<Vec<usize>>,
    host: Rc<NativeHost>,
    started: Cell<bool>,
    sent: Cell<u64>,
}

impl TestClient {
    /// Panics if two routes conflict, as the host would refuse the app.
    pub fn new(app: App) -> Self {
        let app = app.finalize();
        let mut router = matchit::Router::new();
        let mut endpoints: Vec<Vec<usize>> = Vec::new();
        let mut patterns: Vec<&str> = Vec::new();
        for (index, route) in app.routes.iter().enumerate() {
            match patterns.iter().position(|p| *p == route.path) {
                Some(endpoint) => endpoints[endpoint].push(index),
                None => {
                    if let Err(e) = router.insert(route.path.clone(), endpoints.len()) {
                        panic!("route {} cannot be served: {e}", route.path);
                    }
                    patterns.push(&route.path);
                    endpoints.push(vec![index]);
                }
            }
        }
        Self {
            app,
            router,
            endpoints,
            host: Rc::default(),
            started: Cell::new(false),
            sent: Cell::new(0),
        }
    }

    /// A config variable, as `[variables]` would give it.
    pub fn with_config(self, name: &str, value: &str) -> Self {
        let config = &self.host.config;
        config.borrow_mut().insert(name.into(), value.into());
        self
    }

    /// A secret, as `[secrets]` would give it.
    pub fn with_secret(self, name: &str, value: &str) -> Self {
        let secrets = &self.host.secrets;
        secrets.borrow_mut().insert(name.into(), value.into());
        self
    }

    /// A value in the key-value store before the first request.
    pub fn with_kv(self, key: &str, value: impl AsRef<[u8]>) -> Self {
        let _entered = native::enter(self.host.clone());
        native::kv_set(key, value.as_ref(), None).expect("the native store takes any value");
        self
    }

    /// Answers the app's outbound requests with `stub` (natively they
    /// are refused otherwise).
    pub fn with_outbound(
        self,
        stub: impl Fn(OutgoingRequest) -> Result<Reply, SendError> + 'static,
    ) -> Self {
        *self.host.outbound.borrow_mut() = Some(Rc::new(stub));
        self
    }

    /// The value the app stored under `key`, as text.
    pub fn kv_text(&self, key: &str) -> Option<String> {
        let _entered = native::enter(self.host.clone());
        let value = native::kv_get(key).expect("the native store does not fail");
        value.map(|v| String::from_utf8_lossy(&v).into_owned())
    }

    pub fn get(&self, uri: &str) -> TestRequest<'_> {
        self.request(Method::GET, uri)
    }

    pub fn post(&self, uri: &str) -> TestRequest<'_> {
        self.request(Method::POST, uri)
    }

    pub fn put(&self, uri: &str) -> TestRequest<'_> {
        self.request(Method::PUT, uri)
    }

    pub fn patch(&self, uri: &str) -> TestRequest<'_> {
        self.request(Method::PATCH, uri)
    }

    pub fn delete(&self, uri: &str) -> TestRequest<'_> {
        self.request(Method::DELETE, uri)
    }

    pub fn head(&self, uri: &str) -> TestRequest<'_> {
        self.request(Method::HEAD, uri)
    }

    /// A request with any method to `uri` (a path and an optional query).
    pub fn request(&self, method: Method, uri: &str) -> TestRequest<'_> {
        TestRequest {
            client: self,
            method,
            uri: uri.to_string(),
            headers: Vec::new(),
            body: Vec::new(),
            claims: None,
            tenant: None,
        }
    }

    /// The handler's response to `request`, with the request's id; the
    /// host's own answer when no route takes it or the app cannot start.
    fn respond(&self, request: TestRequest<'_>) -> (Response, Option<String>) {
        let _entered = native::enter(self.host.clone());
        if !self.started.get() {
            if let Err(reason) = block_on(self.app.start()) {
                eprintln!("on_start failed: {reason}");
                return (status_detail(StatusCode::SERVICE_UNAVAILABLE), None);
            }
            self.started.set(true);
        }
        let (path, query) = request
            .uri
            .split_once('?')
            .unwrap_or((request.uri.as_str(), ""));
        let path = if path.is_empty() { "/" } else { path };
        let (index, params) = match self.find(&request.method, path) {
            Ok(found) => found,
            Err(response) => return (response, None),
        };
        self.sent.set(self.sent.get() + 1);
        let request_id = format!("test-{}", self.sent.get());
        let req = self.app.request(Incoming {
            method: request.method.clone(),
            path: path.to_string(),
            query: query.to_string(),
            headers: request.headers,
            body: request.body,
            params,
            request_id: request_id.clone(),
            client_addr: "127.0.0.1:50000".into(),
            tenant: request.tenant,
            claims: request.claims,
        });
        // A sync route runs as the host's sync call runs it.
        let serve = || block_on(self.app.serve(index, req));
        let mut response = if self.app.routes[index].handler.is_async {
            serve()
        } else {
            crate::sys::in_sync_call(serve)
        };
        if request.method == Method::HEAD {
            response = response.with_body(Vec::new());
        }
        (response, Some(request_id))
    }

    fn send(&self, request: TestRequest<'_>) -> TestResponse {
        let mut stream = self.send_streaming(request);
        let mut chunks = Vec::new();
        while let Some(chunk) = stream.next_chunk() {
            chunks.push(chunk);
        }
        let mut response = stream.head.clone();
        response.body = chunks.concat();
        response.chunks = Some(chunks);
        response
    }

    fn send_streaming(&self, request: TestRequest<'_>) -> TestStream<'_> {
        let (mut response, request_id) = self.respond(request);
        let chunks = response.take_chunks();
        let mut head = TestResponse::from(response);
        let body = match chunks {
            Some(chunks) => Body::Streamed(chunks),
            None => Body::Whole(std::mem::take(&mut head.body)),
        };
        TestStream {
            client: self,
            head,
            body,
            request_id,
        }
    }

    /// The route for `method` and `path` with its parameters, or the host's
    /// 404 or 405.
    fn find(
        &self,
        method: &Method,
        path: &str,
    ) -> Result<(usize, Vec<(String, String)>), Response> {
        let Ok(matched) = self.router.at(path) else {
            return Err(status_detail(StatusCode::NOT_FOUND));
        };
        let routes = &self.endpoints[*matched.value];
        let declares = |wanted: &str| {
            routes
                .iter()
                .copied()
                .find(|&i| self.app.routes[i].methods.iter().any(|m| m == wanted))
        };
        let found = declares(method.as_str())
            .or_else(|| (method == Method::HEAD).then(|| declares("GET")).flatten())
            .or_else(|| {
                routes
                    .iter()
                    .copied()
                    .find(|&i| self.app.routes[i].methods.is_empty())
            });
        let Some(index) = found else {
            let mut allow: Vec<&str> = routes
                .iter()
                .flat_map(|&i| self.app.routes[i].methods.iter().map(String::as_str))
                .collect();
            allow.sort_unstable();
            allow.dedup();
            return Err(status_detail(StatusCode::METHOD_NOT_ALLOWED)
                .with_header(http::header::ALLOW, allow.join(", ")));
        };
        let params = matched
            .params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Ok((index, params))
    }
}

/// Runs the `on_stop` hooks once the client goes, if the app started.
impl Drop for TestClient {
    fn drop(&mut self) {
        if self.started.get() {
            let _entered = native::enter(self.host.clone());
            block_on(self.app.stop());
        }
    }
}

/// `{"detail": "Not Found"}` and the like, as the host answers.
fn status_detail(status: StatusCode) -> Response {
    let reason = status.canonical_reason().unwrap_or("Error");
    (status, crate::Json(json!({ "detail": reason }))).into_response()
}

/// A request being built by a test.
#[must_use = "a test request does nothing until it is sent"]
pub struct TestRequest<'a> {
    client: &'a TestClient,
    method: Method,
    uri: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    claims: Option<String>,
    tenant: Option<String>,
}

impl<'a> TestRequest<'a> {
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers
            .push((name.to_ascii_lowercase(), value.to_string()));
        self
    }

    /// `value` as a JSON body, with its content type.
    pub fn json<T: Serialize + ?Sized>(self, value: &T) -> Self {
        let body = serde_json::to_vec(value).expect("a serialisable value");
        self.header("content-type", "application/json").body(body)
    }

    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// Verified JWT claims, as the host passes them on an authenticated route.
    pub fn claims<T: Serialize>(mut self, claims: &T) -> Self {
        self.claims = Some(serde_json::to_string(claims).expect("serialisable claims"));
        self
    }

    /// The tenant the component belongs to.
    pub fn tenant(mut self, tenant: &str) -> Self {
        self.tenant = Some(tenant.to_string());
        self
    }

    /// Sends the request and reads the whole response; a streamed body
    /// is read to its end.
    pub fn send(self) -> TestResponse {
        let client = self.client;
        client.send(self)
    }

    /// Sends the request and returns the response's head, with its body
    /// to read chunk by chunk: for a stream that does not end (SSE), or
    /// to leave one early, as a client that disconnects does.
    pub fn send_streaming(self) -> TestStream<'a> {
        let client = self.client;
        client.send_streaming(self)
    }
}

/// A response whose body is read as the app writes it. Dropping it drops
/// the app's stream (its `Drop` runs), then runs the background tasks.
pub struct TestStream<'a> {
    client: &'a TestClient,
    /// The status and headers.
    head: TestResponse,
    body: Body,
    request_id: Option<String>,
}

/// What is left of a [`TestStream`]'s body.
enum Body {
    Whole(Vec<u8>),
    Streamed(ChunkStream),
    Ended,
}

impl TestStream<'_> {
    pub fn status(&self) -> StatusCode {
        self.head.status
    }

    pub fn headers(&self) -> &HeaderMap {
        &self.head.headers
    }

    /// The first value of header `name`, if it is text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.header(name)
    }

    /// The next chunk the app writes, waiting for it; `None` at the end.
    /// A body that is not streamed comes as one chunk.
    pub fn next_chunk(&mut self) -> Option<Vec<u8>> {
        let chunk = match &mut self.body {
            Body::Whole(body) => Some(std::mem::take(body)).filter(|body| !body.is_empty()),
            Body::Streamed(chunks) => {
                let _entered = native::enter(self.client.host.clone());
                block_on(chunks.next())
            }
            Body::Ended => None,
        };
        if chunk.is_none() || matches!(self.body, Body::Whole(_)) {
            self.body = Body::Ended;
        }
        chunk
    }

    /// The next chunk as text.
    pub fn next_text(&mut self) -> Option<String> {
        self.next_chunk()
            .map(|chunk| String::from_utf8_lossy(&chunk).into_owned())
    }
}

impl Drop for TestStream<'_> {
    fn drop(&mut self) {
        let _entered = native::enter(self.client.host.clone());
        self.body = Body::Ended;
        if let Some(id) = &self.request_id {
            block_on(background::run(id));
        }
    }
}

/// A response as a test sees it.
#[derive(Debug, Clone)]
pub struct TestResponse {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
    /// The body as it was written: one chunk per item of a stream.
    chunks: Option<Vec<Vec<u8>>>,
}

impl From<Response> for TestResponse {
    fn from(response: Response) -> Self {
        let status = response.status();
        let headers = response.headers().clone();
        Self {
            status,
            headers,
            body: response.into_body(),
            chunks: None,
        }
    }
}

impl TestResponse {
    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// The first value of header `name`, if it is text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn bytes(&self) -> &[u8] {
        &self.body
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as the app wrote it: each chunk of a stream apart, or the
    /// whole body as one.
    pub fn chunks(&self) -> Vec<&[u8]> {
        match &self.chunks {
            Some(chunks) => chunks.iter().map(Vec::as_slice).collect(),
            None => vec![self.body.as_slice()],
        }
    }

    /// The body parsed as JSON; panics, showing the body, if it is not `T`.
    pub fn json<T: DeserializeOwned>(&self) -> T {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("the body is not the JSON expected ({e}): {}", self.text()))
    }
}

/// Drives `future` on this thread; native host calls never wait long.
fn block_on<F: Future>(future: F) -> F::Output {
    struct Unpark(std::thread::Thread);

    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }

    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        match future.as_mut().poll(&mut cx) {
            Poll::Ready(output) => return output,
            Poll::Pending => std::thread::park(),
        }
    }
}
