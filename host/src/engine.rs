//! The one wasmtime `Engine` every component runs on, and the epoch ticker
//! that lets long-running guests yield.

use std::time::Duration;

use wasmtime::{Config, Engine};

/// How often the epoch advances. A guest running without pause yields to the
/// runtime after one tick, so other requests on the same thread keep moving.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Builds the engine: component model with component-model async (calls are
/// async, fiber-based), and epoch interruption.
pub fn new_engine() -> anyhow::Result<Engine> {
    let mut config = Config::new();
    config
        .wasm_component_model(true)
        .wasm_component_model_async(true)
        .epoch_interruption(true);
    let engine = Engine::new(&config)?;
    start_epoch_ticker(&engine);
    Ok(engine)
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
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        })
        .expect("spawning the epoch thread");
}
