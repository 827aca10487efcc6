//! `cello:component/cache`: a component drops its own cached responses by
//! tag, from inside any handler.

use crate::bindings::cello::component::cache;
use crate::instances::state::InstanceState;

impl cache::Host for InstanceState {
    fn invalidate(&mut self, tags: Vec<String>) -> wasmtime::Result<u32> {
        let owner = &self.owner;
        let dropped = owner.cache.invalidate(&owner.component, &tags);
        tracing::debug!(component = %owner.component, ?tags, dropped, "cache invalidated");
        Ok(dropped)
    }
}
