//! CORS: `[cors]` settings, and the layer that applies them.
//!
//! tower-http decides every header. Preflights (every `OPTIONS`) go
//! through its layer as they come. For any other request, the headers the
//! layer adds depend only on the request's `Origin` (with the kinds of rule
//! `[cors]` can set: fixed lists and flags, no predicates), so they are
//! asked of the layer once per allowed origin, and once for every other
//! origin, when the component is loaded; a request then costs a lookup
//! rather than a layer, a header map and a `Vary` value of its own.

use std::convert::Infallible;
use std::future::ready;
use std::time::Duration;

use futures::FutureExt;
use http::header::{ORIGIN, VARY};
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use serde::Deserialize;
use tower::{Layer, ServiceExt};
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::bindings::cello::component::types::CorsPolicy;

/// `[cors]` in the host config or a sidecar.
///
/// ```toml
/// [cors]
/// allow-origins = ["https://app.example"]   # or ["*"]
/// allow-methods = ["GET", "POST"]
/// allow-headers = ["content-type", "authorization"]
/// expose-headers = ["x-request-id"]
/// allow-credentials = false
/// max-age-s = 600
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct CorsSettings {
    pub allow_origins: Vec<String>,
    #[serde(default = "CorsSettings::default_methods")]
    pub allow_methods: Vec<String>,
    #[serde(default = "CorsSettings::default_headers")]
    pub allow_headers: Vec<String>,
    #[serde(default)]
    pub expose_headers: Vec<String>,
    #[serde(default)]
    pub allow_credentials: bool,
    #[serde(default = "CorsSettings::default_max_age")]
    pub max_age_s: u64,
}

impl CorsSettings {
    fn default_methods() -> Vec<String> {
        ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]
            .map(String::from)
            .to_vec()
    }
    fn default_headers() -> Vec<String> {
        ["content-type", "authorization"].map(String::from).to_vec()
    }

    fn default_max_age() -> u64 {
        600
    }

    /// The allowed origins, `None` for any; or a sentence naming the bad
    /// entry.
    fn origins(&self) -> Result<Option<Vec<HeaderValue>>, String> {
        if self.allow_origins.iter().any(|o| o == "*") {
            if self.allow_credentials {
                return Err("[cors] allow-origins \"*\" cannot go with allow-credentials".into());
            }
            return Ok(None);
        }
        self.allow_origins
            .iter()
            .map(|o| {
                HeaderValue::from_str(o)
                    .map_err(|_| format!("[cors] allow-origins: {o:?} is not a valid origin"))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }

    /// The tower-http layer, or a sentence naming the bad entry.
    fn layer(&self, origins: Option<Vec<HeaderValue>>) -> Result<CorsLayer, String> {
        if self.allow_credentials {
            // Browsers refuse a wildcard with credentials; tower-http would
            // panic on it.
            let lists = [
                ("allow-methods", &self.allow_methods),
                ("allow-headers", &self.allow_headers),
                ("expose-headers", &self.expose_headers),
            ];
            if let Some((field, _)) = lists.iter().find(|(_, l)| l.iter().any(|v| v == "*")) {
                return Err(format!(
                    "[cors] {field} \"*\" cannot go with allow-credentials"
                ));
            }
        }
        let methods = self
            .allow_methods
            .iter()
            .map(|m| {
                Method::from_bytes(m.as_bytes())
                    .map_err(|_| format!("[cors] allow-methods: {m:?} is not a method"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let names = |field: &str, list: &[String]| {
            list.iter()
                .map(|h| {
                    HeaderName::from_bytes(h.as_bytes())
                        .map_err(|_| format!("[cors] {field}: {h:?} is not a header name"))
                })
                .collect::<Result<Vec<_>, _>>()
        };
        Ok(CorsLayer::new()
            .allow_origin(origins.map_or_else(AllowOrigin::any, AllowOrigin::list))
            .allow_methods(methods)
            .allow_headers(names("allow-headers", &self.allow_headers)?)
            .expose_headers(names("expose-headers", &self.expose_headers)?)
            .allow_credentials(self.allow_credentials)
            .max_age(Duration::from_secs(self.max_age_s)))
    }
}

impl From<&CorsPolicy> for CorsSettings {
    /// An app's declared wish, with the defaults for empty lists.
    fn from(policy: &CorsPolicy) -> Self {
        let or = |list: &[String], default: Vec<String>| {
            if list.is_empty() {
                default
            } else {
                list.to_vec()
            }
        };
        Self {
            allow_origins: policy.allow_origins.clone(),
            allow_methods: or(&policy.allow_methods, Self::default_methods()),
            allow_headers: or(&policy.allow_headers, Self::default_headers()),
            expose_headers: policy.expose_headers.clone(),
            allow_credentials: policy.allow_credentials,
            max_age_s: policy.max_age_seconds.into(),
        }
    }
}

/// A component's CORS, built from its settings.
pub struct Cors {
    layer: CorsLayer,
    /// What a non-preflight response gets, for each allowed origin.
    allowed: Vec<(HeaderValue, Added)>,
    /// What it gets for any other origin, or none.
    otherwise: Added,
}

impl Cors {
    /// The layer and its answers for plain requests; the error names the
    /// bad entry.
    pub fn new(settings: &CorsSettings) -> Result<Self, String> {
        let origins = settings.origins()?;
        let layer = settings.layer(origins.clone())?;
        let allowed = origins
            .unwrap_or_default()
            .into_iter()
            .map(|origin| {
                let added = Added::asked_of(&layer, Some(&origin));
                (origin, added)
            })
            .collect();
        let otherwise = Added::asked_of(&layer, None);
        Ok(Self {
            layer,
            allowed,
            otherwise,
        })
    }

    /// What CORS does to a request: a preflight is answered here (`Err`);
    /// any other request goes on, and [`Cors::after`] gives its response
    /// the headers decided now.
    pub fn before(&self, request: &http::request::Parts) -> Result<Decided, http::Response<()>> {
        if request.method != Method::OPTIONS {
            let origin = request.headers.get(ORIGIN);
            let allowed = origin.and_then(|o| self.allowed.iter().position(|(a, _)| a == o));
            return Ok(allowed.map_or(Decided::Otherwise, Decided::Allowed));
        }
        // An OPTIONS is asked of the layer itself, which answers it when it
        // is a preflight and otherwise passes it on (to an empty response
        // here, to learn the headers it adds).
        let mut asked = http::Request::new(());
        *asked.method_mut() = request.method.clone();
        *asked.uri_mut() = request.uri.clone();
        *asked.headers_mut() = request.headers.clone();
        let passed = std::sync::atomic::AtomicBool::new(false);
        let inner = tower::service_fn(|_| {
            passed.store(true, std::sync::atomic::Ordering::Relaxed);
            ready(Ok::<_, Infallible>(http::Response::new(())))
        });
        let response = self
            .layer
            .layer(inner)
            .oneshot(asked)
            .now_or_never()
            .expect("the CORS layer answers at once when its inner service does")
            .unwrap_or_else(|never| match never {});
        if passed.into_inner() {
            Ok(Decided::Asked(Added::from_response(response)))
        } else {
            Err(response)
        }
    }

    /// Gives a response the CORS headers [`Cors::before`] decided.
    pub fn after(&self, decided: &Decided, headers: &mut HeaderMap) {
        let added = match decided {
            Decided::Allowed(index) => &self.allowed[*index].1,
            Decided::Otherwise => &self.otherwise,
            Decided::Asked(added) => added,
        };
        added.apply(headers);
    }
}

/// The CORS headers a response gets, decided from its request.
#[derive(Debug)]
pub enum Decided {
    /// Those for the allowed origin at this index.
    Allowed(usize),
    /// Those for any other origin, or a request without one.
    Otherwise,
    /// Those the layer added to this very request (an OPTIONS that was not
    /// a preflight).
    Asked(Added),
}

/// The headers tower-http's layer adds to a non-preflight response.
#[derive(Debug)]
pub struct Added {
    /// Appended to any `Vary` the response has.
    vary: Option<HeaderValue>,
    /// Set, replacing the response's own.
    set: HeaderMap,
}

impl Added {
    /// Asks the layer what it adds to an empty response to a `GET` from
    /// `origin`.
    fn asked_of(layer: &CorsLayer, origin: Option<&HeaderValue>) -> Self {
        let mut request = http::Request::new(());
        if let Some(origin) = origin {
            request.headers_mut().insert(ORIGIN, origin.clone());
        }
        let empty = tower::service_fn(|_| ready(Ok::<_, Infallible>(http::Response::new(()))));
        let response = layer
            .layer(empty)
            .oneshot(request)
            .now_or_never()
            .expect("the CORS layer answers at once when its inner service does")
            .unwrap_or_else(|never| match never {});
        Self::from_response(response)
    }

    /// The headers the layer put on `response`.
    fn from_response(response: http::Response<()>) -> Self {
        let mut set = response.into_parts().0.headers;
        let vary = set.remove(VARY);
        Self { vary, set }
    }

    /// What the layer does to a response: `Vary` appended, the rest set.
    fn apply(&self, headers: &mut HeaderMap) {
        if let Some(vary) = &self.vary {
            headers.append(VARY, vary.clone());
        }
        for name in self.set.keys() {
            let mut values = self.set.get_all(name).iter();
            if let Some(first) = values.next() {
                headers.insert(name.clone(), first.clone());
            }
            for value in values {
                headers.append(name.clone(), value.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(origins: &[&str], credentials: bool) -> CorsSettings {
        CorsSettings {
            allow_origins: origins.iter().map(|o| o.to_string()).collect(),
            allow_methods: CorsSettings::default_methods(),
            allow_headers: CorsSettings::default_headers(),
            expose_headers: vec!["x-request-id".into()],
            allow_credentials: credentials,
            max_age_s: 600,
        }
    }

    /// A guest response that already has a `Vary` and an expose list.
    fn guest_response() -> http::Response<()> {
        let mut response = http::Response::new(());
        let headers = response.headers_mut();
        headers.insert(VARY, HeaderValue::from_static("accept-encoding"));
        headers.insert(
            http::header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static("x-own"),
        );
        headers.insert("x-guest", HeaderValue::from_static("kept"));
        response
    }

    fn request(method: Method, origin: Option<&str>) -> http::Request<()> {
        let mut request = http::Request::builder().method(method);
        if let Some(origin) = origin {
            request = request.header(ORIGIN, origin);
        }
        request.body(()).unwrap()
    }

    /// What tower-http's layer, run on this very request, answers.
    fn by_layer(cors: &Cors, req: http::Request<()>) -> http::Response<()> {
        let guest = tower::service_fn(|_| ready(Ok::<_, Infallible>(guest_response())));
        let answer = cors.layer.layer(guest).oneshot(req).now_or_never();
        answer.unwrap().unwrap()
    }

    /// What `before` and `after` make of the same request.
    fn by_cors(cors: &Cors, req: http::Request<()>) -> http::Response<()> {
        let (parts, ()) = req.into_parts();
        match cors.before(&parts) {
            Err(preflight) => preflight,
            Ok(decided) => {
                let mut response = guest_response();
                cors.after(&decided, response.headers_mut());
                response
            }
        }
    }

    #[test]
    fn every_response_gets_exactly_what_tower_http_would_give_it() {
        let configs = [
            settings(&["https://app.example", "https://admin.example"], true),
            settings(&["https://app.example"], false),
            settings(&["*"], false),
        ];
        let origins = [
            None,
            Some("https://app.example"),
            Some("https://admin.example"),
            Some("https://evil.example"),
            Some("null"),
        ];
        for config in &configs {
            let cors = Cors::new(config).unwrap();
            for origin in origins {
                for method in [Method::GET, Method::POST, Method::OPTIONS] {
                    let expected = by_layer(&cors, request(method.clone(), origin));
                    let got = by_cors(&cors, request(method.clone(), origin));
                    assert_eq!(
                        got.headers(),
                        expected.headers(),
                        "{method} from {origin:?} with {config:?}"
                    );
                    assert_eq!(got.status(), expected.status());
                }
            }
        }
        // And the headers are there: an allowed origin is echoed.
        let cors = Cors::new(&configs[0]).unwrap();
        let response = by_cors(&cors, request(Method::GET, Some("https://admin.example")));
        let allowed = &response.headers()[http::header::ACCESS_CONTROL_ALLOW_ORIGIN];
        assert_eq!(allowed, "https://admin.example");
        let vary: Vec<_> = response.headers().get_all(VARY).iter().collect();
        assert_eq!(vary.len(), 2, "the guest's Vary is kept: {vary:?}");
    }

    #[test]
    fn a_wildcard_with_credentials_is_refused_with_its_field() {
        let mut config = settings(&["https://app.example"], true);
        config.allow_headers = vec!["*".into()];
        let error = Cors::new(&config).err().unwrap();
        assert!(error.contains("allow-headers"), "{error}");
        let error = Cors::new(&settings(&["*"], true)).err().unwrap();
        assert!(error.contains("allow-origins"), "{error}");
    }
}
