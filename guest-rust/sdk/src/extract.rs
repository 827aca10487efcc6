//! Extractors: what a handler's arguments are made from. Each argument's
//! type says where its value comes from (`Path<u64>`, `Query<Search>`,
//! `Json<Item>`, `State<Db>`, `Kv`...), and any type that implements
//! [`FromRequest`] can be one.

use std::convert::Infallible;
use std::future::Future;

use http::{HeaderMap, Method, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::de::{self, Params};
use crate::rejection::Invalid;
use crate::response::internal_error;
use crate::{HttpError, IntoResponse, Request, Response};

/// A value made from a request: a handler argument. Implement it for your
/// own types; [`Request::extract`] runs other extractors inside yours.
///
/// ```ignore
/// struct CurrentUser(String);
///
/// impl FromRequest for CurrentUser {
///     type Rejection = HttpError;
///     async fn from_request(req: &Request) -> Result<Self, HttpError> {
///         req.user().map(CurrentUser).ok_or(HttpError::new(StatusCode::UNAUTHORIZED, "sign in"))
///     }
/// }
/// ```
///
/// A sync handler's extractors block its instance on what they await of
/// the host (a sleep, SQL, outbound HTTP); KV never waits.
pub trait FromRequest: Sized + 'static {
    /// What the handler answers instead when this fails. An [`Invalid`]
    /// (422) is answered together with the other arguments' problems.
    type Rejection: IntoResponse;

    /// True for an extractor that reads the body as it arrives
    /// ([`crate::BodyStream`]): its route's body is not read whole first.
    #[doc(hidden)]
    const STREAMS_BODY: bool = false;

    fn from_request(req: &Request) -> impl Future<Output = Result<Self, Self::Rejection>>;

    /// The same, for a handler's last argument, which may take the request
    /// whole; only [`Request`] itself needs to.
    fn from_request_owned(req: Request) -> impl Future<Output = Result<Self, Self::Rejection>> {
        async move { Self::from_request(&req).await }
    }
}

impl FromRequest for Request {
    type Rejection = Infallible;

    async fn from_request(req: &Request) -> Result<Self, Infallible> {
        Ok(req.clone())
    }

    async fn from_request_owned(req: Request) -> Result<Self, Infallible> {
        Ok(req)
    }
}

impl FromRequest for Method {
    type Rejection = Infallible;

    async fn from_request(req: &Request) -> Result<Self, Infallible> {
        Ok(req.method.clone())
    }
}

impl FromRequest for HeaderMap {
    type Rejection = Infallible;

    async fn from_request(req: &Request) -> Result<Self, Infallible> {
        Ok(req.headers.to_map())
    }
}

/// The extractor's value, or why it failed, for a handler that answers
/// the failure itself.
impl<T: FromRequest> FromRequest for Result<T, T::Rejection>
where
    T::Rejection: 'static,
{
    type Rejection = Infallible;
    const STREAMS_BODY: bool = T::STREAMS_BODY;

    async fn from_request(req: &Request) -> Result<Self, Infallible> {
        Ok(T::from_request(req).await)
    }

    async fn from_request_owned(req: Request) -> Result<Self, Infallible> {
        Ok(T::from_request_owned(req).await)
    }
}

/// The route's `{name}` segments: `Path<u64>` for one, a tuple
/// `Path<(String, u32)>` for several in order, or a struct by name.
/// A value that does not parse answers 422 at `["path", name]`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Path<T>(pub T);

impl<T: DeserializeOwned + 'static> FromRequest for Path<T> {
    type Rejection = Invalid;

    async fn from_request(req: &Request) -> Result<Self, Invalid> {
        let params: Params = req
            .params
            .iter()
            .map(|(name, value)| (name.clone(), vec![value.clone()]))
            .collect();
        typed(&params, "path", str::to_string).map(Path)
    }
}

/// The query string into a struct (or a map): fields by name, `Option`
/// or `#[serde(default)]` for optional ones, a `Vec` for a repeated name.
/// A missing or bad value answers 422 at `["query", name]`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Query<T>(pub T);

impl<T: DeserializeOwned + 'static> FromRequest for Query<T> {
    type Rejection = Invalid;

    async fn from_request(req: &Request) -> Result<Self, Invalid> {
        let pairs = form_urlencoded::parse(req.query.as_bytes())
            .map(|(name, value)| (name.into_owned(), value.into_owned()));
        typed(&de::group(pairs), "query", str::to_string).map(Query)
    }
}

/// Request headers into a struct, a field per header: `user_agent` reads
/// `user-agent`, as the Python SDK's `Header()` does. A missing or bad
/// value answers 422 at `["header", "user-agent"]`. For every header as it
/// came, take a `HeaderMap`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Header<T>(pub T);

impl<T: DeserializeOwned + 'static> FromRequest for Header<T> {
    type Rejection = Invalid;

    async fn from_request(req: &Request) -> Result<Self, Invalid> {
        let pairs = req.headers.iter().map(|(name, value)| {
            let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
            (name.as_str().replace('-', "_"), value)
        });
        typed(&de::group(pairs), "header", |name| name.replace('_', "-")).map(Header)
    }
}

fn typed<T: DeserializeOwned>(
    params: &Params,
    source: &str,
    rename: fn(&str) -> String,
) -> Result<T, Invalid> {
    de::from_params(params).map_err(|e| Invalid::one(e.into_field_error(source, rename)))
}

/// Shared state of the app: a value given to [`crate::App::with_state`] or
/// returned by an `on_start` hook, cloned for each request (wrap large
/// ones in `Rc`). The Python SDK's `Depends` on a singleton.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct State<T>(pub T);

impl<T: Clone + 'static> FromRequest for State<T> {
    type Rejection = Response;

    async fn from_request(req: &Request) -> Result<Self, Response> {
        req.state.get::<T>().map(State).ok_or_else(|| {
            internal_error(&format!(
                "no state of type {}: give it to App::with_state or return it from on_start",
                std::any::type_name::<T>()
            ))
        })
    }
}

/// The verified JWT claims, into `T` (a `serde_json::Value` by default).
/// A route without them (no `roles`/`scopes`, so not authenticated) answers
/// 401.
#[derive(Debug, Clone, PartialEq)]
pub struct Claims<T = Value>(pub T);

impl<T: DeserializeOwned + 'static> FromRequest for Claims<T> {
    type Rejection = HttpError;

    async fn from_request(req: &Request) -> Result<Self, HttpError> {
        let claims = req
            .claims_json
            .as_deref()
            .ok_or_else(|| HttpError::new(StatusCode::UNAUTHORIZED, "Not authenticated"))?;
        serde_json::from_str(claims).map(Claims).map_err(|e| {
            HttpError::new(
                StatusCode::FORBIDDEN,
                format!("the token's claims do not fit: {e}"),
            )
        })
    }
}

/// The body as text (invalid UTF-8 replaced).
impl FromRequest for String {
    type Rejection = Infallible;

    async fn from_request(req: &Request) -> Result<Self, Infallible> {
        Ok(req.text())
    }

    async fn from_request_owned(req: Request) -> Result<Self, Infallible> {
        Ok(String::from_utf8(req.body)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()))
    }
}

/// The body as bytes.
impl FromRequest for Vec<u8> {
    type Rejection = Infallible;

    async fn from_request(req: &Request) -> Result<Self, Infallible> {
        Ok(req.body.clone())
    }

    async fn from_request_owned(req: Request) -> Result<Self, Infallible> {
        Ok(req.body)
    }
}
