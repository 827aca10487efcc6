//! `cello:component/config`: variables and secrets from the sidecar's
//! `[variables]` and `[secrets]`, each a literal or read from the host's
//! environment when the component loads. A secret's value is never logged:
//! its `Debug` prints a placeholder.
//!
//! The same grant answers `wasi:config/store` (as `wasmtime serve -S
//! config` does), for components written against the standard: `get` and
//! `get-all` see the variables and the secrets, a variable first when both
//! have a name.

use std::collections::HashMap;
use std::sync::LazyLock;

use serde::Deserialize;

use crate::bindings::cello::component::config;
use wasmtime::component::{HasData, Linker};
use wasmtime_wasi_config::{WasiConfig, WasiConfigVariables};

use super::capability::{Capability, Has};

/// Where a variable's value comes from, as a sidecar writes it:
/// `name = "literal"` or `name = { env = "VAR", default = "..." }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(
    untagged,
    deny_unknown_fields,
    expecting = "expected a string, or a table { env = \"VAR\", default = \"...\" }"
)]
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
#[derive(Default)]
pub struct ConfigValues {
    variables: HashMap<String, String>,
    secrets: HashMap<String, Secret>,
    /// Both, as `wasi:config/store` answers them.
    standard: WasiConfigVariables,
}

impl std::fmt::Debug for ConfigValues {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfigValues")
            .field("variables", &self.variables)
            .field("secrets", &self.secrets)
            .finish_non_exhaustive()
    }
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
        let secrets = values
            .secrets
            .iter()
            .map(|(k, v)| (k.as_str(), v.0.as_str()));
        let variables = values
            .variables
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()));
        // Collected in this order, a variable replaces a secret of its name.
        values.standard = secrets.chain(variables).collect();
        Ok(values)
    }
}

/// The config capability: `config = true` under `[grants]` lets the
/// component read its `[variables]` and `[secrets]`.
pub struct Config;

impl Capability for Config {
    const INTERFACES: &'static [&'static str] = &["cello:component/config", "wasi:config/store"];
    const HOW_TO_GRANT: &'static str = "config = true";
    type Grant = bool;
    type Granted = ConfigValues;

    fn is_granted(grant: &bool) -> bool {
        *grant
    }

    fn add_to_linker<T: Has<Self>>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
        config::add_to_linker::<T, ConfigAccess>(linker, |state| ConfigView(state.granted()))
    }

    /// Every function of its interface is a plain one.
    fn add_sync_to_linker<T: Has<Self>>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
        Self::add_to_linker(linker)
    }

    fn add_standard_to_linker<T: Has<Self>>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
        wasmtime_wasi_config::add_to_linker(linker, |state: &mut T| {
            static NONE: LazyLock<WasiConfigVariables> = LazyLock::new(WasiConfigVariables::new);
            WasiConfig::new(state.granted().map_or(&*NONE, |values| &values.standard))
        })
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
