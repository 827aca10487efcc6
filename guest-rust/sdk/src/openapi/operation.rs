//! The operation being written for a route: what its handler's arguments
//! and result add to it.

use http::StatusCode;
use schemars::JsonSchema;
use serde_json::{Map, Value, json};

use super::schemas::Schemas;
use super::{OperationInput, OperationOutput};

/// Where a parameter is read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamIn {
    /// A `{name}` segment of the route's path.
    Path,
    /// The query string.
    Query,
    /// A request header; a field `user_agent` is the header `user-agent`.
    Header,
}

impl ParamIn {
    fn as_str(self) -> &'static str {
        match self {
            ParamIn::Path => "path",
            ParamIn::Query => "query",
            ParamIn::Header => "header",
        }
    }
}

/// The OpenAPI operation of one route, as its handler's arguments
/// ([`OperationInput`]) and result ([`OperationOutput`]) describe it.
pub struct Operation<'a> {
    schemas: &'a mut Schemas,
    /// The `{name}` segments of the route's path, in order.
    path_params: &'a [String],
    parameters: Vec<Value>,
    body: Option<Value>,
    pub(super) responses: Map<String, Value>,
    /// Whether an argument answers 422 when the request does not fit.
    pub(super) validated: bool,
}

/// What the operation came to.
pub(crate) struct Described {
    pub(crate) parameters: Vec<Value>,
    pub(crate) body: Option<Value>,
    pub(crate) responses: Map<String, Value>,
    pub(crate) validated: bool,
}

impl<'a> Operation<'a> {
    /// An operation whose path parameters are `path_params`, each of any
    /// value (`{}`) until an argument says more.
    pub(crate) fn new(schemas: &'a mut Schemas, path_params: &'a [String]) -> Self {
        let parameters = (path_params.iter())
            .map(|name| parameter(name, ParamIn::Path, true, json!({})))
            .collect();
        Self {
            schemas,
            path_params,
            parameters,
            body: None,
            responses: Map::new(),
            validated: false,
        }
    }

    pub(crate) fn finish(self) -> Described {
        Described {
            parameters: self.parameters,
            body: self.body,
            responses: self.responses,
            validated: self.validated,
        }
    }

    /// Adds what extractor `E` adds: how an extractor of your own says
    /// that it reads a `Path<u64>`, say.
    pub fn input<E: OperationInput>(&mut self) -> &mut Self {
        E::describe(self);
        self
    }

    /// Adds what result `R` adds.
    pub fn output<R: OperationOutput>(&mut self) -> &mut Self {
        R::describe(self);
        self
    }

    /// The fields of `T` as parameters `location`, required unless serde
    /// may go without them. In the path, a struct's fields are segments by
    /// name, a tuple's by position, and a single value the only segment.
    /// Such parameters answer 422 when they do not parse.
    pub fn parameters<T: JsonSchema>(&mut self, location: ParamIn) -> &mut Self {
        self.validated = true;
        let schema = T::json_schema(&mut self.schemas.requests).to_value();
        for (name, required, schema) in fields(&schema, location, self.path_params) {
            let param = parameter(&name, location, required, schema);
            let same = |p: &Value| p["name"] == param["name"] && p["in"] == param["in"];
            match self.parameters.iter_mut().find(|p| same(p)) {
                // A path parameter's `{}` gives way; a repeated one stays.
                Some(known) if location == ParamIn::Path => *known = param,
                Some(_) => {}
                None => self.parameters.push(param),
            }
        }
        self
    }

    /// A JSON request body of `T`, which answers 422 when it does not fit.
    pub fn json_body<T: JsonSchema>(&mut self) -> &mut Self {
        self.validated = true;
        let schema = self.schemas.requests.subschema_for::<T>().to_value();
        self.body(true, "application/json", Some(schema))
    }

    /// A request body of `content_type`, of `schema` if one is known.
    pub(crate) fn body(
        &mut self,
        required: bool,
        content_type: &str,
        schema: Option<Value>,
    ) -> &mut Self {
        self.body = Some(json!({
            "required": required,
            "content": { content_type: media(schema) },
        }));
        self
    }

    /// A response with `status` whose body is `T` as JSON.
    pub fn json_response<T: JsonSchema>(&mut self, status: StatusCode) -> &mut Self {
        let schema = self.schemas.responses.subschema_for::<T>().to_value();
        let description = description(status);
        self.respond(
            status.as_str(),
            &description,
            "application/json",
            Some(schema),
        )
    }

    /// A response with `status`, its body not described.
    pub fn response(&mut self, status: StatusCode, description: &str) -> &mut Self {
        let response = json!({ "description": description });
        self.responses.entry(status.as_str()).or_insert(response);
        self
    }

    /// A response under `key` (a status, `2XX` or `default`) with a body of
    /// `content_type`; the first one given for a key stays.
    pub(crate) fn respond(
        &mut self,
        key: &str,
        description: &str,
        content_type: &str,
        schema: Option<Value>,
    ) -> &mut Self {
        let response = json!({
            "description": description,
            "content": { content_type: media(schema) },
        });
        self.responses.entry(key).or_insert(response);
        self
    }

    /// Adds what `R` adds, its successful responses under `2XX`: for
    /// `(StatusCode, R)`, whose status is chosen when it runs.
    pub(crate) fn output_with_any_success<R: OperationOutput>(&mut self) -> &mut Self {
        let before: Vec<String> = self.responses.keys().cloned().collect();
        R::describe(self);
        let added: Vec<String> = (self.responses.keys())
            .filter(|key| key.starts_with('2') && !before.contains(key))
            .cloned()
            .collect();
        for key in added {
            if let Some(response) = self.responses.remove(&key) {
                self.responses.entry("2XX").or_insert(response);
            }
        }
        self
    }
}

/// The parameters `schema` (of a whole `Path`, `Query` or `Header`) makes:
/// name, whether required, schema.
fn fields(schema: &Value, location: ParamIn, path: &[String]) -> Vec<(String, bool, Value)> {
    let required = |name: &str| {
        let names = schema["required"].as_array();
        names.is_some_and(|names| names.iter().any(|n| n == name))
    };
    if let Some(properties) = schema["properties"].as_object() {
        let named = properties.iter().map(|(field, schema)| {
            let name = match location {
                ParamIn::Header => field.replace('_', "-"),
                _ => field.clone(),
            };
            (name, required(field), schema.clone())
        });
        // A field the path has no segment for could never be read.
        let readable =
            |(name, ..): &(String, bool, Value)| location != ParamIn::Path || path.contains(name);
        return named.filter(readable).collect();
    }
    match (location, schema["prefixItems"].as_array()) {
        (ParamIn::Path, Some(items)) => (path.iter().cloned())
            .zip(items.iter().cloned())
            .map(|(name, schema)| (name, true, schema))
            .collect(),
        (ParamIn::Path, None) if path.len() == 1 => vec![(path[0].clone(), true, schema.clone())],
        // A map or a sequence has no names to list.
        _ => Vec::new(),
    }
}

/// `{"name", "in", "required", "schema"}`, with the schema's description.
fn parameter(name: &str, location: ParamIn, required: bool, schema: Value) -> Value {
    let mut param = json!({
        "name": name,
        "in": location.as_str(),
        "required": required,
        "schema": schema,
    });
    if let Some(description) = param["schema"].get("description").cloned() {
        param["description"] = description;
    }
    param
}

/// A media type object: the schema, if one is known.
fn media(schema: Option<Value>) -> Value {
    schema.map_or_else(|| json!({}), |schema| json!({ "schema": schema }))
}

/// "Successful Response" for a 2xx, as FastAPI says it, else the reason.
fn description(status: StatusCode) -> String {
    if status.is_success() {
        return "Successful Response".into();
    }
    status.canonical_reason().unwrap_or("Response").into()
}
