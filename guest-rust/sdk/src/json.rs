//! `Json<T>`: a request body parsed and validated into `T`, or a value
//! sent as a JSON response.

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::rejection::{FieldError, Invalid, Meaning, meaning};
use crate::{FromRequest, IntoResponse, Request, Response};

/// As an argument, the body parsed as JSON into `T`; as a result, `T` sent
/// as JSON. A body that is missing, is not JSON or does not fit `T`
/// answers 422 naming the field, as the Python SDK does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Json<T>(pub T);

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        Response::json(&self.0)
    }
}

impl<T: DeserializeOwned + 'static> FromRequest for Json<T> {
    type Rejection = Invalid;

    async fn from_request(req: &Request) -> Result<Self, Invalid> {
        parse(&req.body).map(Json)
    }
}

/// `body` as `T`, or every problem in FastAPI's shape.
pub(crate) fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, Invalid> {
    if body.is_empty() {
        return Err(Invalid::one(FieldError::missing(vec!["body".into()])));
    }
    let mut reader = serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(&mut reader)
        .map_err(|error| Invalid::one(problem(body, error)))?;
    reader
        .end()
        .map_err(|error| Invalid::one(invalid_json(body, &error)))?;
    Ok(value)
}

fn problem(body: &[u8], error: serde_path_to_error::Error<serde_json::Error>) -> FieldError {
    let inner = error.inner();
    if inner.is_syntax() || inner.is_eof() {
        return invalid_json(body, inner);
    }
    // The body is JSON that does not fit: find what sat at the error's path.
    let document: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let mut loc = vec![Value::from("body")];
    let mut at = &document;
    for segment in error.path().iter() {
        use serde_path_to_error::Segment;
        match segment {
            Segment::Seq { index } => {
                loc.push(Value::from(*index));
                at = at.get(index).unwrap_or(&Value::Null);
            }
            Segment::Map { key } => {
                loc.push(Value::from(key.as_str()));
                at = at.get(key).unwrap_or(&Value::Null);
            }
            Segment::Enum { variant } => loc.push(Value::from(variant.as_str())),
            Segment::Unknown => loc.push(Value::from("?")),
        }
    }
    let message = inner.to_string();
    let message = message
        .rsplit_once(" at line ")
        .map_or(message.as_str(), |(m, _)| m);
    match meaning(message) {
        // The input of a missing field is the object it is missing from.
        Meaning::Missing(field) => {
            loc.push(Value::from(field));
            FieldError::new("missing", loc, "Field required", at.clone())
        }
        Meaning::Unknown(field) => {
            let input = at.get(&field).cloned().unwrap_or(Value::Null);
            loc.push(Value::from(field));
            FieldError::new(
                "extra_forbidden",
                loc,
                "Extra inputs are not permitted",
                input,
            )
        }
        Meaning::Wrong { kind, msg } => FieldError::new(&kind, loc, &msg, at.clone()),
    }
}

/// `json_invalid` at the character where parsing stopped, as Python's
/// `json` module counts it.
fn invalid_json(body: &[u8], error: &serde_json::Error) -> FieldError {
    let text = String::from_utf8_lossy(body);
    let position = if error.is_eof() {
        text.chars().count()
    } else {
        let line_start: usize = text
            .split_inclusive('\n')
            .take(error.line().saturating_sub(1))
            .map(|line| line.chars().count())
            .sum();
        line_start + error.column().saturating_sub(1)
    };
    let message = error.to_string();
    let message = message
        .rsplit_once(" at line ")
        .map_or(message.as_str(), |(m, _)| m);
    FieldError::new(
        "json_invalid",
        vec![Value::from("body"), Value::from(position)],
        &format!("JSON decode error: {message}"),
        Value::Object(Default::default()),
    )
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;
    use serde_json::json;

    use super::*;

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Item {
        name: String,
        price: f64,
        #[serde(default)]
        tags: Vec<String>,
    }

    fn first_error(body: &str) -> FieldError {
        parse::<Item>(body.as_bytes()).unwrap_err().errors()[0].clone()
    }

    #[test]
    fn a_wrong_type_names_the_field_and_its_input() {
        let e = first_error(r#"{"name": "case", "price": "cheap"}"#);
        assert_eq!(e.kind, "float_type");
        assert_eq!(e.loc, vec![json!("body"), json!("price")]);
        assert_eq!(e.msg, "Input should be a valid number");
        assert_eq!(e.input, json!("cheap"));
    }

    #[test]
    fn a_missing_field_has_the_object_as_its_input() {
        let e = first_error(r#"{"name": "case"}"#);
        assert_eq!(e.kind, "missing");
        assert_eq!(e.loc, vec![json!("body"), json!("price")]);
        assert_eq!(e.input, json!({"name": "case"}));
    }

    #[test]
    fn a_list_element_is_located_by_index() {
        let e = first_error(r#"{"name": "a", "price": 1, "tags": ["x", 2]}"#);
        assert_eq!(e.kind, "string_type");
        assert_eq!(e.loc, vec![json!("body"), json!("tags"), json!(1)]);
        assert_eq!(e.input, json!(2));
    }

    #[test]
    fn broken_json_is_json_invalid_at_its_position() {
        let e = first_error("{not json");
        assert_eq!(e.kind, "json_invalid");
        assert_eq!(e.loc, vec![json!("body"), json!(1)]);
        assert_eq!(e.input, json!({}));
    }

    #[test]
    fn an_empty_body_is_missing() {
        assert_eq!(first_error(""), FieldError::missing(vec![json!("body")]));
    }

    #[test]
    fn not_an_object_is_model_attributes_type() {
        let e = first_error(r#""a string""#);
        assert_eq!(e.kind, "model_attributes_type");
        assert_eq!(e.loc, vec![json!("body")]);
    }
}
