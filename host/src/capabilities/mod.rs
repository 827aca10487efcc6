//! Host functions that guests import, each granted per component.
//!
//! `host` (log, sleep) and `cache` are every app's; they are linked with
//! WASI in [`crate::linker`]. The others are capabilities: each is a module
//! with a type implementing [`Capability`] (see [`capability`]), and a line
//! in the list below, which makes its field in `[grants]`, in
//! [`Capabilities`] and [`GrantSet`], links it when granted and names the
//! grant a component that imports it without one must add.

pub mod cache;
pub mod capability;
pub mod config;
pub mod host;
pub mod kv;
pub mod outbound;
pub mod sql;

use std::collections::HashMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use wasmtime::Engine;
use wasmtime::component::{Component, Linker, ResourceTable};

pub use capability::{Capability, Has};
use config::{ConfigValues, ValueSource};
use kv::KvStore;
use outbound::{Outbound, OutboundSettings};
use sql::SqlStore;

/// What resolving a component's grants reads: its name in the key-value
/// store and the sidecar tables capabilities take their settings from.
pub struct Resolving<'a> {
    /// The component's namespace: `name`, or `tenant/name`.
    pub namespace: &'a str,
    pub kv: &'a KvStore,
    pub sql: &'a SqlStore,
    pub outbound: &'a OutboundSettings,
    pub variables: &'a HashMap<String, ValueSource>,
    pub secrets: &'a HashMap<String, ValueSource>,
}

/// Makes, from the list of capabilities, `Grants`, `Capabilities`,
/// `GrantSet` and what links and names them.
macro_rules! capabilities {
    ($( $(#[$doc:meta])* $name:ident: $capability:ty = $resolve:expr ),* $(,)?) => {
        /// The sidecar's `[grants]` table.
        ///
        /// ```toml
        /// [grants]
        /// kv = true                                   # cello:component/kv, wasi:keyvalue
        /// config = true                               # cello:component/config
        /// outbound = ["https://api.example.com"]      # outbound HTTP, by allow-list
        /// sql = true                                  # cello:component/sql
        /// ```
        #[derive(Debug, Clone, Default, Deserialize, Serialize)]
        #[serde(deny_unknown_fields, rename_all = "kebab-case")]
        pub struct Grants {
            $( $(#[$doc])* #[serde(default)] pub $name: <$capability as Capability>::Grant, )*
        }

        /// What one component was granted, ready for its instances.
        #[derive(Debug, Default)]
        pub struct Capabilities {
            $( pub $name: Option<<$capability as Capability>::Granted>, )*
        }

        /// Which capabilities a linker offers.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
        pub struct GrantSet {
            $( pub $name: bool, )*
        }

        impl Grants {
            /// True when anything is granted.
            pub fn any(&self) -> bool {
                false $( || <$capability as Capability>::is_granted(&self.$name) )*
            }

            /// A sentence naming a grant the host could never honour.
            pub fn check(&self) -> Result<(), String> {
                $( <$capability as Capability>::check(&self.$name)?; )*
                Ok(())
            }

            /// Resolves each grant for one component; fails with a sentence
            /// naming the bad field.
            fn resolve(&self, cx: &Resolving<'_>) -> Result<Capabilities, String> {
                Ok(Capabilities {
                    $( $name: <$capability as Capability>::is_granted(&self.$name)
                        .then(|| ($resolve)(&self.$name, cx))
                        .transpose()?, )*
                })
            }
        }

        impl Capabilities {
            /// Which capabilities are linked.
            pub fn set(&self) -> GrantSet {
                GrantSet { $( $name: self.$name.is_some(), )* }
            }
        }

        /// Adds the host functions of every capability in `granted`; on an
        /// engine without concurrency support, those that are not an
        /// `async func` ([`Capability::add_sync_to_linker`]).
        pub fn add_to_linker<T: HasCapabilities>(
            linker: &mut Linker<T>,
            granted: GrantSet,
        ) -> wasmtime::Result<()> {
            let concurrent = linker.engine().get_concurrency_support();
            $( if granted.$name && concurrent {
                <$capability as Capability>::add_to_linker(linker)?;
            } else if granted.$name {
                <$capability as Capability>::add_sync_to_linker(linker)?;
            } )*
            Ok(())
        }

        /// Adds the standard interfaces of every capability in `granted`,
        /// on any engine.
        pub fn add_standard_to_linker<T: HasCapabilities>(
            linker: &mut Linker<T>,
            granted: GrantSet,
        ) -> wasmtime::Result<()> {
            $( if granted.$name {
                <$capability as Capability>::add_standard_to_linker(linker)?;
            } )*
            Ok(())
        }

        $( impl<T: HasCapabilities> Has<$capability> for T {
            fn granted(&self) -> Option<&<$capability as Capability>::Granted> {
                self.capabilities().$name.as_ref()
            }

            fn granted_with_table(
                &mut self,
            ) -> (Option<&<$capability as Capability>::Granted>, &mut ResourceTable) {
                let (capabilities, table) = self.capabilities_and_table();
                (capabilities.$name.as_ref(), table)
            }

            fn granted_with_state(
                &mut self,
            ) -> (Option<&<$capability as Capability>::Granted>, &mut StoreState) {
                let (capabilities, state) = self.capabilities_and_state();
                (capabilities.$name.as_ref(), state)
            }

            fn call_span(&self) -> tracing::Span {
                HasCapabilities::call_span(self)
            }
        } )*

        /// The grant to add for an import of `interface`, when it is a
        /// capability's that `granted` lacks.
        fn missing_grant(interface: &str, granted: GrantSet) -> Option<&'static str> {
            $( if !granted.$name && <$capability as Capability>::INTERFACES.contains(&interface) {
                return Some(<$capability as Capability>::HOW_TO_GRANT);
            } )*
            None
        }
    };
}

capabilities! {
    /// `cello:component/kv`: a namespace of the host's key-value store.
    kv: kv::Kv = |_, cx: &Resolving<'_>| Ok::<_, String>(cx.kv.namespace(cx.namespace)),
    /// `cello:component/config`: the sidecar's `[variables]` and `[secrets]`.
    config: config::Config = |_, cx: &Resolving<'_>| ConfigValues::resolve(cx.variables, cx.secrets),
    /// Outbound HTTP to the `scheme://host[:port]` patterns listed; empty
    /// means none.
    outbound: outbound::OutboundHttp = |grant: &Vec<String>, cx: &Resolving<'_>| {
        Outbound::new(grant, cx.outbound).map(Arc::new)
    },
    /// `cello:component/sql`: a SQL database of the component's own.
    sql: sql::Sql = |_, cx: &Resolving<'_>| Ok::<_, String>(cx.sql.database(cx.namespace)),
}

/// What a store keeps for its capabilities between host calls.
#[derive(Default)]
pub struct StoreState {
    /// The SQL transactions it began and has not ended.
    pub transactions: sql::Begun,
}

/// A store's state that holds its component's capabilities.
pub trait HasCapabilities: Send + 'static {
    fn capabilities(&self) -> &Capabilities;

    /// The capabilities beside the instance's resource table.
    fn capabilities_and_table(&mut self) -> (&Capabilities, &mut ResourceTable);

    /// The capabilities beside what the store keeps for them.
    fn capabilities_and_state(&mut self) -> (&Capabilities, &mut StoreState);

    /// The trace span of the guest call whose code runs now, for the host
    /// calls it makes: on an event-loop instance the calls share one task,
    /// so the current span cannot tell them apart. None when traces are
    /// off, or when the call's own task is in its span already.
    fn call_span(&self) -> tracing::Span {
        tracing::Span::none()
    }
}

impl Capabilities {
    /// Resolves `grants` for one component; fails with a sentence naming
    /// the bad field.
    pub fn grant(grants: &Grants, cx: &Resolving<'_>) -> Result<Self, String> {
        let has_values = !cx.variables.is_empty() || !cx.secrets.is_empty();
        if has_values && !grants.config {
            return Err(
                "[variables] or [secrets] are set but not granted; add `config = true` under [grants]"
                    .into(),
            );
        }
        grants.resolve(cx)
    }
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
        if let Some(missing) = missing_grant(interface, granted) {
            problems.push(format!(
                "imports {name}, which it is not granted; add `{missing}` {hint}"
            ));
        }
    }
    problems
}
