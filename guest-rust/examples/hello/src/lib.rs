//! The Rust example app: sync and async handlers taking extractors.

use std::time::Duration;

use cello::{App, Json, Path, Query, StatusCode};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct Item {
    name: String,
    price: f64,
}

#[derive(Deserialize)]
struct Greeting {
    /// `?greeting=Hi`; "Hello" when absent.
    greeting: Option<String>,
}

fn hello(Path(name): Path<String>, Query(query): Query<Greeting>) -> String {
    let greeting = query.greeting.as_deref().unwrap_or("Hello");
    format!("{greeting}, {name}!")
}

/// Awaits the host without holding the instance.
async fn slow(Path(ms): Path<u64>) -> Json<serde_json::Value> {
    cello::host::sleep(Duration::from_millis(ms)).await;
    Json(serde_json::json!({ "slept_ms": ms }))
}

/// A body that is not an `Item` answers 422, naming the field.
fn create(Json(item): Json<Item>) -> (StatusCode, Json<Item>) {
    (StatusCode::CREATED, Json(item))
}

fn app() -> App {
    App::new("hello-rust")
        .get("/", || "Hello from Rust!")
        .get("/hello/{name}", hello)
        .get("/slow/{ms}", slow)
        .post("/items", create)
}

cello::export_app!(app);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greets_by_name() {
        let client = app().test_client();
        assert_eq!(client.get("/hello/ann").send().text(), "Hello, ann!");
        assert_eq!(
            client.get("/hello/J%C3%BCrgen?greeting=Hi").send().text(),
            "Hi, Jürgen!"
        );
    }

    #[test]
    fn a_bad_item_is_422_naming_the_field() {
        let reply = app()
            .test_client()
            .post("/items")
            .json(&serde_json::json!({ "name": "bow" }))
            .send();
        assert_eq!(reply.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let detail: serde_json::Value = reply.json();
        assert_eq!(
            detail["detail"][0]["loc"],
            serde_json::json!(["body", "price"])
        );
    }
}
