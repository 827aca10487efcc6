//! The one wasmtime `Engine` every component runs on: its configuration,
//! the pooling allocator, and the epoch ticker that lets long-running guests
//! yield and lets request deadlines fire.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::config::PoolSettings;

/// How often the epoch advances. A guest running without pause yields to the
/// runtime after one tick, so other requests on its thread keep moving.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Epoch ticks since the engine started, readable without the engine: the
/// host's coarse clock for per-call bookkeeping on the hot path.
pub static TICKS: AtomicU64 = AtomicU64::new(0);

/// Builds the engine: the component model with component-model async (calls
/// are async, fiber-based), epoch interruption, and the pooling allocator
/// with copy-on-write memory images when the address space allows it.
pub fn new_engine(pool: &PoolSettings) -> anyhow::Result<Engine> {
    let mut config = base_config();
    let engine = if pool.pooling {
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pooling(pool)));
        match Engine::new(&config) {
            Ok(engine) => engine,
            Err(e) => {
                tracing::warn!(
                    "the pooling allocator is unavailable ({e:#}); \
                     allocating instances on demand instead"
                );
                Engine::new(&base_config())?
            }
        }
    } else {
        Engine::new(&config)?
    };
    start_epoch_ticker(&engine);
    Ok(engine)
}

fn base_config() -> Config {
    let mut config = Config::new();
    config
        .wasm_component_model(true)
        .wasm_component_model_async(true)
        .epoch_interruption(true)
        .memory_init_cow(true);
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
    pool
}

/// Advances the engine's epoch every [`EPOCH_TICK`] on a thread of its own,
/// until the engine is dropped.
fn start_epoch_ticker(engine: &Engine) {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("cello-epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                TICKS.fetch_add(1, Ordering::Relaxed);
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        })
        .expect("spawning the epoch thread");
}
