//! The document: each route's operation under its path and methods, with
//! the host's policies, unique `operationId`s and the schemas they use;
//! and the route that serves it.

use std::cell::OnceCell;
use std::collections::BTreeSet;
use std::rc::Rc;

use serde_json::{Map, Value, json};

use super::operation::{Described, Operation};
use super::schemas::Schemas;
use super::{OpenApi, RouteDoc};
use crate::{App, Cache, RateLimit, RateLimitKey, Request, Response};

/// What the document is made of, taken from an app's routes.
pub(crate) struct Catalog {
    name: String,
    config: OpenApi,
    routes: Vec<Entry>,
}

struct Entry {
    methods: Vec<String>,
    path: String,
    doc: RouteDoc,
    roles: Vec<String>,
    scopes: Vec<String>,
    cache: Option<Cache>,
    rate_limit: Option<RateLimit>,
}

/// The methods OpenAPI has a field for; a route for every method is
/// listed under the usual five.
const METHODS: &[&str] = &[
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];
const ANY_METHOD: &[&str] = &["get", "put", "post", "delete", "patch"];

/// The security scheme of routes with roles or scopes: the JWT the host
/// verifies.
const BEARER: &str = "jwt";

impl Catalog {
    pub(crate) fn of(app: &App) -> Self {
        let routes = (app.routes.iter())
            .map(|route| Entry {
                methods: route.methods.clone(),
                path: route.path.clone(),
                doc: route.doc.clone(),
                roles: route.roles.clone(),
                scopes: route.scopes.clone(),
                cache: route.cache.clone(),
                rate_limit: route.rate_limit.or(app.default_rate_limit),
            })
            .collect();
        Self {
            name: app.name.clone(),
            config: app.openapi.clone(),
            routes,
        }
    }

    /// The OpenAPI 3.1 document, without `servers`.
    pub(crate) fn document(&self) -> Value {
        let mut schemas = Schemas::new();
        let mut paths = Map::new();
        let mut ids = BTreeSet::new();
        let (mut validated, mut secured) = (false, false);
        for route in &self.routes {
            let path = openapi_path(&route.path);
            let params = path_params(&path);
            let mut op = Operation::new(&mut schemas, &params);
            if let Some(describe) = route.doc.handler.describe {
                describe(&mut op);
            }
            let described = op.finish();
            validated |= described.validated;
            secured |= !route.roles.is_empty() || !route.scopes.is_empty();
            let operation = route.operation(described);
            let methods: Vec<String> = match route.methods.is_empty() {
                true => ANY_METHOD.iter().map(|m| m.to_string()).collect(),
                false => route.methods.iter().map(|m| m.to_lowercase()).collect(),
            };
            for method in methods.iter().filter(|m| METHODS.contains(&m.as_str())) {
                let mut operation = operation.clone();
                let id = unique(&mut ids, route.operation_id(&path, method));
                operation.insert("operationId".into(), id.into());
                let item = paths.entry(path.clone()).or_insert_with(|| json!({}));
                item[method.as_str()] = Value::Object(operation);
            }
        }

        let components = schemas.into_components();
        let operations = paths.values_mut().flat_map(|item| item.as_object_mut());
        for operation in operations.flat_map(|item| item.values_mut()) {
            for (key, names) in [
                ("parameters", &components.request_names),
                ("requestBody", &components.request_names),
                ("responses", &components.response_names),
            ] {
                if let Some(part) = operation.get_mut(key) {
                    names.apply(part);
                }
            }
        }
        let mut schemas = components.schemas;
        if validated {
            schemas.extend(validation_schemas());
        }
        let mut components = Map::new();
        if !schemas.is_empty() {
            components.insert("schemas".into(), Value::Object(schemas));
        }
        if secured {
            let scheme = json!({
                "type": "http",
                "scheme": "bearer",
                "bearerFormat": "JWT",
                "description": "A JWT the host verifies; an operation lists the roles and \
                                scopes it must hold.",
            });
            components.insert("securitySchemes".into(), json!({ BEARER: scheme }));
        }

        let mut info = json!({
            "title": self.config.title.as_deref().unwrap_or(&self.name),
            "version": self.config.version,
        });
        if let Some(description) = &self.config.description {
            info["description"] = description.as_str().into();
        }
        let mut document = json!({ "openapi": "3.1.0", "info": info, "paths": paths });
        if !components.is_empty() {
            document["components"] = Value::Object(components);
        }
        document
    }
}

impl Entry {
    /// The route's operation, less its `operationId`.
    fn operation(&self, described: Described) -> Map<String, Value> {
        let Described {
            parameters,
            body,
            mut responses,
            validated,
        } = described;
        let mut operation = Map::new();
        let summary = (self.doc.summary.clone()).or_else(|| self.doc.handler.name.map(title));
        if let Some(summary) = summary {
            operation.insert("summary".into(), summary.into());
        }
        if let Some(description) = &self.doc.description {
            operation.insert("description".into(), description.as_str().into());
        }
        if !self.doc.tags.is_empty() {
            operation.insert("tags".into(), json!(self.doc.tags));
        }
        if !parameters.is_empty() {
            operation.insert("parameters".into(), Value::Array(parameters));
        }
        if let Some(body) = body {
            operation.insert("requestBody".into(), body);
        }

        if validated {
            let schema = json!({ "$ref": "#/components/schemas/HTTPValidationError" });
            let response = json!({
                "description": "Validation Error",
                "content": { "application/json": { "schema": schema } },
            });
            responses.insert("422".into(), response);
        }
        if !self.roles.is_empty() || !self.scopes.is_empty() {
            let needs: Vec<&String> = self.roles.iter().chain(&self.scopes).collect();
            operation.insert("security".into(), json!([{ BEARER: needs }]));
            let unauthorized = json!({ "description": "Not authenticated: no valid token" });
            let forbidden = json!({ "description": "The token lacks a role or scope" });
            responses.entry("401").or_insert(unauthorized);
            responses.entry("403").or_insert(forbidden);
        }
        if let Some(limit) = self.rate_limit {
            operation.insert("x-cello-rate-limit".into(), rate_limit(&limit));
            let retry = json!({
                "description": "Seconds until a request may be sent again",
                "schema": { "type": "integer" },
            });
            let response = json!({
                "description": "Too Many Requests",
                "headers": { "Retry-After": retry },
            });
            responses.entry("429").or_insert(response);
        }
        if let Some(cache) = &self.cache {
            let mut policy = json!({ "ttl-seconds": cache.ttl_seconds });
            for (key, values) in [("tags", &cache.tags), ("vary", &cache.vary)] {
                if !values.is_empty() {
                    policy[key] = json!(values);
                }
            }
            operation.insert("x-cello-cache".into(), policy);
        }
        let succeeds = |key: &String| key.starts_with('2') || key == "default";
        if !responses.keys().any(succeeds) {
            let response = json!({ "description": "Successful Response" });
            responses.insert("200".into(), response);
        }
        operation.insert("responses".into(), Value::Object(responses));
        operation
    }

    /// The route's own id, or FastAPI's: handler name, path and method,
    /// every other character `_` (`read_item_items__id__get`).
    fn operation_id(&self, path: &str, method: &str) -> String {
        if let Some(id) = &self.doc.operation_id {
            return id.clone();
        }
        let name = self.doc.handler.name.unwrap_or("");
        let id: String = format!("{name}{path}")
            .chars()
            .map(|c| if c.is_alphanumeric() { c } else { '_' })
            .collect();
        let id = if name.is_empty() {
            id.trim_start_matches('_')
        } else {
            &id
        };
        format!("{id}_{method}")
    }
}

/// `wanted`, or with `_2`, `_3`... after it if it is taken.
fn unique(taken: &mut BTreeSet<String>, wanted: String) -> String {
    let id = (1..)
        .map(|n| match n {
            1 => wanted.clone(),
            n => format!("{wanted}_{n}"),
        })
        .find(|id| !taken.contains(id))
        .expect("some suffix is free");
    taken.insert(id.clone());
    id
}

/// `read_item` as "Read Item".
fn title(name: &str) -> String {
    (name.split('_').filter(|w| !w.is_empty()))
        .map(|word| {
            let mut chars = word.chars();
            let first = chars.next().map(|c| c.to_uppercase().to_string());
            first.unwrap_or_default() + chars.as_str()
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The path as OpenAPI writes it: a catch-all `{*rest}` is `{rest}`.
fn openapi_path(path: &str) -> String {
    path.replace("{*", "{")
}

/// The names of the `{name}` segments, in order.
fn path_params(path: &str) -> Vec<String> {
    path.split('{')
        .skip(1)
        .filter_map(|rest| rest.split_once('}'))
        .map(|(name, _)| name.to_string())
        .collect()
}

fn rate_limit(limit: &RateLimit) -> Value {
    let key = match limit.key {
        RateLimitKey::ClientAddress => "client-address",
        RateLimitKey::Subject => "subject",
        RateLimitKey::Tenant => "tenant",
    };
    json!({
        "algorithm": if limit.sliding { "sliding-window" } else { "token-bucket" },
        "capacity": limit.capacity,
        "period-seconds": limit.period_seconds,
        "key": key,
    })
}

/// FastAPI's schemas of a 422, which the SDK answers in its shape.
fn validation_schemas() -> Map<String, Value> {
    let schemas = json!({
        "ValidationError": {
            "title": "ValidationError",
            "type": "object",
            "required": ["loc", "msg", "type"],
            "properties": {
                "loc": {
                    "type": "array",
                    "items": { "anyOf": [{ "type": "string" }, { "type": "integer" }] },
                },
                "msg": { "type": "string" },
                "type": { "type": "string" },
                "input": {},
            },
        },
        "HTTPValidationError": {
            "title": "HTTPValidationError",
            "type": "object",
            "properties": {
                "detail": {
                    "type": "array",
                    "items": { "$ref": "#/components/schemas/ValidationError" },
                },
            },
        },
    });
    match schemas {
        Value::Object(schemas) => schemas,
        _ => unreachable!("an object literal"),
    }
}

/// The app with a `GET` route serving its document at the configured URL
/// (unless the app serves that path itself), made on the first request.
/// `servers` names the prefix a proxy says the app is under
/// (`X-Forwarded-Prefix`).
pub(crate) fn serve_document(app: App) -> App {
    let Some(url) = app.openapi.url.clone() else {
        return app;
    };
    let taken = (app.routes.iter())
        .any(|r| r.path == url && (r.methods.is_empty() || r.methods.iter().any(|m| m == "GET")));
    if taken {
        return app;
    }
    let catalog = Catalog::of(&app);
    let made = Rc::new(OnceCell::new());
    app.get(&url, move |req: Request| {
        let mut document = made.get_or_init(|| catalog.document()).clone();
        let prefix = req.header("x-forwarded-prefix").unwrap_or("");
        let prefix = prefix.trim_end_matches('/');
        if !prefix.is_empty() {
            document["servers"] = json!([{ "url": prefix }]);
        }
        Response::json(&document)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_parameters_are_read_from_the_template() {
        assert_eq!(path_params("/a/{id}/b/{slug}"), ["id", "slug"]);
        assert_eq!(path_params(&openapi_path("/files/{*rest}")), ["rest"]);
        assert!(path_params("/plain").is_empty());
    }

    #[test]
    fn a_taken_operation_id_gets_a_suffix() {
        let mut taken = BTreeSet::new();
        assert_eq!(unique(&mut taken, "index_get".into()), "index_get");
        assert_eq!(unique(&mut taken, "index_get".into()), "index_get_2");
        assert_eq!(unique(&mut taken, "index_get".into()), "index_get_3");
    }

    #[test]
    fn a_handler_name_is_a_title() {
        assert_eq!(title("read_item"), "Read Item");
        assert_eq!(title("_private__name"), "Private Name");
    }
}
