//! The app's OpenAPI 3.1 document (feature `openapi`), served at
//! `/openapi.json` as the Python SDK serves its apps'.
//!
//! Every route is in it: its methods, its path with the `{name}` segments
//! as path parameters, an `operationId` made of the handler's name, the
//! path and the method, and what the host enforces around it (roles and
//! scopes as bearer-JWT `security`, the cache and the rate limit as
//! `x-cello-cache` and `x-cello-rate-limit`). What a route reads and answers
//! comes from its handler's types once the route is [`documented`]:
//!
//! ```ignore
//! use cello::openapi::{JsonSchema, documented};
//!
//! #[derive(serde::Deserialize, serde::Serialize, JsonSchema)]
//! struct Item { name: String, price: f64 }
//!
//! fn read_item(Path(id): Path<u64>) -> Option<Json<Item>> { ... }
//!
//! App::new("shop")
//!     .get("/items/{id}", documented(read_item))   // path parameter, 200 with Item, 404, 422
//!     .summary("Read an item")
//!     .tags(&["items"])
//! ```
//!
//! Why a wrapper: Rust cannot ask whether a type has a schema without
//! requiring one, so [`documented`] is where a route requires them (a
//! type without one is a compile error naming it), and a route without it
//! compiles with any types: its path parameters show the schema `{}`.
//!
//! How the module is organised:
//! - `handler`: [`documented`], and the [`Describe`] it asks of a handler;
//! - `describe`: [`OperationInput`] and [`OperationOutput`], what each
//!   extractor and each result adds, for the SDK's own types;
//! - `operation`: the [`Operation`] they add it to;
//! - `schemas`: the types' schemas, made by schemars;
//! - `document`: the document, and the route that serves it.
//!
//! Here, the app's side: [`OpenApi`] (where it is served, its title and
//! version) and the route builder's `summary`, `description`, `tags` and
//! `operation_id`.

mod describe;
mod document;
mod handler;
mod operation;
mod schemas;

pub use describe::{OperationInput, OperationOutput};
pub use handler::{Describe, Documented, documented};
pub use operation::{Operation, ParamIn};
/// The crate that makes the schemas, for `JsonSchema` bounds and impls;
/// derive with your own `schemars = "1"` dependency.
pub use schemars::{self, JsonSchema};

pub(crate) use document::serve_document;
pub(crate) use handler::describe_handlers;

use serde_json::Value;

use crate::App;

/// Where the document is served, and the `info` it opens with. The
/// default serves it at `/openapi.json`, titled with the app's name,
/// version `0.1.0`.
///
/// ```ignore
/// App::new("shop").openapi(OpenApi::new().version("1.2.0").url("/api/openapi.json"))
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenApi {
    pub(crate) url: Option<String>,
    pub(crate) title: Option<String>,
    pub(crate) version: String,
    pub(crate) description: Option<String>,
}

impl Default for OpenApi {
    fn default() -> Self {
        Self {
            url: Some("/openapi.json".into()),
            title: None,
            version: "0.1.0".into(),
            description: None,
        }
    }
}

impl OpenApi {
    /// The defaults: served at `/openapi.json`, version `0.1.0`.
    pub fn new() -> Self {
        Self::default()
    }

    /// Serves the document at `url` instead.
    pub fn url(mut self, url: &str) -> Self {
        self.url = Some(url.to_string());
        self
    }

    /// Serves no document ([`App::openapi_document`] still makes it), as
    /// the Python SDK's `openapi_url=None`.
    pub fn not_served(mut self) -> Self {
        self.url = None;
        self
    }

    /// The document's title (the app's name by default).
    pub fn title(mut self, title: &str) -> Self {
        self.title = Some(title.to_string());
        self
    }

    /// The API's version (`0.1.0` by default).
    pub fn version(mut self, version: &str) -> Self {
        self.version = version.to_string();
        self
    }

    /// A description of the API, in CommonMark.
    pub fn description(mut self, description: &str) -> Self {
        self.description = Some(description.to_string());
        self
    }
}

/// What a handler tells the document: its name, and what its types add
/// when it is [`documented`].
#[doc(hidden)]
#[derive(Clone, Copy)]
pub struct HandlerDoc {
    pub(crate) name: Option<&'static str>,
    pub(crate) describe: Option<fn(&mut Operation<'_>)>,
}

impl HandlerDoc {
    /// The handler named by its type's name: `shop::read_item` is
    /// `read_item`; a closure has no name.
    pub fn named(type_name: &'static str) -> Self {
        Self {
            name: short_name(type_name),
            describe: None,
        }
    }
}

/// The last segment of a path outside generics (`a::b<c::d>` is `b`), if
/// it is an identifier.
fn short_name(type_name: &'static str) -> Option<&'static str> {
    let mut depth = 0usize;
    let mut start = 0;
    let mut end = type_name.len();
    for (i, c) in type_name.char_indices() {
        match c {
            '<' => {
                if depth == 0 {
                    end = i;
                }
                depth += 1;
            }
            '>' => depth = depth.saturating_sub(1),
            ':' if depth == 0 && type_name[i..].starts_with("::") => {
                start = i + 2;
                end = type_name.len();
            }
            _ => {}
        }
    }
    let name = type_name.get(start..end)?;
    let identifier = name
        .chars()
        .next()
        .is_some_and(|c| c.is_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_alphanumeric() || c == '_');
    identifier.then_some(name)
}

/// What the document says of a route beyond its path, methods and policies.
#[derive(Clone)]
pub(crate) struct RouteDoc {
    pub(crate) handler: HandlerDoc,
    pub(crate) summary: Option<String>,
    pub(crate) description: Option<String>,
    pub(crate) tags: Vec<String>,
    pub(crate) operation_id: Option<String>,
}

impl RouteDoc {
    pub(crate) fn new(handler: HandlerDoc) -> Self {
        Self {
            handler,
            summary: None,
            description: None,
            tags: Vec::new(),
            operation_id: None,
        }
    }
}

impl App {
    /// Where the OpenAPI document is served, and its title and version.
    pub fn openapi(mut self, config: OpenApi) -> Self {
        self.openapi = config;
        self
    }

    /// The route declared last, summed up in a line (by default, the
    /// handler's name: `read_item` is "Read Item").
    pub fn summary(mut self, summary: &str) -> Self {
        self.last_route().doc.summary = Some(summary.to_string());
        self
    }

    /// A longer description of the route declared last, in CommonMark.
    pub fn description(mut self, description: &str) -> Self {
        self.last_route().doc.description = Some(description.to_string());
        self
    }

    /// Tags grouping the route declared last with others in the document.
    pub fn tags(mut self, tags: &[&str]) -> Self {
        self.last_route().doc.tags = tags.iter().map(|t| t.to_string()).collect();
        self
    }

    /// The route's `operationId` in place of the one made of the handler's
    /// name, path and method; kept unique all the same (`_2` is added).
    pub fn operation_id(mut self, id: &str) -> Self {
        self.last_route().doc.operation_id = Some(id.to_string());
        self
    }

    /// The app's OpenAPI 3.1 document, as it is served (but for `servers`,
    /// which comes from the request).
    pub fn openapi_document(&self) -> Value {
        document::Catalog::of(self).document()
    }
}

#[cfg(test)]
mod tests {
    use super::short_name;

    #[test]
    fn a_handler_is_named_by_the_last_segment_of_its_type() {
        assert_eq!(short_name("shop::read_item"), Some("read_item"));
        assert_eq!(short_name("read_item"), Some("read_item"));
        assert_eq!(short_name("shop::list<shop::Item>"), Some("list"));
        assert_eq!(short_name("shop::Store<a::B>::get"), Some("get"));
    }

    #[test]
    fn a_closure_has_no_name() {
        assert_eq!(short_name("shop::app::{{closure}}"), None);
        assert_eq!(short_name("shop::f<u8>::{{closure}}"), None);
    }
}
