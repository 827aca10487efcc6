//! A component that takes as long as its settings say to describe itself
//! (`describe-ms`) and to start (`start-ms`), both under `[variables]`: a
//! slow deploy, for tests of what waits on one. Needs the config grant.

use std::time::Duration;

use cello::{App, Request, config};

/// Sleeps for the number of milliseconds in variable `name`, if it is set.
fn pause(name: &str) {
    if let Some(ms) = config::get(name).and_then(|v| v.parse().ok()) {
        std::thread::sleep(Duration::from_millis(ms));
    }
}

fn app() -> App {
    // The app is built once per instance, by describe() or by on-start.
    pause("describe-ms");
    App::new("slow-start")
        .get("/", |_req: Request| "started")
        .on_start(|| {
            pause("start-ms");
            Ok::<(), String>(())
        })
}

cello::export_app!(app);
