//! Host functions that guests import. Each capability is its own module.
//!
//! `host` (log, sleep) and `cache` are every app's. The others are granted
//! per component in its sidecar's `[grants]`, and only a granted one is in
//! the component's linker; a component that imports one it was not granted
//! is refused at load, with the grant to add.

pub mod cache;
pub mod config;
pub mod host;
pub mod kv;
pub mod outbound;

use std::collections::HashMap;
use std::sync::Arc;

use serde::Deserialize;
use wasmtime::Engine;
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime_wasi_http::WasiHttpView;

use crate::bindings::cello::component as cello;
use crate::state::InstanceState;
use config::{ConfigValues, ValueSource};
use kv::{KvNamespace, KvStore};
use outbound::{Outbound, OutboundSettings};

/// The sidecar's `[grants]` table.
///
/// ```toml
/// [grants]
/// kv = true                                   # cello:component/kv
/// config = true                               # cello:component/config
/// outbound = ["https://api.example.com"]      # outbound HTTP, by allow-list
/// ```
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Grants {
    #[serde(default)]
    pub kv: bool,
    #[serde(default)]
    pub config: bool,
    /// `scheme://host[:port]` patterns; empty means no outbound HTTP.
    #[serde(default)]
    pub outbound: Vec<String>,
}

/// What one component was granted, ready for its instances.
#[derive(Debug, Default)]
pub struct Capabilities {
    pub kv: Option<KvNamespace>,
    pub config: Option<ConfigValues>,
    pub outbound: Option<Arc<Outbound>>,
}

/// The sidecar fields that grants read, in one place.
pub struct GrantSettings<'a> {
    pub grants: &'a Grants,
    pub outbound: &'a OutboundSettings,
    pub variables: &'a HashMap<String, ValueSource>,
    pub secrets: &'a HashMap<String, ValueSource>,
}

impl Capabilities {
    /// Resolves `settings` for the component `namespace`; fails with a
    /// sentence naming the bad field.
    pub fn grant(
        settings: GrantSettings<'_>,
        namespace: &str,
        store: &KvStore,
    ) -> Result<Self, String> {
        let grants = settings.grants;
        let has_values = !settings.variables.is_empty() || !settings.secrets.is_empty();
        if has_values && !grants.config {
            return Err(
                "[variables] or [secrets] are set but not granted; add `config = true` under [grants]"
                    .into(),
            );
        }
        Ok(Self {
            kv: grants.kv.then(|| store.namespace(namespace)),
            config: grants
                .config
                .then(|| ConfigValues::resolve(settings.variables, settings.secrets))
                .transpose()?,
            outbound: (!grants.outbound.is_empty())
                .then(|| Outbound::new(&grants.outbound, settings.outbound).map(Arc::new))
                .transpose()?,
        })
    }

    /// Which capabilities are linked.
    pub fn set(&self) -> GrantSet {
        GrantSet {
            kv: self.kv.is_some(),
            config: self.config.is_some(),
            outbound: self.outbound.is_some(),
        }
    }
}

/// The capabilities a linker offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct GrantSet {
    pub kv: bool,
    pub config: bool,
    pub outbound: bool,
}

/// Each import a component makes without its grant, as a sentence saying
/// which grant to add, and where (`hint`, such as "under [grants] in
/// NAME.toml").
pub fn ungranted_imports(
    engine: &Engine,
    component: &Component,
    granted: GrantSet,
    hint: &str,
) -> Vec<String> {
    let mut problems = Vec::new();
    for (name, _) in component.component_type().imports(engine) {
        let interface = name.split('@').next().unwrap_or(name);
        let missing = match interface {
            "cello:component/kv" if !granted.kv => "kv = true",
            "cello:component/config" if !granted.config => "config = true",
            "cello:component/outbound" | "wasi:http/outgoing-handler" if !granted.outbound => {
                "outbound = [\"https://host.example\"]"
            }
            _ => continue,
        };
        problems.push(format!(
            "imports {name}, which it is not granted; add `{missing}` {hint}"
        ));
    }
    problems
}

/// A linker with WASI (nothing reachable unless granted), wasi:http types,
/// Cello's `host` and `cache`, and the capabilities in `granted`. On an
/// engine without concurrency support, only WASI and wasi:http: Cello's
/// interfaces have async functions.
pub fn linker(engine: &Engine, granted: GrantSet) -> anyhow::Result<Linker<InstanceState>> {
    use wasmtime_wasi_http::p2::bindings::http as wasi_http;
    type Http = wasmtime_wasi_http::WasiHttp;
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    let options = wasmtime_wasi_http::p2::bindings::LinkOptions::default();
    wasi_http::types::add_to_linker::<_, Http>(&mut linker, &options.into(), InstanceState::http)?;
    if !engine.get_concurrency_support() {
        if granted.outbound {
            wasi_http::outgoing_handler::add_to_linker::<_, Http>(
                &mut linker,
                InstanceState::http,
            )?;
        }
        return Ok(linker);
    }
    fn this(state: &mut InstanceState) -> &mut InstanceState {
        state
    }
    cello::types::add_to_linker::<_, HasSelf<_>>(&mut linker, this)?;
    cello::host::add_to_linker::<_, HasSelf<_>>(&mut linker, this)?;
    cello::cache::add_to_linker::<_, HasSelf<_>>(&mut linker, this)?;
    if granted.kv {
        cello::kv::add_to_linker::<_, HasSelf<_>>(&mut linker, this)?;
    }
    if granted.config {
        cello::config::add_to_linker::<_, HasSelf<_>>(&mut linker, this)?;
    }
    if granted.outbound {
        cello::outbound::add_to_linker::<_, HasSelf<_>>(&mut linker, this)?;
        wasi_http::outgoing_handler::add_to_linker::<_, Http>(&mut linker, InstanceState::http)?;
    }
    Ok(linker)
}
