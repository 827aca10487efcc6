//! What a capability is: host functions a component imports only when it
//! is granted them, in its sidecar's `[grants]` (or, for a tenant, by the
//! operator).
//!
//! A capability module (`kv`, `config`, `outbound`) defines a type that
//! implements [`Capability`]: its grant (the value under `[grants]`), what
//! the grant becomes for one component, and how its host functions are
//! linked. Its host traits are implemented on a view of that per-component
//! value, never on the store's whole state: a store reaches a capability
//! only through [`Has`]. The list of capabilities is in
//! [`crate::capabilities`].
//!
//! This module imports nothing of the host's, so capability modules and
//! the store's state can both depend on it.

use std::fmt::Debug;

use serde::Serialize;
use serde::de::DeserializeOwned;
use wasmtime::component::{Linker, ResourceTable};

/// One capability a component can be granted.
pub trait Capability: 'static {
    /// The WIT interfaces it provides, without versions. A component that
    /// imports one without the grant is refused at load, told
    /// [`Capability::HOW_TO_GRANT`].
    const INTERFACES: &'static [&'static str];
    /// The line to add under `[grants]`, as the refusal says it.
    const HOW_TO_GRANT: &'static str;

    /// Its value under `[grants]`: `true`, a list of URLs...
    type Grant: Clone + Debug + Default + PartialEq + Serialize + DeserializeOwned + Send + Sync;
    /// What the grant becomes for one component, shared by its instances.
    type Granted: Debug + Send + Sync;

    /// True when `grant` grants anything.
    fn is_granted(grant: &Self::Grant) -> bool;

    /// A sentence naming what the host could never honour in `grant`.
    fn check(_grant: &Self::Grant) -> Result<(), String> {
        Ok(())
    }

    /// Adds its host functions to `linker`; each call reaches the
    /// component's [`Capability::Granted`] through [`Has`].
    fn add_to_linker<T: Has<Self>>(linker: &mut Linker<T>) -> wasmtime::Result<()>;

    /// Adds the host functions a sync app may import (`wit/cello.wit`,
    /// `sync-app`), on the engine without concurrency support: those that
    /// are not an `async func`. None by default.
    fn add_sync_to_linker<T: Has<Self>>(_linker: &mut Linker<T>) -> wasmtime::Result<()> {
        Ok(())
    }

    /// Adds the standard (WASI) interfaces it also answers. Unlike Cello's
    /// own, these are linked on every engine, so that `wasi:http`
    /// components reach them too. None by default.
    fn add_standard_to_linker<T: Has<Self>>(_linker: &mut Linker<T>) -> wasmtime::Result<()> {
        Ok(())
    }
}

/// A store's state that can reach capability `C`, when it was granted.
pub trait Has<C: Capability + ?Sized>: Send + 'static {
    fn granted(&self) -> Option<&C::Granted>;

    /// The same, beside the instance's resource table, for an interface
    /// whose resources the host keeps (`wasi:keyvalue`'s buckets).
    fn granted_with_table(&mut self) -> (Option<&C::Granted>, &mut ResourceTable);

    /// The same, beside what the store keeps for its capabilities (the SQL
    /// transactions it began).
    fn granted_with_state(&mut self) -> (Option<&C::Granted>, &mut super::StoreState);

    /// The trace span the host calls made now belong to (see
    /// [`super::HasCapabilities::call_span`]).
    fn call_span(&self) -> tracing::Span;
}
