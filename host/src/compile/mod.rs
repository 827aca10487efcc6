//! Compiling components, with an on-disk cache of compiled artifacts.
//!
//! An entry is keyed by a BLAKE3 hash of the component's bytes together
//! with the engine's compatibility hash, so a restart reuses the work and a
//! new wasmtime or different settings never load a stale artifact; the hash
//! is cryptographic, so no upload can be made to collide with another's
//! entry. Only this module writes the cache, and it never loads an artifact
//! it did not write: each `KEY.cwasm` has a `KEY.sum` beside it holding the
//! artifact's checksum, checked before wasmtime maps the file, and an entry
//! that fails the check or will not load is rebuilt.
//!
//! The artifacts take at most [`MAX_ARTIFACT_BYTES`] together (tenants'
//! uploads, refused ones included, all land here): past it, those loaded
//! or written longest ago are removed after each write. One removed while
//! its component serves stays mapped; it compiles again at the next load.
//!
//! Below it, [`functions`] keeps single compiled functions, so a component
//! that shares code with one compiled before compiles faster.

pub mod functions;

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use wasmtime::Engine;
use wasmtime::component::Component;
use xxhash_rust::xxh3::xxh3_128;

use functions::FunctionCache;

/// The most bytes the compiled artifacts take on disk together.
pub const MAX_ARTIFACT_BYTES: u64 = 4 << 30;

/// Where compiled components are kept, if anywhere.
#[derive(Debug, Clone)]
pub struct CompileCache {
    dir: Option<PathBuf>,
    /// The engines' function cache, written after each compile.
    functions: Option<Arc<FunctionCache>>,
    /// What the artifacts may take together.
    max_bytes: u64,
}

impl CompileCache {
    /// A cache in `dir`, created on first write.
    pub fn in_dir(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: Some(dir.into()),
            functions: None,
            max_bytes: MAX_ARTIFACT_BYTES,
        }
    }

    /// No cache: every load compiles.
    pub fn disabled() -> Self {
        Self {
            dir: None,
            functions: None,
            max_bytes: MAX_ARTIFACT_BYTES,
        }
    }

    /// The function cache in `dir`, for the engines to compile with: this
    /// cache writes it after each compile.
    pub fn with_functions(mut self) -> Self {
        self.functions = self
            .dir
            .as_ref()
            .map(|dir| Arc::new(FunctionCache::open(&dir.join(FUNCTIONS_FILE))));
        self
    }

    /// The function cache, if any, for [`crate::engine::Engines::new`].
    pub fn functions(&self) -> Option<Arc<FunctionCache>> {
        self.functions.clone()
    }

    /// Compiles `bytes`, or loads the artifact an earlier run stored.
    /// Blocking: call it off the async runtime's threads.
    pub fn compile(&self, engine: &Engine, bytes: &[u8]) -> wasmtime::Result<Component> {
        let Some(dir) = &self.dir else {
            return Component::new(engine, bytes);
        };
        let entry = dir.join(cache_key(engine, bytes));
        match load(engine, &entry) {
            Ok(Some(component)) => return Ok(component),
            Ok(None) => {}
            Err(reason) => tracing::warn!(
                entry = %entry.display(),
                "compile cache entry is unusable ({reason}); recompiling"
            ),
        }
        let component = Component::new(engine, bytes);
        if let Some(functions) = &self.functions {
            functions.flush();
        }
        let component = component?;
        if let Err(e) = store(&entry, &component) {
            tracing::warn!(entry = %entry.display(), "cannot write compile cache entry: {e:#}");
        }
        if let Err(e) = evict(dir, self.max_bytes, &entry.with_extension("cwasm")) {
            tracing::warn!(dir = %dir.display(), "cannot trim the compile cache: {e}");
        }
        Ok(component)
    }
}

/// Removes the artifacts used longest ago, and their sums, until those
/// left take at most `max_bytes`; never `keep`, the one just written.
/// Leftovers of writes cut short (`.tmp` files over ten minutes old) go
/// too.
fn evict(dir: &Path, max_bytes: u64, keep: &Path) -> std::io::Result<()> {
    let mut artifacts = Vec::new();
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let Ok(meta) = entry.metadata() else { continue };
        if name.contains(".tmp") {
            // Another host's write in progress is a second or so old.
            let stale = meta.modified().ok().and_then(|m| m.elapsed().ok());
            if stale.is_some_and(|age| age.as_secs() > 600) {
                let _ = std::fs::remove_file(&path);
            }
        } else if name.ends_with(".cwasm") {
            total += meta.len();
            let used = meta.modified().unwrap_or(std::time::SystemTime::UNIX_EPOCH);
            artifacts.push((used, meta.len(), path));
        }
    }
    if total <= max_bytes {
        return Ok(());
    }
    artifacts.sort();
    for (_, len, path) in artifacts {
        if total <= max_bytes {
            break;
        }
        if path == keep {
            continue;
        }
        // The sum first: an entry without one is not there. Another
        // compile may have removed it already.
        let _ = std::fs::remove_file(path.with_extension("sum"));
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        total -= len;
        tracing::debug!(artifact = %path.display(), "compile cache entry removed: over its size");
    }
    Ok(())
}

/// The function cache's file in the cache directory.
const FUNCTIONS_FILE: &str = "functions.sqlite";

/// The cached component at `entry`: `None` when there is none, an error
/// saying why when there is one that cannot be used.
fn load(engine: &Engine, entry: &Path) -> Result<Option<Component>, String> {
    let artifact_path = entry.with_extension("cwasm");
    let sum = match std::fs::read(entry.with_extension("sum")) {
        Ok(sum) => sum,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    let artifact = std::fs::read(&artifact_path).map_err(|e| e.to_string())?;
    if sum != xxh3_128(&artifact).to_le_bytes() {
        return Err("checksum mismatch".into());
    }
    drop(artifact);
    // Used now: the last to go when the cache is trimmed.
    if let Ok(file) = std::fs::File::options().append(true).open(&artifact_path) {
        let _ = file.set_modified(std::time::SystemTime::now());
    }
    // SAFETY: the file was written by `store` below from a component this
    // host compiled, and its checksum shows it is unchanged; wasmtime also
    // checks that a compatible engine compiled it. Mapping the file rather
    // than copying it spares tens of milliseconds for a Python component.
    unsafe { Component::deserialize_file(engine, &artifact_path) }
        .map(Some)
        .map_err(|e| format!("{e:#}"))
}

/// Hex BLAKE3 over the engine's compatibility hash and the component bytes.
fn cache_key(engine: &Engine, bytes: &[u8]) -> String {
    struct Blake(blake3::Hasher);
    impl Hasher for Blake {
        fn finish(&self) -> u64 {
            unreachable!("only written to")
        }
        fn write(&mut self, bytes: &[u8]) {
            self.0.update(bytes);
        }
    }
    let mut hasher = Blake(blake3::Hasher::new());
    engine.precompile_compatibility_hash().hash(&mut hasher);
    hasher.0.update(bytes);
    hasher.0.finalize().to_hex().to_string()
}

/// Writes the artifact, then its checksum, each beside its final name and
/// renamed into place, so a reader never sees half a file. The checksum
/// goes last: an entry without one is not there yet.
fn store(entry: &Path, component: &Component) -> anyhow::Result<()> {
    let dir = entry.parent().expect("cache entries live in a directory");
    std::fs::create_dir_all(dir)?;
    let artifact = component.serialize()?;
    let sum = xxh3_128(&artifact).to_le_bytes();
    write_atomically(&entry.with_extension("cwasm"), &artifact)?;
    write_atomically(&entry.with_extension("sum"), &sum)?;
    Ok(())
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension(format!(
        "{}.tmp{}",
        path.extension().and_then(|e| e.to_str()).unwrap_or(""),
        std::process::id()
    ));
    let written = std::fs::write(&tmp, bytes).and_then(|()| std::fs::rename(&tmp, path));
    if written.is_err() {
        // A full disk, say: no half-written file is left behind.
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A component whose artifact differs from the others' by `n`.
    fn component(n: usize) -> Vec<u8> {
        let functions: String = (0..=n)
            .map(|i| format!("(func (export \"f{i}\") (result i32) i32.const {i})"))
            .collect();
        wat::parse_str(format!("(component (core module {functions}))")).unwrap()
    }

    fn artifacts(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name.ends_with(".cwasm"))
            .collect();
        names.sort();
        names
    }

    /// Past its size, the cache keeps what was used last: the artifact
    /// just written, and one loaded since, not the one left alone.
    #[test]
    fn past_its_size_the_cache_drops_what_was_used_longest_ago() {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::default();
        let mut cache = CompileCache::in_dir(dir.path());
        let [first, second, third] = [0, 1, 2].map(component);
        cache.compile(&engine, &first).unwrap();
        let one = std::fs::metadata(
            dir.path()
                .join(format!("{}.cwasm", cache_key(&engine, &first))),
        )
        .unwrap()
        .len();
        // Room for two.
        cache.max_bytes = 2 * one + one / 2;
        std::thread::sleep(std::time::Duration::from_millis(20));
        cache.compile(&engine, &second).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        cache.compile(&engine, &first).unwrap(); // loaded: used now
        std::thread::sleep(std::time::Duration::from_millis(20));
        cache.compile(&engine, &third).unwrap();
        let kept = artifacts(dir.path());
        let name = |bytes: &[u8]| format!("{}.cwasm", cache_key(&engine, bytes));
        assert_eq!(kept.len(), 2, "{kept:?}");
        assert!(
            kept.contains(&name(&first)) && kept.contains(&name(&third)),
            "{kept:?}"
        );
        assert!(
            !dir.path()
                .join(format!("{}.sum", cache_key(&engine, &second)))
                .exists()
        );
        // The one removed compiles again, and is stored again.
        cache.compile(&engine, &second).unwrap();
        assert!(artifacts(dir.path()).contains(&name(&second)));
    }
}
