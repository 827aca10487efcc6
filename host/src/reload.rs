//! Hot reload for `cello-host serve DIR`: a `NAME.wasm` or `NAME.toml`
//! written, replaced or removed in DIR is picked up without a restart. A
//! changed component is validated as at start (and its `on-start` run) and
//! swapped in through the [`Registry`]; one that fails keeps its previous
//! version serving, and the log says why.
//!
//! Write files whole and rename them into place (as `cp` to a temporary
//! name then `mv` does): events are gathered until DIR has been quiet for
//! a moment, but a half-copied file that stays half-copied is refused.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};

use crate::loader::Loader;
use crate::registry::Registry;

/// How long DIR must be quiet before changes are applied.
const SETTLE: Duration = Duration::from_millis(250);

/// Watches `dir` until the returned watcher is dropped.
pub fn watch(
    dir: &Path,
    loader: Arc<Loader>,
    registry: Arc<Registry>,
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
    watcher
        .watch(dir, RecursiveMode::NonRecursive)
        .map_err(|e| anyhow::anyhow!("cannot watch {} for changes: {e}", dir.display()))?;
    let dir = dir.to_path_buf();
    tokio::spawn(async move {
        while let Some(first) = rx.recv().await {
            let mut changed = BTreeSet::new();
            changed.extend(component_name(&first));
            loop {
                match tokio::time::timeout(SETTLE, rx.recv()).await {
                    Ok(Some(path)) => changed.extend(component_name(&path)),
                    Ok(None) => return,
                    Err(_) => break,
                }
            }
            for name in changed {
                reload(&dir, &name, &loader, &registry).await;
            }
        }
    });
    Ok(watcher)
}

/// The component a changed file belongs to, if it is one of its files.
fn component_name(path: &Path) -> Option<String> {
    let extension = path.extension()?.to_str()?;
    let stem = path.file_stem()?.to_str()?;
    (matches!(extension, "wasm" | "toml") && !stem.starts_with('.')).then(|| stem.to_string())
}

/// Loads `name` again from `dir`, or takes it out of service if its
/// `.wasm` is gone.
async fn reload(dir: &Path, name: &str, loader: &Loader, registry: &Registry) {
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
            tracing::info!(component = name, "removed: its file is gone");
        }
        return;
    }
    let loaded = match loader.load_file(&file).await {
        Ok(loaded) => loaded,
        Err(e) => {
            tracing::error!(
                component = name,
                "not reloaded, the previous version keeps serving: {e}"
            );
            return;
        }
    };
    if let Err(e) = loader.start(&loaded).await {
        tracing::error!(
            component = name,
            "not reloaded, the previous version keeps serving: {e}"
        );
        return;
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
        Ok(()) => tracing::info!(component = name, "reloaded"),
        Err(refused) => {
            loaded.retire();
            tracing::error!(
                component = name,
                "not reloaded, the previous version keeps serving: {}",
                refused.problems().join("; ")
            );
        }
    }
}
