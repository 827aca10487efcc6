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
//! file is only ever a cache: when it cannot be opened the host compiles
//! without it; a file damaged while in use is left alone (other hosts may
//! have it open) until the next start replaces it; past [`LIMIT_BYTES`]
//! it is emptied, and the pages it frees are given back.
//!
//! Cranelift checks its version when it decodes an entry, not in the key:
//! after an upgrade, the first lookups of old entries count as reused and
//! then compiled, and their new code replaces the old.

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, OptionalExtension as _, params};
use xxhash_rust::xxh3::Xxh3;

use crate::metrics;

/// The file's largest size, its live entries counted: a componentize-py
/// component's functions take about 30 MB, a Rust one's a few. Past it,
/// the next write empties the file first.
pub const LIMIT_BYTES: u64 = 1 << 30;

/// The most a compile in progress holds in memory before it is written;
/// past it, new functions are compiled but not kept.
const PENDING_LIMIT_BYTES: usize = 256 << 20;

/// Bytes of the checksum after each value.
const SUM_BYTES: usize = 16;

/// How long a lookup waits for the file: a miss only costs a compile.
const READ_WAIT: Duration = Duration::from_millis(200);

/// How long a write waits for another host's write to end.
const WRITE_WAIT: Duration = Duration::from_secs(10);

/// Cranelift's incremental cache, on disk.
pub struct FunctionCache {
    path: PathBuf,
    /// For lookups from Cranelift's compile threads: in WAL mode they go on
    /// while another connection, or another host, writes.
    reader: Mutex<Option<Connection>>,
    /// For `flush`.
    writer: Mutex<Option<Connection>>,
    /// Set once the file turns out damaged while in use: this process stops
    /// using it (other hosts may still have it open), and the next start
    /// replaces it.
    damaged: AtomicBool,
    /// Entries of the compiles in progress, written by `flush`.
    pending: Mutex<Pending>,
    limit: u64,
}

#[derive(Default)]
struct Pending {
    entries: HashMap<Vec<u8>, Vec<u8>>,
    bytes: usize,
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
        let writer = match open(path, WRITE_WAIT) {
            Ok(db) => Some(db),
            Err(e) if is_damage(&e) => {
                tracing::warn!(path = %path.display(), "function cache is damaged ({e}); starting it afresh");
                remove(path);
                open(path, WRITE_WAIT)
                    .map_err(|e| unavailable(path, &e))
                    .ok()
            }
            Err(e) => {
                unavailable(path, &e);
                None
            }
        };
        let reader = writer.as_ref().and_then(|_| {
            open(path, READ_WAIT)
                .map_err(|e| unavailable(path, &e))
                .ok()
        });
        Self {
            path: path.to_owned(),
            reader: Mutex::new(reader),
            writer: Mutex::new(writer),
            damaged: AtomicBool::new(false),
            pending: Mutex::new(Pending::default()),
            limit,
        }
    }

    /// Writes the entries of the compiles so far in one transaction; past
    /// the size limit, empties the file first. A failure is logged and
    /// the entries dropped: the next compile of those functions writes
    /// them again.
    pub fn flush(&self) {
        let entries = std::mem::take(&mut *self.pending.lock().expect("pending entries")).entries;
        if entries.is_empty() || self.damaged.load(Ordering::Relaxed) {
            return;
        }
        let mut writer = self.writer.lock().expect("function cache writer");
        let Some(connection) = writer.as_mut() else {
            return;
        };
        match write(connection, &entries, self.limit) {
            Ok(()) => {}
            Err(e) if is_damage(&e) => {
                self.found_damage(&e);
                *writer = None;
            }
            Err(e) => {
                tracing::warn!(path = %self.path.display(), "cannot write the function cache: {e}")
            }
        }
    }

    fn read(&self, key: &[u8]) -> Option<Vec<u8>> {
        if self.damaged.load(Ordering::Relaxed) {
            return None;
        }
        let mut reader = self.reader.lock().expect("function cache reader");
        let connection = reader.as_mut()?;
        let found = connection
            .prepare_cached("SELECT value FROM functions WHERE key = ?1")
            .and_then(|mut select| {
                select
                    .query_row(params![key], |row| row.get::<_, Vec<u8>>(0))
                    .optional()
            });
        match found {
            Ok(Some(value)) => {
                let value = checked(key, value);
                if value.is_none() {
                    tracing::debug!(path = %self.path.display(), "a function cache entry failed its checksum; compiling the function");
                }
                value
            }
            Ok(None) => None,
            Err(e) if is_damage(&e) => {
                self.found_damage(&e);
                *reader = None;
                None
            }
            // Busy past `READ_WAIT`, say: the function is compiled.
            Err(e) => {
                tracing::debug!(path = %self.path.display(), "cannot read the function cache: {e}");
                None
            }
        }
    }

    fn found_damage(&self, e: &rusqlite::Error) {
        if !self.damaged.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                path = %self.path.display(),
                "function cache is damaged ({e}); compiling without it until the next start, which replaces it"
            );
        }
    }
}

impl wasmtime::CacheStore for FunctionCache {
    fn get(&self, key: &[u8]) -> Option<Cow<'_, [u8]>> {
        let pending = self
            .pending
            .lock()
            .expect("pending entries")
            .entries
            .get(key)
            .cloned();
        let found = pending.or_else(|| self.read(key))?;
        metrics::function_reused();
        Some(Cow::Owned(found))
    }

    fn insert(&self, key: &[u8], value: Vec<u8>) -> bool {
        metrics::function_compiled();
        let mut pending = self.pending.lock().expect("pending entries");
        if pending.bytes + value.len() > PENDING_LIMIT_BYTES {
            return false;
        }
        pending.bytes += key.len() + value.len();
        pending.entries.insert(key.to_vec(), value);
        true
    }
}

/// A connection to the file at `path` (made if missing), waiting `wait`
/// for another's lock.
fn open(path: &Path, wait: Duration) -> rusqlite::Result<Connection> {
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let connection = Connection::open(path)?;
    connection.busy_timeout(wait)?;
    // Reading the size is where a file that is no database shows itself.
    let pages: i64 = connection.query_row("PRAGMA page_count", [], |row| row.get(0))?;
    if pages == 0 {
        // Only a new file: on one in use it would take the write lock.
        connection.execute_batch("PRAGMA auto_vacuum = INCREMENTAL;")?;
    }
    let mode: String = connection.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        tracing::warn!(path = %path.display(), mode, "the function cache is not in WAL mode: lookups wait while another host writes");
    }
    // A cache: a crash may lose the last writes, never damage the file.
    connection.execute_batch(
        "PRAGMA synchronous = NORMAL;
         CREATE TABLE IF NOT EXISTS functions (key BLOB PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID;",
    )?;
    Ok(connection)
}

fn write(
    connection: &mut Connection,
    entries: &HashMap<Vec<u8>, Vec<u8>>,
    limit: u64,
) -> rusqlite::Result<()> {
    // Live pages only: those an emptying freed are reused before the file grows.
    let size: i64 = connection.query_row(
        "SELECT (page_count - freelist_count) * page_size \
         FROM pragma_page_count(), pragma_freelist_count(), pragma_page_size()",
        [],
        |row| row.get(0),
    )?;
    let full = u64::try_from(size).unwrap_or(0) > limit;
    let transaction =
        connection.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    if full {
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
    if full {
        // The pragma frees one page per row it returns: step through all.
        let mut vacuum = connection.prepare("PRAGMA incremental_vacuum")?;
        let mut freed = vacuum.query([])?;
        while freed.next()?.is_some() {}
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
        // Two entries fill it; the third empties it first; the fourth
        // fits beside the third.
        for round in 0..4u8 {
            cache.insert(&[round], vec![round; 40 << 10]);
            cache.flush();
        }
        assert!(cache.get(&[0]).is_none() && cache.get(&[1]).is_none());
        assert!(cache.get(&[2]).is_some() && cache.get(&[3]).is_some());
        let db = Connection::open(&path).unwrap();
        let (pages, free, page): (i64, i64, i64) = db
            .query_row(
                "SELECT page_count, freelist_count, page_size \
                 FROM pragma_page_count(), pragma_freelist_count(), pragma_page_size()",
                [],
                |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
            )
            .unwrap();
        assert!(free < 4, "{free} free pages kept after emptying");
        assert!(pages * page < 160 << 10, "{pages} pages of {page} bytes");
    }

    #[test]
    fn lookups_go_on_while_another_host_writes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("functions.sqlite");
        let cache = FunctionCache::open(&path);
        cache.insert(b"k", b"v".to_vec());
        cache.flush();
        let mut other = Connection::open(&path).unwrap();
        let writing = other
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .unwrap();
        writing
            .execute(
                "INSERT INTO functions (key, value) VALUES (?1, ?2)",
                params![b"other".to_vec(), b"x".to_vec()],
            )
            .unwrap();
        let started = std::time::Instant::now();
        assert_eq!(
            FunctionCache::open(&path).get(b"k").as_deref(),
            Some(&b"v"[..])
        );
        assert_eq!(cache.get(b"k").as_deref(), Some(&b"v"[..]));
        assert!(started.elapsed() < READ_WAIT, "{:?}", started.elapsed());
        writing.rollback().unwrap();
    }
}
