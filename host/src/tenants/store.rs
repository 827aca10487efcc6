//! Tenants on disk, under `STATE_DIR/tenants/`:
//!
//! ```text
//! tenants/{tenant}/tenant.json                       quotas, grants, token hashes
//! tenants/{tenant}/components/{name}/component.json  versions, and which is current
//! tenants/{tenant}/components/{name}/v{N}.wasm       the bytes of version N
//! ```
//!
//! Every file is written whole to a temporary name, flushed to disk, and
//! renamed over the old one, and the directory is flushed after: a crash
//! leaves either the old file or the new one, never a mix. An upload
//! writes its `v{N}.wasm` first and `component.json` last, so until the
//! last rename the previous version stays current; a `v{N}.wasm` that no
//! `component.json` names is left over from a crash and is overwritten or
//! pruned later.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{ComponentRecord, TenantRecord};

/// How many versions of a component are kept for rollback.
pub const KEPT_VERSIONS: usize = 5;

/// A tenant read back from disk, with its components' records by name.
pub type Stored = (TenantRecord, Vec<(String, ComponentRecord)>);

/// The tenants' directory.
#[derive(Clone)]
pub struct Store {
    root: PathBuf,
}

impl Store {
    pub fn at(root: PathBuf) -> Self {
        Self { root }
    }

    fn tenant_dir(&self, tenant: &str) -> PathBuf {
        self.root.join(tenant)
    }

    fn component_dir(&self, tenant: &str, name: &str) -> PathBuf {
        self.tenant_dir(tenant).join("components").join(name)
    }

    /// Every tenant on disk with its components, skipping (and reporting)
    /// what cannot be read. Leftovers of a crash are removed first.
    pub fn read_all(&self) -> (Vec<Stored>, Vec<String>) {
        let mut tenants = Vec::new();
        let mut problems = Vec::new();
        let Ok(entries) = fs::read_dir(&self.root) else {
            return (tenants, problems);
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                // A tenant whose deletion was interrupted.
                let _ = fs::remove_dir_all(&path);
                continue;
            }
            remove_temporaries(&path);
            let record: TenantRecord = match read_json(&path.join("tenant.json")) {
                Ok(record) => record,
                Err(e) => {
                    problems.push(format!("tenant {name}: {e}"));
                    continue;
                }
            };
            let mut components = Vec::new();
            if let Ok(dirs) = fs::read_dir(path.join("components")) {
                for dir in dirs.flatten() {
                    let component = dir.file_name().to_string_lossy().into_owned();
                    remove_temporaries(&dir.path());
                    match read_json(&dir.path().join("component.json")) {
                        Ok(versions) => components.push((component, versions)),
                        // Never committed: a crash during its first upload.
                        Err(_) if !dir.path().join("component.json").exists() => {
                            let _ = fs::remove_dir_all(dir.path());
                        }
                        Err(e) => {
                            problems.push(format!("tenant {name}, component {component}: {e}"))
                        }
                    }
                }
            }
            components.sort_by(|a, b| a.0.cmp(&b.0));
            tenants.push((record, components));
        }
        tenants.sort_by(|a, b| a.0.name.cmp(&b.0.name));
        (tenants, problems)
    }

    /// Writes a tenant's record.
    pub fn write_tenant(&self, record: &TenantRecord) -> Result<(), String> {
        let dir = self.tenant_dir(&record.name);
        fs::create_dir_all(&dir).map_err(|e| io_problem(&dir, &e))?;
        sync_dir(&self.root)?;
        write_json(&dir.join("tenant.json"), record)
    }

    /// Removes a tenant and everything it uploaded: first renamed out of
    /// the way (one atomic step), then deleted.
    pub fn delete_tenant(&self, tenant: &str) -> Result<(), String> {
        let dir = self.tenant_dir(tenant);
        let gone = self.root.join(format!(".deleted-{tenant}-{}", unique()));
        fs::rename(&dir, &gone).map_err(|e| io_problem(&dir, &e))?;
        sync_dir(&self.root)?;
        let _ = fs::remove_dir_all(&gone);
        Ok(())
    }

    /// Writes version `version`'s bytes, then the record that makes it
    /// current; prunes versions the record no longer lists.
    pub fn write_version(
        &self,
        tenant: &str,
        name: &str,
        version: u32,
        bytes: &[u8],
        record: &ComponentRecord,
    ) -> Result<(), String> {
        let dir = self.component_dir(tenant, name);
        fs::create_dir_all(&dir).map_err(|e| io_problem(&dir, &e))?;
        sync_dir(dir.parent().expect("components dir"))?;
        write_atomic(&dir.join(format!("v{version}.wasm")), bytes)?;
        self.write_component(tenant, name, record)
    }

    /// Writes a component's record (which version is current) and prunes
    /// versions it no longer lists.
    pub fn write_component(
        &self,
        tenant: &str,
        name: &str,
        record: &ComponentRecord,
    ) -> Result<(), String> {
        let dir = self.component_dir(tenant, name);
        write_json(&dir.join("component.json"), record)?;
        if let Ok(entries) = fs::read_dir(&dir) {
            for entry in entries.flatten() {
                let file = entry.file_name().to_string_lossy().into_owned();
                let listed = file
                    .strip_prefix('v')
                    .and_then(|f| f.strip_suffix(".wasm"))
                    .and_then(|n| n.parse::<u32>().ok())
                    .is_none_or(|n| record.versions.iter().any(|v| v.version == n));
                if !listed {
                    let _ = fs::remove_file(entry.path());
                }
            }
        }
        Ok(())
    }

    /// The bytes of one version.
    pub fn read_version(&self, tenant: &str, name: &str, version: u32) -> Result<Vec<u8>, String> {
        let file = self
            .component_dir(tenant, name)
            .join(format!("v{version}.wasm"));
        fs::read(&file).map_err(|e| io_problem(&file, &e))
    }

    /// Removes a component and all its versions.
    pub fn delete_component(&self, tenant: &str, name: &str) -> Result<(), String> {
        let dir = self.component_dir(tenant, name);
        let gone = dir.with_file_name(format!(".deleted-{name}-{}", unique()));
        fs::rename(&dir, &gone).map_err(|e| io_problem(&dir, &e))?;
        sync_dir(gone.parent().expect("components dir"))?;
        let _ = fs::remove_dir_all(&gone);
        Ok(())
    }
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, String> {
    let text = fs::read(path).map_err(|e| io_problem(path, &e))?;
    serde_json::from_slice(&text).map_err(|e| format!("{} is not valid: {e}", path.display()))
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), String> {
    let text = serde_json::to_vec_pretty(value).expect("records serialize");
    write_atomic(path, &text)
}

/// Writes `bytes` to `path` so that a crash leaves the old file or the new
/// one: a temporary file, flushed, renamed over `path`, directory flushed.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let dir = path.parent().expect("a file in a directory");
    let file_name = path.file_name().expect("a file name").to_string_lossy();
    let temp = dir.join(format!(".{file_name}.{}.tmp", unique()));
    let written = (|| {
        let mut file = fs::File::create(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&temp, path)
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(&temp);
        return Err(io_problem(path, &e));
    }
    sync_dir(dir)
}

/// Flushes a directory, so a rename in it survives a crash.
fn sync_dir(dir: &Path) -> Result<(), String> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_problem(dir, &e))
}

/// Removes temporary files a crash left in `dir`.
fn remove_temporaries(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') && (name.ends_with(".tmp") || name.starts_with(".deleted-")) {
            let _ = fs::remove_file(entry.path()).or_else(|_| fs::remove_dir_all(entry.path()));
        }
    }
}

fn io_problem(path: &Path, e: &std::io::Error) -> String {
    format!("cannot write or read {}: {e}", path.display())
}

/// A name no other temporary file of this process uses.
fn unique() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tenants::{Quotas, VersionRecord};

    fn version(version: u32) -> VersionRecord {
        VersionRecord {
            version,
            bytes: 4,
            blake3: String::new(),
            uploaded_at: 0,
            settings: String::new(),
        }
    }

    /// A crash after a new version's bytes were written but before its
    /// record was: the old version is current, and the leftovers go.
    #[test]
    fn a_crash_between_the_bytes_and_the_record_keeps_the_old_version() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::at(dir.path().to_path_buf());
        let tenant = TenantRecord {
            name: "acme".into(),
            quotas: Quotas::default(),
            grants: Default::default(),
            token_hashes: Vec::new(),
        };
        store.write_tenant(&tenant).unwrap();
        let v1 = ComponentRecord {
            current: 1,
            versions: vec![version(1)],
        };
        store
            .write_version("acme", "shop", 1, b"one!", &v1)
            .unwrap();
        // The crash: v2's bytes are in place, a temporary file is left
        // half-written, and component.json still names v1. A component
        // whose first upload crashed has no component.json at all.
        let component_dir = store.component_dir("acme", "shop");
        write_atomic(&component_dir.join("v2.wasm"), b"two!").unwrap();
        fs::write(component_dir.join(".component.json.9-9.tmp"), b"{\"curr").unwrap();
        let fresh = store.component_dir("acme", "fresh");
        fs::create_dir_all(&fresh).unwrap();
        write_atomic(&fresh.join("v1.wasm"), b"new!").unwrap();

        let (tenants, problems) = store.read_all();
        assert!(problems.is_empty(), "{problems:?}");
        let (record, components) = &tenants[0];
        assert_eq!(record.name, "acme");
        assert_eq!(components.len(), 1, "the never-committed component is gone");
        let (name, shop) = &components[0];
        assert_eq!(name, "shop");
        assert_eq!(shop.current, 1);
        assert_eq!(store.read_version("acme", "shop", 1).unwrap(), b"one!");
        assert!(!component_dir.join(".component.json.9-9.tmp").exists());
        assert!(!fresh.exists());

        // The next upload takes number 2 again, over the leftover.
        let v2 = ComponentRecord {
            current: 2,
            versions: vec![version(1), version(2)],
        };
        store
            .write_version("acme", "shop", 2, b"TWO!", &v2)
            .unwrap();
        assert_eq!(store.read_version("acme", "shop", 2).unwrap(), b"TWO!");
        // Pruning drops what the record no longer lists.
        let v2_only = ComponentRecord {
            current: 2,
            versions: vec![version(2)],
        };
        store.write_component("acme", "shop", &v2_only).unwrap();
        assert!(store.read_version("acme", "shop", 1).is_err());
    }
}
