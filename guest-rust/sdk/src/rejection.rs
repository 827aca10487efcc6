//! Validation failures, in FastAPI's shape so that Rust and Python apps
//! answer the same mistake the same way: 422 with
//! `{"detail": [{"type", "loc", "msg", "input"}]}`.

use serde_json::{Value, json};

use crate::{IntoResponse, Response, StatusCode};

/// One problem with a request: what kind (`missing`, `int_parsing`, ...),
/// where (`["query", "limit"]`), a sentence, and the offending input.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldError {
    /// Pydantic's error type, such as `missing` or `float_type`.
    pub kind: String,
    /// Where: the source (`path`, `query`, `header`, `body`) then the
    /// field names and list indices below it.
    pub loc: Vec<Value>,
    pub msg: String,
    pub input: Value,
}

impl FieldError {
    pub fn new(kind: &str, loc: Vec<Value>, msg: &str, input: Value) -> Self {
        Self {
            kind: kind.to_string(),
            loc,
            msg: msg.to_string(),
            input,
        }
    }

    /// "Field required" at `loc`.
    pub fn missing(loc: Vec<Value>) -> Self {
        Self::new("missing", loc, "Field required", Value::Null)
    }

    fn to_json(&self) -> Value {
        json!({ "type": self.kind, "loc": self.loc, "msg": self.msg, "input": self.input })
    }
}

/// A request that failed validation; answers 422. A handler's extractors
/// are all tried, and their problems answered together.
#[derive(Debug, Clone, PartialEq)]
pub struct Invalid {
    errors: Vec<FieldError>,
}

impl Invalid {
    pub fn new(errors: Vec<FieldError>) -> Self {
        Self { errors }
    }

    pub fn one(error: FieldError) -> Self {
        Self::new(vec![error])
    }

    pub fn errors(&self) -> &[FieldError] {
        &self.errors
    }
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            let loc: Vec<String> = e.loc.iter().map(|l| l.to_string()).collect();
            let sep = if i == 0 { "" } else { "; " };
            write!(f, "{sep}{}: {}", loc.join("."), e.msg)?;
        }
        Ok(())
    }
}

impl std::error::Error for Invalid {}

impl IntoResponse for Invalid {
    fn into_response(self) -> Response {
        problems_response(self.errors.iter().map(FieldError::to_json).collect())
    }
}

/// The 422 for `problems`, marked so that a handler can merge the
/// problems of all its extractors into one answer.
pub(crate) fn problems_response(problems: Vec<Value>) -> Response {
    Response::json(&json!({ "detail": problems }))
        .with_status(StatusCode::UNPROCESSABLE_ENTITY)
        .with_problems(problems)
}

/// What a serde error message means, in pydantic's words. serde builds
/// its messages from fixed templates (`missing field `x``, `invalid type:
/// ..., expected f64`), which is what this reads.
pub(crate) enum Meaning {
    Missing(String),
    Unknown(String),
    Wrong { kind: String, msg: String },
}

pub(crate) fn meaning(message: &str) -> Meaning {
    if let Some(field) = between(message, "missing field `", "`") {
        return Meaning::Missing(field);
    }
    if let Some(field) = between(message, "unknown field `", "`") {
        return Meaning::Unknown(field);
    }
    if message.starts_with("unknown variant `") {
        let expected = message.split_once("expected").map_or("", |(_, e)| e);
        let names: Vec<String> = expected
            .split('`')
            .skip(1)
            .step_by(2)
            .map(|n| format!("'{n}'"))
            .collect();
        let choices = match names.split_last() {
            Some((last, [])) => last.clone(),
            Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
            None => "a known value".to_string(),
        };
        return Meaning::Wrong {
            kind: "enum".into(),
            msg: format!("Input should be {choices}"),
        };
    }
    if message.starts_with("invalid type: ") || message.starts_with("invalid value: ") {
        let expected = message.rsplit_once(", expected ").map_or("", |(_, e)| e);
        if let Some((name, what)) = expected_type(expected) {
            return Meaning::Wrong {
                kind: format!("{name}_type"),
                msg: format!("Input should be {what}"),
            };
        }
    }
    Meaning::Wrong {
        kind: "value_error".into(),
        msg: format!("Value error, {message}"),
    }
}

/// Pydantic's name and wording for the type serde expected.
pub(crate) fn expected_type(expected: &str) -> Option<(&'static str, &'static str)> {
    Some(match expected {
        "i8" | "i16" | "i32" | "i64" | "i128" | "isize" | "u8" | "u16" | "u32" | "u64" | "u128"
        | "usize" => ("int", "a valid integer"),
        "f32" | "f64" => ("float", "a valid number"),
        "a boolean" => ("bool", "a valid boolean"),
        "a string" | "a borrowed string" | "a character" => ("string", "a valid string"),
        e if e.starts_with("a sequence") || e.starts_with("a tuple") || e.contains("tuple of") => {
            ("list", "a valid list")
        }
        e if e.starts_with("struct ") => (
            "model_attributes",
            "a valid dictionary or object to extract fields from",
        ),
        e if e.starts_with("a map") => ("dict", "a valid dictionary"),
        _ => return None,
    })
}

fn between(text: &str, start: &str, end: &str) -> Option<String> {
    let rest = text.strip_prefix(start)?;
    Some(rest.split_once(end)?.0.to_string())
}
