//! A Cello app: `cargo build --release --target wasm32-wasip2` makes the
//! component (`target/wasm32-wasip2/release/cello_app.wasm`), and
//! `cargo test` runs its handlers natively.

use cello::{App, Json, Kv, KvError, Path, State, StatusCode};
use serde::{Deserialize, Serialize};

/// Made once per instance by `on_start`, shared with every request.
#[derive(Clone)]
struct Greeting(String);

#[derive(Serialize, Deserialize)]
struct Note {
    text: String,
}

fn hello(Path(name): Path<String>, State(greeting): State<Greeting>) -> String {
    format!("{}, {name}!", greeting.0)
}

fn save(
    Path(id): Path<u32>,
    kv: Kv,
    Json(note): Json<Note>,
) -> Result<(StatusCode, Json<Note>), KvError> {
    kv.set_json(&format!("note:{id}"), &note, None)?;
    Ok((StatusCode::CREATED, Json(note)))
}

fn read(Path(id): Path<u32>, kv: Kv) -> Result<Option<Json<Note>>, KvError> {
    Ok(kv.get_json(&format!("note:{id}"))?.map(Json))
}

fn app() -> App {
    App::new("cello-app")
        .on_start(async || Ok::<_, String>(Greeting("Hello".into())))
        .get("/hello/{name}", hello)
        .put("/notes/{id}", save)
        .get("/notes/{id}", read)
}

cello::export_app!(app);

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    #[test]
    fn greets_with_the_state_made_at_start() {
        let reply = app().test_client().get("/hello/ann").send();
        assert_eq!(reply.status(), StatusCode::OK);
        assert_eq!(reply.text(), "Hello, ann!");
    }

    #[test]
    fn notes_are_stored_and_read_back() {
        let client = app().test_client();
        let saved = client.put("/notes/1").json(&json!({"text": "hi"})).send();
        assert_eq!(saved.status(), StatusCode::CREATED);
        assert_eq!(client.get("/notes/1").send().json::<Value>()["text"], "hi");
        assert_eq!(
            client.get("/notes/2").send().status(),
            StatusCode::NOT_FOUND
        );
    }

    #[test]
    fn a_bad_id_is_422_naming_it() {
        let reply = app().test_client().get("/notes/x").send();
        assert_eq!(reply.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(
            reply.json::<Value>()["detail"][0]["loc"],
            json!(["path", "id"])
        );
    }
}
