//! Starting as an operator relies on: strict about broken components and
//! empty directories, fast to fail on a taken port, honest on `/readyz`.

use crate::support;

use std::time::{Duration, Instant};

use support::Components;

const OPS: &[&str] = &["--ops-listen", "127.0.0.1:0"];

#[test]
fn a_component_that_does_not_load_stops_the_start_naming_every_problem() {
    let (status, output) = Components::new()
        .with("testbed")
        .with_file("garbage.wasm", b"this is not wasm")
        .with("bad-describe")
        .serve_fails();
    assert!(!status.success(), "{output}");
    assert!(output.contains("2 component(s) did not load"), "{output}");
    assert!(
        output.contains("garbage.wasm: not a WebAssembly binary"),
        "{output}"
    );
    assert!(output.contains("bad-describe.wasm"), "{output}");
    assert!(output.contains("--allow-partial"), "{output}");
    assert!(!output.contains("listening on"), "{output}");
}

#[tokio::test]
async fn with_allow_partial_the_rest_serves_and_readyz_names_the_failed_until_they_go() {
    let mut args = vec!["--allow-partial"];
    args.extend(OPS);
    let host = Components::new()
        .with("testbed")
        .with_file("garbage.wasm", b"this is not wasm")
        .serve_with(&args);
    assert_eq!(host.get("/count").await.status, 200);
    let ready = host.ops_get("/readyz").await;
    assert_eq!(ready.status, 503, "{}", ready.body);
    assert!(
        ready
            .body
            .contains("failed to load: garbage (not a WebAssembly binary"),
        "{}",
        ready.body
    );

    // Taking the broken file away makes the host ready.
    std::fs::remove_file(host.served_dir().join("garbage.wasm")).unwrap();
    wait_ready(&host, 200).await;
}

#[tokio::test]
async fn a_broken_reload_keeps_the_old_version_and_says_so_on_readyz() {
    let host = Components::new().with("testbed").serve_with(OPS);
    assert_eq!(host.get("/count").await.status, 200);
    let dir = host.served_dir();
    std::fs::write(dir.join(".testbed.wasm.tmp"), b"this is not wasm").unwrap();
    std::fs::rename(dir.join(".testbed.wasm.tmp"), dir.join("testbed.wasm")).unwrap();
    host.wait_for_log("not reloaded, the previous version keeps serving")
        .await;
    assert_eq!(host.get("/count").await.status, 200);
    let ready = host.ops_get("/readyz").await;
    assert_eq!(ready.status, 200, "{}", ready.body);
    assert!(
        ready
            .body
            .contains("warning: testbed: the previous version keeps serving"),
        "{}",
        ready.body
    );
    assert!(
        ready.body.contains("not a WebAssembly binary"),
        "{}",
        ready.body
    );
}

#[test]
fn an_empty_directory_stops_the_start_unless_allowed() {
    let (status, output) = Components::new().serve_fails();
    assert!(!status.success(), "{output}");
    assert!(output.contains("no components to serve in"), "{output}");
    assert!(output.contains("--allow-empty"), "{output}");

    let check = Components::new().check();
    let stdout = String::from_utf8_lossy(&check.stdout);
    assert!(!check.status.success(), "{stdout}");
    assert!(stdout.contains("problem: no components in"), "{stdout}");
    let check = Components::new().check_with(&["--allow-empty"]);
    assert!(check.status.success());
}

#[tokio::test]
async fn an_empty_directory_serves_with_allow_empty() {
    // The support adds --allow-empty for a directory without components.
    let host = Components::new().serve_with(OPS);
    assert_eq!(host.get("/anything").await.status, 404);
    host.wait_for_log("no components to serve").await;
}

/// `serve` with no path: a host for tenants only with `--allow-empty`,
/// and without it a sentence saying what to give.
#[tokio::test]
async fn serve_with_no_path_serves_tenants_only_when_allowed() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_cello-host"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ])
        // Refused before it makes a state directory (`.cello` here).
        .current_dir(std::env::temp_dir())
        .output()
        .expect("cannot run cello-host");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("nothing to serve: name component files or directories")
            && stderr.contains("--allow-empty to serve tenants only"),
        "{stderr}"
    );
    // The support adds --allow-empty when there is no component.
    let host = Components::new().serve_files(&[], &[]);
    assert_eq!(host.get("/anything").await.status, 404);
    host.wait_for_log("serving tenants only").await;
}

#[test]
fn a_port_in_use_fails_the_start_within_a_second_before_compiling() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let started = Instant::now();
    // Compiling this afresh would take a minute: the bind comes first.
    let (status, output) = Components::new().with("python-testbed").serve_fails_with(&[
        "--listen",
        addr.as_str(),
        "--no-compile-cache",
    ]);
    let took = started.elapsed();
    assert!(!status.success(), "{output}");
    assert!(
        output.contains(&format!(
            "cannot listen on {addr} for traffic: the address is in use"
        )),
        "{output}"
    );
    assert!(took < Duration::from_secs(1), "took {took:?}");
}

#[tokio::test]
async fn traffic_is_answered_503_with_retry_after_until_the_components_load() {
    let port = {
        let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        free.local_addr().unwrap().port()
    };
    let components = Components::new().with_sidecar(
        "slow-start",
        "[grants]\nconfig = true\n[variables]\ndescribe-ms = \"3000\"\n",
    );
    let addr = format!("127.0.0.1:{port}");
    let listen = addr.clone();
    let host =
        tokio::task::spawn_blocking(move || components.serve_with(&["--listen", listen.as_str()]));
    let url = format!("http://{addr}/");
    let client = support::client();
    let early = loop {
        let request = http::Request::get(&url)
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .unwrap();
        match client.request(request).await {
            Ok(response) => break response,
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    };
    assert_eq!(early.status(), 503);
    assert_eq!(early.headers()["retry-after"], "1");
    let host = host.await.unwrap();
    let reply = host.get("/").await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body, "started");
}

#[tokio::test]
async fn component_files_are_served_as_well_as_directories() {
    let host = Components::new()
        .with("testbed")
        .with("hello-rust")
        .serve_files(&["testbed.wasm"], OPS);
    assert_eq!(host.get("/count").await.status, 200);
    // Only the file named is served, not its directory.
    let log = host.log();
    assert!(log.contains("testbed (cello app"), "{log}");
    assert!(!log.contains("hello-rust"), "{log}");
}

/// Polls `/readyz` until it answers `status`.
async fn wait_ready(host: &support::Host, status: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ready = host.ops_get("/readyz").await;
        if ready.status == status {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "/readyz still answers {}: {}",
            ready.status,
            ready.body
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
