//! Compiling components, with an on-disk cache of compiled artifacts.
//!
//! An entry is keyed by the SHA-256 of the component's bytes together with
//! the engine's compatibility hash, so a restart reuses the work and a new
//! wasmtime or different settings never load a stale artifact. Only this
//! module writes the cache, and it never loads an artifact it did not write:
//! each entry carries a checksum of the artifact, checked before wasmtime
//! sees it, and an entry that fails the check or will not load is rebuilt.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;
use xxhash_rust::xxh3::xxh3_128;

/// Length of the checksum in front of each artifact.
const CHECKSUM_LEN: usize = 16;

/// Where compiled components are kept, if anywhere.
#[derive(Debug, Clone)]
pub struct CompileCache {
    dir: Option<PathBuf>,
}

impl CompileCache {
    /// A cache in `dir`, created on first write.
    pub fn in_dir(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: Some(dir.into()),
        }
    }

    /// No cache: every load compiles.
    pub fn disabled() -> Self {
        Self { dir: None }
    }

    /// Compiles `bytes`, or loads the artifact an earlier run stored.
    /// Blocking: call it off the async runtime's threads.
    pub fn compile(&self, engine: &Engine, bytes: &[u8]) -> wasmtime::Result<Component> {
        let Some(dir) = &self.dir else {
            return Component::new(engine, bytes);
        };
        let path = dir.join(format!("{}.cwasm", cache_key(engine, bytes)));
        match load(engine, &path) {
            Ok(Some(component)) => return Ok(component),
            Ok(None) => {}
            Err(reason) => tracing::warn!(
                path = %path.display(),
                "compile cache entry is unusable ({reason}); recompiling"
            ),
        }
        let component = Component::new(engine, bytes)?;
        if let Err(e) = store(&path, &component) {
            tracing::warn!(path = %path.display(), "cannot write compile cache entry: {e:#}");
        }
        Ok(component)
    }
}

/// The cached component at `path`: `None` when there is no entry, an error
/// saying why when there is one that cannot be used.
fn load(engine: &Engine, path: &Path) -> Result<Option<Component>, String> {
    let entry = match std::fs::read(path) {
        Ok(entry) => entry,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    if entry.len() < CHECKSUM_LEN {
        return Err("truncated".into());
    }
    let (checksum, artifact) = entry.split_at(CHECKSUM_LEN);
    if checksum != xxh3_128(artifact).to_le_bytes() {
        return Err("checksum mismatch".into());
    }
    // SAFETY: the artifact was written by `store` below from a component
    // this host compiled, and the checksum shows it is unchanged; wasmtime
    // also checks that it was compiled by a compatible engine.
    unsafe { Component::deserialize(engine, artifact) }
        .map(Some)
        .map_err(|e| format!("{e:#}"))
}

/// Hex SHA-256 over the engine's compatibility hash and the component bytes.
fn cache_key(engine: &Engine, bytes: &[u8]) -> String {
    struct Sha(Sha256);
    impl Hasher for Sha {
        fn finish(&self) -> u64 {
            unreachable!("only written to")
        }
        fn write(&mut self, bytes: &[u8]) {
            self.0.update(bytes);
        }
    }
    let mut sha = Sha(Sha256::new());
    engine.precompile_compatibility_hash().hash(&mut sha);
    sha.0.update(bytes);
    sha.0
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Writes checksum and artifact beside the final name, then renames the
/// file into place, so a reader never sees half an entry.
fn store(path: &Path, component: &Component) -> anyhow::Result<()> {
    let dir = path.parent().expect("cache entries live in a directory");
    std::fs::create_dir_all(dir)?;
    let artifact = component.serialize()?;
    let mut entry = Vec::with_capacity(CHECKSUM_LEN + artifact.len());
    entry.extend_from_slice(&xxh3_128(&artifact).to_le_bytes());
    entry.extend_from_slice(&artifact);
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, entry)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}
