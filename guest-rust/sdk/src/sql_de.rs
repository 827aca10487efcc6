//! Rows into the handler's types with serde: a struct or map by column
//! name, a tuple in column order, or the value itself when there is one
//! column. SQLite has no boolean, so an integer 0 or 1 reads as `bool`;
//! JSON columns read as the structures they hold.

use serde::de::value::{MapDeserializer, SeqDeserializer};
use serde::de::{self, DeserializeOwned, IntoDeserializer, Visitor};
use serde::forward_to_deserialize_any;

use crate::sql::Value;

type Error = serde_json::Error;

/// One row as `T`.
pub(crate) fn row<T: DeserializeOwned>(columns: &[String], values: Vec<Value>) -> Result<T, Error> {
    let cells: Vec<Cell> = values.into_iter().map(Cell::from).collect();
    let by_name = MapDeserializer::new(columns.iter().cloned().zip(cells.iter().cloned()));
    T::deserialize(by_name)
        .or_else(|first| {
            T::deserialize(SeqDeserializer::new(cells.iter().cloned())).map_err(|_| first)
        })
        .or_else(|first| match &cells[..] {
            [only] => T::deserialize(only.clone()).map_err(|_| first),
            _ => Err(first),
        })
}

/// One value as `T`.
pub(crate) fn value<T: DeserializeOwned>(value: Value) -> Result<T, Error> {
    T::deserialize(Cell::from(value))
}

/// A column's value, as serde sees it.
#[derive(Clone)]
struct Cell(serde_json::Value);

impl From<Value> for Cell {
    fn from(value: Value) -> Self {
        Cell(match value {
            Value::Null => serde_json::Value::Null,
            Value::Integer(i) => i.into(),
            Value::Real(r) => r.into(),
            Value::Text(t) => t.into(),
            Value::Blob(b) => b.into(),
            Value::Json(j) => serde_json::from_str(&j).unwrap_or(serde_json::Value::String(j)),
        })
    }
}

impl<'de> IntoDeserializer<'de, Error> for Cell {
    type Deserializer = Self;

    fn into_deserializer(self) -> Self {
        self
    }
}

impl<'de> de::Deserializer<'de> for Cell {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        de::Deserializer::deserialize_any(self.0, visitor)
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.0.as_i64() {
            Some(0) => visitor.visit_bool(false),
            Some(1) => visitor.visit_bool(true),
            _ => de::Deserializer::deserialize_bool(self.0, visitor),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.0 {
            serde_json::Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        de::Deserializer::deserialize_enum(self.0, name, variants, visitor)
    }

    forward_to_deserialize_any! {
        i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct seq tuple tuple_struct map struct
        identifier ignored_any
    }
}
