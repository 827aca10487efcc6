//! Work that runs after the response has been sent: the host keeps the
//! instance until it ends (or `background-timeout-ms` passes). The test
//! client runs it right after each response.

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;

use crate::{FromRequest, Request};

type Task = Pin<Box<dyn Future<Output = ()>>>;

thread_local! {
    static TASKS: RefCell<HashMap<String, Vec<Task>>> = RefCell::default();
}

/// Queues `task` to run after the response to `req` is sent.
pub fn spawn(req: &Request, task: impl Future<Output = ()> + 'static) {
    queue(&req.request_id, Box::pin(task));
}

fn queue(request_id: &str, task: Task) {
    TASKS.with(|tasks| {
        tasks
            .borrow_mut()
            .entry(request_id.to_string())
            .or_default()
            .push(task);
    });
}

#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
pub(crate) fn has(request_id: &str) -> bool {
    TASKS.with(|tasks| tasks.borrow().contains_key(request_id))
}

pub(crate) async fn run(request_id: &str) {
    let queued = TASKS.with(|tasks| tasks.borrow_mut().remove(request_id));
    for task in queued.unwrap_or_default() {
        task.await;
    }
}

/// Background tasks, as a handler argument (the Python SDK's
/// `BackgroundTasks`): `tasks.spawn(async move { ... })`.
#[derive(Debug, Clone)]
pub struct BackgroundTasks {
    request_id: String,
}

impl BackgroundTasks {
    /// Queues `task` to run after the response is sent.
    pub fn spawn(&self, task: impl Future<Output = ()> + 'static) {
        queue(&self.request_id, Box::pin(task));
    }
}

impl FromRequest for BackgroundTasks {
    type Rejection = std::convert::Infallible;

    async fn from_request(req: &Request) -> Result<Self, Self::Rejection> {
        Ok(BackgroundTasks {
            request_id: req.request_id.clone(),
        })
    }
}
