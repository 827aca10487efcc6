//! The admin API: JSON over HTTP on a listener of its own (loopback by
//! default), for operators and tenants.
//!
//! Every request carries `Authorization: Bearer TOKEN`. The operator's token
//! (from `--admin-token` or `CELLO_ADMIN_TOKEN`) may do anything; a
//! tenant's token (issued by the operator, shown once, stored hashed) may
//! only manage that tenant's components.
//!
//! | Method and path | Who | What |
//! |---|---|---|
//! | `GET /v1/tenants` | operator | list tenants |
//! | `POST /v1/tenants` | operator | create `{"name", "quotas"?, "grants"?}` |
//! | `GET /v1/tenants/{t}` | either | quotas, grants, components |
//! | `PATCH /v1/tenants/{t}` | operator | set `{"quotas"?, "grants"?}` |
//! | `DELETE /v1/tenants/{t}` | operator | delete with all its data |
//! | `POST /v1/tenants/{t}/tokens` | operator | issue a token |
//! | `GET /v1/tenants/{t}/components` | either | list components |
//! | `PUT /v1/tenants/{t}/components/{n}` | either | upload a version |
//! | `DELETE /v1/tenants/{t}/components/{n}` | either | remove |
//! | `GET /v1/tenants/{t}/components/{n}/versions` | either | versions |
//! | `POST /v1/tenants/{t}/components/{n}/rollback` | either | `{"version"?}` |
//!
//! An upload's body is the component (`application/wasm`), or a
//! `multipart/form-data` form with the component in a `component` field
//! and its sidecar settings (TOML) in a `settings` field.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::body::Body;
use crate::config::ServerSettings;
use crate::connections::accept;
use crate::error::json_response;
use crate::tenants::{Refusal, TenantChanges, Tenants};

/// Largest JSON body the API reads.
const MAX_JSON: usize = 1 << 20;
/// Room for the settings and form framing around an uploaded component:
/// well over the settings' cap, so that an upload a little over its quota
/// is read and refused with a sentence, not cut off mid-send.
const FORM_SLACK: usize = 1 << 20;
const _: () = assert!(FORM_SLACK >= 2 * crate::tenants::MAX_SETTINGS_BYTES);

/// Uploads read at once, on the whole host and for one tenant: each holds
/// its body in memory (up to the tenant's `max-component-mb`).
const UPLOADS_AT_ONCE: usize = 8;
const TENANT_UPLOADS_AT_ONCE: usize = 2;

/// The admin API's state.
pub struct Admin {
    tenants: Arc<Tenants>,
    operator: blake3::Hash,
    uploads: Uploads,
}

/// What bounds the uploads in flight: how many, and how long each body
/// may take to arrive.
struct Uploads {
    host: Arc<Semaphore>,
    tenants: Mutex<HashMap<String, Arc<Semaphore>>>,
    timeout: Duration,
}

/// An upload's place among those in flight: the host's, given back once
/// its body is in (what follows, compiling and starting it, waits on its
/// tenant's lock and the host's compile places), and its tenant's, given
/// back when the upload ends.
struct UploadPermit {
    host: OwnedSemaphorePermit,
    tenant: OwnedSemaphorePermit,
}

impl Uploads {
    /// A place for one more upload by `tenant`, or the refusal saying why
    /// there is none: it never waits, so a refused client holds nothing.
    fn admit(&self, tenant: &str) -> Result<UploadPermit, Refusal> {
        let tenant_uploads = self
            .tenants
            .lock()
            .unwrap()
            .entry(tenant.to_string())
            .or_insert_with(|| Arc::new(Semaphore::new(TENANT_UPLOADS_AT_ONCE)))
            .clone();
        let Ok(tenant_permit) = tenant_uploads.try_acquire_owned() else {
            return Err(Refusal::new(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "tenant {tenant} has {TENANT_UPLOADS_AT_ONCE} uploads in progress \
                     already; send this one when one of them has ended"
                ),
            ));
        };
        let Ok(host_permit) = self.host.clone().try_acquire_owned() else {
            return Err(Refusal::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "the host is reading {UPLOADS_AT_ONCE} uploads already; retry in a few seconds"
                ),
            ));
        };
        Ok(UploadPermit {
            host: host_permit,
            tenant: tenant_permit,
        })
    }
}

/// Who is calling.
enum Caller {
    Operator,
    Tenant(String),
}

impl Admin {
    /// An API over `tenants`, with `operator_token` the operator's; an
    /// upload's body must arrive within `upload_timeout`.
    pub fn new(tenants: Arc<Tenants>, operator_token: &str, upload_timeout: Duration) -> Arc<Self> {
        Arc::new(Self {
            tenants,
            operator: blake3::hash(operator_token.as_bytes()),
            uploads: Uploads {
                host: Arc::new(Semaphore::new(UPLOADS_AT_ONCE)),
                tenants: Mutex::default(),
                timeout: upload_timeout,
            },
        })
    }
}

/// Serves the admin API until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    settings: ServerSettings,
    admin: Arc<Admin>,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    accept(listener, &settings, shutdown, move |req, _| {
        let admin = admin.clone();
        async move {
            match admin.answer(req).await {
                Ok(response) => response,
                Err(refusal) => refused(refusal),
            }
        }
    })
    .await
}

/// `{"detail": "...", "problems": [...]}` with the refusal's status.
fn refused(refusal: Refusal) -> http::Response<Body> {
    let mut response = json_response(
        refusal.status,
        &serde_json::json!({ "detail": refusal.error, "problems": refusal.problems }),
    );
    if refusal.status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"cello-admin\""),
        );
    }
    // A 503 is a tenant whose traffic holds every instance, the host
    // reading as many uploads as it takes, or a cluster's PostgreSQL out
    // of reach; a 429, a tenant with its uploads in flight: worth a retry.
    if refusal.status == StatusCode::SERVICE_UNAVAILABLE
        || refusal.status == StatusCode::TOO_MANY_REQUESTS
    {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    }
    response
}

fn ok(status: StatusCode, value: impl serde::Serialize) -> Result<http::Response<Body>, Refusal> {
    let value = serde_json::to_value(value)
        .map_err(|e| Refusal::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(json_response(status, &value))
}

fn no_content() -> Result<http::Response<Body>, Refusal> {
    let mut response = http::Response::new(crate::body::full(Bytes::new()));
    *response.status_mut() = StatusCode::NO_CONTENT;
    Ok(response)
}

/// `POST /v1/tenants`: a name, and optionally quotas and grants.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewTenant {
    name: String,
    #[serde(default)]
    quotas: Option<crate::tenants::QuotaChanges>,
    #[serde(default)]
    grants: Option<crate::capabilities::Grants>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Rollback {
    #[serde(default)]
    version: Option<u32>,
}

/// What a path of the admin API names.
#[derive(Clone, Copy)]
enum Endpoint {
    Tenants,
    Tenant,
    Tokens,
    Token,
    Components,
    Component,
    Versions,
    Rollback,
}

/// The admin API's paths, each to what it names.
fn endpoints() -> &'static matchit::Router<Endpoint> {
    static ENDPOINTS: OnceLock<matchit::Router<Endpoint>> = OnceLock::new();
    ENDPOINTS.get_or_init(|| {
        let mut router = matchit::Router::new();
        let paths = [
            ("/v1/tenants", Endpoint::Tenants),
            ("/v1/tenants/{tenant}", Endpoint::Tenant),
            ("/v1/tenants/{tenant}/tokens", Endpoint::Tokens),
            ("/v1/tenants/{tenant}/tokens/{name}", Endpoint::Token),
            ("/v1/tenants/{tenant}/components", Endpoint::Components),
            (
                "/v1/tenants/{tenant}/components/{name}",
                Endpoint::Component,
            ),
            (
                "/v1/tenants/{tenant}/components/{name}/versions",
                Endpoint::Versions,
            ),
            (
                "/v1/tenants/{tenant}/components/{name}/rollback",
                Endpoint::Rollback,
            ),
        ];
        for (path, endpoint) in paths {
            router
                .insert(path, endpoint)
                .expect("the admin API's paths do not overlap");
        }
        router
    })
}

impl Admin {
    async fn answer(&self, req: http::Request<Incoming>) -> Result<http::Response<Body>, Refusal> {
        let caller = self.caller(&req).await?;
        let path = req.uri().path().to_string();
        let method = req.method().clone();
        let found = endpoints().at(path.trim_end_matches('/')).map_err(|_| {
            Refusal::new(
                StatusCode::NOT_FOUND,
                format!("{path} is not part of the admin API (it starts with /v1/tenants)"),
            )
        })?;
        let tenant = found.params.get("tenant").unwrap_or_default();
        let name = found.params.get("name").unwrap_or_default();
        let tenants = &self.tenants;
        match (*found.value, &method) {
            (Endpoint::Tenants, &Method::GET) => {
                operator(&caller)?;
                ok(StatusCode::OK, tenants.list().await)
            }
            (Endpoint::Tenants, &Method::POST) => {
                operator(&caller)?;
                let body: NewTenant = json_body(req).await?;
                let settings = TenantChanges {
                    quotas: body.quotas,
                    grants: body.grants,
                };
                let view = tenants.create(&body.name, settings).await?;
                ok(StatusCode::CREATED, view)
            }
            (Endpoint::Tenant, &Method::GET) => {
                may(&caller, tenant)?;
                ok(StatusCode::OK, tenants.get(tenant).await?)
            }
            (Endpoint::Tenant, &Method::PATCH) => {
                operator(&caller)?;
                let settings: TenantChanges = json_body(req).await?;
                ok(StatusCode::OK, tenants.update(tenant, settings).await?)
            }
            (Endpoint::Tenant, &Method::DELETE) => {
                operator(&caller)?;
                tenants.delete(tenant).await?;
                no_content()
            }
            (Endpoint::Tokens, &Method::POST) => {
                operator(&caller)?;
                let token = tenants.issue_token(tenant).await?;
                let id = crate::tenants::token_id(&token);
                ok(
                    StatusCode::CREATED,
                    serde_json::json!({ "tenant": tenant, "token": token, "id": id }),
                )
            }
            (Endpoint::Tokens, &Method::GET) => {
                may(&caller, tenant)?;
                ok(StatusCode::OK, tenants.token_ids(tenant).await?)
            }
            // A tenant may revoke its own (a leaked one, say); `name` is
            // the token's id.
            (Endpoint::Token, &Method::DELETE) => {
                may(&caller, tenant)?;
                tenants.revoke_token(tenant, name).await?;
                no_content()
            }
            (Endpoint::Components, &Method::GET) => {
                may(&caller, tenant)?;
                ok(StatusCode::OK, tenants.get(tenant).await?.components)
            }
            (Endpoint::Component, &Method::PUT) => {
                may(&caller, tenant)?;
                let limit = tenants.get(tenant).await?.quotas.max_component_mb << 20;
                let UploadPermit {
                    host,
                    tenant: place,
                } = self.uploads.admit(tenant)?;
                let timeout = self.uploads.timeout;
                let (bytes, settings) =
                    tokio::time::timeout(timeout, upload_body(req, limit as usize))
                        .await
                        .map_err(|_| {
                            Refusal::new(
                                StatusCode::REQUEST_TIMEOUT,
                                format!("the upload's body did not arrive within {timeout:?}"),
                            )
                        })??;
                drop(host);
                let deployed = tenants.upload(tenant, name, bytes, settings).await;
                drop(place);
                ok(StatusCode::CREATED, deployed?)
            }
            (Endpoint::Component, &Method::DELETE) => {
                may(&caller, tenant)?;
                tenants.remove(tenant, name).await?;
                no_content()
            }
            (Endpoint::Versions, &Method::GET) => {
                may(&caller, tenant)?;
                ok(StatusCode::OK, tenants.versions(tenant, name).await?)
            }
            (Endpoint::Rollback, &Method::POST) => {
                may(&caller, tenant)?;
                let body: Rollback = json_body(req).await?;
                ok(
                    StatusCode::OK,
                    tenants.rollback(tenant, name, body.version).await?,
                )
            }
            _ => Err(Refusal::new(
                StatusCode::METHOD_NOT_ALLOWED,
                format!("{method} is not allowed on {path}"),
            )),
        }
    }

    /// The caller, from its bearer token.
    async fn caller(&self, req: &http::Request<Incoming>) -> Result<Caller, Refusal> {
        let unauthorized = |why: &str| Refusal::new(StatusCode::UNAUTHORIZED, why);
        let token = req
            .headers()
            .get(header::AUTHORIZATION)
            .ok_or_else(|| unauthorized("the admin API needs `Authorization: Bearer TOKEN`"))?
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .ok_or_else(|| unauthorized("the Authorization header is not `Bearer TOKEN`"))?;
        // `blake3::Hash` compares in constant time.
        if blake3::hash(token.as_bytes()) == self.operator {
            return Ok(Caller::Operator);
        }
        match self.tenants.authenticate(token) {
            Some(tenant) => Ok(Caller::Tenant(tenant)),
            None => Err(unauthorized("the token is not valid")),
        }
    }
}

fn operator(caller: &Caller) -> Result<(), Refusal> {
    match caller {
        Caller::Operator => Ok(()),
        Caller::Tenant(_) => Err(Refusal::new(
            StatusCode::FORBIDDEN,
            "only the operator's token may do this",
        )),
    }
}

/// The operator, or the tenant itself.
fn may(caller: &Caller, tenant: &str) -> Result<(), Refusal> {
    match caller {
        Caller::Operator => Ok(()),
        Caller::Tenant(own) if own == tenant => Ok(()),
        Caller::Tenant(own) => Err(Refusal::new(
            StatusCode::FORBIDDEN,
            format!("a token of tenant {own} cannot act for tenant {tenant}"),
        )),
    }
}

/// A JSON body; an empty body reads as `{}`.
async fn json_body<T: for<'de> Deserialize<'de>>(
    req: http::Request<Incoming>,
) -> Result<T, Refusal> {
    let body = read(req.into_body(), MAX_JSON).await?;
    let body: &[u8] = if body.is_empty() { b"{}" } else { &body };
    serde_json::from_slice(body).map_err(|e| {
        Refusal::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("the body is not the JSON expected: {e}"),
        )
    })
}

/// Reads at most `limit` bytes; more is a 413.
async fn read(body: Incoming, limit: usize) -> Result<Bytes, Refusal> {
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(Refusal::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body is over the {limit} bytes allowed"),
        )),
        Err(e) => Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            format!("the body could not be read: {e}"),
        )),
    }
}

/// An upload's component bytes and settings text, from a raw body or a
/// multipart form.
async fn upload_body(
    req: http::Request<Incoming>,
    limit: usize,
) -> Result<(Vec<u8>, String), Refusal> {
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/wasm")
        .to_string();
    let too_large = || {
        Refusal::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the component is over the tenant's limit of {limit} bytes"),
        )
    };
    if let Some(length) = req.headers().get(header::CONTENT_LENGTH)
        && length
            .to_str()
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
            .is_some_and(|n| n > limit + FORM_SLACK)
    {
        return Err(too_large());
    }
    let body = read(req.into_body(), limit + FORM_SLACK)
        .await
        .map_err(|r| {
            if r.status == StatusCode::PAYLOAD_TOO_LARGE {
                too_large()
            } else {
                r
            }
        })?;
    if !content_type.starts_with("multipart/form-data") {
        if body.len() > limit {
            return Err(too_large());
        }
        // The body's own buffer when it came in one piece: not copied.
        return Ok((Vec::from(body), String::new()));
    }
    let bad = |why: String| Refusal::new(StatusCode::BAD_REQUEST, why);
    let boundary = multer::parse_boundary(&content_type)
        .map_err(|e| bad(format!("the multipart form has no boundary: {e}")))?;
    let stream = futures::stream::once(async move { Ok::<_, std::convert::Infallible>(body) });
    let mut form = multer::Multipart::new(stream, boundary);
    let (mut component, mut settings) = (None, String::new());
    while let Some(field) = form
        .next_field()
        .await
        .map_err(|e| bad(format!("the multipart form is malformed: {e}")))?
    {
        let name = field.name().unwrap_or_default().to_string();
        let bytes = field
            .bytes()
            .await
            .map_err(|e| bad(format!("field {name} is malformed: {e}")))?;
        match name.as_str() {
            "component" => component = Some(bytes.to_vec()),
            "settings" => {
                settings = String::from_utf8(bytes.to_vec())
                    .map_err(|_| bad("the settings are not UTF-8 text".into()))?;
            }
            other => {
                return Err(bad(format!(
                    "unexpected form field {other:?}; expected component and settings"
                )));
            }
        }
    }
    let component = component.ok_or_else(|| bad("the form has no `component` field".into()))?;
    if component.len() > limit {
        return Err(too_large());
    }
    Ok((component, settings))
}

#[cfg(test)]
mod tests {
    use super::{Endpoint, endpoints};

    #[test]
    fn paths_name_their_endpoint_and_parameters() {
        let found = endpoints()
            .at("/v1/tenants/acme/components/shop/versions")
            .unwrap();
        assert!(matches!(found.value, Endpoint::Versions));
        assert_eq!(found.params.get("tenant"), Some("acme"));
        assert_eq!(found.params.get("name"), Some("shop"));
        let found = endpoints().at("/v1/tenants/acme").unwrap();
        assert!(matches!(found.value, Endpoint::Tenant));
        for unknown in [
            "/v1/tenants/acme/components/shop/extra",
            "/v1/tenant",
            "/v2/tenants",
            "/",
        ] {
            assert!(endpoints().at(unknown).is_err(), "{unknown}");
        }
    }
}
