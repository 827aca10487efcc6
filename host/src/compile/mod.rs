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

/// Where compiled components are kept, if anywhere.
#[derive(Debug, Clone)]
pub struct CompileCache {
    dir: Option<PathBuf>,
    /// The engines' function cache, written after each compile.
    functions: Option<Arc<FunctionCache>>,
}

impl CompileCache {
    /// A cache in `dir`, created on first write.
    pub fn in_dir(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: Some(dir.into()),
            functions: None,
        }
    }

    /// No cache: every load compiles.
    pub fn disabled() -> Self {
        Self {
            dir: None,
            functions: None,
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
        Ok(component)
    }
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
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}
