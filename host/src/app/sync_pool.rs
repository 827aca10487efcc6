//! Instances for `def` routes: each call holds one instance to itself, and
//! many instances run side by side, like a thread pool.

use std::sync::{Arc, Mutex};

use super::{Instance, Shared};
use crate::bindings::{Request, Response};
use crate::error::CallError;

/// Warm instances waiting for their next sync call.
pub(super) struct SyncPool {
    idle: Arc<Mutex<Vec<Instance>>>,
    max_idle: usize,
}

impl SyncPool {
    pub(super) fn new(max_idle: usize) -> Self {
        Self {
            idle: Arc::default(),
            max_idle,
        }
    }

    /// Runs `handle` on an idle instance, or a new one when none is idle.
    /// The call runs on a task of its own, so a client that hangs up does not
    /// abandon an instance halfway through a call.
    pub(super) async fn call(
        &self,
        shared: &Arc<Shared>,
        req: Request,
    ) -> Result<Response, CallError> {
        let shared = shared.clone();
        let idle = self.idle.clone();
        let max_idle = self.max_idle;
        let task = tokio::spawn(async move {
            let reused = idle.lock().unwrap().pop();
            let mut instance = match reused {
                Some(instance) => instance,
                None => shared.instantiate().await?,
            };
            // A trap drops the instance: its state can no longer be trusted.
            let response = instance
                .bindings
                .call_handle(&mut instance.store, &req)
                .await
                .map_err(CallError::Trap)?;
            let mut idle = idle.lock().unwrap();
            if idle.len() < max_idle {
                idle.push(instance);
            }
            Ok(response)
        });
        task.await.map_err(|e| CallError::Panic(e.to_string()))?
    }
}
