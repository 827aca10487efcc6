//! Outbound HTTP, granted by an allow-list of `scheme://host[:port]`
//! patterns in the sidecar. It serves two doors with one policy:
//! `wasi:http/outgoing-handler` (any wasi:http guest) and
//! `cello:component/outbound` (the SDKs' clients: one awaited call per
//! request). A request outside the list is an error the guest can handle,
//! never a trap. Each component has a cap on requests in flight and a
//! timeout for the whole exchange.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use serde::Deserialize;
use tokio::sync::Semaphore;
use tracing::Instrument as _;
use wasmtime::component::{Accessor, HasData, Linker};
use wasmtime_wasi_http::{RequestOptions, WasiHttpHooks};

use crate::bindings::cello::component::outbound::{
    self, Error as GuestError, IncomingResponse, OutgoingRequest,
};
use crate::guest_log::CallsInFlight;

use super::capability::{Capability, Has};

/// The most requests `[outbound] max-concurrent` may let be in flight.
const MAX_CONCURRENT: usize = 10_000;

/// Largest response body the SDK client reads, in bytes.
const MAX_RESPONSE_BYTES: usize = 16 << 20;

/// The sidecar's `[outbound]` table: how much, how long.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct OutboundSettings {
    /// Requests in flight at once per component; more wait their turn.
    #[serde(default = "OutboundSettings::default_max_concurrent")]
    pub max_concurrent: usize,
    /// Time for one whole exchange: connect, send, and read the response.
    #[serde(default = "OutboundSettings::default_timeout_ms")]
    pub timeout_ms: u64,
}

impl OutboundSettings {
    fn default_max_concurrent() -> usize {
        16
    }
    fn default_timeout_ms() -> u64 {
        10_000
    }
}

impl Default for OutboundSettings {
    fn default() -> Self {
        Self {
            max_concurrent: Self::default_max_concurrent(),
            timeout_ms: Self::default_timeout_ms(),
        }
    }
}

/// One entry of the allow-list.
#[derive(Debug, Clone, PartialEq)]
struct Pattern {
    scheme: String,
    /// A host name, or `*.example.com` for any subdomain.
    host: String,
    /// `None` for any port.
    port: Option<u16>,
}

impl Pattern {
    fn parse(text: &str) -> Result<Self, String> {
        let bad = |why: &str| format!("outbound pattern {text:?} {why}");
        let (scheme, rest) = text
            .split_once("://")
            .ok_or_else(|| bad("needs a scheme, as in https://api.example.com"))?;
        if scheme != "http" && scheme != "https" {
            return Err(bad("must start with http:// or https://"));
        }
        if rest.contains('/') {
            return Err(bad("names a host only, without a path"));
        }
        let (host, port) = match rest.rsplit_once(':') {
            Some((host, "*")) => (host, None),
            Some((host, port)) => (
                host,
                Some(
                    port.parse()
                        .map_err(|_| bad("has a port that is not a number or *"))?,
                ),
            ),
            None => (rest, Some(if scheme == "https" { 443 } else { 80 })),
        };
        if host.is_empty() {
            return Err(bad("has no host"));
        }
        Ok(Self {
            scheme: scheme.into(),
            host: host.to_ascii_lowercase(),
            port,
        })
    }

    fn allows(&self, scheme: &str, host: &str, port: u16) -> bool {
        let host_matches = match self.host.strip_prefix("*.") {
            Some(domain) => host
                .strip_suffix(domain)
                .is_some_and(|sub| sub.ends_with('.') && sub.len() > 1),
            None => self.host == host,
        };
        self.scheme == scheme && host_matches && self.port.is_none_or(|p| p == port)
    }
}

/// A component's outbound grant.
#[derive(Debug)]
pub struct Outbound {
    allow: Vec<Pattern>,
    permits: Arc<Semaphore>,
    timeout: Duration,
}

impl Outbound {
    /// The grant for `patterns`, or a sentence naming the bad one.
    pub fn new(patterns: &[String], settings: &OutboundSettings) -> Result<Self, String> {
        if settings.max_concurrent == 0 {
            return Err("[outbound] max-concurrent must be at least 1".into());
        }
        if settings.max_concurrent > MAX_CONCURRENT {
            return Err(format!(
                "[outbound] max-concurrent must be at most {MAX_CONCURRENT}"
            ));
        }
        Ok(Self {
            allow: patterns
                .iter()
                .map(|p| Pattern::parse(p))
                .collect::<Result<_, _>>()?,
            permits: Arc::new(Semaphore::new(settings.max_concurrent)),
            timeout: Duration::from_millis(settings.timeout_ms),
        })
    }

    /// Checks allow-list patterns without making a grant.
    pub fn check_patterns(patterns: &[String]) -> Result<(), String> {
        patterns
            .iter()
            .try_for_each(|p| Pattern::parse(p).map(drop))
    }

    /// Whether `uri` is inside the allow-list; the error says why not.
    pub fn check(&self, uri: &http::Uri) -> Result<(), String> {
        let scheme = uri.scheme_str().unwrap_or("");
        let Some(host) = uri.host() else {
            return Err(format!("{uri} is not an absolute http(s) URL"));
        };
        let host = host.to_ascii_lowercase();
        let port = uri
            .port_u16()
            .unwrap_or(if scheme == "https" { 443 } else { 80 });
        if self.allow.iter().any(|p| p.allows(scheme, &host, port)) {
            Ok(())
        } else {
            Err(format!(
                "{scheme}://{host}:{port} is not in this component's outbound allow-list"
            ))
        }
    }

    /// `options` with every timeout capped by the component's.
    fn capped(&self, options: Option<RequestOptions>) -> RequestOptions {
        let cap = |t: Option<Duration>| Some(t.map_or(self.timeout, |t| t.min(self.timeout)));
        let options = options.unwrap_or_default();
        RequestOptions {
            connect_timeout: cap(options.connect_timeout),
            first_byte_timeout: cap(options.first_byte_timeout),
            between_bytes_timeout: cap(options.between_bytes_timeout),
        }
    }

    /// Sends one SDK request and reads the whole response.
    async fn fetch(&self, request: OutgoingRequest) -> Result<IncomingResponse, GuestError> {
        let uri: http::Uri = request
            .url
            .parse()
            .map_err(|e| GuestError::Denied(format!("{:?} is not a URL: {e}", request.url)))?;
        self.check(&uri).map_err(GuestError::Denied)?;
        let timeout = request.timeout_ms.map_or(self.timeout, |ms| {
            self.timeout.min(Duration::from_millis(ms.into()))
        });
        let mut builder = http::Request::builder()
            .method(request.method.as_str())
            .uri(&uri);
        let has_host = request
            .headers
            .iter()
            .any(|(name, _)| name.eq_ignore_ascii_case("host"));
        if !has_host && let Some(authority) = uri.authority() {
            builder = builder.header(http::header::HOST, authority.as_str());
        }
        for (name, value) in &request.headers {
            builder = builder.header(name.as_str(), value.as_str());
        }
        let body = Full::new(Bytes::from(request.body)).map_err(|never| match never {});
        let mut outgoing = builder
            .body(body)
            .map_err(|e| GuestError::Denied(format!("not a valid request: {e}")))?;
        crate::telemetry::inject(outgoing.headers_mut());
        let options = RequestOptions {
            connect_timeout: Some(timeout),
            first_byte_timeout: Some(timeout),
            between_bytes_timeout: Some(timeout),
        };
        // The wait for a place among `max-concurrent` counts too.
        let exchange = async {
            let _permit = self.permits.acquire().await;
            let (response, io) = wasmtime_wasi_http::default_send_request(outgoing, Some(options))
                .await
                .map_err(|e| match e {
                    // The request's own timeout, met before the whole
                    // exchange's: a timeout all the same.
                    wasmtime_wasi_http::Error::ConnectionTimeout
                    | wasmtime_wasi_http::Error::ConnectionReadTimeout => GuestError::Timeout,
                    e => GuestError::Failed(e.to_string()),
                })?;
            tokio::spawn(io);
            let (parts, body) = response.into_parts();
            let body = Limited::new(body, MAX_RESPONSE_BYTES)
                .collect()
                .await
                .map_err(|e| GuestError::Failed(format!("reading the response failed: {e}")))?
                .to_bytes();
            Ok(IncomingResponse {
                status: parts.status.as_u16(),
                headers: parts
                    .headers
                    .iter()
                    .map(|(n, v)| {
                        (
                            n.as_str().into(),
                            String::from_utf8_lossy(v.as_bytes()).into(),
                        )
                    })
                    .collect(),
                body: body.into(),
            })
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .unwrap_or(Err(GuestError::Timeout))
    }
}

/// The outbound HTTP capability: `outbound = ["https://api.example.com"]`
/// under `[grants]` lets the component call the hosts listed, through
/// `cello:component/outbound` or `wasi:http/outgoing-handler`.
///
/// `wasi:http/outgoing-handler` itself is linked for every component
/// (componentize-py and componentize-js builds import it whether they use
/// it or not); without the grant, each request is refused with
/// `HTTP-request-denied` by [`OutboundHooks`].
pub struct OutboundHttp;

impl Capability for OutboundHttp {
    const INTERFACES: &'static [&'static str] = &["cello:component/outbound"];
    const HOW_TO_GRANT: &'static str = "outbound = [\"https://host.example\"]";
    type Grant = Vec<String>;
    type Granted = Arc<Outbound>;

    fn is_granted(grant: &Vec<String>) -> bool {
        !grant.is_empty()
    }

    fn check(grant: &Vec<String>) -> Result<(), String> {
        Outbound::check_patterns(grant)
    }

    fn add_to_linker<T: Has<Self>>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
        outbound::add_to_linker::<T, OutboundAccess>(linker, view)
    }

    /// `send-blocking` alone, wrapped by hand: the generated `add_to_linker`
    /// links `send` too, an `async func` the engine without concurrency
    /// support cannot hold.
    fn add_sync_to_linker<T: Has<Self>>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
        use outbound::Host as _;
        let mut functions = linker.instance("cello:component/outbound@0.1.0")?;
        functions.func_wrap_async(
            "send-blocking",
            |mut store, (request,): (OutgoingRequest,)| {
                Box::new(async move { Ok((view(store.data_mut()).send_blocking(request).await?,)) })
            },
        )?;
        Ok(())
    }
}

/// What the host functions of `state` see of its grant.
fn view<T: Has<OutboundHttp>>(state: &mut T) -> OutboundView<'_> {
    OutboundView(state.granted(), state.call_span())
}

/// How the host functions reach a store's grant.
struct OutboundAccess;

impl HasData for OutboundAccess {
    type Data<'a> = OutboundView<'a>;
}

/// A component's grant, as its host functions see it, and the trace span
/// of the call using it.
pub struct OutboundView<'a>(Option<&'a Arc<Outbound>>, tracing::Span);

impl outbound::Host for OutboundView<'_> {
    /// The call holds its instance meanwhile: the route's deadline still
    /// ends it (a call blocked past it is dropped with its instance).
    async fn send_blocking(
        &mut self,
        request: OutgoingRequest,
    ) -> wasmtime::Result<Result<IncomingResponse, GuestError>> {
        Ok(send(self.0.cloned(), &self.1, request).await)
    }
}

impl<U> outbound::HostWithStore<U> for OutboundAccess {
    async fn send(
        accessor: &Accessor<U, Self>,
        request: OutgoingRequest,
    ) -> wasmtime::Result<Result<IncomingResponse, GuestError>> {
        let (grant, call) = accessor.with(|mut access| {
            let view = access.get();
            (view.0.cloned(), view.1.clone())
        });
        Ok(send(grant, &call, request).await)
    }
}

/// Sends `request` under `grant`, in a span of the `call` making it.
async fn send(
    grant: Option<Arc<Outbound>>,
    call: &tracing::Span,
    request: OutgoingRequest,
) -> Result<IncomingResponse, GuestError> {
    let Some(grant) = grant else {
        return Err(GuestError::Denied(
            "this component has no outbound HTTP grant".into(),
        ));
    };
    let url = request.url.clone();
    let span = call
        .in_scope(|| crate::telemetry::host_call(&format!("outbound {}", request.method), "http"));
    let result = grant.fetch(request).instrument(span).await;
    if let Err(error) = &result {
        tracing::debug!(%url, ?error, "outbound request failed");
    }
    result
}

/// `wasi:http/outgoing-handler` (and p3's `wasi:http/client`) behind the
/// same grant: refused with `HTTP-request-denied` outside the allow-list
/// or without a grant.
pub struct OutboundHooks {
    grant: Option<Arc<Outbound>>,
    /// The calls in flight on the instance: a request's span is a child of
    /// the span of the call that sends it.
    calls: Arc<CallsInFlight>,
}

impl OutboundHooks {
    /// The hooks of an instance granted `grant` (or nothing), running `calls`.
    pub fn new(grant: Option<Arc<Outbound>>, calls: Arc<CallsInFlight>) -> Self {
        Self { grant, calls }
    }
}

type IoFuture = Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>;
type SendFuture = Box<
    dyn Future<
            Output = Result<
                (http::Response<wasmtime_wasi_http::WasiBody>, IoFuture),
                wasmtime_wasi_http::Error,
            >,
        > + Send,
>;

impl WasiHttpHooks for OutboundHooks {
    fn send_request(
        &mut self,
        mut request: http::Request<wasmtime_wasi_http::WasiBody>,
        options: Option<RequestOptions>,
        _fut: IoFuture,
    ) -> SendFuture {
        let grant = self.grant.clone();
        // On an event loop the current span is not the request's: the
        // span of the call whose code runs is (none for a call on a task
        // of its own, which runs in its request's span already).
        let call = self.calls.current_span();
        let span = call.in_scope(|| {
            crate::telemetry::host_call(&format!("outbound {}", request.method()), "http")
        });
        // The request's trace goes on: outbound requests carry traceparent,
        // naming this call's span as their parent.
        span.in_scope(|| crate::telemetry::inject(request.headers_mut()));
        let sent = async move {
            let Some(grant) = grant else {
                return Err(wasmtime_wasi_http::Error::HttpRequestDenied);
            };
            if let Err(why) = grant.check(request.uri()) {
                tracing::debug!("outbound request refused: {why}");
                return Err(wasmtime_wasi_http::Error::HttpRequestDenied);
            }
            let permit = grant.permits.clone().acquire_owned().await;
            let options = grant.capped(options);
            let (response, io) =
                wasmtime_wasi_http::default_send_request(request, Some(options)).await?;
            let io = async move {
                let result = io.await;
                drop(permit);
                result
            };
            Ok((
                response.map(BodyExt::boxed_unsync),
                Box::new(io) as IoFuture,
            ))
        };
        Box::new(sent.instrument(span))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(patterns: &[&str]) -> Outbound {
        let patterns: Vec<String> = patterns.iter().map(|p| p.to_string()).collect();
        Outbound::new(&patterns, &OutboundSettings::default()).unwrap()
    }

    #[test]
    fn patterns_match_scheme_host_and_port() {
        let g = grant(&[
            "https://api.example.com",
            "http://127.0.0.1:*",
            "https://*.cdn.net",
        ]);
        let ok = |u: &str| g.check(&u.parse().unwrap()).is_ok();
        assert!(ok("https://api.example.com/v1"));
        assert!(ok("https://API.example.com:443/"));
        assert!(!ok("https://api.example.com:8443/"));
        assert!(!ok("http://api.example.com/"));
        assert!(ok("http://127.0.0.1:9999/x"));
        assert!(ok("https://a.b.cdn.net/"));
        assert!(!ok("https://cdn.net/"));
        assert!(!ok("https://evilcdn.net/"));
        assert!(!ok("/relative"));
    }

    #[test]
    fn max_concurrent_is_held_between_one_and_its_ceiling() {
        let with = |max_concurrent| {
            let settings = OutboundSettings {
                max_concurrent,
                ..OutboundSettings::default()
            };
            Outbound::new(&["https://a.example".into()], &settings).map(drop)
        };
        assert!(with(0).unwrap_err().contains("at least 1"));
        assert!(with(MAX_CONCURRENT).is_ok());
        // A tokio semaphore panics past its own ceiling (usize::MAX >> 3).
        assert!(with(usize::MAX).unwrap_err().contains("at most 10000"));
    }

    #[test]
    fn bad_patterns_are_named() {
        for bad in [
            "api.example.com",
            "ftp://x",
            "https://x/path",
            "https://x:port",
        ] {
            let err = Outbound::new(&[bad.into()], &OutboundSettings::default()).unwrap_err();
            assert!(err.contains(bad), "{err}");
        }
    }
}
