//! The examples, served for real. The items example's shared suite replays
//! the same requests natively (CPython, `TestClient`) and through the host,
//! and the responses must agree.

#[path = "support/mod.rs"]
mod support;

use std::process::Command;

use http::Method;
use serde_json::Value;
use support::Components;

/// The native half: `replay.py` prints one JSON line per case.
fn native_replies() -> Vec<Value> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let output = Command::new(env!("CELLO_TEST_PYTHON"))
        .arg(root.join("guest-python/examples/items/replay.py"))
        .env("PYTHONPATH", root.join("guest-python"))
        .output()
        .expect("cannot run python");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

#[tokio::test]
async fn the_items_example_answers_the_same_natively_and_as_a_component() {
    let cases: Vec<Value> =
        serde_json::from_str(include_str!("../guest-python/examples/items/cases.json")).unwrap();
    let native = native_replies();
    assert_eq!(native.len(), cases.len());
    let host = Components::new()
        .with_sidecar("items", "[grants]\nkv = true\n")
        .serve();
    for (case, expected) in cases.iter().zip(&native) {
        let method: Method = case["method"].as_str().unwrap().parse().unwrap();
        let path = case["path"].as_str().unwrap();
        let (headers, body): (&[(&str, &str)], Vec<u8>) = match (&case["json"], &case["body"]) {
            (Value::Null, Value::Null) => (&[], vec![]),
            (Value::Null, raw) => (&[], raw.as_str().unwrap().as_bytes().to_vec()),
            (json, _) => (
                &[("content-type", "application/json")],
                serde_json::to_vec(json).unwrap(),
            ),
        };
        let reply = host.send(method, path, headers, body).await;
        let content_type = reply.header("content-type").unwrap_or("").to_string();
        let body = if content_type.starts_with("application/json") {
            reply.json()
        } else {
            Value::String(reply.body.clone())
        };
        let got = serde_json::json!({
            "status": reply.status,
            "content_type": content_type,
            "body": body,
        });
        assert_eq!(&got, expected, "{} {path} differs", case["method"]);
    }
}
