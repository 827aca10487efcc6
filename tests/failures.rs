//! Bad components and failing guests: a clear error, and everything else
//! keeps working.

use crate::support;

use std::time::Duration;

use serde_json::json;
use support::Components;

/// A core module (not a component): the smallest valid one.
const CORE_MODULE: &[u8] = b"\0asm\x01\0\0\0";

#[tokio::test]
async fn with_allow_partial_broken_files_are_reported_by_name_and_the_rest_is_served() {
    let host = Components::new()
        .with("testbed")
        .with_file("garbage.wasm", b"this is not wasm")
        .with_file("core.wasm", CORE_MODULE)
        .with("bad-describe")
        .serve_with(&["--allow-partial"]);
    // Logged on stderr, which may still be arriving after "listening".
    host.wait_for_log("garbage.wasm: not a WebAssembly binary")
        .await;
    host.wait_for_log("core.wasm: a core WebAssembly module, not a component")
        .await;
    host.wait_for_log("bad-describe.wasm: describe() failed")
        .await;
    assert_eq!(host.get("/count").await.status, 200);
}

#[test]
fn check_lists_every_problem_and_exits_non_zero() {
    let components = Components::new()
        .with("testbed")
        .with_file("garbage.wasm", b"this is not wasm")
        .with("bad-describe");
    let output = components.check();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(!output.status.success());
    assert!(
        stdout.contains("problem: ") && stdout.contains("garbage.wasm"),
        "{stdout}"
    );
    assert!(stdout.contains("bad-describe.wasm"), "{stdout}");
}

/// An app that exports `packed` (found by name) with the wrong type: its
/// load fails, naming the export, rather than every instance its requests
/// start. The rest of the directory is served.
#[tokio::test]
async fn an_app_whose_packed_export_has_the_wrong_type_is_refused_at_load() {
    let output = Components::new().with("wrong-packed").check();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(!output.status.success(), "{stdout}");
    assert!(
        stdout.contains("wrong-packed.wasm") && stdout.contains("wrong `packed` export"),
        "{stdout}"
    );
    let host = Components::new()
        .with("testbed")
        .with("wrong-packed")
        .serve_with(&["--allow-partial"]);
    host.wait_for_log("wrong-packed.wasm: wrong `packed` export")
        .await;
    assert_eq!(host.get("/count").await.status, 200);
}

#[test]
fn check_passes_a_good_directory() {
    let output = Components::new().with("testbed").with("http-proxy").check();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
}

/// A wasi:http component (0.2 and 0.3) whose memory limit is below what
/// it declares (17 pages) cannot make an instance: its load fails, naming
/// why, rather than every request once it is served.
#[test]
fn a_wasi_http_component_no_instance_of_which_can_be_made_fails_its_check() {
    for guest in ["http-proxy", "p3-testbed"] {
        let output = Components::new()
            .with_sidecar(guest, "[limits]\nmemory-mb = 1\n")
            .check();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(!output.status.success(), "{guest}: {stdout}");
        assert!(
            stdout.contains(&format!("{guest}.wasm"))
                && stdout.contains("cannot instantiate")
                && stdout.contains("exceeds memory limits"),
            "{guest}: {stdout}"
        );
        // With room for its memory it passes.
        let output = Components::new()
            .with_sidecar(guest, "[limits]\nmemory-mb = 2\n")
            .check();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{guest}: {stdout}");
    }
}

/// A prefix no request could match, an environment variable the guest
/// could not be given, and a value of the wrong type are refused at check,
/// each with a sentence.
#[test]
fn sidecar_values_that_could_never_work_are_refused_with_a_sentence() {
    let cases = [
        (
            "prefix = \"/a?b\"",
            "its segment \"a?b\" could never match a request",
        ),
        ("prefix = \"/caf\u{e9}\"", "could never match a request"),
        (
            "prefix = \"/a/../b\"",
            "its segment \"..\" could never match",
        ),
        ("prefix = \"/a//b\"", "its segment \"\" could never match"),
        (
            "[environment]\n\"A=B\" = \"x\"",
            "[environment] \"A=B\" is not a variable name",
        ),
        (
            "[environment]\n\"\" = \"x\"",
            "[environment] \"\" is not a variable name",
        ),
        (
            "[environment]\nA = 5",
            "expected a string, or a table { env = \"VAR\", default = \"...\" }",
        ),
    ];
    for (sidecar, sentence) in cases {
        let output = Components::new()
            .with_sidecar("http-proxy", sidecar)
            .check();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(!output.status.success(), "{sidecar}: {stdout}");
        assert!(stdout.contains(sentence), "{sidecar}: {stdout}");
    }
    for prefix in ["/v1.2/My_app-~x", "/v1:beta/@me/a+b", "/a;b*c'd"] {
        let output = Components::new()
            .with_sidecar("http-proxy", &format!("prefix = \"{prefix}\""))
            .check();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{prefix}: {stdout}");
    }
}

/// No time and no memory are refused with a sentence, for every kind of
/// component.
#[test]
fn a_limit_no_request_could_run_under_is_refused() {
    for (guest, limit) in [("http-proxy", "timeout-ms"), ("testbed", "memory-mb")] {
        let output = Components::new()
            .with_sidecar(guest, &format!("[limits]\n{limit} = 0\n"))
            .check();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(!output.status.success(), "{stdout}");
        let sentence = format!("[limits] {limit} = 0 leaves no request able to run");
        assert!(stdout.contains(&sentence), "{stdout}");
    }
}

#[test]
fn a_route_conflict_stops_the_start_naming_both_components() {
    let (status, output) = Components::new()
        .with("testbed")
        .with_as("testbed", "testbed-copy", None)
        .serve_fails();
    assert!(!status.success());
    assert!(
        output.contains("route conflict: /count is declared by both testbed and testbed-copy"),
        "{output}"
    );
}

#[test]
fn an_invalid_sidecar_is_reported_with_its_file() {
    let output = Components::new()
        .with_sidecar("testbed", "prefix = \"no-slash\"")
        .check();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(!output.status.success());
    assert!(
        stdout.contains("testbed.toml") && stdout.contains("must start with '/'"),
        "{stdout}"
    );
}

#[tokio::test]
async fn a_trapping_guest_gives_500_and_the_next_request_works() {
    let host = Components::new().with("testbed").serve();
    let reply = host.get("/trap").await;
    assert_eq!(reply.status, 500);
    assert_eq!(reply.json(), json!({ "detail": "Internal Server Error" }));
    host.wait_for_log("guest trapped").await;
    assert_eq!(host.get("/count").await.status, 200);
}

#[tokio::test]
async fn a_trapping_async_guest_gives_500_and_the_next_request_works() {
    let host = Components::new().with("testbed").serve();
    let reply = host.get("/trap-async").await;
    assert_eq!(reply.status, 500);
    assert_eq!(reply.json(), json!({ "detail": "Internal Server Error" }));
    assert_eq!(host.get("/wait/1").await.status, 200);
}

#[tokio::test]
async fn a_python_exception_gives_500_with_the_traceback_only_in_the_log() {
    let host = Components::new().with("python-testbed").serve();
    let reply = host.get("/raise").await;
    assert_eq!(reply.status, 500);
    assert_eq!(reply.json(), json!({ "detail": "Internal Server Error" }));
    let log = host
        .wait_for_log("ValueError: the testbed was asked to fail")
        .await;
    assert!(log.contains("Traceback"), "{log}");
    let reply = host.get("/raise-async").await;
    assert_eq!(reply.status, 500);
    assert!(!reply.body.contains("Traceback"));
    assert_eq!(host.get("/wait/1").await.status, 200);
}

#[tokio::test]
async fn an_invalid_status_from_the_guest_is_a_500() {
    let host = Components::new().with("testbed").serve();
    assert_eq!(host.get("/bad-status").await.status, 500);
    assert_eq!(host.get("/count").await.status, 200);
}

#[tokio::test]
async fn a_response_with_too_many_headers_is_a_500_and_the_instance_serves_on() {
    let host = Components::new().with("testbed").serve();
    let reply = host.get("/headers/3").await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("x-h-2"), Some("2"));
    let reply = host.get("/headers/1500").await;
    assert_eq!(reply.status, 500);
    assert_eq!(reply.json(), json!({ "detail": "Internal Server Error" }));
    host.wait_for_log("the response has 1500 headers, more than the 1000 allowed")
        .await;
    // (The test client reads at most 100 headers.)
    assert_eq!(host.get("/headers/90").await.status, 200);
    assert_eq!(host.get("/count").await.status, 200);
    // 128 KiB of headers pass; 320 KiB are over the limit, cached route
    // or not: nothing is stored, and the next request calls the guest.
    let reply = host.get("/big-headers/4/32").await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("x-big-3").map(str::len), Some(32 << 10));
    for _ in 0..2 {
        let reply = host.get("/big-headers/5/64").await;
        assert_eq!(reply.status, 500);
        assert_eq!(reply.header("x-cache"), None);
    }
    host.wait_for_log("the response's headers take 327715 bytes, more than the 262144 allowed")
        .await;
    assert_eq!(host.get("/count").await.status, 200);
}

/// An app declaring more routes than the host takes is refused at load,
/// saying so; at the limit it serves.
#[tokio::test]
async fn an_app_with_too_many_routes_is_refused_at_load() {
    let over = Components::new().with_sidecar("testbed", "[environment]\nMANY_ROUTES = \"4097\"\n");
    let output = over.check();
    let said = String::from_utf8_lossy(&output.stderr).to_string()
        + &String::from_utf8_lossy(&output.stdout);
    assert!(!output.status.success(), "{said}");
    assert!(
        said.contains("more than the 4096 an app may have"),
        "{said}"
    );
    let host = Components::new()
        .with_sidecar("testbed", "[environment]\nMANY_ROUTES = \"4000\"\n")
        .serve();
    assert_eq!(host.get("/many/3999").await.body, "many");
}

#[tokio::test]
async fn a_body_over_the_limit_is_413_before_the_guest_runs() {
    let host = Components::new()
        .with_sidecar("testbed", "[limits]\nmax-body-kb = 1")
        .serve();
    let reply = host.post("/echo", "text/plain", vec![b'x'; 2048]).await;
    assert_eq!(reply.status, 413);
    let reply = host.post("/echo", "text/plain", vec![b'x'; 512]).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body.len(), 512);
    // The guest read the request's header and set its own from it.
    assert_eq!(reply.header("content-type"), Some("text/plain"));
}

#[tokio::test]
async fn a_wasi_http_body_over_the_limit_is_413_before_the_guest_runs() {
    let host = Components::new()
        .with_sidecar("http-proxy", "[limits]\nmax-body-kb = 1")
        .serve();
    let reply = host.post("/upload", "text/plain", vec![b'x'; 2048]).await;
    assert_eq!(reply.status, 413, "{}", reply.body);
    assert!(
        reply.json()["detail"]
            .as_str()
            .unwrap()
            .contains("1024 bytes"),
        "{}",
        reply.body
    );
    let reply = host.post("/upload", "text/plain", vec![b'x'; 512]).await;
    assert_eq!(reply.status, 200);
}

#[tokio::test]
async fn json_nested_too_deep_or_holding_a_non_finite_number_is_422() {
    let host = Components::new()
        .with_sidecar("python-testbed", "prefix = \"/py\"\n")
        .with_sidecar("hello-rust", "prefix = \"/rs\"\n")
        .serve();
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let bodies = [
        deep.as_str(),
        r#"{"name": "bow", "price": 1e999999}"#,
        r#"{"name": "bow", "price": NaN}"#,
        r#"{"name": "bow", "price": Infinity}"#,
    ];
    let thing = "/py/typed/6f1c1a52-3f0e-4d5b-9b7e-1d2c3b4a5f60";
    for path in [thing, "/py/admin/things", "/rs/items"] {
        for body in bodies {
            let reply = host.post(path, "application/json", body).await;
            assert_eq!(reply.status, 422, "{path} {:.40}: {}", body, reply.body);
            assert!(reply.json()["detail"].is_string() || reply.json()["detail"].is_array());
        }
    }
    // A finite price still passes, and is echoed as JSON.
    let reply = host
        .post(
            thing,
            "application/json",
            r#"{"name": "bow", "price": 1e3}"#,
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json()["price"], 1000.0);
}

#[tokio::test]
async fn sigterm_lets_a_request_in_flight_finish() {
    let mut host = Components::new().with("testbed").serve();
    let slow = {
        let client = support::client();
        let request = host.request(http::Method::GET, "/wait/1000", &[], Vec::new());
        tokio::spawn(async move { support::send(&client, request).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    host.terminate();
    let reply = slow.await.unwrap();
    assert_eq!(reply.status, 200);
    assert!(host.wait_exit(Duration::from_secs(10)).success());
}
