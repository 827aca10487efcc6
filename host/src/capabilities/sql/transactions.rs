//! The open transactions of one database, by id: each holds its
//! connection from `begin` until `commit`, `rollback` or its time is up.
//! One the database itself rolled back (SQLite does, when certain
//! statements fail inside it) holds why instead, until it ends.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::Mutex as AsyncMutex;

use super::SqlError;

/// One transaction, locked by the statement running in it.
pub type Slot<L> = Arc<AsyncMutex<Held<L>>>;

/// What a transaction holds.
pub struct Held<L> {
    /// Its connection; taken out when it ends.
    pub connection: Option<L>,
    /// Why the database rolled it back, if it did: its later statements
    /// and its commit fail saying so, rather than run outside it.
    undone: Option<Arc<str>>,
}

impl<L> Held<L> {
    /// The connection, for a statement in the transaction.
    pub fn take(&mut self) -> Result<L, SqlError> {
        let why = self.undone.as_deref();
        self.connection
            .take()
            .ok_or_else(|| why.map_or(SqlError::NoTransaction, undone))
    }

    /// Records that the database rolled the transaction back, because of
    /// `why`; its connection was let go.
    pub fn undo(&mut self, why: &str) {
        self.connection = None;
        self.undone = Some(cut(why, MAX_WHY_BYTES).into());
    }
}

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
                slot.insert(Arc::new(AsyncMutex::new(Held {
                    connection: Some(held),
                    undone: None,
                })));
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
    /// is done; or, if the database rolled it back, why.
    pub async fn end_or_undone(&self, id: u64) -> Result<Result<L, Arc<str>>, SqlError> {
        let slot = self.0.lock().unwrap().remove(&id);
        let slot = slot.ok_or(SqlError::NoTransaction)?;
        let mut held = slot.lock().await;
        match (held.connection.take(), &held.undone) {
            (Some(connection), _) => Ok(Ok(connection)),
            (None, Some(why)) => Ok(Err(why.clone())),
            (None, None) => Err(SqlError::NoTransaction),
        }
    }

    /// Ends transaction `id`: its connection, once its running statement
    /// is done.
    pub async fn end(&self, id: u64) -> Result<L, SqlError> {
        self.end_or_undone(id).await?.map_err(|why| undone(&why))
    }

    /// Ends every transaction: their connections.
    pub async fn end_all(&self) -> Vec<L> {
        let open: Vec<_> = self.0.lock().unwrap().drain().collect();
        let mut held = Vec::new();
        for (_, slot) in open {
            held.extend(slot.lock().await.connection.take());
        }
        held
    }
}

/// Longest reason kept for a transaction the database rolled back: a
/// guest's own message (`RAISE(ROLLBACK, ...)`) may be far longer.
pub const MAX_WHY_BYTES: usize = 300;

/// `text`, cut to at most `max` bytes on a character boundary.
pub fn cut(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// The error for a statement in, or the commit of, a transaction the
/// database rolled back.
pub fn undone(why: &str) -> SqlError {
    SqlError::Failed(format!(
        "this transaction was rolled back, nothing in it was committed: {why}"
    ))
}

fn random_id() -> u64 {
    let mut bytes = [0; 8];
    getrandom::fill(&mut bytes).expect("the system's random source works");
    u64::from_le_bytes(bytes)
}
