//! The Rust SDK as a user meets it: its contract is the repository's, a
//! crate outside this workspace builds against it, is served by the host
//! and tests its handlers natively, and every route policy reaches the host.

use crate::support;

use std::path::{Path, PathBuf};
use std::process::Command;

use http::Method;
use support::Components;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[test]
fn the_sdks_embed_the_contract_unchanged() {
    let contract = std::fs::read_to_string(root().join("wit/cello.wit")).unwrap();
    for copy in [
        "guest-rust/sdk/wit/cello.wit",
        "guest-python/cello/wit/cello.wit",
    ] {
        let embedded = std::fs::read_to_string(root().join(copy)).unwrap();
        assert!(
            embedded == contract,
            "{copy} differs from wit/cello.wit: copy the contract over it"
        );
    }
}

#[tokio::test]
async fn a_tenant_keyed_rate_limit_is_one_budget_for_every_caller() {
    let components = Components::new().with_sidecar("testbed", "").with_file(
        "host-config.toml",
        b"[rate-limit]\ncapacity = 1000\nperiod-s = 1\ntrusted-proxies = [\"127.0.0.1\"]\n",
    );
    let config = components.path().join("host-config.toml");
    let host = components.serve_with(&["--config", config.to_str().unwrap()]);
    let from = |ip: &'static str| [("x-forwarded-for", ip)];
    for (ip, expected) in [("10.0.0.1", 200), ("10.0.0.2", 200), ("10.0.0.3", 429)] {
        let reply = host
            .send(Method::GET, "/tenant-limited", &from(ip), vec![])
            .await;
        assert_eq!(reply.status, expected, "{ip}: {}", reply.body);
    }
    // A client-address limit still counts each caller apart.
    for ip in ["10.0.0.1", "10.0.0.2"] {
        let reply = host.send(Method::GET, "/limited", &from(ip), vec![]).await;
        assert_eq!(reply.status, 200);
    }
}

/// A Rust SDK component exports `packed`, so its `def` routes get the
/// request in one buffer (docs/architecture.md, "Packed requests"); every
/// part of it must arrive as the `request` record brought it.
#[tokio::test]
async fn a_def_route_gets_every_part_of_a_packed_request() {
    let wasm = std::fs::read(support::components_dir().join("testbed.wasm")).unwrap();
    let outline = cello_host::outline::Outline::read(&wasm).unwrap();
    assert!(
        (outline.exports.iter()).any(|e| e.starts_with("cello:component/packed@")),
        "the SDK no longer exports `packed`: {:?}",
        outline.exports
    );
    let host = Components::new().with_sidecar("testbed", "").serve();
    let headers = [
        ("x-one", "1"),
        ("x-empty", ""),
        ("x-two", "a"),
        ("x-two", "b"),
        ("x-request-id", "packed-1"),
    ];
    let body = vec![7u8; 200_000];
    let reply = host
        .send(
            Method::POST,
            "/parts/caf%C3%A9?a=1&b=&c=%20",
            &headers,
            body,
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let lines: Vec<&str> = reply.body.lines().collect();
    for expected in [
        "method=POST",
        "path=/parts/caf%C3%A9",
        "query=a=1&b=&c=%20",
        "name=caf\u{e9}",
        "request-id=packed-1",
        "tenant=None",
        "claims=None",
        "body=200000",
        "x-one=1",
        "x-empty=",
        "x-two=a",
        "x-two=b",
    ] {
        assert!(lines.contains(&expected), "{expected} not in {lines:?}");
    }
    assert!(
        (lines.iter()).any(|l| l.starts_with("client=127.0.0.1:")),
        "{lines:?}"
    );
    // Nothing at all: no query, no headers of its own, no body.
    let reply = host.send(Method::GET, "/parts/x", &[], vec![]).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(reply.body.contains("query=\n"), "{}", reply.body);
    assert!(reply.body.contains("body=0"), "{}", reply.body);
}

/// Runs cargo as a user would in `dir`, sharing the guests' target
/// directory so that no dependency compiles twice.
fn cargo(dir: &Path, args: &[&str]) -> std::process::Output {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let target = support::components_dir()
        .parent()
        .unwrap()
        .join("wasm-guests");
    Command::new(cargo)
        .args(args)
        .arg("--target-dir")
        .arg(target)
        .current_dir(dir)
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("CARGO_TARGET_DIR")
        .output()
        .expect("cannot run cargo")
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[tokio::test]
async fn a_crate_outside_the_workspace_builds_serves_and_tests_its_handlers_natively() {
    // The template, copied out, depending on the SDK by an absolute path.
    let dir = tempfile::tempdir().unwrap();
    let app = dir.path().join("cello-app");
    copy_dir(&root().join("guest-rust/template"), &app);
    let sdk = root().join("guest-rust/sdk").canonicalize().unwrap();
    let manifest = std::fs::read_to_string(app.join("Cargo.toml")).unwrap();
    let manifest = manifest.replace(
        "path = \"../sdk\"",
        &format!("path = {:?}", sdk.to_str().unwrap()),
    );
    std::fs::write(app.join("Cargo.toml"), manifest).unwrap();
    // The versions the guests were built with: nothing new to compile.
    std::fs::copy(root().join("guest-rust/Cargo.lock"), app.join("Cargo.lock")).unwrap();

    let built = cargo(&app, &["build", "--release", "--target", "wasm32-wasip2"]);
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
    let wasm = support::components_dir()
        .parent()
        .unwrap()
        .join("wasm-guests/wasm32-wasip2/release/cello_app.wasm");
    let host = Components::new()
        .with_file("notes.wasm", &std::fs::read(wasm).unwrap())
        .with_file(
            "notes.toml",
            &std::fs::read(app.join("sidecar.toml")).unwrap(),
        )
        .serve();
    assert_eq!(host.get("/hello/ann").await.body, "Hello, ann!");
    let saved = host
        .send(Method::PUT, "/notes/1", &[], br#"{"text": "hi"}"#.to_vec())
        .await;
    assert_eq!(saved.status, 201, "{}", saved.body);
    assert_eq!(host.get("/notes/1").await.json()["text"], "hi");
    assert_eq!(host.get("/notes/x").await.status, 422);

    let tested = cargo(&app, &["test"]);
    let output = format!(
        "{}{}",
        String::from_utf8_lossy(&tested.stdout),
        String::from_utf8_lossy(&tested.stderr)
    );
    assert!(tested.status.success(), "{output}");
    assert!(output.contains("3 passed"), "{output}");
}
