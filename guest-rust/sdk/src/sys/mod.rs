//! The calls into the host, once per world: the component's imports on
//! wasm32, and natively an in-memory stand-in that the test client fills
//! (key-value, config, stubbed outbound HTTP). Everything above this module
//! is the same code in both.

#[cfg(not(target_arch = "wasm32"))]
pub(crate) mod native;
#[cfg(not(target_arch = "wasm32"))]
mod native_sql;
#[cfg(target_arch = "wasm32")]
mod wasm;

#[cfg(not(target_arch = "wasm32"))]
pub(crate) use native::*;
#[cfg(not(target_arch = "wasm32"))]
pub(crate) use native_sql::{sql, sql_blocking};
#[cfg(target_arch = "wasm32")]
pub(crate) use wasm::*;
