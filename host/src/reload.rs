//! Hot reload for `cello-host serve PATH...`: a `NAME.wasm` or `NAME.toml`
//! written, replaced or removed in a served directory (or a served file
//! and its sidecar) is picked up without a restart. A changed component is
//! validated as at start (and its `on-start` run) and swapped in through
//! the [`Registry`]; one that fails keeps its previous version serving, and
//! the log and `/readyz` say why.
//!
//! Write files whole and rename them into place (as `cp` to a temporary
//! name then `mv` does): events are gathered until DIR has been quiet for
//! a moment, but a half-copied file that stays half-copied is refused.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};

use crate::loader::Loader;
use crate::readiness::Readiness;
use crate::registry::Registry;

/// How long DIR must be quiet before changes are applied.
const SETTLE: Duration = Duration::from_millis(250);

/// What is watched in one directory: every component in it, or only the
/// files named on the command line.
type Watched = BTreeMap<PathBuf, Option<BTreeSet<String>>>;

/// Which directories `paths` (directories and component files) put under
/// watch, and which components of each.
fn watched(paths: &[PathBuf]) -> Watched {
    let mut watched = Watched::new();
    for path in paths {
        if path.is_dir() {
            watched.insert(path.clone(), None);
            continue;
        }
        let dir = match path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let Some(name) = component_name(path) else {
            continue;
        };
        let only = watched.entry(dir).or_insert_with(|| Some(BTreeSet::new()));
        if let Some(only) = only {
            only.insert(name);
        }
    }
    watched
}

/// Watches the components `paths` name until the returned watcher is
/// dropped, noting on `ready` what did not reload.
pub fn watch(
    paths: &[PathBuf],
    loader: Arc<Loader>,
    registry: Arc<Registry>,
    ready: Arc<Readiness>,
) -> anyhow::Result<notify::RecommendedWatcher> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        use notify::EventKind;
        use notify::event::{AccessKind, AccessMode};
        // Reading a file is an event too: only writes, renames and removals
        // count, or every reload would set off the next.
        let Ok(event) = event else { return };
        let relevant = matches!(
            event.kind,
            EventKind::Create(_)
                | EventKind::Modify(_)
                | EventKind::Remove(_)
                | EventKind::Access(AccessKind::Close(AccessMode::Write))
        );
        if relevant {
            for path in event.paths {
                let _ = tx.send(path);
            }
        }
    })?;
    let watched = watched(paths);
    for dir in watched.keys() {
        watcher
            .watch(dir, RecursiveMode::NonRecursive)
            .map_err(|e| anyhow::anyhow!("cannot watch {} for changes: {e}", dir.display()))?;
    }
    // The component a changed path is, if it is one of those watched.
    let watched_component = move |path: &Path| -> Option<(PathBuf, String)> {
        let name = component_name(path)?;
        let (dir, only) = watched
            .iter()
            .find(|(dir, _)| path.parent().is_some_and(|parent| same_dir(parent, dir)))?;
        let wanted = only.as_ref().is_none_or(|only| only.contains(&name));
        wanted.then(|| (dir.clone(), name))
    };
    tokio::spawn(async move {
        while let Some(first) = rx.recv().await {
            let mut changed = BTreeSet::new();
            changed.extend(watched_component(&first));
            loop {
                match tokio::time::timeout(SETTLE, rx.recv()).await {
                    Ok(Some(path)) => changed.extend(watched_component(&path)),
                    Ok(None) => return,
                    Err(_) => break,
                }
            }
            for (dir, name) in changed {
                reload(&dir, &name, &loader, &registry, &ready).await;
            }
        }
    });
    Ok(watcher)
}

/// Whether two paths name one directory (the watcher reports absolute
/// paths; the command line may have given relative ones).
fn same_dir(a: &Path, b: &Path) -> bool {
    a == b
        || match (a.canonicalize(), b.canonicalize()) {
            (Ok(a), Ok(b)) => a == b,
            _ => false,
        }
}

/// The component a changed file belongs to, if it is one of its files.
fn component_name(path: &Path) -> Option<String> {
    let extension = path.extension()?.to_str()?;
    let stem = path.file_stem()?.to_str()?;
    (matches!(extension, "wasm" | "toml") && !stem.starts_with('.')).then(|| stem.to_string())
}

/// Loads `name` again from `dir`, or takes it out of service if its
/// `.wasm` is gone.
async fn reload(dir: &Path, name: &str, loader: &Loader, registry: &Registry, ready: &Readiness) {
    let file: PathBuf = dir.join(format!("{name}.wasm"));
    if !file.exists() {
        let removed = registry
            .change(
                |served| {
                    served.main.remove(name);
                },
                async { Ok(()) },
            )
            .await;
        if removed.is_ok() {
            ready.settled(name);
            tracing::info!(component = name, "removed: its file is gone");
        }
        return;
    }
    let refused = |why: String| async move {
        if registry.served().await.main.contains_key(name) {
            tracing::error!(
                component = name,
                "not reloaded, the previous version keeps serving: {why}"
            );
            ready.stale(name, &why);
        } else {
            tracing::error!(component = name, "not loaded: {why}");
            ready.failed(name, &why);
        }
    };
    let loaded = match loader.load_file(&file).await {
        Ok(loaded) => loaded,
        Err(e) => return refused(e).await,
    };
    if let Err(e) = loader.start(&loaded).await {
        return refused(e.to_string()).await;
    }
    let loaded = Arc::new(loaded);
    let swapped = registry
        .change(
            |served| {
                served.main.insert(name.to_string(), loaded.clone());
            },
            async { Ok(()) },
        )
        .await;
    match swapped {
        Ok(()) => {
            ready.settled(name);
            tracing::info!(component = name, "reloaded");
        }
        Err(swap_refused) => {
            loaded.retire();
            refused(swap_refused.problems().join("; ")).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    #[test]
    fn files_are_watched_in_their_directory_and_directories_whole() {
        let dir = tempfile::tempdir().unwrap();
        let file = PathBuf::from("components/shop.wasm");
        let watched = super::watched(&[dir.path().to_path_buf(), file]);
        assert_eq!(watched[dir.path()], None);
        let only = watched[&PathBuf::from("components")].as_ref().unwrap();
        assert_eq!(only.iter().collect::<Vec<_>>(), ["shop"]);
    }
}
