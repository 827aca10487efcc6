//! The open transactions of one database, by id: each holds its
//! connection from `begin` until `commit`, `rollback` or its time is up,
//! or until the database itself rolls it back (SQLite does, when certain
//! statements fail inside it).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::Mutex as AsyncMutex;

use super::SqlError;

/// One transaction's connection; taken out when it ends.
pub type Slot<L> = Arc<AsyncMutex<Option<L>>>;

/// Open transactions holding connections of type `L`.
pub struct Transactions<L>(Mutex<HashMap<u64, Entry<L>>>);

enum Entry<L> {
    Open(Slot<L>),
    /// Rolled back by the database, for the reason given; kept until the
    /// guest ends it (or its time is up), so that its later statements
    /// fail rather than run outside any transaction.
    Undone(Arc<str>),
}

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
                slot.insert(Entry::Open(Arc::new(AsyncMutex::new(Some(held)))));
                return id;
            }
        }
    }

    /// Transaction `id`, for a statement in it.
    pub fn get(&self, id: u64) -> Result<Slot<L>, SqlError> {
        match self.0.lock().unwrap().get(&id) {
            Some(Entry::Open(slot)) => Ok(slot.clone()),
            Some(Entry::Undone(why)) => Err(undone(why)),
            None => Err(SqlError::NoTransaction),
        }
    }

    /// Why transaction `id` has no connection: the database rolled it
    /// back, or there is no such transaction.
    pub fn gone(&self, id: u64) -> SqlError {
        match self.0.lock().unwrap().get(&id) {
            Some(Entry::Undone(why)) => undone(why),
            _ => SqlError::NoTransaction,
        }
    }

    /// Records that the database rolled transaction `id` back, because of
    /// `why`: its connection is let go by the caller, and its later
    /// statements fail saying so. Recorded even if the transaction is
    /// being ended meanwhile, for [`Transactions::end_or_undone`] waiting
    /// on it; past its time limit, its expiry forgets it.
    pub fn undo(&self, id: u64, why: &str) {
        let why = cut(why, MAX_WHY_BYTES);
        self.0.lock().unwrap().insert(id, Entry::Undone(why.into()));
    }

    /// Forgets transaction `id` if the database rolled it back: why it did.
    fn forget_undone(&self, id: u64) -> Option<Arc<str>> {
        let mut open = self.0.lock().unwrap();
        match open.remove(&id)? {
            Entry::Undone(why) => Some(why),
            entry => {
                open.insert(id, entry);
                None
            }
        }
    }

    /// Ends transaction `id`: its connection, once its running statement
    /// is done; or, if the database rolled it back, why.
    pub async fn end_or_undone(&self, id: u64) -> Result<Result<L, Arc<str>>, SqlError> {
        let entry = self.0.lock().unwrap().remove(&id);
        let slot = match entry.ok_or(SqlError::NoTransaction)? {
            Entry::Open(slot) => slot,
            Entry::Undone(why) => return Ok(Err(why)),
        };
        let held = slot.lock().await.take();
        match held {
            Some(held) => Ok(Ok(held)),
            // The statement running meanwhile found it rolled back.
            None => self
                .forget_undone(id)
                .map(Err)
                .ok_or(SqlError::NoTransaction),
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
        for (_, entry) in open {
            if let Entry::Open(slot) = entry {
                held.extend(slot.lock().await.take());
            }
        }
        held
    }
}

/// Longest reason kept for a transaction the database rolled back: a
/// guest's own message (`RAISE(ROLLBACK, ...)`) may be far longer.
const MAX_WHY_BYTES: usize = 300;

/// `text`, cut to at most `max` bytes on a character boundary.
fn cut(text: &str, max: usize) -> &str {
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
