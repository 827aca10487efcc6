//! The open transactions of one database, by id: each holds its
//! connection from `begin` until `commit`, `rollback` or its time is up.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::Mutex as AsyncMutex;

use super::SqlError;

/// One transaction's connection; taken out when it ends.
pub type Slot<L> = Arc<AsyncMutex<Option<L>>>;

/// Open transactions holding connections of type `L`.
pub struct Transactions<L>(Mutex<HashMap<u64, Slot<L>>>);

impl<L> Default for Transactions<L> {
    fn default() -> Self {
        Self(Mutex::default())
    }
}

impl<L> Transactions<L> {
    /// Registers a transaction holding `held`; returns its (random) id.
    pub fn open(&self, held: L) -> u64 {
        let mut open = self.0.lock().unwrap();
        loop {
            let id = random_id();
            if let std::collections::hash_map::Entry::Vacant(slot) = open.entry(id) {
                slot.insert(Arc::new(AsyncMutex::new(Some(held))));
                return id;
            }
        }
    }

    /// Transaction `id`, for a statement in it.
    pub fn get(&self, id: u64) -> Result<Slot<L>, SqlError> {
        let slot = self.0.lock().unwrap().get(&id).cloned();
        slot.ok_or(SqlError::NoTransaction)
    }

    /// Ends transaction `id`: its connection, once its running statement
    /// is done.
    pub async fn end(&self, id: u64) -> Result<L, SqlError> {
        let slot = self.0.lock().unwrap().remove(&id);
        let slot = slot.ok_or(SqlError::NoTransaction)?;
        let held = slot.lock().await.take();
        held.ok_or(SqlError::NoTransaction)
    }

    /// Ends every transaction: their connections.
    pub async fn end_all(&self) -> Vec<L> {
        let open: Vec<_> = self.0.lock().unwrap().drain().collect();
        let mut held = Vec::new();
        for (_, slot) in open {
            held.extend(slot.lock().await.take());
        }
        held
    }
}

fn random_id() -> u64 {
    let mut bytes = [0; 8];
    getrandom::fill(&mut bytes).expect("the system's random source works");
    u64::from_le_bytes(bytes)
}
