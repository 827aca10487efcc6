//! The Python items example in Rust: a small CRUD service over the
//! key-value capability. It answers the shared suite
//! (`guest-python/examples/items/cases.json`) as the Python one does,
//! 422s included; `tests/examples.rs` checks that over real HTTP.
//!
//! Items are stored as JSON under `item:{id}`; ids come from an atomic
//! counter. Needs `kv = true` (sidecar.toml).

use cello::{App, FromRequest, HttpError, Json, Kv, KvError, Path, Query, Request, StatusCode};
use serde::{Deserialize, Serialize};

/// What a client sends.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct ItemIn {
    name: String,
    price: f64,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    description: Option<String>,
}

/// What is stored and returned.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Item {
    #[serde(flatten)]
    fields: ItemIn,
    id: u64,
}

#[derive(Deserialize)]
struct ListQuery {
    tag: Option<String>,
    #[serde(default = "hundred")]
    limit: usize,
}

fn hundred() -> usize {
    100
}

/// The item named by the path's `{item_id}`, or 404: a dependency, as the
/// Python example's `existing`.
struct Existing(Item);

impl FromRequest for Existing {
    type Rejection = cello::Response;

    async fn from_request(req: &Request) -> Result<Self, cello::Response> {
        use cello::IntoResponse;
        let Path(id) = req
            .extract::<Path<u64>>()
            .await
            .map_err(IntoResponse::into_response)?;
        match Kv.get_json::<Item>(&key(id)) {
            Ok(Some(item)) => Ok(Existing(item)),
            Ok(None) => Err(HttpError::not_found(format!("item {id} not found")).into_response()),
            Err(e) => Err(e.into_response()),
        }
    }
}

fn key(id: u64) -> String {
    format!("item:{id}")
}

/// Items in id order, optionally only those with `tag`.
fn list_items(kv: Kv, Query(query): Query<ListQuery>) -> Result<Json<Vec<Item>>, KvError> {
    let mut keys = kv.list_keys("item:")?;
    keys.sort_by_key(|k| k["item:".len()..].parse::<u64>().unwrap_or(u64::MAX));
    let mut items = Vec::new();
    for key in keys {
        if let Some(item) = kv.get_json::<Item>(&key)? {
            items.push(item);
        }
    }
    items.retain(|i| query.tag.as_ref().is_none_or(|t| i.fields.tags.contains(t)));
    items.truncate(query.limit);
    Ok(Json(items))
}

/// Stores a new item and returns it with its id.
fn create_item(kv: Kv, Json(body): Json<ItemIn>) -> Result<(StatusCode, Json<Item>), KvError> {
    let id = kv.increment("next-id", 1)? as u64;
    let item = Item { fields: body, id };
    kv.set_json(&key(id), &item, None)?;
    Ok((StatusCode::CREATED, Json(item)))
}

fn read_item(Existing(item): Existing) -> Json<Item> {
    Json(item)
}

fn replace_item(
    Json(body): Json<ItemIn>,
    Existing(item): Existing,
    kv: Kv,
) -> Result<Json<Item>, KvError> {
    let updated = Item {
        fields: body,
        id: item.id,
    };
    kv.set_json(&key(item.id), &updated, None)?;
    Ok(Json(updated))
}

fn delete_item(Existing(item): Existing, kv: Kv) -> Result<StatusCode, KvError> {
    kv.delete(&key(item.id))?;
    Ok(StatusCode::NO_CONTENT)
}

fn app() -> App {
    let items = App::new("items")
        .get("/", list_items)
        .post("/", create_item)
        .get("/{item_id}", read_item)
        .put("/{item_id}", replace_item)
        .delete("/{item_id}", delete_item);
    App::new("items").nest("/items", items)
}

cello::export_app!(app);

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    #[test]
    fn items_are_created_read_listed_and_deleted() {
        let client = app().test_client();
        let made = client
            .post("/items")
            .json(&json!({"name": "bow", "price": 120.5, "tags": ["strings"]}))
            .send();
        assert_eq!(made.status(), StatusCode::CREATED);
        assert_eq!(made.json::<Value>()["id"], 1);
        let read: Value = client.get("/items/1").send().json();
        assert_eq!(read["name"], "bow");
        let listed: Value = client.get("/items?tag=strings").send().json();
        assert_eq!(listed.as_array().unwrap().len(), 1);
        assert_eq!(
            client.delete("/items/1").send().status(),
            StatusCode::NO_CONTENT
        );
        assert_eq!(
            client.get("/items/1").send().status(),
            StatusCode::NOT_FOUND
        );
    }

    #[test]
    fn a_bad_id_and_a_bad_body_are_422_in_fastapi_shape() {
        let client = app().test_client();
        let reply = client.get("/items/abc").send();
        assert_eq!(reply.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(
            reply.json::<Value>(),
            json!({"detail": [{
                "type": "int_parsing",
                "loc": ["path", "item_id"],
                "msg": "Input should be a valid integer",
                "input": "abc",
            }]})
        );
        let reply = client
            .put("/items/abc")
            .json(&json!({"name": "bow"}))
            .send();
        let detail = reply.json::<Value>()["detail"].clone();
        assert_eq!(detail[0]["loc"], json!(["body", "price"]));
        assert_eq!(detail[1]["loc"], json!(["path", "item_id"]));
    }

    #[test]
    fn a_method_the_path_does_not_serve_is_405_with_allow() {
        let reply = app().test_client().patch("/items/2").send();
        assert_eq!(reply.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(reply.header("allow"), Some("DELETE, GET, PUT"));
    }
}
