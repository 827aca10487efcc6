//! The instance model under stress: time and memory limits, reuse,
//! backpressure, and the compile cache.

use crate::support;

use std::collections::HashSet;
use std::time::Duration;

use futures::future::join_all;
use serde_json::json;
use support::Components;

#[tokio::test]
async fn a_looping_guest_gets_504_while_other_requests_are_served() {
    let host = Components::new()
        .with_sidecar("testbed", "[limits]\ntimeout-ms = 1000")
        .serve();
    let spinning = host.spawn_get("/spin");
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Served by another instance while the first one spins.
    let other = host.get("/count").await;
    assert_eq!(other.status, 200);
    assert!(!spinning.is_finished(), "the loop ended before its limit");
    let spun = spinning.await.unwrap();
    assert_eq!(spun.status, 504);
    assert_eq!(
        spun.json(),
        json!({ "detail": "The request took too long." })
    );
    assert_eq!(host.get("/count").await.status, 200);
}

#[tokio::test]
async fn a_looping_async_guest_gets_504_and_the_next_request_works() {
    let host = Components::new()
        .with_sidecar("testbed", "[limits]\ntimeout-ms = 500")
        .serve();
    assert_eq!(host.get("/spin-async").await.status, 504);
    assert_eq!(host.get("/wait/1").await.status, 200);
    host.wait_for_log("ran past its time limit").await;
}

#[tokio::test]
async fn a_memory_hungry_guest_gets_an_error_and_the_host_lives() {
    let host = Components::new()
        .with_sidecar("testbed", "[limits]\nmemory-mb = 64")
        .serve();
    let reply = host.get("/hog").await;
    assert_eq!(reply.status, 500);
    assert_eq!(reply.json(), json!({ "detail": "Internal Server Error" }));
    assert_eq!(host.get("/count").await.status, 200);
}

#[tokio::test]
async fn a_trap_discards_the_instance() {
    let host = Components::new().with("testbed").serve();
    assert_eq!(host.get("/count").await.body, "1");
    assert_eq!(host.get("/count").await.body, "2");
    assert_eq!(host.get("/trap").await.status, 500);
    // A new instance: its counter starts again.
    assert_eq!(host.get("/count").await.body, "1");
}

#[tokio::test]
async fn instances_are_reused_up_to_max_requests_per_instance() {
    let host = Components::new()
        .with_sidecar("testbed", "[limits]\nmax-requests-per-instance = 2")
        .serve();
    let mut counts = Vec::new();
    for _ in 0..5 {
        counts.push(host.get("/count").await.body);
    }
    assert_eq!(counts, ["1", "2", "1", "2", "1"]);
}

#[tokio::test]
async fn per_request_isolation_gives_every_request_a_fresh_instance() {
    let host = Components::new()
        .with_sidecar("testbed", "[limits]\nisolation = \"per-request\"")
        .serve();
    for _ in 0..3 {
        assert_eq!(host.get("/count").await.body, "1");
    }
}

#[tokio::test]
async fn per_request_isolation_holds_whether_slots_keep_memory_resident_or_not() {
    for keep_resident_mb in [0, 32] {
        let config = tempfile::NamedTempFile::new().unwrap();
        let pool = format!("[pool]\nkeep-resident-mb = {keep_resident_mb}\n");
        std::fs::write(config.path(), pool).unwrap();
        let host = Components::new()
            .with_sidecar("testbed", "[limits]\nisolation = \"per-request\"")
            .serve_with(&["--config", config.path().to_str().unwrap()]);
        for _ in 0..3 {
            assert_eq!(host.get("/count").await.body, "1");
        }
    }
}

#[tokio::test]
async fn a_full_queue_answers_503_with_retry_after() {
    let host = Components::new()
        .with_sidecar("testbed", "[limits]\nmax-instances = 1\nqueue = 1")
        .serve();
    let running = host.spawn_get("/busy/1500");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let queued = host.spawn_get("/busy/1");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let refused = host.get("/count").await;
    assert_eq!(refused.status, 503);
    assert_eq!(refused.header("retry-after"), Some("1"));
    assert_eq!(running.await.unwrap().status, 200);
    assert_eq!(queued.await.unwrap().status, 200);
}

#[tokio::test]
async fn the_host_wide_instance_limit_is_shared_by_all_components() {
    let config = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        config.path(),
        "[pool]\nmax-instances = 1\n[limits]\nqueue = 0\n",
    )
    .unwrap();
    let host = Components::new()
        .with_sidecar("testbed", "prefix = \"/a\"")
        .with_sidecar("hello-rust", "prefix = \"/b\"")
        .serve_with(&["--config", config.path().to_str().unwrap()]);
    let running = host.spawn_get("/a/busy/1000");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(host.get("/b/hello/x").await.status, 503);
    assert_eq!(running.await.unwrap().status, 200);
}

#[tokio::test]
async fn a_corrupt_compile_cache_entry_is_rebuilt() {
    let state = tempfile::tempdir().unwrap();
    let state_arg = state.path().to_str().unwrap();
    let host = Components::new()
        .with("testbed")
        .serve_with(&["--state-dir", state_arg]);
    assert_eq!(host.get("/count").await.status, 200);
    drop(host);
    let cache = state.path().join("cache");
    let artifacts: Vec<_> = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "cwasm"))
        .collect();
    assert_eq!(artifacts.len(), 1, "{artifacts:?}");
    let mut bytes = std::fs::read(&artifacts[0]).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&artifacts[0], bytes).unwrap();

    let host = Components::new()
        .with("testbed")
        .serve_with(&["--state-dir", state_arg]);
    assert_eq!(host.get("/count").await.body, "1");
    host.wait_for_log("unusable (checksum mismatch); recompiling")
        .await;
}

#[tokio::test]
async fn a_component_sharing_its_code_with_one_compiled_before_reuses_its_functions() {
    let state = tempfile::tempdir().unwrap();
    let args = [
        "--state-dir",
        state.path().to_str().unwrap(),
        "--ops-listen",
        "127.0.0.1:0",
    ];
    let first = Components::new().with("testbed").serve_with(&args);
    assert_eq!(first.get("/count").await.body, "1");
    let compiled = host_counter(&first, "cello_functions_compiled_total").await;
    assert!(compiled > 100.0, "{compiled} functions compiled");
    drop(first);

    // The same code in other bytes: the compile cache, keyed by the bytes,
    // misses, and the functions come from the function cache.
    let testbed = std::fs::read(support::components_dir().join("testbed.wasm")).unwrap();
    let second = Components::new()
        .with_file("testbed.wasm", &with_custom_section(&testbed, "one"))
        .serve_with(&args);
    assert_eq!(second.get("/count").await.body, "1");
    // Most, not all: Cranelift's input for a few functions (about one in
    // ten here) differs from one compile of the same code to the next.
    let recompiled = host_counter(&second, "cello_functions_compiled_total").await;
    let reused = host_counter(&second, "cello_functions_reused_total").await;
    assert!(
        recompiled <= compiled / 4.0 && reused >= compiled * 0.75,
        "{recompiled} compiled and {reused} reused, against {compiled} the first time"
    );
    drop(second);

    // A damaged file is replaced, and the component compiles without it.
    let cache = state.path().join("cache");
    for log in ["functions.sqlite-wal", "functions.sqlite-shm"] {
        let _ = std::fs::remove_file(cache.join(log));
    }
    std::fs::write(cache.join("functions.sqlite"), vec![0x5a; 64 << 10]).unwrap();
    let third = Components::new()
        .with_file("testbed.wasm", &with_custom_section(&testbed, "two"))
        .serve_with(&args);
    assert_eq!(third.get("/count").await.body, "1");
    third.wait_for_log("function cache is damaged").await;
    assert!(host_counter(&third, "cello_functions_compiled_total").await > 100.0);
    drop(third);

    // The file that replaced it holds what the third host compiled.
    let fourth = Components::new()
        .with_file("testbed.wasm", &with_custom_section(&testbed, "three"))
        .serve_with(&args);
    assert_eq!(fourth.get("/count").await.body, "1");
    let reused = host_counter(&fourth, "cello_functions_reused_total").await;
    assert!(reused >= compiled * 0.75, "{reused} reused of {compiled}");
}

/// `component` with a custom section named `name` appended: the same
/// component in other bytes.
fn with_custom_section(component: &[u8], name: &str) -> Vec<u8> {
    assert!(name.len() < 64);
    let mut bytes = component.to_vec();
    bytes.extend([0, name.len() as u8 + 1, name.len() as u8]);
    bytes.extend(name.as_bytes());
    bytes
}

/// A host-wide counter from `/metrics`.
async fn host_counter(host: &support::Host, name: &str) -> f64 {
    let text = host.ops_get("/metrics").await.body;
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {name} in {text}"))
        .trim()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn an_async_handler_that_blocks_its_loop_is_logged() {
    let host = Components::new()
        .with_sidecar("testbed", "[limits]\nblocked-warn-ms = 100")
        .serve();
    assert_eq!(host.get("/block/400").await.status, 200);
    let log = host.wait_for_log("without awaiting").await;
    assert!(log.contains("/block/{ms}"), "{log}");
    assert!(log.contains("use `def` for CPU-bound work"), "{log}");
}

#[tokio::test]
async fn idle_sync_instances_make_room_for_an_async_request() {
    let host = Components::new()
        .with_sidecar("testbed", "[limits]\nmax-instances = 2")
        .serve();
    // Two instances, both left idle, fill the component's slots.
    let a = host.spawn_get("/busy/300");
    let b = host.spawn_get("/busy/300");
    assert_eq!(a.await.unwrap().status, 200);
    assert_eq!(b.await.unwrap().status, 200);
    // The event-loop instance needs a slot: an idle one is evicted for it.
    assert_eq!(host.get("/wait/1").await.status, 200);
}

#[tokio::test]
async fn a_saturated_component_keeps_serving_on_its_warm_instance() {
    let host = Components::new()
        .with_sidecar("testbed", "[limits]\nmax-instances = 1\nqueue = 100")
        .serve();
    // Sixteen connections, each sending a hundred requests one after the
    // other, all to the one instance: every request waits its turn on it.
    // None may evict it to start a cold one in its place, which would
    // restart the guest's counter.
    let connections = (0..16).map(|_| async {
        let client = support::client();
        let mut counts = Vec::new();
        for _ in 0..100 {
            let request = host.request(http::Method::GET, "/count", &[], Vec::new());
            let reply = support::send(&client, request).await;
            assert_eq!(reply.status, 200, "{}", reply.body);
            counts.push(reply.body.parse::<u32>().unwrap());
        }
        counts
    });
    let counts: Vec<u32> = join_all(connections).await.concat();
    let fresh = counts.iter().filter(|&&count| count == 1).count();
    assert_eq!(fresh, 1, "{fresh} instances served the requests");
    assert_eq!(counts.iter().max(), Some(&1600));
}

#[tokio::test]
async fn async_requests_past_a_full_instance_wait_for_room_on_it() {
    let host = Components::new()
        .with_sidecar(
            "testbed",
            "[limits]\nmax-instances = 1\nasync-concurrency = 2\nqueue = 100",
        )
        .serve();
    // Two fit on the one instance; the other four wait for room on it.
    let replies = join_all((0..6).map(|_| host.spawn_get("/wait/200"))).await;
    let instances: HashSet<String> = replies
        .into_iter()
        .map(|reply| {
            let reply = reply.unwrap();
            assert_eq!(reply.status, 200, "{}", reply.body);
            reply.body
        })
        .collect();
    assert_eq!(instances.len(), 1, "served by {instances:?}");
}

#[tokio::test]
async fn idle_instances_of_one_component_make_room_for_another() {
    let config = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(config.path(), "[pool]\nmax-instances = 1\n").unwrap();
    let host = Components::new()
        .with_sidecar("testbed", "prefix = \"/a\"")
        .with_sidecar("hello-rust", "prefix = \"/b\"")
        .serve_with(&["--config", config.path().to_str().unwrap()]);
    assert_eq!(host.get("/a/count").await.status, 200);
    // The only slot is held by testbed's idle instance, which gives it up.
    assert_eq!(host.get("/b/hello/x").await.body, "Hello, x!");
    assert_eq!(host.get("/a/count").await.body, "1");
}

#[tokio::test]
async fn a_guest_holding_too_many_host_resources_is_stopped() {
    let host = Components::new()
        .with_sidecar("testbed", "[limits]\nmax-resources = 100")
        .serve();
    assert_eq!(host.get("/resources/50").await.body, "50");
    assert_eq!(host.get("/resources/1000").await.status, 500);
    assert_eq!(host.get("/resources/50").await.status, 200);
}

#[tokio::test]
async fn a_wasi_http_guest_is_reused_replaced_after_a_trap_and_stopped_at_its_limit() {
    use http_body_util::BodyExt;

    let host = Components::new()
        .with_sidecar("proxy-testbed", "[limits]\ntimeout-ms = 500")
        .serve();
    // One warm instance serves one request after another.
    assert_eq!(host.get("/count").await.body, "1");
    assert_eq!(host.get("/count").await.body, "2");
    assert_eq!(host.get("/").await.body, "chunk 1;chunk 2;chunk 3");
    // A trap discards it: the next request finds a fresh instance.
    assert_eq!(host.get("/trap").await.status, 500);
    assert_eq!(host.get("/count").await.body, "1");
    // A guest that loops before answering gets 504 at its limit.
    let started = std::time::Instant::now();
    let looped = host.get("/loop").await;
    assert_eq!(looped.status, 504);
    assert_eq!(
        looped.json(),
        json!({ "detail": "The request took too long." })
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    // A guest that returns without answering is a server error.
    assert_eq!(host.get("/unanswered").await.status, 500);
    // A guest that stalls halfway through its body: the head went out, and
    // the body ends with an error rather than looking complete.
    let request = host.request(http::Method::GET, "/stall", &[], Vec::new());
    let response = support::client().request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let body = response.into_body().collect().await;
    assert!(body.is_err(), "the stalled body ended cleanly: {body:?}");
    // And the component still serves.
    assert_eq!(host.get("/").await.body, "chunk 1;chunk 2;chunk 3");
    host.wait_for_log("ran past its").await;
}
