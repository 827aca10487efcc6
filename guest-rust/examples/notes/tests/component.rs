//! The component itself, as the host serves it: built for wasm32-wasip2,
//! loaded with its sidecar (the `kv` grant) into an in-process
//! `TestHost`, and sent requests without a socket.

use std::path::PathBuf;
use std::process::Command;

use cello_host::testing::TestHost;
use serde_json::{Value, json};

/// Builds this crate as a component and returns the `.wasm`, beside a copy
/// of its sidecar (`notes.toml`), which the test host reads.
fn component() -> PathBuf {
    let crate_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    // A target directory of its own: the one `cargo test` uses is locked
    // while the tests run.
    let target = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("component");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(&crate_dir)
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--target-dir",
        ])
        .arg(&target)
        .status()
        .expect("cargo runs");
    assert!(status.success(), "building the component failed");
    let wasm = target.join("wasm32-wasip2/release/notes.wasm");
    std::fs::copy(crate_dir.join("sidecar.toml"), wasm.with_extension("toml"))
        .expect("the sidecar is copied");
    wasm
}

#[tokio::test(flavor = "multi_thread")]
async fn notes_are_stored_in_the_hosts_kv_and_logged() -> anyhow::Result<()> {
    let host = TestHost::new(component()).await?;

    let made = host
        .post_json("/notes", &json!({"text": "rosin the bow"}))
        .await;
    assert_eq!(made.status, 201, "{}", made.text());
    assert_eq!(made.header("content-type"), Some("application/json"));
    assert!(
        made.header("x-request-id").is_some(),
        "the host's pipeline ran"
    );
    let note: Value = made.json()?;
    assert_eq!(note, json!({"id": 1, "text": "rosin the bow"}));

    let read = host.get("/notes/1").await;
    assert_eq!(read.status, 200);
    assert_eq!(read.json::<Value>()?["text"], "rosin the bow");

    let missing = host.get("/notes/2").await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.json::<Value>()?["detail"], "note 2 not found");

    // What the guest left behind: a log line and its key-value entries.
    let logs = host.logs();
    let created = logs.iter().find(|l| l.message == "note 1 created");
    let created = created.unwrap_or_else(|| panic!("no log line for the note: {logs:?}"));
    assert_eq!(created.level, "info");
    assert_eq!(created.component, "notes");
    let stored = host
        .kv_get("notes", "note:1")?
        .expect("the note is in the KV store");
    assert_eq!(
        serde_json::from_slice::<Value>(&stored)?["text"],
        "rosin the bow"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn without_its_grant_the_component_is_refused_with_the_grant_to_add() {
    let refused = TestHost::builder()
        .component_with(component(), "# no [grants]\n")
        .build()
        .await;
    let error = refused
        .err()
        .expect("a component importing kv needs the grant");
    let error = format!("{error:#}");
    assert!(error.contains("kv = true"), "{error}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_body_is_a_422_before_any_note_is_stored() -> anyhow::Result<()> {
    let host = TestHost::new(component()).await?;
    let refused = host.post_json("/notes", &json!({"words": "no text"})).await;
    assert_eq!(refused.status, 422);
    assert_eq!(
        refused.json::<Value>()?["detail"][0]["loc"],
        json!(["body", "text"])
    );
    assert_eq!(host.kv_get("notes", "next-id")?, None);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_component_serves_its_openapi_document() -> anyhow::Result<()> {
    let host = TestHost::new(component()).await?;
    let served = host.get("/openapi.json").await;
    assert_eq!(served.status, 200, "{}", served.text());
    assert_eq!(served.header("content-type"), Some("application/json"));
    let doc: Value = served.json()?;
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(doc["info"]["title"], "notes");
    let create = &doc["paths"]["/notes"]["post"];
    assert_eq!(create["operationId"], "create_notes_post");
    assert_eq!(create["summary"], "Store a note");
    let body = &create["requestBody"]["content"]["application/json"]["schema"];
    assert_eq!(body["$ref"], "#/components/schemas/NewNote");
    let read = &doc["paths"]["/notes/{id}"]["get"];
    assert_eq!(read["parameters"][0]["name"], "id");
    let schemas = &doc["components"]["schemas"];
    assert_eq!(schemas["NewNote"]["required"], json!(["text"]));
    assert_eq!(schemas["Note"]["required"], json!(["id", "text"]));

    // A client cannot choose the prefix the app is told...
    let request = cello::http::Request::get("/openapi.json")
        .header("x-forwarded-prefix", "/elsewhere")
        .body(Vec::new())?;
    let spoofed: Value = host.request(request).await.json()?;
    assert_eq!(spoofed["servers"], Value::Null);
    // ...the host tells it the prefix it serves the app under.
    let prefixed = TestHost::builder()
        .component_with(
            component(),
            "prefix = \"/notes-app\"\n[grants]\nkv = true\n",
        )
        .build()
        .await?;
    let served: Value = prefixed.get("/notes-app/openapi.json").await.json()?;
    assert_eq!(served["servers"], json!([{"url": "/notes-app"}]));
    Ok(())
}
