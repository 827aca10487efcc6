//! The wasmtime engines components run on: their configuration, the
//! pooling allocator, and the epoch ticker that lets long-running guests
//! yield and lets request deadlines fire.
//!
//! There are two. Cello apps (and any component using component-model
//! async) run on the concurrent one. A plain `wasi:http@0.2` proxy, and a
//! sync app (`sync-app` world) importing no `async func`, run on one
//! without concurrency support, where every call and host call skips the
//! task bookkeeping concurrency needs: about a fifth of a small request's
//! cost.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use wasmtime::{CacheStore, Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::config::PoolSettings;
use crate::outline::Outline;
use crate::world::World;

/// How often the epoch advances. A guest running without pause yields to the
/// runtime after one tick, so other requests on its thread keep moving, and
/// guest time is counted in ticks (see [`crate::scheduler`]): a millisecond
/// keeps a long call's first slice on a request's thread short.
pub const EPOCH_TICK: Duration = Duration::from_millis(1);

/// Epoch ticks since the engine started, readable without the engine: the
/// host's coarse clock for per-call bookkeeping on the hot path.
pub static TICKS: AtomicU64 = AtomicU64::new(0);

/// The engines every component runs on.
#[derive(Clone)]
pub struct Engines {
    /// With component-model async: Cello apps, and anything else that
    /// needs it.
    pub concurrent: Engine,
    /// Without: plain `wasi:http@0.2` proxies.
    pub plain: Engine,
}

impl Engines {
    /// Builds both engines: the component model, calls async and
    /// fiber-based, epoch interruption, and the pooling allocator with
    /// copy-on-write memory images when the address space allows it.
    /// With `functions`, Cranelift reuses the functions it compiled before
    /// ([`crate::compile::functions`]).
    pub fn new(
        pool: &PoolSettings,
        functions: Option<Arc<dyn CacheStore>>,
    ) -> anyhow::Result<Self> {
        let engines = Self {
            concurrent: new_engine(pool, true, functions.clone())?,
            plain: new_engine(pool, false, functions)?,
        };
        start_epoch_ticker(&engines);
        Ok(engines)
    }

    /// The engine to compile the component in `bytes` on, and the one to
    /// try if that one refuses it. The plain engine for a `wasi:http@0.2`
    /// proxy that imports nothing of Cello's (its host functions are
    /// async), and first for a sync app that imports only what the plain
    /// engine links: one that turns out to hold an `async func` anyway
    /// (`host`'s `sleep`, say) fails validation there, is compiled on the
    /// concurrent engine, and is refused by the loader with a sentence
    /// naming it. The concurrent engine for anything else.
    pub fn for_component(&self, bytes: &[u8]) -> (&Engine, Option<&Engine>) {
        match top_level_names(bytes) {
            Some((imports, exports)) if is_plain_proxy(&imports, exports.clone()) => {
                (&self.plain, None)
            }
            Some((imports, exports)) if is_plain_app(&imports, exports.clone()) => {
                (&self.plain, Some(&self.concurrent))
            }
            _ => (&self.concurrent, None),
        }
    }
}

fn is_plain_proxy(imports: &[String], exports: Vec<String>) -> bool {
    World::of_exports(exports) == World::Proxy
        && !imports.iter().any(|name| name.starts_with("cello:"))
}

/// A sync app importing nothing but WASI 0.2 and the Cello interfaces the
/// plain engine links ([`crate::linker`]), and the types it names at its
/// top level (`manifest`, `request`, `response`: plain names, which no
/// linker offers as functions).
fn is_plain_app(imports: &[String], exports: Vec<String>) -> bool {
    World::of_exports(exports) == World::SyncApp && imports.iter().all(|name| plain_links(name))
}

/// True when the plain engine's linker offers a sync app's import `name`.
pub fn plain_links(name: &str) -> bool {
    const LINKED: [&str; 7] = ["types", "host", "cache", "kv", "config", "outbound", "sql"];
    match name.strip_prefix("cello:component/") {
        Some(rest) => LINKED.iter().any(|i| rest.split('@').next() == Some(i)),
        None => !name.contains(':') || (name.starts_with("wasi:") && name.contains("@0.2")),
    }
}

/// The names a component imports and exports at its top level; `None` if
/// it cannot be parsed.
fn top_level_names(bytes: &[u8]) -> Option<(Vec<String>, Vec<String>)> {
    Outline::read(bytes).map(|outline| (outline.imports, outline.exports))
}

fn new_engine(
    pool: &PoolSettings,
    concurrent: bool,
    functions: Option<Arc<dyn CacheStore>>,
) -> anyhow::Result<Engine> {
    let mut config = base_config(concurrent, functions.clone());
    if !pool.pooling {
        return Ok(Engine::new(&config)?);
    }
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pooling(pool)));
    match Engine::new(&config) {
        Ok(engine) => Ok(engine),
        Err(e) => {
            tracing::warn!(
                "the pooling allocator is unavailable ({e:#}); \
                 allocating instances on demand instead"
            );
            Ok(Engine::new(&base_config(concurrent, functions))?)
        }
    }
}

fn base_config(concurrent: bool, functions: Option<Arc<dyn CacheStore>>) -> Config {
    let mut config = Config::new();
    if let Some(functions) = functions {
        config
            .enable_incremental_compilation(functions)
            .expect("the engine has a compiler");
    }
    config
        .wasm_component_model(true)
        .wasm_component_model_async(concurrent)
        .concurrency_support(concurrent)
        .epoch_interruption(true)
        .memory_init_cow(true);
    // For `perf`: guest functions by name (docs/operations.md, "Profiling").
    if std::env::var_os("CELLO_PERFMAP").is_some() {
        config.profiler(wasmtime::ProfilingStrategy::PerfMap);
    }
    config
}

/// Pool sizes, all derived from the number of component instances. The
/// ratios fit componentize-py components, the largest kind: a dozen core
/// instances, a few memories and many tables each.
fn pooling(settings: &PoolSettings) -> PoolingAllocationConfig {
    let instances = settings.max_instances.max(1);
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(instances)
        .total_core_instances(instances.saturating_mul(16))
        .total_memories(instances.saturating_mul(4))
        .total_tables(instances.saturating_mul(16))
        .total_stacks(instances.saturating_mul(4))
        .max_core_instances_per_component(32)
        .max_memories_per_component(8)
        .max_tables_per_component(32)
        .max_memories_per_module(2)
        .max_tables_per_module(8)
        .table_elements(100_000)
        .max_core_instance_size(4 << 20)
        .max_component_instance_size(4 << 20)
        // Every call runs on a fiber stack from the pool; keeping the top of
        // a returned stack resident spares a page fault per request.
        .async_stack_keep_resident(256 << 10);
    // A retired instance's slot goes to the next instance of the same
    // component. Resetting it by copying back the pages the guest wrote
    // (found with the kernel's PAGEMAP_SCAN) spares the next instance a
    // fault, and a TLB shootdown, for every page it writes: a fresh Python
    // instance writes 8–16 MiB. The copy happens where the instance is
    // dropped, so it is opt-in (docs/configuration.md, "Pool").
    let keep_resident = (settings.keep_resident_mb as usize) << 20;
    pool.linear_memory_keep_resident(keep_resident)
        .table_keep_resident(keep_resident);
    pool
}

/// Advances both engines' epochs every [`EPOCH_TICK`] on a thread of its
/// own, until the engines are dropped.
fn start_epoch_ticker(engines: &Engines) {
    let weak = [engines.concurrent.weak(), engines.plain.weak()];
    std::thread::Builder::new()
        .name("cello-epoch".into())
        .spawn(move || {
            loop {
                let alive: Vec<Engine> = weak.iter().filter_map(|w| w.upgrade()).collect();
                if alive.is_empty() {
                    return;
                }
                alive.iter().for_each(Engine::increment_epoch);
                TICKS.fetch_add(1, Ordering::Relaxed);
                drop(alive);
                std::thread::sleep(EPOCH_TICK);
            }
        })
        .expect("spawning the epoch thread");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A component whose top level imports and exports the names given, and
    /// nests a core module that must be stepped over.
    fn component(imports: &[&str], exports: &[&str]) -> Vec<u8> {
        let mut wat = String::from("(component (core module $m (func (export \"f\")))\n");
        for (i, name) in imports.iter().enumerate() {
            wat += &format!("(import \"{name}\" (instance $i{i}))\n");
        }
        for (i, name) in exports.iter().enumerate() {
            wat += &format!("(instance $e{i})\n(export \"{name}\" (instance $e{i}))\n");
        }
        wat += ")";
        wat::parse_str(&wat).expect("valid component text")
    }

    #[test]
    fn top_level_names_step_over_nested_modules() {
        let bytes = component(
            &["wasi:cli/stdout@0.2.3"],
            &["wasi:http/incoming-handler@0.2.3"],
        );
        let (imports, exports) = top_level_names(&bytes).expect("parses");
        assert_eq!(imports, ["wasi:cli/stdout@0.2.3"]);
        assert_eq!(exports, ["wasi:http/incoming-handler@0.2.3"]);
        assert!(is_plain_proxy(&imports, exports.clone()));
        let cello = component(
            &["cello:component/kv"],
            &["wasi:http/incoming-handler@0.2.3"],
        );
        let (imports, exports) = top_level_names(&cello).expect("parses");
        assert!(!is_plain_proxy(&imports, exports.clone()));
        assert_eq!(top_level_names(b"\0asm garbage"), None);
    }

    #[test]
    fn a_sync_app_goes_to_the_plain_engine_unless_it_imports_more() {
        let exports = [
            "describe",
            "handle",
            "on-start",
            "on-stop",
            "run-background",
        ];
        let names = |list: &[&str]| list.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        let imports = names(&[
            "wasi:cli/stdout@0.2.9",
            "cello:component/host@0.1.0",
            "cello:component/kv@0.1.0",
            "cello:component/sql@0.1.0",
            "request",
        ]);
        assert!(is_plain_app(&imports, names(&exports)));
        for more in ["cello:component/streams@0.1.0", "wasi:cli/stdout@0.3.0"] {
            let mut imports = imports.clone();
            imports.push(more.into());
            assert!(!is_plain_app(&imports, names(&exports)), "{more}");
        }
        let mut app = names(&exports);
        app.push("handle-async".into());
        assert!(!is_plain_app(&imports, app));
    }
}
