//! The schemas of a document's types, made by schemars: requests' as
//! serde reads them, responses' as serde writes them, kept together in
//! `components/schemas`.

use std::collections::{BTreeMap, BTreeSet};

use schemars::generate::{SchemaGenerator, SchemaSettings};
use serde_json::{Map, Value};

/// One generator per direction: a `#[serde(default)]` field may be left
/// out of a request, and is always in a response.
pub(crate) struct Schemas {
    pub(super) requests: SchemaGenerator,
    pub(super) responses: SchemaGenerator,
}

const COMPONENTS: &str = "#/components/schemas/";

impl Schemas {
    pub(crate) fn new() -> Self {
        let settings = SchemaSettings::draft2020_12().with(|s| {
            s.definitions_path = "/components/schemas".into();
            s.meta_schema = None;
        });
        Self {
            requests: settings.clone().for_deserialize().into_generator(),
            responses: settings.for_serialize().into_generator(),
        }
    }

    /// The schemas as `components/schemas`: a type is one schema where
    /// requests and responses agree, else its responses' is `Name-Output`.
    /// Names keep to what OpenAPI allows (`[A-Za-z0-9._-]`).
    pub(crate) fn into_components(mut self) -> Components {
        let requests = self.requests.take_definitions(true);
        let request_names = Renames::allowed(requests.keys());
        let mut schemas = request_names.rename_all(requests);

        let responses = self.responses.take_definitions(true);
        let mut response_names = Renames::allowed(responses.keys());
        // Splitting one type may make another that refers to it differ.
        let mut split = BTreeSet::new();
        loop {
            let mut differing = Vec::new();
            for (name, schema) in &responses {
                let mut schema = schema.clone();
                response_names.apply(&mut schema);
                let target = response_names.target(name);
                let known = schemas.get(&target);
                if !split.contains(name) && known.is_some_and(|known| *known != schema) {
                    differing.push((name.clone(), format!("{target}-Output")));
                }
            }
            if differing.is_empty() {
                break;
            }
            for (name, target) in differing {
                response_names.add(&name, &target);
                split.insert(name);
            }
        }
        for (name, schema) in response_names.rename_all(responses) {
            schemas.entry(name).or_insert(schema);
        }
        Components {
            schemas,
            request_names,
            response_names,
        }
    }
}

/// The document's schemas, and how the `$ref`s made along the way must now
/// name them.
pub(crate) struct Components {
    pub(crate) schemas: Map<String, Value>,
    /// For parameters and request bodies.
    pub(crate) request_names: Renames,
    /// For responses.
    pub(crate) response_names: Renames,
}

/// Definitions renamed, by their schemars name.
#[derive(Default)]
pub(crate) struct Renames(BTreeMap<String, String>);

impl Renames {
    /// Each of `names` as OpenAPI allows it.
    fn allowed<'a>(names: impl Iterator<Item = &'a String>) -> Self {
        let mut renames = Renames::default();
        for name in names {
            renames.add(name, &allowed_name(name));
        }
        renames
    }

    /// `definitions` under their new names, their `$ref`s to match.
    fn rename_all(&self, definitions: Map<String, Value>) -> Map<String, Value> {
        (definitions.into_iter())
            .map(|(name, mut schema)| {
                self.apply(&mut schema);
                (self.target(&name), schema)
            })
            .collect()
    }

    fn add(&mut self, from: &str, to: &str) {
        if from != to {
            self.0.insert(from.to_string(), to.to_string());
        }
    }

    fn target(&self, name: &str) -> String {
        self.0
            .get(name)
            .cloned()
            .unwrap_or_else(|| name.to_string())
    }

    /// Rewrites every `$ref` in `schema` to a renamed definition.
    pub(crate) fn apply(&self, schema: &mut Value) {
        if self.0.is_empty() {
            return;
        }
        match schema {
            Value::Object(object) => {
                for (key, value) in object.iter_mut() {
                    match value {
                        Value::String(reference) if key == "$ref" => {
                            let name = reference.strip_prefix(COMPONENTS).map(decode_ref_name);
                            if let Some(target) = name.and_then(|name| self.0.get(&name)) {
                                *reference = format!("{COMPONENTS}{target}");
                            }
                        }
                        value => self.apply(value),
                    }
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|item| self.apply(item)),
            _ => {}
        }
    }
}

/// `name` with every character OpenAPI does not allow in a component's
/// name as `_`: schemars names `Page<Item>` so.
fn allowed_name(name: &str) -> String {
    name.chars()
        .map(|c| match c {
            'A'..='Z' | 'a'..='z' | '0'..='9' | '.' | '_' | '-' => c,
            _ => '_',
        })
        .collect()
}

/// A definition's name from its `$ref`, undoing JSON Pointer's and the
/// URI fragment's escapes.
fn decode_ref_name(encoded: &str) -> String {
    let mut bytes = Vec::with_capacity(encoded.len());
    let mut rest = encoded.as_bytes();
    while let Some((&byte, tail)) = rest.split_first() {
        let hex = tail.get(..2).and_then(|h| std::str::from_utf8(h).ok());
        match (byte, hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(decoded)) => {
                bytes.push(decoded);
                rest = &tail[2..];
            }
            _ => {
                bytes.push(byte);
                rest = tail;
            }
        }
    }
    String::from_utf8_lossy(&bytes)
        .replace("~1", "/")
        .replace("~0", "~")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_definitions_ref_name_is_decoded() {
        assert_eq!(decode_ref_name("Page%3CItem%3E"), "Page<Item>");
        assert_eq!(decode_ref_name("a~1b~0c"), "a/b~c");
        assert_eq!(decode_ref_name("Item"), "Item");
    }

    #[test]
    fn a_name_keeps_to_what_openapi_allows() {
        assert_eq!(allowed_name("Page<Item>"), "Page_Item_");
        assert_eq!(allowed_name("Item-Output.v2"), "Item-Output.v2");
    }
}
