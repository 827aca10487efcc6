//! Compiled functions shared between components: Cranelift's incremental
//! cache, kept in one SQLite file beside the compiled components.
//!
//! Components built with the same toolchain carry much of the same code:
//! every componentize-py component holds the same CPython, every
//! componentize-js one the same SpiderMonkey. Cranelift keys each function
//! it compiles by a SHA-256 hash of its IR and the compiler's settings;
//! a function whose key was compiled before, for any component, by this
//! process or another on the same state directory, is read back instead
//! of compiled. A second Python component starts 2.2× sooner than the
//! first (`bench/RESULTS.md`, "Cold start").
//!
//! A lookup also sees the functions of the compile in progress: a
//! component often holds the same function more than once. New entries
//! are written in one transaction when a compile ends ([`FunctionCache::flush`]).
//! Each value carries a checksum over its key and bytes, checked on every
//! read: an entry that fails it is a miss, compiled and written again. The
//! file is only ever a cache: when it cannot be opened or read the host
//! compiles without it, and past [`LIMIT_BYTES`] it is emptied.

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::{Connection, ErrorCode, OptionalExtension as _, params};
use xxhash_rust::xxh3::Xxh3;

use crate::metrics;

/// The file's largest size: a componentize-py component's functions take
/// about 30 MB, a Rust one's a few.
pub const LIMIT_BYTES: u64 = 1 << 30;

/// Bytes of the checksum after each value.
const SUM_BYTES: usize = 16;

/// Cranelift's incremental cache, on disk.
pub struct FunctionCache {
    path: PathBuf,
    /// `None` once the file has failed: the host compiles without it.
    db: Mutex<Option<Connection>>,
    /// Entries of the compiles in progress, written by `flush`.
    pending: Mutex<HashMap<Vec<u8>, Vec<u8>>>,
    limit: u64,
}

impl std::fmt::Debug for FunctionCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FunctionCache")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl FunctionCache {
    /// The cache in `path`, created if missing. A file that is not a
    /// usable database is replaced; if none can be made there, lookups
    /// only see the compile in progress.
    pub fn open(path: &Path) -> Self {
        Self::with_limit(path, LIMIT_BYTES)
    }

    fn with_limit(path: &Path, limit: u64) -> Self {
        let db = match open(path) {
            Ok(db) => Some(db),
            Err(e) if is_damage(&e) => {
                tracing::warn!(path = %path.display(), "function cache is damaged ({e}); starting it afresh");
                remove(path);
                open(path).map_err(|e| unavailable(path, &e)).ok()
            }
            Err(e) => {
                unavailable(path, &e);
                None
            }
        };
        Self {
            path: path.to_owned(),
            db: Mutex::new(db),
            pending: Mutex::new(HashMap::new()),
            limit,
        }
    }

    /// Writes the entries of the compiles so far in one transaction; past
    /// the size limit, empties the file first. A failure is logged and
    /// the entries dropped: the next compile of those functions writes
    /// them again.
    pub fn flush(&self) {
        let entries = std::mem::take(&mut *self.pending.lock().expect("pending entries"));
        if entries.is_empty() {
            return;
        }
        let mut db = self.db.lock().expect("function cache");
        let Some(connection) = db.as_mut() else {
            return;
        };
        if let Err(e) = write(connection, &entries, self.limit) {
            if is_damage(&e) {
                tracing::warn!(path = %self.path.display(), "function cache is damaged ({e}); compiling without it");
                *db = None;
                remove(&self.path);
            } else {
                tracing::warn!(path = %self.path.display(), "cannot write the function cache: {e}");
            }
        }
    }

    fn read(&self, key: &[u8]) -> Option<Vec<u8>> {
        let mut db = self.db.lock().expect("function cache");
        let connection = db.as_mut()?;
        let found = connection
            .prepare_cached("SELECT value FROM functions WHERE key = ?1")
            .and_then(|mut select| {
                select
                    .query_row(params![key], |row| row.get::<_, Vec<u8>>(0))
                    .optional()
            });
        match found {
            Ok(value) => value.and_then(|value| checked(key, value)),
            Err(e) if is_damage(&e) => {
                tracing::warn!(path = %self.path.display(), "function cache is damaged ({e}); compiling without it");
                *db = None;
                remove(&self.path);
                None
            }
            // Busy past the timeout, say: this function is compiled.
            Err(e) => {
                tracing::debug!(path = %self.path.display(), "cannot read the function cache: {e}");
                None
            }
        }
    }
}

impl wasmtime::CacheStore for FunctionCache {
    fn get(&self, key: &[u8]) -> Option<Cow<'_, [u8]>> {
        let pending = self
            .pending
            .lock()
            .expect("pending entries")
            .get(key)
            .cloned();
        let found = pending.or_else(|| self.read(key))?;
        metrics::function_reused();
        Some(Cow::Owned(found))
    }

    fn insert(&self, key: &[u8], value: Vec<u8>) -> bool {
        metrics::function_compiled();
        self.pending
            .lock()
            .expect("pending entries")
            .insert(key.to_vec(), value);
        true
    }
}

fn open(path: &Path) -> rusqlite::Result<Connection> {
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let connection = Connection::open(path)?;
    // Several hosts (or test processes) may share a state directory.
    connection.busy_timeout(std::time::Duration::from_secs(10))?;
    // A cache: a crash may lose the last writes, never corrupt the file.
    connection.execute_batch(
        "PRAGMA auto_vacuum = INCREMENTAL;
         PRAGMA journal_mode = WAL;
         PRAGMA synchronous = OFF;
         CREATE TABLE IF NOT EXISTS functions (key BLOB PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID;",
    )?;
    Ok(connection)
}

fn write(
    connection: &mut Connection,
    entries: &HashMap<Vec<u8>, Vec<u8>>,
    limit: u64,
) -> rusqlite::Result<()> {
    let size: i64 = connection.query_row(
        "SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()",
        [],
        |row| row.get(0),
    )?;
    let size = u64::try_from(size).unwrap_or(0);
    let transaction =
        connection.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    if size > limit {
        tracing::info!(size, limit, "function cache is full; emptying it");
        transaction.execute("DELETE FROM functions", [])?;
    }
    {
        let mut insert = transaction
            .prepare_cached("INSERT OR REPLACE INTO functions (key, value) VALUES (?1, ?2)")?;
        let mut stored = Vec::new();
        for (key, value) in entries {
            stored.clear();
            stored.extend_from_slice(value);
            stored.extend_from_slice(&sum(key, value));
            insert.execute(params![key, stored])?;
        }
    }
    transaction.commit()?;
    if size > limit {
        connection.execute_batch("PRAGMA incremental_vacuum;")?;
    }
    Ok(())
}

/// The value in `stored` if its checksum holds.
fn checked(key: &[u8], mut stored: Vec<u8>) -> Option<Vec<u8>> {
    let at = stored.len().checked_sub(SUM_BYTES)?;
    if stored[at..] != sum(key, &stored[..at]) {
        return None;
    }
    stored.truncate(at);
    Some(stored)
}

fn sum(key: &[u8], value: &[u8]) -> [u8; SUM_BYTES] {
    let mut hasher = Xxh3::new();
    hasher.update(key);
    hasher.update(value);
    hasher.digest128().to_le_bytes()
}

/// Whether `e` says the file is not a sound database (as opposed to, say,
/// a full disk or a lock held too long).
fn is_damage(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase)
    )
}

/// Removes the database at `path` with its write-ahead log, which would
/// otherwise be replayed into the next file made there.
fn remove(path: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let mut file = path.as_os_str().to_owned();
        file.push(suffix);
        let _ = std::fs::remove_file(file);
    }
}

fn unavailable(path: &Path, e: &rusqlite::Error) {
    tracing::warn!(path = %path.display(), "function cache unavailable ({e}); compiling without it");
}

#[cfg(test)]
mod tests {
    use wasmtime::CacheStore as _;

    use super::*;

    #[test]
    fn entries_are_seen_before_and_after_they_are_written_and_by_another_opener() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("functions.sqlite");
        let cache = FunctionCache::open(&path);
        assert!(cache.get(b"k1").is_none());
        cache.insert(b"k1", b"code one".to_vec());
        assert_eq!(cache.get(b"k1").as_deref(), Some(&b"code one"[..]));
        cache.flush();
        assert_eq!(cache.get(b"k1").as_deref(), Some(&b"code one"[..]));
        let other = FunctionCache::open(&path);
        assert_eq!(other.get(b"k1").as_deref(), Some(&b"code one"[..]));
        assert!(other.get(b"k2").is_none());
    }

    #[test]
    fn a_value_whose_checksum_fails_is_a_miss_and_is_written_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("functions.sqlite");
        let cache = FunctionCache::open(&path);
        cache.insert(b"k", b"machine code".to_vec());
        cache.flush();
        let tamper = Connection::open(&path).unwrap();
        tamper
            .execute(
                "UPDATE functions SET value = ?1 WHERE key = ?2",
                params![
                    b"machine codf-and-a-sixteen-byte-sum".to_vec(),
                    b"k".to_vec()
                ],
            )
            .unwrap();
        assert!(
            cache.get(b"k").is_none(),
            "a changed value must not be used"
        );
        cache.insert(b"k", b"machine code".to_vec());
        cache.flush();
        assert_eq!(cache.get(b"k").as_deref(), Some(&b"machine code"[..]));
    }

    #[test]
    fn a_file_that_is_no_database_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("functions.sqlite");
        std::fs::write(&path, vec![0x5a; 8192]).unwrap();
        let cache = FunctionCache::open(&path);
        cache.insert(b"k", b"v".to_vec());
        cache.flush();
        assert_eq!(
            FunctionCache::open(&path).get(b"k").as_deref(),
            Some(&b"v"[..])
        );
    }

    #[test]
    fn a_directory_that_cannot_hold_it_leaves_compiles_to_work_without_it() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("file");
        std::fs::write(&blocker, b"").unwrap();
        // Its parent is a file: nothing can be created there.
        let cache = FunctionCache::open(&blocker.join("functions.sqlite"));
        cache.insert(b"k", b"v".to_vec());
        assert_eq!(cache.get(b"k").as_deref(), Some(&b"v"[..]));
        cache.flush();
        assert!(cache.get(b"k").is_none());
    }

    #[test]
    fn past_its_limit_the_file_is_emptied_before_new_entries_go_in() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("functions.sqlite");
        let cache = FunctionCache::with_limit(&path, 64 << 10);
        for round in 0..4u8 {
            cache.insert(&[round], vec![round; 40 << 10]);
            cache.flush();
        }
        let rows: u32 = Connection::open(&path)
            .unwrap()
            .query_row("SELECT count(*) FROM functions", [], |row| row.get(0))
            .unwrap();
        assert!(rows <= 2, "{rows} entries kept past the limit");
        assert!(cache.get(&[3]).is_some(), "the newest entry is kept");
        assert!(cache.get(&[0]).is_none(), "the oldest were dropped");
    }
}
