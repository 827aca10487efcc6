//! Routes that let the tests observe the host from inside a guest.

use std::cell::Cell;
use std::hash::{BuildHasher, RandomState};
use std::time::Duration;

use cello::{App, Request, Response};

thread_local! {
    /// Random per instance: every instance has its own linear memory.
    static INSTANCE_ID: u64 = RandomState::new().hash_one(0u8);
    static CALLS: Cell<u64> = const { Cell::new(0) };
}

fn instance_id() -> String {
    format!("{:016x}", INSTANCE_ID.with(|id| *id))
}

fn app() -> App {
    App::new("testbed")
        // Awaits the host for `ms` and names the instance that served it.
        .get_async("/wait/{ms}", async |req: Request| {
            let ms = req.param("ms").and_then(|v| v.parse().ok()).unwrap_or(100);
            cello::host::sleep(Duration::from_millis(ms)).await;
            instance_id()
        })
        .get("/instance", |_req: Request| instance_id())
        // Counts calls on this instance, to observe reuse.
        .get("/count", |_req: Request| {
            let n = CALLS.with(|c| {
                c.set(c.get() + 1);
                c.get()
            });
            format!("{n}")
        })
        .get("/trap", |_req: Request| -> Response {
            panic!("the testbed was asked to trap")
        })
        .get_async("/trap-async", async |_req: Request| -> Response {
            panic!("the testbed was asked to trap in an async handler")
        })
        .get("/bad-status", |_req: Request| Response::status(42))
        .route(&[], "/any", |req: Request| req.method.clone())
        .post("/echo", |req: Request| {
            let content_type = req
                .header("content-type")
                .unwrap_or("application/octet-stream")
                .to_string();
            Response::status(200)
                .with_header("content-type", &content_type)
                .with_body(req.body)
        })
}

cello::export_app!(app);
