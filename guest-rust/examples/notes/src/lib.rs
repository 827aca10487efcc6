//! Notes: a tiny key-value-backed app, here to show how a Cello component
//! is tested with `cargo test` (see `tests/component.rs`).
//!
//! `POST /notes` stores `{"text": ...}` and answers 201 with its id;
//! `GET /notes/{id}` reads it back (404 when there is none). Each new note
//! is logged. Needs `kv = true` (sidecar.toml). Its OpenAPI document, made
//! from the handlers' types, is at `/openapi.json`.

use cello::host::{Level, log};
use cello::openapi::{JsonSchema, documented};
use cello::{App, HttpError, Json, Kv, KvError, Path, StatusCode};
use serde::{Deserialize, Serialize};

/// A note as stored and returned.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Note {
    pub id: u64,
    pub text: String,
}

/// What a client sends.
#[derive(Debug, Deserialize, JsonSchema)]
struct NewNote {
    /// What to remember.
    text: String,
}

fn key(id: u64) -> String {
    format!("note:{id}")
}

fn create(kv: Kv, Json(new): Json<NewNote>) -> Result<(StatusCode, Json<Note>), KvError> {
    let id = kv.increment("next-id", 1)? as u64;
    let note = Note { id, text: new.text };
    kv.set_json(&key(id), &note, None)?;
    log(Level::Info, &format!("note {id} created"));
    Ok((StatusCode::CREATED, Json(note)))
}

fn read(kv: Kv, Path(id): Path<u64>) -> Result<Json<Note>, cello::Response> {
    use cello::IntoResponse;
    match kv.get_json::<Note>(&key(id)) {
        Ok(Some(note)) => Ok(Json(note)),
        Ok(None) => Err(HttpError::not_found(format!("note {id} not found")).into_response()),
        Err(e) => Err(e.into_response()),
    }
}

pub fn app() -> App {
    App::new("notes")
        .post("/notes", documented(create))
        .summary("Store a note")
        .get("/notes/{id}", documented(read))
        .summary("Read a note")
}

cello::export_app!(app);

#[cfg(test)]
mod tests {
    use super::*;

    /// The SDK's native test client: fast, no host, the KV in memory.
    #[test]
    fn a_note_is_stored_and_read_back() {
        let client = app().test_client();
        let made = client
            .post("/notes")
            .json(&serde_json::json!({"text": "tune the A string"}))
            .send();
        assert_eq!(made.status(), StatusCode::CREATED);
        let read = client.get("/notes/1").send().json::<serde_json::Value>();
        assert_eq!(read["text"], "tune the A string");
    }

    #[test]
    fn the_document_describes_both_routes_from_their_types() {
        let doc = app().openapi_document();
        let create = &doc["paths"]["/notes"]["post"];
        let body = &create["requestBody"]["content"]["application/json"]["schema"];
        assert_eq!(body["$ref"], "#/components/schemas/NewNote");
        let read = &doc["paths"]["/notes/{id}"]["get"];
        assert_eq!(read["parameters"][0]["schema"]["type"], "integer");
        let note = &read["responses"]["200"]["content"]["application/json"]["schema"];
        assert_eq!(note["$ref"], "#/components/schemas/Note");
    }
}
