//! What each argument and each result of a [`documented`] handler adds to
//! its operation, for the SDK's own extractors and results. Your own
//! extractor implements [`OperationInput`] to be used in one (an empty
//! `impl` adds nothing).
//!
//! [`documented`]: super::documented

use std::borrow::Cow;
use std::convert::Infallible;

use http::{HeaderMap, Method, StatusCode};
use schemars::JsonSchema;
use serde_json::json;

use super::{Operation, ParamIn};
use crate::outbound::Client;
use crate::sql::{Db, SqlError};
use crate::{
    BackgroundTasks, Claims, Config, FromRequest, Header, HttpError, Invalid, Json, Kv, KvError,
    Path, Query, Request, Response, State,
};

/// What an extractor adds to the operation of a [`documented`] handler
/// that takes it: its parameters, its request body, the responses it may
/// answer instead. Adds nothing by default:
///
/// ```ignore
/// impl OperationInput for CurrentUser {}
///
/// impl OperationInput for Existing {
///     fn describe(op: &mut Operation<'_>) {
///         op.input::<Path<u64>>().response(StatusCode::NOT_FOUND, "No such item");
///     }
/// }
/// ```
///
/// [`documented`]: super::documented
#[diagnostic::on_unimplemented(
    message = "`{Self}` does not say what it adds to the OpenAPI document",
    label = "an argument of a `documented` handler",
    note = "implement `cello::openapi::OperationInput` for it (an empty impl adds nothing), \
            or leave the route undocumented"
)]
pub trait OperationInput {
    /// Adds this extractor's part to `op`.
    #[allow(unused_variables)]
    fn describe(op: &mut Operation<'_>) {}
}

/// What a result adds to the operation of a [`documented`] handler that
/// returns it: its responses. Adds nothing by default.
///
/// [`documented`]: super::documented
#[diagnostic::on_unimplemented(
    message = "`{Self}` does not say what it adds to the OpenAPI document",
    label = "the result of a `documented` handler",
    note = "implement `cello::openapi::OperationOutput` for it (an empty impl adds nothing)"
)]
pub trait OperationOutput {
    /// Adds this result's responses to `op`.
    #[allow(unused_variables)]
    fn describe(op: &mut Operation<'_>) {}
}

impl<T: JsonSchema> OperationInput for Path<T> {
    fn describe(op: &mut Operation<'_>) {
        op.parameters::<T>(ParamIn::Path);
    }
}

impl<T: JsonSchema> OperationInput for Query<T> {
    fn describe(op: &mut Operation<'_>) {
        op.parameters::<T>(ParamIn::Query);
    }
}

impl<T: JsonSchema> OperationInput for Header<T> {
    fn describe(op: &mut Operation<'_>) {
        op.parameters::<T>(ParamIn::Header);
    }
}

impl<T: JsonSchema> OperationInput for Json<T> {
    fn describe(op: &mut Operation<'_>) {
        op.json_body::<T>();
    }
}

/// The body as text, which may be empty.
impl OperationInput for String {
    fn describe(op: &mut Operation<'_>) {
        op.body(false, "text/plain", Some(json!({ "type": "string" })));
    }
}

/// The body as bytes, which may be empty.
impl OperationInput for Vec<u8> {
    fn describe(op: &mut Operation<'_>) {
        op.body(false, "application/octet-stream", None);
    }
}

/// What `T` adds; the handler answers its failure itself.
impl<T: FromRequest + OperationInput> OperationInput for Result<T, T::Rejection> {
    fn describe(op: &mut Operation<'_>) {
        op.input::<T>();
    }
}

/// Extractors that read nothing a client chooses to send, or anything.
macro_rules! add_nothing {
    ($trait:ident: $($type:ty),* $(,)?) => {
        $(impl $trait for $type {})*
    };
}

add_nothing!(OperationInput: Request, Method, HeaderMap, Kv, Config, Client, BackgroundTasks, Db);

impl<T> OperationInput for State<T> {}

/// The route's roles and scopes say what the token must hold.
impl<T> OperationInput for Claims<T> {}

impl<T: JsonSchema> OperationOutput for Json<T> {
    fn describe(op: &mut Operation<'_>) {
        op.json_response::<T>(StatusCode::OK);
    }
}

fn text(op: &mut Operation<'_>) {
    let schema = json!({ "type": "string" });
    op.respond("200", "Successful Response", "text/plain", Some(schema));
}

impl OperationOutput for String {
    fn describe(op: &mut Operation<'_>) {
        text(op);
    }
}

impl OperationOutput for &'static str {
    fn describe(op: &mut Operation<'_>) {
        text(op);
    }
}

impl OperationOutput for Cow<'static, str> {
    fn describe(op: &mut Operation<'_>) {
        text(op);
    }
}

impl OperationOutput for Vec<u8> {
    fn describe(op: &mut Operation<'_>) {
        op.respond(
            "200",
            "Successful Response",
            "application/octet-stream",
            None,
        );
    }
}

/// 204 No Content.
impl OperationOutput for () {
    fn describe(op: &mut Operation<'_>) {
        op.response(StatusCode::NO_CONTENT, "No Content");
    }
}

/// A status chosen when the handler runs: any.
impl OperationOutput for StatusCode {
    fn describe(op: &mut Operation<'_>) {
        let response = json!({ "description": "Response" });
        op.responses.entry("default").or_insert(response);
    }
}

/// `(StatusCode::CREATED, Json(item))`: `T`'s body under `2XX`, the status
/// being chosen when the handler runs.
impl<T: OperationOutput> OperationOutput for (StatusCode, T) {
    fn describe(op: &mut Operation<'_>) {
        op.output_with_any_success::<T>();
    }
}

impl<T: OperationOutput> OperationOutput for (u16, T) {
    fn describe(op: &mut Operation<'_>) {
        op.output_with_any_success::<T>();
    }
}

impl<T: OperationOutput> OperationOutput for (StatusCode, HeaderMap, T) {
    fn describe(op: &mut Operation<'_>) {
        op.output_with_any_success::<T>();
    }
}

impl<T: OperationOutput> OperationOutput for (HeaderMap, T) {
    fn describe(op: &mut Operation<'_>) {
        op.output::<T>();
    }
}

impl<T: OperationOutput, E: OperationOutput> OperationOutput for Result<T, E> {
    fn describe(op: &mut Operation<'_>) {
        op.output::<T>().output::<E>();
    }
}

/// `None` is 404.
impl<T: OperationOutput> OperationOutput for Option<T> {
    fn describe(op: &mut Operation<'_>) {
        op.output::<T>()
            .response(StatusCode::NOT_FOUND, "Not Found");
    }
}

/// A 422 is in the document whenever an argument may answer one.
impl OperationOutput for Invalid {
    fn describe(op: &mut Operation<'_>) {
        op.validated = true;
    }
}

// Any status, or a 500 whose reason is logged: nothing to promise.
add_nothing!(OperationOutput: Response, HttpError, KvError, anyhow::Error, Infallible, HeaderMap);

/// A constraint refused answers 409.
impl OperationOutput for SqlError {
    fn describe(op: &mut Operation<'_>) {
        op.respond("409", "Conflict", "application/json", None);
    }
}

impl<B> OperationOutput for http::Response<B> {}
