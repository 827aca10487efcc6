//! The examples, served for real. The items example's shared suite replays
//! the same requests natively (CPython, `TestClient`) and through the host,
//! and the responses must agree; the Rust port of the example must answer
//! them as the Python one does, its 422s included.

use crate::support;

use std::process::Command;

use http::Method;
use serde_json::Value;
use support::Components;

/// The native half: `replay.py` prints one JSON line per case.
fn native_replies() -> Vec<Value> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let output = Command::new(cello_test_components::PYTHON)
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

/// Replays the shared suite against `host` and gives each reply as the
/// native half prints it: status, content type and body.
async fn replay(host: &support::Host, cases: &[Value]) -> Vec<Value> {
    let mut replies = Vec::new();
    for case in cases {
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
        replies.push(serde_json::json!({
            "status": reply.status,
            "content_type": content_type,
            "body": body,
        }));
    }
    replies
}

fn cases() -> Vec<Value> {
    serde_json::from_str(include_str!("../guest-python/examples/items/cases.json")).unwrap()
}

#[tokio::test]
async fn the_items_example_answers_the_same_natively_and_as_a_component() {
    let cases = cases();
    let native = native_replies();
    assert_eq!(native.len(), cases.len());
    let host = Components::new()
        .with_sidecar("items", "[grants]\nkv = true\n")
        .serve();
    let replies = replay(&host, &cases).await;
    for ((case, expected), got) in cases.iter().zip(&native).zip(&replies) {
        assert_eq!(got, expected, "{} {} differs", case["method"], case["path"]);
    }
}

/// The Rust items example answers the suite as the Python one does. Where
/// a 422 lists several problems, serde stops at the first one in each
/// argument, so Rust's list may be shorter: what it lists must be Python's,
/// in Python's order. The JSON parser's own message differs too.
#[tokio::test]
async fn the_rust_items_example_answers_the_suite_as_the_python_one_does() {
    let cases = cases();
    let python = native_replies();
    let host = Components::new()
        .with_sidecar("items-rust", "[grants]\nkv = true\n")
        .serve();
    let rust = replay(&host, &cases).await;
    for ((case, python), rust) in cases.iter().zip(&python).zip(&rust) {
        let what = format!("{} {}", case["method"], case["path"]);
        assert_eq!(
            rust["status"], python["status"],
            "{what}: {rust} vs {python}"
        );
        assert_eq!(rust["content_type"], python["content_type"], "{what}");
        if rust["status"] != 422 {
            assert_eq!(rust["body"], python["body"], "{what}");
            continue;
        }
        let (ours, theirs) = (
            rust["body"]["detail"].as_array().unwrap(),
            python["body"]["detail"].as_array().unwrap(),
        );
        assert!(
            !ours.is_empty() && ours.len() <= theirs.len(),
            "{what}: {rust}"
        );
        for (ours, theirs) in ours.iter().zip(theirs) {
            let mut ours = ours.clone();
            if ours["type"] == "json_invalid" {
                ours["msg"] = theirs["msg"].clone();
            }
            assert_eq!(&ours, theirs, "{what}: the 422 differs");
        }
    }
}
