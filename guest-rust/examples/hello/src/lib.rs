//! The Rust example app: sync and async routes, path parameters, JSON.

use std::time::Duration;

use cello::{App, Json, Request};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct Item {
    name: String,
    price: f64,
}

fn app() -> App {
    App::new("hello-rust")
        .get("/", |_req: Request| "Hello from Rust!")
        .get("/hello/{name}", |req: Request| {
            format!("Hello, {}!", req.param("name").unwrap_or("stranger"))
        })
        .get_async("/slow/{ms}", async |req: Request| {
            let ms = req.param("ms").and_then(|v| v.parse().ok()).unwrap_or(10);
            cello::host::sleep(Duration::from_millis(ms)).await;
            Json(serde_json::json!({ "slept_ms": ms }))
        })
        .post("/items", |req: Request| {
            // A body that is not an `Item` answers 422 with the reason.
            req.json::<Item>().map(|item| (201, Json(item)))
        })
}

cello::export_app!(app);
