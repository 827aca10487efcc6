//! Typed values from text: path parameters, query pairs and headers,
//! deserialised with serde into the handler's types. A failure names the
//! parameter and says what was wrong in pydantic's words, as the Python
//! SDK does.

use serde::de::value::StrDeserializer;
use serde::de::{self, DeserializeOwned, DeserializeSeed, IntoDeserializer, Visitor};
use serde_json::Value;

use crate::rejection::{FieldError, Meaning, meaning};

/// Named text values in order; a name repeats in a query (`?id=1&id=2`).
pub(crate) type Params = Vec<(String, Vec<String>)>;

/// Groups `pairs` by name, keeping the order names first appear in.
pub(crate) fn group(pairs: impl IntoIterator<Item = (String, String)>) -> Params {
    let mut params: Params = Vec::new();
    for (name, value) in pairs {
        match params.iter_mut().find(|(n, _)| *n == name) {
            Some((_, values)) => values.push(value),
            None => params.push((name, vec![value])),
        }
    }
    params
}

/// `T` from `params`: a struct or map by name, a tuple in order, or a
/// single value when there is exactly one parameter.
pub(crate) fn from_params<T: DeserializeOwned>(params: &Params) -> Result<T, TextError> {
    T::deserialize(ParamsDeserializer { params })
}

/// Why text did not deserialise, and where.
#[derive(Debug)]
pub(crate) struct TextError {
    kind: String,
    /// Below the source: the parameter name, then list indices.
    loc: Vec<Value>,
    msg: String,
    input: Option<Value>,
}

impl TextError {
    fn parsing(name: &str, what: &str, input: &str) -> Self {
        Self {
            kind: format!("{name}_parsing"),
            loc: Vec::new(),
            msg: format!("Input should be {what}"),
            input: Some(Value::String(input.to_string())),
        }
    }

    /// Places the error under `segment`, with `input` if none is known yet.
    fn at(mut self, segment: Value, input: impl FnOnce() -> Value) -> Self {
        self.loc.insert(0, segment);
        if self.input.is_none() {
            self.input = Some(input());
        }
        self
    }

    /// The error in FastAPI's shape, under `source`; `rename` maps the
    /// parameter's serde name to the one the client sent.
    pub(crate) fn into_field_error(self, source: &str, rename: fn(&str) -> String) -> FieldError {
        let mut loc = vec![Value::from(source)];
        let mut rest = self.loc.into_iter();
        if let Some(first) = rest.next() {
            loc.push(match first {
                Value::String(name) => Value::String(rename(&name)),
                other => other,
            });
        }
        loc.extend(rest);
        FieldError {
            kind: self.kind,
            loc,
            msg: self.msg,
            input: self.input.unwrap_or(Value::Null),
        }
    }
}

impl std::fmt::Display for TextError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.msg)
    }
}

impl std::error::Error for TextError {}

impl de::Error for TextError {
    fn custom<T: std::fmt::Display>(msg: T) -> Self {
        let (kind, loc, msg, input) = match meaning(&msg.to_string()) {
            Meaning::Missing(field) => (
                "missing".into(),
                vec![Value::String(field)],
                "Field required".into(),
                Some(Value::Null),
            ),
            Meaning::Unknown(field) => (
                "extra_forbidden".into(),
                vec![Value::String(field)],
                "Extra inputs are not permitted".into(),
                None,
            ),
            Meaning::Wrong { kind, msg } => (kind, Vec::new(), msg, None),
        };
        Self {
            kind,
            loc,
            msg,
            input,
        }
    }
}

fn text_input(values: &[String]) -> Value {
    match values {
        [one] => Value::String(one.clone()),
        many => Value::from(many.to_vec()),
    }
}

/// The methods both deserializers answer alike: structs are maps, tuples
/// are sequences, options are present, units are nothing.
macro_rules! shared_methods {
    () => {
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _name: &'static str,
            _fields: &'static [&'static str],
            visitor: V,
        ) -> Result<V::Value, TextError> {
            self.deserialize_map(visitor)
        }

        fn deserialize_tuple<V: Visitor<'de>>(
            self,
            _len: usize,
            visitor: V,
        ) -> Result<V::Value, TextError> {
            self.deserialize_seq(visitor)
        }

        fn deserialize_tuple_struct<V: Visitor<'de>>(
            self,
            _name: &'static str,
            _len: usize,
            visitor: V,
        ) -> Result<V::Value, TextError> {
            self.deserialize_seq(visitor)
        }

        fn deserialize_newtype_struct<V: Visitor<'de>>(
            self,
            _name: &'static str,
            visitor: V,
        ) -> Result<V::Value, TextError> {
            visitor.visit_newtype_struct(self)
        }

        fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TextError> {
            visitor.visit_some(self)
        }

        fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TextError> {
            visitor.visit_unit()
        }

        fn deserialize_unit_struct<V: Visitor<'de>>(
            self,
            _name: &'static str,
            visitor: V,
        ) -> Result<V::Value, TextError> {
            visitor.visit_unit()
        }

        fn deserialize_ignored_any<V: Visitor<'de>>(
            self,
            visitor: V,
        ) -> Result<V::Value, TextError> {
            visitor.visit_unit()
        }
    };
}

struct ParamsDeserializer<'a> {
    params: &'a Params,
}

impl<'a> ParamsDeserializer<'a> {
    /// The only parameter, for a `Path<u32>` on a route with one `{name}`.
    fn single(&self) -> Result<(&'a str, ValueDeserializer<'a>), TextError> {
        match self.params.as_slice() {
            [(name, values)] => Ok((name, ValueDeserializer { values })),
            params => Err(de::Error::custom(format!(
                "expected one parameter, found {}; use a tuple or a struct",
                params.len()
            ))),
        }
    }
}

macro_rules! forward_to_single {
    ($($method:ident)*) => {
        $(
            fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TextError> {
                let (name, value) = self.single()?;
                let values = value.values;
                value
                    .$method(visitor)
                    .map_err(|e| e.at(Value::from(name), || text_input(values)))
            }
        )*
    };
}

impl<'de> de::Deserializer<'de> for ParamsDeserializer<'_> {
    type Error = TextError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TextError> {
        self.deserialize_map(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TextError> {
        visitor.visit_map(ParamMap {
            iter: self.params.iter(),
            current: None,
        })
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TextError> {
        visitor.visit_seq(ParamSeq {
            iter: self.params.iter(),
        })
    }

    shared_methods!();

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, TextError> {
        let (param, value) = self.single()?;
        let values = value.values;
        value
            .deserialize_enum(name, variants, visitor)
            .map_err(|e| e.at(Value::from(param), || text_input(values)))
    }

    forward_to_single! {
        deserialize_bool deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64
        deserialize_i128 deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64
        deserialize_u128 deserialize_f32 deserialize_f64 deserialize_char deserialize_str
        deserialize_string deserialize_bytes deserialize_byte_buf deserialize_identifier
    }
}

struct ParamMap<'a> {
    iter: std::slice::Iter<'a, (String, Vec<String>)>,
    current: Option<&'a (String, Vec<String>)>,
}

impl<'de> de::MapAccess<'de> for ParamMap<'_> {
    type Error = TextError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, TextError> {
        let Some(pair) = self.iter.next() else {
            return Ok(None);
        };
        self.current = Some(pair);
        let key: StrDeserializer<'_, TextError> = pair.0.as_str().into_deserializer();
        seed.deserialize(key)
            .map(Some)
            .map_err(|e| e.about_key(&pair.0, || text_input(&pair.1)))
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, TextError> {
        let (name, values) = self.current.take().expect("a value follows its key");
        seed.deserialize(ValueDeserializer { values })
            .map_err(|e| e.at(Value::from(name.as_str()), || text_input(values)))
    }
}

impl TextError {
    /// An error about a key (an unknown field) names it already.
    fn about_key(mut self, name: &str, input: impl FnOnce() -> Value) -> Self {
        if self.loc.is_empty() {
            self.loc.push(Value::from(name));
        }
        if self.input.is_none() {
            self.input = Some(input());
        }
        self
    }
}

struct ParamSeq<'a> {
    iter: std::slice::Iter<'a, (String, Vec<String>)>,
}

impl<'de> de::SeqAccess<'de> for ParamSeq<'_> {
    type Error = TextError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, TextError> {
        let Some((name, values)) = self.iter.next() else {
            return Ok(None);
        };
        seed.deserialize(ValueDeserializer { values })
            .map(Some)
            .map_err(|e| e.at(Value::from(name.as_str()), || text_input(values)))
    }
}

/// The values of one name; scalars read the first, as the Python SDK does.
struct ValueDeserializer<'a> {
    values: &'a [String],
}

impl ValueDeserializer<'_> {
    fn text(&self) -> &str {
        self.values.first().map_or("", String::as_str)
    }
}

macro_rules! parse_number {
    ($($method:ident => $visit:ident, $ty:ty, $name:literal, $what:literal;)*) => {
        $(
            fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TextError> {
                match self.text().parse::<$ty>() {
                    Ok(n) => visitor.$visit(n),
                    Err(_) => Err(TextError::parsing($name, $what, self.text())),
                }
            }
        )*
    };
}

impl<'de> de::Deserializer<'de> for ValueDeserializer<'_> {
    type Error = TextError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TextError> {
        visitor.visit_str(self.text())
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TextError> {
        // The words the Python SDK accepts.
        match self.text().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => visitor.visit_bool(true),
            "false" | "0" | "no" | "off" => visitor.visit_bool(false),
            _ => Err(TextError::parsing("bool", "a valid boolean", self.text())),
        }
    }

    parse_number! {
        deserialize_i8 => visit_i8, i8, "int", "a valid integer";
        deserialize_i16 => visit_i16, i16, "int", "a valid integer";
        deserialize_i32 => visit_i32, i32, "int", "a valid integer";
        deserialize_i64 => visit_i64, i64, "int", "a valid integer";
        deserialize_i128 => visit_i128, i128, "int", "a valid integer";
        deserialize_u8 => visit_u8, u8, "int", "a valid integer";
        deserialize_u16 => visit_u16, u16, "int", "a valid integer";
        deserialize_u32 => visit_u32, u32, "int", "a valid integer";
        deserialize_u64 => visit_u64, u64, "int", "a valid integer";
        deserialize_u128 => visit_u128, u128, "int", "a valid integer";
        deserialize_f32 => visit_f32, f32, "float", "a valid number";
        deserialize_f64 => visit_f64, f64, "float", "a valid number";
        deserialize_char => visit_char, char, "string", "a single character";
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TextError> {
        visitor.visit_str(self.text())
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TextError> {
        visitor.visit_str(self.text())
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TextError> {
        visitor.visit_str(self.text())
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TextError> {
        visitor.visit_bytes(self.text().as_bytes())
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TextError> {
        visitor.visit_bytes(self.text().as_bytes())
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TextError> {
        visitor.visit_seq(ValueSeq {
            values: self.values,
            index: 0,
        })
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TextError> {
        Err(de::Error::invalid_type(
            de::Unexpected::Str(self.text()),
            &visitor,
        ))
    }

    shared_methods!();

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, TextError> {
        let text: StrDeserializer<'_, TextError> = self.text().into_deserializer();
        visitor.visit_enum(text)
    }
}

/// Repeated values of one name, for a `Vec` field.
struct ValueSeq<'a> {
    values: &'a [String],
    index: usize,
}

impl<'de> de::SeqAccess<'de> for ValueSeq<'_> {
    type Error = TextError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, TextError> {
        let Some(value) = self.values.get(self.index) else {
            return Ok(None);
        };
        let index = self.index;
        self.index += 1;
        let one = std::slice::from_ref(value);
        seed.deserialize(ValueDeserializer { values: one })
            .map(Some)
            .map_err(|e| e.at(Value::from(index), || Value::String(value.clone())))
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Params {
        group(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())))
    }

    fn error<T: DeserializeOwned + std::fmt::Debug>(pairs: &[(&str, &str)]) -> FieldError {
        from_params::<T>(&params(pairs))
            .unwrap_err()
            .into_field_error("query", str::to_string)
    }

    #[derive(Debug, Deserialize, PartialEq)]
    struct Search {
        q: String,
        #[serde(default)]
        limit: Option<u32>,
        #[serde(default)]
        tag: Vec<String>,
    }

    #[test]
    fn a_struct_reads_its_fields_by_name_and_repeated_names_as_lists() {
        let search: Search = from_params(&params(&[
            ("tag", "a"),
            ("q", "cello"),
            ("limit", "5"),
            ("tag", "b"),
        ]))
        .unwrap();
        assert_eq!(
            search,
            Search {
                q: "cello".into(),
                limit: Some(5),
                tag: vec!["a".into(), "b".into()]
            }
        );
    }

    #[test]
    fn a_missing_field_is_field_required_with_no_input() {
        let e = error::<Search>(&[("limit", "5")]);
        assert_eq!(e, FieldError::missing(vec!["query".into(), "q".into()]));
    }

    #[test]
    fn a_bad_number_is_int_parsing_naming_the_field_and_input() {
        let e = error::<Search>(&[("q", "x"), ("limit", "many")]);
        assert_eq!(e.kind, "int_parsing");
        assert_eq!(e.loc, vec![Value::from("query"), Value::from("limit")]);
        assert_eq!(e.msg, "Input should be a valid integer");
        assert_eq!(e.input, Value::from("many"));
    }

    #[test]
    fn a_bad_list_element_is_located_by_its_index() {
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct Ids {
            id: Vec<u8>,
        }
        let e = error::<Ids>(&[("id", "1"), ("id", "x")]);
        assert_eq!(e.loc, vec![Value::from("query"), "id".into(), 1.into()]);
        assert_eq!(e.input, Value::from("x"));
    }

    #[test]
    fn one_parameter_reads_as_a_scalar_and_several_as_a_tuple() {
        assert_eq!(from_params::<u64>(&params(&[("id", "7")])).unwrap(), 7);
        let pair: (String, bool) = from_params(&params(&[("a", "x"), ("b", "yes")])).unwrap();
        assert_eq!(pair, ("x".to_string(), true));
        let e = from_params::<u64>(&params(&[("id", "seven")]))
            .unwrap_err()
            .into_field_error("path", str::to_string);
        assert_eq!(e.loc, vec![Value::from("path"), Value::from("id")]);
    }

    #[test]
    fn an_unknown_variant_lists_the_known_ones() {
        #[derive(Debug, Deserialize)]
        #[serde(rename_all = "lowercase")]
        #[allow(dead_code)]
        enum Order {
            Asc,
            Desc,
        }
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct Sort {
            order: Order,
        }
        let e = error::<Sort>(&[("order", "up")]);
        assert_eq!(e.kind, "enum");
        assert_eq!(e.msg, "Input should be 'asc' or 'desc'");
        assert_eq!(e.loc, vec![Value::from("query"), Value::from("order")]);
    }

    #[test]
    fn an_unknown_field_is_refused_when_the_struct_denies_them() {
        #[derive(Debug, Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct Strict {
            q: String,
        }
        let e = error::<Strict>(&[("q", "x"), ("extra", "1")]);
        assert_eq!(e.kind, "extra_forbidden");
        assert_eq!(e.loc, vec![Value::from("query"), Value::from("extra")]);
        assert_eq!(e.input, Value::from("1"));
    }
}
