//! Capabilities (key-value, config, outbound HTTP), grants, lifecycle hooks,
//! dependencies and background tasks, through real Python and Rust guests.

use crate::support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::Method;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use support::{Components, Host};

/// Every grant, with the test server's loopback address allowed.
const GRANTS: &str = r#"
[grants]
kv = true
config = true
outbound = ["http://127.0.0.1:*"]

[variables]
greeting = "hello from the sidecar"

[secrets]
api-token = { env = "CELLO_TEST_UNSET_TOKEN", default = "s3cret-value" }
"#;

fn python_caps() -> Components {
    Components::new().with_sidecar("python-caps", GRANTS)
}

/// A local HTTP server that answers after `delay`, recording the most
/// requests it had in flight at once.
pub(crate) struct Upstream {
    pub(crate) addr: SocketAddr,
    peak: Arc<AtomicUsize>,
}

pub(crate) async fn upstream(delay: Duration) -> Upstream {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let peak = Arc::new(AtomicUsize::new(0));
    let current = Arc::new(AtomicUsize::new(0));
    let seen = peak.clone();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let (current, peak) = (current.clone(), seen.clone());
            tokio::spawn(async move {
                let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let (current, peak) = (current.clone(), peak.clone());
                    async move {
                        let now = current.fetch_add(1, Ordering::SeqCst) + 1;
                        peak.fetch_max(now, Ordering::SeqCst);
                        tokio::time::sleep(delay).await;
                        current.fetch_sub(1, Ordering::SeqCst);
                        // The method and `x-from` when they are not a plain GET's.
                        let mut body = format!("upstream saw {}", req.uri());
                        if req.method() != http::Method::GET {
                            body += &format!(" ({})", req.method());
                        }
                        if let Some(from) = req.headers().get("x-from") {
                            body += &format!(" from {}", from.to_str().unwrap_or("?"));
                        }
                        Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from(body))))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Upstream { addr, peak }
}

#[tokio::test]
async fn a_startup_hook_fills_the_store_before_the_first_request() {
    let host = python_caps().serve();
    let reply = host.get("/startup").await;
    assert_eq!(reply.status, 200, "{}", host.log());
    assert_eq!(reply.json()["greeting"], "filled at startup");
}

#[tokio::test]
async fn shutdown_hooks_run_for_every_instance_on_a_graceful_stop() {
    let host = python_caps().serve();
    // One event-loop instance (async route) and one sync instance.
    assert_eq!(host.get("/startup").await.status, 200);
    assert_eq!(host.get("/config").await.status, 200);
    let host = host.stop().serve();
    let reply = host.get("/kv/shutdown:count").await;
    assert_eq!(reply.status, 200, "{}", host.log());
    assert_eq!(reply.json()["value"], "2");
}

#[tokio::test]
async fn guest_log_lines_carry_component_route_and_request_id() {
    let host = python_caps().serve_with(&["--log-format", "json"]);
    let reply = host
        .send(
            Method::GET,
            "/log",
            &[("x-request-id", "trace-me-7")],
            vec![],
        )
        .await;
    assert_eq!(reply.status, 200);
    assert_logged_with(
        &host,
        "a line from the log route",
        &[
            r#""component":"python-caps""#,
            r#""route":"/log""#,
            r#""request_id":"trace-me-7""#,
        ],
    )
    .await;
}

/// The log line holding `text` carries every one of `fields`.
async fn assert_logged_with(host: &support::Host, text: &str, fields: &[&str]) {
    let log = host.wait_for_log(text).await;
    let line = log.lines().find(|l| l.contains(text)).unwrap();
    for field in fields {
        assert!(line.contains(field), "{field} missing from {line}");
    }
}

#[tokio::test]
async fn a_wasi_http_proxys_printed_lines_carry_its_request_id() {
    let host = Components::new()
        .with("proxy-testbed")
        .serve_with(&["--log-format", "json"]);
    let headers = [("x-request-id", "proxy-print-3")];
    let reply = host.send(Method::GET, "/print", &headers, vec![]).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_logged_with(
        &host,
        "printed by the proxy",
        &[
            r#""component":"proxy-testbed""#,
            r#""route":"/print""#,
            r#""request_id":"proxy-print-3""#,
        ],
    )
    .await;
}

#[tokio::test]
async fn concurrent_async_calls_on_one_instance_log_with_their_own_request_id() {
    let host = python_caps().serve_with(&["--log-format", "json"]);
    let ids = ["overlap-1", "overlap-2", "overlap-3"];
    // All three wait on one event-loop instance; each logs while the others
    // are still in flight.
    let send = |id| {
        let host = &host;
        async move {
            let headers = [("x-request-id", id)];
            host.send(Method::GET, "/log-after/300", &headers, vec![])
                .await
        }
    };
    let replies = futures::future::join_all(ids.map(send)).await;
    assert!(replies.iter().all(|r| r.status == 200), "{}", host.log());
    for id in ids {
        for text in ["logged after the wait", "printed after the wait"] {
            let request_id = format!(r#""request_id":"{id}""#);
            let logged = async {
                while !host
                    .log()
                    .lines()
                    .any(|l| l.contains(text) && l.contains(&request_id))
                {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            };
            if tokio::time::timeout(Duration::from_secs(5), logged)
                .await
                .is_err()
            {
                panic!("no {text:?} with {request_id} in the log:\n{}", host.log());
            }
        }
    }
}

#[tokio::test]
async fn a_failing_startup_gives_503_for_that_component_only() {
    let failing = format!("prefix = \"/bad\"\n{GRANTS}")
        .replace("[variables]\n", "[variables]\nfail-startup = \"yes\"\n");
    let host = Components::new()
        .with_sidecar("python-caps", GRANTS)
        .with_as("python-caps", "broken", Some(&failing))
        .serve();
    let reply = host.get("/bad/startup").await;
    assert_eq!(reply.status, 503, "{}", reply.body);
    host.wait_for_log("the sidecar asked this instance to fail at startup")
        .await;
    assert_eq!(host.get("/startup").await.status, 200);
}

#[tokio::test]
async fn a_dependency_chain_runs_its_yield_cleanup_after_the_handler() {
    let host = python_caps().serve();
    let reply = host
        .send(
            Method::GET,
            "/me",
            &[("x-user", "ada"), ("x-trace", "t-42")],
            vec![],
        )
        .await;
    assert_eq!(reply.status, 200, "{}", host.log());
    assert_eq!(reply.json()["user"], "ada");
    let stamp = |event: &str| {
        let path = format!("/kv/db:t-42:{event}");
        let host = &host;
        async move {
            host.get(&path).await.json()["value"]
                .as_str()
                .unwrap()
                .parse::<u128>()
                .unwrap()
        }
    };
    // One connection per request, shared by the user lookup and the handler,
    // and closed only after the handler ran.
    let (opened, user, handler, closed) = (
        stamp("opened").await,
        stamp("user").await,
        stamp("handler").await,
        stamp("closed").await,
    );
    assert!(opened <= user && user <= handler && handler <= closed);
    let keys = host.get("/keys?prefix=db:t-42:").await.json();
    assert_eq!(keys.as_array().unwrap().len(), 4, "{keys}");

    // A dependency that raises still closes the connection it opened.
    let reply = host
        .send(
            Method::GET,
            "/me",
            &[("x-user", "nobody"), ("x-trace", "t-43")],
            vec![],
        )
        .await;
    assert_eq!(reply.status, 401);
    assert_eq!(host.get("/kv/db:t-43:closed").await.status, 200);
    // A missing header is a 422 naming it, through the dependency.
    let reply = host.get("/me").await;
    assert_eq!(reply.status, 422);
    assert_eq!(
        reply.json()["detail"][0]["loc"],
        serde_json::json!(["header", "x-user"])
    );
}

#[tokio::test]
async fn background_tasks_run_after_the_response_and_a_failing_one_is_only_logged() {
    let host = python_caps().serve();
    for (path, key) in [
        ("/background/bg-async", "bg-async"),
        ("/background-sync/bg-sync", "bg-sync"),
    ] {
        let reply = host.post(path, "text/plain", "").await;
        assert_eq!(reply.status, 200, "{}", host.log());
        // The task sleeps before it writes: when the response is here, it
        // has not finished.
        assert_eq!(host.get(&format!("/kv/{key}:task-done")).await.status, 404);
        let done = host.get_until_ok(&format!("/kv/{key}:task-done")).await;
        let stamp = |reply: &support::Reply| {
            reply.json()["value"]
                .as_str()
                .unwrap()
                .parse::<u128>()
                .unwrap()
        };
        let responded = stamp(&host.get(&format!("/kv/{key}:responded")).await);
        let started = stamp(&host.get(&format!("/kv/{key}:task-started")).await);
        assert!(
            responded <= started,
            "the task started before the handler returned"
        );
        assert!(started < stamp(&done));
    }
    host.wait_for_log("this background task fails on purpose")
        .await;
}

#[tokio::test]
async fn store_data_survives_a_restart() {
    let host = python_caps().serve();
    let reply = host
        .send(Method::PUT, "/kv/kept", &[], b"across restarts".to_vec())
        .await;
    assert_eq!(reply.status, 200, "{}", host.log());
    assert_eq!(
        host.post("/incr/visits", "text/plain", "").await.json()["value"],
        1
    );
    assert_eq!(
        host.post("/incr/visits?by=4", "text/plain", "")
            .await
            .json()["value"],
        5
    );
    let host = host.stop().serve();
    assert_eq!(
        host.get("/kv/kept").await.json()["value"],
        "across restarts"
    );
    assert_eq!(
        host.post("/incr/visits", "text/plain", "").await.json()["value"],
        6
    );
    // Keys expire, and a counter refuses a non-integer.
    let reply = host
        .send(Method::PUT, "/kv/brief?ttl=1", &[], b"soon gone".to_vec())
        .await;
    assert_eq!(reply.status, 200);
    assert_eq!(host.get("/kv/brief").await.status, 200);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(host.get("/kv/brief").await.status, 404);
    let reply = host.post("/incr/kept", "text/plain", "").await;
    assert_eq!(reply.status, 409);
    assert!(
        reply.body.contains("does not hold an integer"),
        "{}",
        reply.body
    );
}

#[tokio::test]
async fn components_cannot_see_each_others_keys() {
    let other = format!("prefix = \"/other\"\n{GRANTS}");
    let host = Components::new()
        .with_sidecar("python-caps", GRANTS)
        .with_as("python-caps", "other", Some(&other))
        .serve();
    host.send(Method::PUT, "/kv/mine", &[], b"private".to_vec())
        .await;
    assert_eq!(host.get("/kv/mine").await.status, 200);
    assert_eq!(host.get("/other/kv/mine").await.status, 404);
}

#[tokio::test]
async fn a_standard_component_reads_its_variables_and_secrets_through_wasi_config() {
    let sidecar = "[grants]\nconfig = true\n[variables]\ngreeting = \"hi\"\nshared = \"the variable\"\n\
                   [secrets]\ntoken = \"s3cret\"\nshared = \"the secret\"\n";
    let host = Components::new()
        .with_sidecar("wasi-config", sidecar)
        .serve();
    assert_eq!(host.get("/greeting").await.body, "hi");
    assert_eq!(host.get("/token").await.body, "s3cret");
    assert_eq!(host.get("/missing").await.status, 404);
    assert_eq!(
        host.get("/").await.body,
        "greeting=hi;shared=the variable;token=s3cret"
    );

    let output = Components::new().with("wasi-config").check();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(!output.status.success());
    assert!(
        stdout.contains(
            "imports wasi:config/store@0.2.0-rc.1, which it is not granted; add `config = true`"
        ),
        "{stdout}"
    );
}

#[test]
fn an_ungranted_import_is_refused_at_load_naming_the_grant() {
    let output = Components::new()
        .with_sidecar("python-caps", "[grants]\nconfig = true\n")
        .with("rust-caps")
        .check();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(!output.status.success());
    for expected in [
        "python-caps.wasm: imports cello:component/kv@0.1.0, which it is not granted; add `kv = true` under [grants] in python-caps.toml",
        "imports cello:component/outbound@0.1.0",
        "rust-caps.wasm: imports cello:component/kv@0.1.0",
        "add `config = true` under [grants] in rust-caps.toml",
    ] {
        assert!(
            stdout.contains(expected),
            "missing {expected:?} in:\n{stdout}"
        );
    }
}

#[test]
fn bad_grants_fail_with_a_sentence_naming_the_field() {
    for (sidecar, expected) in [
        (
            "[grants]\noutbound = [\"api.example.com\"]\n",
            "needs a scheme",
        ),
        (
            "[variables]\nx = \"1\"\n",
            "add `config = true` under [grants]",
        ),
        (
            "[grants]\nconfig = true\n[secrets]\nt = { env = \"CELLO_TEST_NOT_SET\" }\n",
            "[secrets] t: the environment variable CELLO_TEST_NOT_SET is not set",
        ),
    ] {
        let output = Components::new().with_sidecar("rust-caps", sidecar).check();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            stdout.contains(expected),
            "missing {expected:?} in:\n{stdout}"
        );
    }
}

#[tokio::test]
async fn config_variables_and_secrets_reach_the_guest_and_secrets_stay_masked() {
    let host = python_caps().serve();
    let reply = host.get("/config").await.json();
    assert_eq!(reply["greeting"], "hello from the sidecar");
    assert_eq!(reply["missing"], "default");
    assert_eq!(reply["token"], "Secret('***')");
    assert_eq!(reply["token_length"], "s3cret-value".len());
    assert!(!host.log().contains("s3cret-value"));
}

#[tokio::test]
async fn outbound_http_reaches_allowed_hosts_and_the_guest_catches_a_refusal() {
    let upstream = upstream(Duration::from_millis(1)).await;
    let host = python_caps().serve();
    let url = format!("http://{}/hello", upstream.addr);
    let reply = host.get(&format!("/fetch?url={url}")).await.json();
    assert_eq!(reply["status"], 200, "{reply}");
    assert_eq!(reply["body"], "upstream saw /hello");
    let reply = host.get("/fetch?url=http://example.com/").await.json();
    assert_eq!(reply["error"], "denied", "{reply}");
    assert!(
        reply["detail"]
            .as_str()
            .unwrap()
            .contains("not in this component's outbound allow-list")
    );
}

#[tokio::test]
async fn asyncio_gather_over_host_calls_runs_them_at_once() {
    let upstream = upstream(Duration::from_millis(300)).await;
    let host = python_caps().serve();
    let url = format!("http://{}/slow", upstream.addr);
    let reply = host.get(&format!("/gather?url={url}")).await;
    assert_eq!(reply.status, 200, "{}", host.log());
    assert_eq!(reply.json()["bodies"][2], "upstream saw /slow?n=2");
    // The upstream had all three in flight at once.
    assert_eq!(upstream.peak.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn asyncio_wait_for_around_a_slow_host_call_raises_timeout_error() {
    let host = python_caps().serve();
    for _ in 0..3 {
        let reply = host.get("/wait-for?timeout_ms=50&sleep_ms=2000").await;
        assert_eq!(reply.status, 200, "{}", host.log());
        assert_eq!(reply.json()["timed_out"], true);
        let reply = host.get("/wait-for?timeout_ms=2000&sleep_ms=10").await;
        assert_eq!(reply.json()["timed_out"], false, "{}", host.log());
    }
}

/// What rust-caps answers, in any build, from its startup hook, its
/// key-value counter and its config, given `GRANTS`' kv, config,
/// variables and secret.
pub(crate) async fn rust_caps_start_count_and_config(host: &Host) {
    assert_eq!(host.get("/startup").await.body, "set by on_start");
    assert_eq!(host.post("/count", "text/plain", "").await.body, "1");
    assert_eq!(host.post("/count", "text/plain", "").await.body, "2");
    assert_eq!(
        host.get("/config").await.body,
        "hello from the sidecar Some(Secret(***)) 12"
    );
}

#[tokio::test]
async fn the_rust_sdk_reaches_every_capability() {
    let upstream = upstream(Duration::from_millis(1)).await;
    let host = Components::new().with_sidecar("rust-caps", GRANTS).serve();
    rust_caps_start_count_and_config(&host).await;
    let reply = host
        .get(&format!("/fetch?url=http://{}/r", upstream.addr))
        .await;
    assert_eq!(reply.body, "200 upstream saw /r");
    let reply = host.get("/fetch?url=https://example.com/").await;
    assert_eq!(reply.status, 502);
    assert!(reply.body.starts_with("error: denied"), "{}", reply.body);
    assert_eq!(
        host.post("/later/written", "text/plain", "").await.body,
        "queued"
    );
    assert_eq!(host.get("/kv/written").await.status, 404);
    assert_eq!(
        host.get_until_ok("/kv/written").await.body,
        "written in the background"
    );
}

/// A sync route's stream that awaits outbound HTTP blocks its instance
/// through `send-blocking` and goes whole, as it does natively.
#[tokio::test]
async fn a_sync_rust_route_whose_stream_awaits_outbound_http_blocks_and_answers() {
    let upstream = upstream(Duration::from_millis(100)).await;
    let host = Components::new().with_sidecar("rust-caps", GRANTS).serve();
    let path = format!("/fetch-in-stream?url=http://{}/r", upstream.addr);
    let reply = host.get(&path).await;
    assert_eq!(reply.status, 200, "{}", host.log());
    assert_eq!(reply.body, "200");
    // Server-sent events the same, at once: their keep-alive does not tick
    // (it blocked, a ping at a time, until the route's timeout).
    let started = std::time::Instant::now();
    let path = format!("/fetch-in-events?url=http://{}/r", upstream.addr);
    let reply = host.get(&path).await;
    assert_eq!(reply.status, 200, "{}", host.log());
    assert_eq!(reply.body, "data:Ok(200)\n\n");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    let reply = host.get("/fetch-in-stream?url=https://example.com/").await;
    assert!(reply.body.starts_with("error: denied"), "{}", reply.body);
    assert!(!host.log().contains("wasm trap"), "{}", host.log());
    // The same instance serves on.
    assert_eq!(host.get("/config").await.status, 200);
}

/// A `def` route sends outbound HTTP with the blocking `http.Client`, as
/// FastAPI's would with `requests`: headers, the allow-list, a timeout;
/// an `async def` route may too (its instance waits), and a `def`
/// route's async stream awaiting `http.get` blocks instead of failing.
#[tokio::test]
async fn a_python_def_route_sends_outbound_http_with_the_blocking_client() {
    let upstream = upstream(Duration::from_millis(1)).await;
    let slow = self::upstream(Duration::from_secs(3)).await;
    let host = python_caps().serve();
    let reply = host
        .get(&format!("/fetch-blocking?url=http://{}/b", upstream.addr))
        .await;
    assert_eq!(reply.status, 200, "{}", host.log());
    assert_eq!(reply.json()["body"], "upstream saw /b from def");
    let reply = host
        .get(&format!(
            "/fetch-blocking-async?url=http://{}/c",
            upstream.addr
        ))
        .await;
    assert_eq!(
        reply.json()["body"],
        "upstream saw /c (POST)",
        "{}",
        host.log()
    );
    let reply = host
        .get("/fetch-blocking?url=http://example.com/")
        .await
        .json();
    assert_eq!(reply["error"], "denied", "{reply}");
    let started = std::time::Instant::now();
    let reply = host
        .get(&format!(
            "/fetch-blocking?url=http://{}/s&timeout=0.2",
            slow.addr
        ))
        .await
        .json();
    assert_eq!(reply["error"], "Timeout", "{reply}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );

    let reply = host
        .get(&format!("/fetch-in-stream?url=http://{}/r", upstream.addr))
        .await;
    assert_eq!(reply.status, 200, "{}", host.log());
    assert_eq!(reply.body, "200");
    assert!(!host.log().contains("wasm trap"), "{}", host.log());
    let reply = host
        .get(&format!("/fetch?url=http://{}/r", upstream.addr))
        .await;
    assert_eq!(reply.json()["status"], 200);
}

/// `wasi:http/outgoing-handler` is linked for every component, as
/// componentize-py and componentize-js builds import it whether they use
/// it or not: without the grant it loads, and each request is refused.
#[tokio::test(flavor = "multi_thread")]
async fn an_ungranted_outgoing_handler_loads_and_refuses_each_request() {
    use cello_host::testing::TestHost;
    let wasm = support::components_dir().join("proxy-testbed.wasm");
    let outgoing = async |sidecar: &str| {
        let host = TestHost::builder()
            .component_with(&wasm, sidecar)
            .build()
            .await
            .expect("a component importing the outgoing handler loads without a grant");
        let reply = host.get("/outgoing").await;
        assert_eq!(reply.status, 200);
        reply.text()
    };
    let ungranted = outgoing("").await;
    assert!(ungranted.contains("HttpRequestDenied"), "{ungranted}");
    let elsewhere = outgoing("[grants]\noutbound = [\"https://api.example.com\"]\n").await;
    assert!(elsewhere.contains("HttpRequestDenied"), "{elsewhere}");
    let granted = outgoing("[grants]\noutbound = [\"http://127.0.0.1:*\"]\n").await;
    assert!(!granted.contains("HttpRequestDenied"), "{granted}");
}

/// A sidecar's `[environment]` is the guest's environment, and nothing of
/// the host's own leaks into it; a tenant may give values, not read the
/// host's.
#[tokio::test(flavor = "multi_thread")]
async fn a_sidecars_environment_reaches_a_wasi_http_guest_and_nothing_else_does() {
    use cello_host::testing::TestHost;
    let wasm = support::components_dir().join("proxy-testbed.wasm");
    let env = async |sidecar: &str| {
        let host = TestHost::builder()
            .component_with(&wasm, sidecar)
            .build()
            .await
            .expect("loads");
        host.get("/env").await.text()
    };
    assert_eq!(env("").await, "unset;unset");
    assert_eq!(
        env("[environment]\nGREETING = \"hello\"\n").await,
        "hello;unset"
    );
    // SAFETY: set before any thread of this test reads the environment.
    unsafe { std::env::set_var("CELLO_TEST_GREETING", "from the host") };
    let sidecar = "[environment]\nGREETING = { env = \"CELLO_TEST_GREETING\" }\n";
    assert_eq!(env(sidecar).await, "from the host;unset");
    let missing = "[environment]\nGREETING = { env = \"CELLO_TEST_UNSET_VARIABLE\" }\n";
    let refused = TestHost::builder()
        .component_with(&wasm, missing)
        .build()
        .await
        .err()
        .expect("an unset variable without a default stops the load");
    assert!(
        format!("{refused:#}").contains("CELLO_TEST_UNSET_VARIABLE"),
        "{refused:#}"
    );
}
