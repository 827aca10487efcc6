//! OpenTelemetry traces, exported over OTLP (gRPC, or HTTP with protobuf
//! or JSON) when an endpoint is set: `[telemetry] otlp-endpoint` in the
//! host config, or the standard `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//! `..._TRACES_ENDPOINT`).
//! Sampling follows `OTEL_TRACES_SAMPLER` and `OTEL_TRACES_SAMPLER_ARG`,
//! or `[telemetry] sample-ratio`.
//!
//! Off by default, and then free: no span is made, no layer is installed.
//! On, each request gets a span (child of the caller's W3C `traceparent`,
//! when it sends one) with children for auth, rate limits, the cache,
//! instance checkout and the guest call, with a child of the guest call for
//! each host call it makes (key-value, SQL, outbound HTTP). The guest sees
//! the request's own `traceparent`, and its outbound requests carry it.

use std::pin::Pin;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use opentelemetry::propagation::TextMapPropagator as _;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig as _, WithHttpConfig as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use serde::Deserialize;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// The target of every span made for traces, and only for traces: the
/// log leaves it out.
pub const TARGET: &str = "cello::trace";

/// The `[telemetry]` table.
///
/// ```toml
/// [telemetry]
/// otlp-endpoint = "http://127.0.0.1:4318"  # or OTEL_EXPORTER_OTLP_ENDPOINT
/// protocol = "http/protobuf"                # or "http/json", "grpc"; or OTEL_EXPORTER_OTLP_PROTOCOL
/// sample-ratio = 0.1                        # or OTEL_TRACES_SAMPLER(_ARG); default: all
/// service-name = "cello"                    # or OTEL_SERVICE_NAME
/// ```
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct TelemetrySettings {
    /// The collector's OTLP address (for HTTP, `/v1/traces` is added):
    /// usually port 4318 for HTTP, 4317 for gRPC.
    pub otlp_endpoint: Option<String>,
    /// `http/protobuf` (the default), `http/json` or `grpc`.
    pub protocol: Option<String>,
    /// The share of traces kept, from 0 to 1, for traces no caller
    /// sampled already.
    pub sample_ratio: Option<f64>,
    pub service_name: Option<String>,
}

static ON: AtomicBool = AtomicBool::new(false);
static PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();

/// Whether traces are exported.
pub fn on() -> bool {
    ON.load(Ordering::Relaxed)
}

/// Whether `settings` or the environment asks for traces.
fn wanted(settings: &TelemetrySettings) -> bool {
    let set = |name: &str| std::env::var(name).is_ok_and(|v| !v.is_empty());
    if std::env::var("OTEL_SDK_DISABLED").is_ok_and(|v| v.eq_ignore_ascii_case("true")) {
        return false;
    }
    settings.otlp_endpoint.is_some()
        || set("OTEL_EXPORTER_OTLP_ENDPOINT")
        || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
}

/// Starts exporting when asked to; the tracer for the log's layer, or
/// None when traces are off. Needs the tokio runtime it is called on.
pub fn init(
    settings: &TelemetrySettings,
) -> anyhow::Result<Option<opentelemetry_sdk::trace::Tracer>> {
    if !wanted(settings) {
        return Ok(None);
    }
    let protocol = settings
        .protocol
        .clone()
        .or_else(|| std::env::var("OTEL_EXPORTER_OTLP_PROTOCOL").ok());
    let endpoint = settings
        .otlp_endpoint
        .as_deref()
        .map(|e| e.trim_end_matches('/'));
    let exporter = match protocol.as_deref() {
        // gRPC's channel works on the runtime this is called on.
        Some("grpc") => {
            let mut exporter = opentelemetry_otlp::SpanExporter::builder().with_tonic();
            if let Some(endpoint) = endpoint {
                exporter = exporter.with_endpoint(endpoint);
            }
            exporter.build()
        }
        Some("http/json" | "http/protobuf") | None => {
            let protocol = match protocol.as_deref() {
                Some("http/json") => Protocol::HttpJson,
                _ => Protocol::HttpBinary,
            };
            let mut exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_protocol(protocol)
                .with_http_client(TokioClient::new());
            if let Some(endpoint) = endpoint {
                exporter = exporter.with_endpoint(format!("{endpoint}/v1/traces"));
            }
            exporter.build()
        }
        Some(other) => anyhow::bail!(
            "the OTLP protocol {other:?} is not supported: use \"grpc\", \"http/protobuf\" or \"http/json\""
        ),
    };
    let exporter = exporter.map_err(|e| anyhow::anyhow!("cannot export traces: {e}"))?;
    let mut provider = SdkTracerProvider::builder().with_batch_exporter(exporter);
    if let Some(ratio) = settings.sample_ratio {
        anyhow::ensure!(
            (0.0..=1.0).contains(&ratio),
            "[telemetry] sample-ratio = {ratio} must be from 0 to 1"
        );
        provider = provider.with_sampler(Sampler::ParentBased(Box::new(
            Sampler::TraceIdRatioBased(ratio),
        )));
    }
    let service = settings
        .service_name
        .clone()
        .or_else(|| std::env::var("OTEL_SERVICE_NAME").ok())
        .unwrap_or_else(|| "cello".into());
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(service)
        .build();
    let provider = provider.with_resource(resource).build();
    let tracer = provider.tracer("cello-host");
    let _ = PROVIDER.set(provider);
    ON.store(true, Ordering::Relaxed);
    Ok(Some(tracer))
}

/// Exports what is left; call before the process exits.
pub fn shutdown() {
    if let Some(provider) = PROVIDER.get() {
        let _ = provider.shutdown();
    }
}

/// The span of one request, a child of the caller's `traceparent` when
/// it sends one; none when traces are off.
pub fn request_span(headers: &http::HeaderMap, method: &http::Method, path: &str) -> tracing::Span {
    if !on() {
        return tracing::Span::none();
    }
    let span = tracing::info_span!(
        target: TARGET,
        "request",
        otel.name = %format!("{method} {path}"),
        otel.kind = "server",
        http.request.method = %method,
        url.path = path,
        http.response.status_code = tracing::field::Empty,
    );
    let parent =
        TraceContextPropagator::new().extract(&opentelemetry_http::HeaderExtractor(headers));
    let _ = span.set_parent(parent);
    span
}

/// The current span when traces are on; otherwise none, without asking
/// the subscriber (this runs for every request).
pub fn current() -> tracing::Span {
    if on() {
        tracing::Span::current()
    } else {
        tracing::Span::none()
    }
}

/// A child span of the current one for one stage of a request; none
/// when traces are off.
pub fn stage(name: &'static str) -> tracing::Span {
    if !on() {
        return tracing::Span::none();
    }
    tracing::info_span!(target: TARGET, "stage", otel.name = name)
}

/// A child span of the current one for a call the guest makes to the
/// host (`kv get`, `sql query`, `outbound GET`); none when traces are off.
/// `system` names what was called (`db.system` for SQL, the store for KV).
pub fn host_call(name: &str, system: &'static str) -> tracing::Span {
    if !on() {
        return tracing::Span::none();
    }
    tracing::info_span!(
        target: TARGET,
        "host call",
        otel.name = name,
        otel.kind = "client",
        cello.system = system,
    )
}

/// Adds the current span's `traceparent` to an outgoing request's headers.
pub fn inject(headers: &mut http::HeaderMap) {
    if !on() {
        return;
    }
    let context = tracing::Span::current().context();
    TraceContextPropagator::new()
        .inject_context(&context, &mut opentelemetry_http::HeaderInjector(headers));
}

/// The exporter's HTTP client: hyper on the host's tokio runtime. The
/// SDK exports from a thread of its own, outside the runtime, so each
/// request is spawned onto it.
#[derive(Debug, Clone)]
struct TokioClient {
    runtime: tokio::runtime::Handle,
    client: hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        Full<Bytes>,
    >,
}

impl TokioClient {
    fn new() -> Self {
        Self {
            runtime: tokio::runtime::Handle::current(),
            client: hyper_util::client::legacy::Client::builder(
                hyper_util::rt::TokioExecutor::new(),
            )
            .build_http(),
        }
    }
}

impl opentelemetry_http::HttpClient for TokioClient {
    fn send_bytes<'a, 'b>(
        &'a self,
        request: http::Request<Bytes>,
    ) -> Pin<
        Box<
            dyn Future<Output = Result<http::Response<Bytes>, opentelemetry_http::HttpError>>
                + Send
                + 'b,
        >,
    >
    where
        'a: 'b,
        Self: 'b,
    {
        let client = self.client.clone();
        let sent = self.runtime.spawn(async move {
            let response = client.request(request.map(Full::new)).await?;
            let (parts, body) = response.into_parts();
            let body = body.collect().await?.to_bytes();
            Ok::<_, opentelemetry_http::HttpError>(http::Response::from_parts(parts, body))
        });
        Box::pin(async move { sent.await? })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_makes_no_span_and_injects_nothing() {
        assert!(!on());
        let headers = http::HeaderMap::new();
        assert!(request_span(&headers, &http::Method::GET, "/").is_none());
        assert!(stage("auth").is_none());
        assert!(host_call("kv get", "redb").is_none());
        let mut outgoing = http::HeaderMap::new();
        inject(&mut outgoing);
        assert!(outgoing.is_empty());
    }

    #[test]
    fn an_endpoint_in_the_config_asks_for_traces() {
        let settings = TelemetrySettings {
            otlp_endpoint: Some("http://127.0.0.1:4318".into()),
            ..TelemetrySettings::default()
        };
        assert!(wanted(&settings));
    }
}
