//! `cello:component/config`: variables and secrets from the sidecar's
//! `[variables]` and `[secrets]`, each a literal or read from the host's
//! environment when the component loads. A secret's value is never logged:
//! its `Debug` prints a placeholder.

use std::collections::HashMap;

use serde::Deserialize;

use crate::bindings::cello::component::config;
use wasmtime::component::{HasData, Linker};

use super::capability::{Capability, Has};

/// Where a variable's value comes from, as a sidecar writes it:
/// `name = "literal"` or `name = { env = "VAR", default = "..." }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged, deny_unknown_fields)]
pub enum ValueSource {
    Literal(String),
    Env {
        env: String,
        #[serde(default)]
        default: Option<String>,
    },
}

impl ValueSource {
    /// The value, or a sentence naming the missing environment variable.
    pub fn resolve(&self, section: &str, name: &str) -> Result<String, String> {
        match self {
            Self::Literal(value) => Ok(value.clone()),
            Self::Env { env, default } => std::env::var(env).ok().or_else(|| default.clone()).ok_or_else(|| {
                format!(
                    "[{section}] {name}: the environment variable {env} is not set and no default is given"
                )
            }),
        }
    }
}

/// A secret's value; shown as `***` wherever it is formatted.
#[derive(Clone)]
pub struct Secret(String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// One component's resolved variables and secrets.
#[derive(Debug, Default)]
pub struct ConfigValues {
    variables: HashMap<String, String>,
    secrets: HashMap<String, Secret>,
}

impl ConfigValues {
    /// Resolves every entry now, so a missing environment variable stops
    /// the load instead of surprising a request.
    pub fn resolve(
        variables: &HashMap<String, ValueSource>,
        secrets: &HashMap<String, ValueSource>,
    ) -> Result<Self, String> {
        let mut values = Self::default();
        for (name, source) in variables {
            let value = source.resolve("variables", name)?;
            values.variables.insert(name.clone(), value);
        }
        for (name, source) in secrets {
            let value = source.resolve("secrets", name)?;
            values.secrets.insert(name.clone(), Secret(value));
        }
        Ok(values)
    }
}

/// The config capability: `config = true` under `[grants]` lets the
/// component read its `[variables]` and `[secrets]`.
pub struct Config;

impl Capability for Config {
    const INTERFACES: &'static [&'static str] = &["cello:component/config"];
    const HOW_TO_GRANT: &'static str = "config = true";
    type Grant = bool;
    type Granted = ConfigValues;

    fn is_granted(grant: &bool) -> bool {
        *grant
    }

    fn add_to_linker<T: Has<Self>>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
        config::add_to_linker::<T, ConfigAccess>(linker, |state| ConfigView(state.granted()))
    }
}

/// How the host functions reach a store's values.
struct ConfigAccess;

impl HasData for ConfigAccess {
    type Data<'a> = ConfigView<'a>;
}

/// A component's values, as its host functions see them.
pub struct ConfigView<'a>(Option<&'a ConfigValues>);

impl config::Host for ConfigView<'_> {
    fn get(&mut self, name: String) -> wasmtime::Result<Option<String>> {
        Ok(self.0.and_then(|c| c.variables.get(&name).cloned()))
    }

    fn get_secret(&mut self, name: String) -> wasmtime::Result<Option<String>> {
        Ok(self
            .0
            .and_then(|c| c.secrets.get(&name).map(|s| s.0.clone())))
    }
}
