//! The resources every component shares, and its instances are made
//! with.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use wasmtime::Engine;
use wasmtime::component::Linker;

use crate::capabilities::GrantSet;
use crate::capabilities::kv::KvStore;
use crate::capabilities::sql::SqlStore;
use crate::engine::Engines;
use crate::instances::capacity::HostCapacity;
use crate::instances::state::InstanceState;
use crate::response_cache::ResponseCache;
use crate::scheduler::Scheduler;

/// What every component is loaded with, and its instances share: the
/// engines and their linkers, the host's instance capacity, the response
/// cache, the key-value store, the SQL databases and the CPU scheduler.
pub struct Resources {
    pub engines: Engines,
    /// One linker per engine and set of granted capabilities, made on
    /// first use.
    linkers: Mutex<HashMap<(bool, GrantSet), Linker<InstanceState>>>,
    /// Instances alive at once across every component.
    pub capacity: Arc<HostCapacity>,
    pub responses: Arc<ResponseCache>,
    /// The key-value store behind every component's namespace.
    pub kv: KvStore,
    /// The databases of the components granted SQL.
    pub sql: SqlStore,
    /// Shares the CPU between every component's guest calls.
    pub scheduler: Arc<Scheduler>,
}

impl Resources {
    /// The resources, with no linker made yet.
    pub fn new(
        engines: Engines,
        capacity: Arc<HostCapacity>,
        responses: Arc<ResponseCache>,
        kv: KvStore,
        sql: SqlStore,
        scheduler: Arc<Scheduler>,
    ) -> Self {
        Self {
            engines,
            linkers: Mutex::default(),
            capacity,
            responses,
            kv,
            sql,
            scheduler,
        }
    }

    /// The linker for `engine` offering exactly the capabilities in
    /// `granted`.
    pub fn linker(
        &self,
        engine: &Engine,
        granted: GrantSet,
    ) -> anyhow::Result<Linker<InstanceState>> {
        let key = (engine.get_concurrency_support(), granted);
        let mut linkers = self.linkers.lock().unwrap();
        if let Some(linker) = linkers.get(&key) {
            return Ok(linker.clone());
        }
        let linker = crate::linker::linker(engine, granted)?;
        linkers.insert(key, linker.clone());
        Ok(linker)
    }
}
