//! The operations listener: metrics, health and readiness.

use crate::support;

use support::Components;

const OPS: &[&str] = &["--ops-listen", "127.0.0.1:0"];

#[tokio::test]
async fn health_and_readiness_answer_200() {
    let host = Components::new().with("testbed").serve_with(OPS);
    assert_eq!(host.ops_get("/healthz").await.status, 200);
    assert_eq!(host.ops_get("/readyz").await.status, 200);
}

#[tokio::test]
async fn metrics_count_requests_instances_and_traps() {
    let host = Components::new().with("testbed").serve_with(OPS);
    for _ in 0..3 {
        assert_eq!(host.get("/count").await.status, 200);
    }
    assert_eq!(host.get("/trap").await.status, 500);
    assert_eq!(host.get("/nowhere").await.status, 404);
    let testbed = r#"component="testbed""#;
    assert_eq!(
        host.metric(
            "cello_requests_total",
            &format!(r#"{testbed},status="2xx""#)
        )
        .await,
        3.0
    );
    assert_eq!(
        host.metric(
            "cello_requests_total",
            &format!(r#"{testbed},status="5xx""#)
        )
        .await,
        1.0
    );
    assert_eq!(
        host.metric("cello_requests_total", r#"component="-",status="4xx""#)
            .await,
        1.0
    );
    assert_eq!(host.metric("cello_traps_total", testbed).await, 1.0);
    // One instance served the three requests and trapped on the fourth.
    assert_eq!(
        host.metric("cello_instantiations_total", testbed).await,
        1.0
    );
    assert_eq!(host.metric("cello_instances_live", testbed).await, 0.0);
    let text = host.ops_get("/metrics").await;
    assert!(
        text.body.contains("cello_request_duration_seconds_bucket"),
        "{}",
        text.body
    );
}

#[tokio::test]
async fn timeouts_and_queue_rejections_are_counted() {
    let host = Components::new()
        .with_sidecar(
            "testbed",
            "[limits]\ntimeout-ms = 1000\nmax-instances = 1\nqueue = 0",
        )
        .serve_with(OPS);
    let spinning = host.spawn_get("/spin");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(host.get("/count").await.status, 503);
    assert_eq!(spinning.await.unwrap().status, 504);
    let testbed = r#"component="testbed""#;
    assert_eq!(host.metric("cello_timeouts_total", testbed).await, 1.0);
    assert_eq!(
        host.metric("cello_queue_rejections_total", testbed).await,
        1.0
    );
}

#[tokio::test]
async fn a_blocked_event_loop_is_counted() {
    let host = Components::new()
        .with_sidecar("testbed", "[limits]\nblocked-warn-ms = 100")
        .serve_with(OPS);
    assert_eq!(host.get("/block/300").await.status, 200);
    host.wait_for_log("without awaiting").await;
    assert_eq!(
        host.metric("cello_blocked_loops_total", r#"component="testbed""#)
            .await,
        1.0
    );
}

#[tokio::test]
async fn wasi_http_instances_are_reused_or_fresh_per_request_as_configured() {
    let proxy = r#"component="http-proxy""#;
    let reused = Components::new().with("http-proxy").serve_with(OPS);
    let fresh = Components::new()
        .with_sidecar("http-proxy", "[limits]\nisolation = \"per-request\"\n")
        .serve_with(OPS);
    for host in [&reused, &fresh] {
        for i in 0..10 {
            let reply = host.get(&format!("/n/{i}")).await;
            assert_eq!(reply.status, 200);
            assert_eq!(
                reply.body,
                format!("Hello from wasi:http! You asked for /n/{i}")
            );
        }
    }
    // One request at a time: one instance serves all ten, and waits warm.
    assert_eq!(
        reused.metric("cello_instantiations_total", proxy).await,
        1.0
    );
    assert_eq!(reused.metric("cello_instances_idle", proxy).await, 1.0);
    assert_eq!(
        fresh.metric("cello_instantiations_total", proxy).await,
        10.0
    );
    assert_eq!(fresh.metric("cello_instances_idle", proxy).await, 0.0);
}

/// Parses a `/metrics` body (on stdin) with the `prometheus-client`
/// Python package's parser for `argv[1]` (`classic` or `openmetrics`),
/// and prints each family's type as JSON.
const PARSE_METRICS: &str = r#"
import json, sys
if sys.argv[1] == "openmetrics":
    from prometheus_client.openmetrics.parser import text_string_to_metric_families
else:
    from prometheus_client.parser import text_string_to_metric_families
text = sys.stdin.read()
print(json.dumps({f.name: f.type for f in text_string_to_metric_families(text)}))
"#;

/// The type of each metric family in `body`, as Prometheus' parser for
/// `format` reads it.
fn parsed_types(body: &str, format: &str) -> serde_json::Map<String, serde_json::Value> {
    use std::io::Write as _;
    let mut python = std::process::Command::new(cello_test_components::PYTHON)
        .args(["-c", PARSE_METRICS, format])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("cannot run the project's Python");
    python
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let output = python.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "the {format} parser refused /metrics (run `make setup` for \
         tests/requirements.txt):\n{}\n{body}",
        String::from_utf8_lossy(&output.stderr)
    );
    let types: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    types.as_object().unwrap().clone()
}

#[tokio::test]
async fn metrics_negotiate_openmetrics_or_the_classic_format_and_both_parse() {
    let host = Components::new().with("testbed").serve_with(OPS);
    assert_eq!(host.get("/count").await.status, 200);

    let classic = host.ops_get("/metrics").await;
    assert_eq!(
        classic.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    assert!(!classic.body.contains("# EOF"), "{}", classic.body);
    let scraper = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5";
    let openmetrics = host.ops_get_with("/metrics", &[("accept", scraper)]).await;
    assert_eq!(
        openmetrics.header("content-type"),
        Some("application/openmetrics-text; version=1.0.0; charset=utf-8")
    );
    assert!(
        openmetrics.body.ends_with("# EOF\n"),
        "{}",
        openmetrics.body
    );

    for (reply, format) in [(&classic, "classic"), (&openmetrics, "openmetrics")] {
        let types = parsed_types(&reply.body, format);
        assert_eq!(types["cello_requests"], "counter", "{format}: {types:?}");
        assert_eq!(types["cello_traps"], "counter", "{format}: {types:?}");
        assert_eq!(
            types["cello_request_duration_seconds"], "histogram",
            "{format}: {types:?}"
        );
        assert_eq!(
            types["cello_instances_live"], "gauge",
            "{format}: {types:?}"
        );
        let unknown: Vec<&String> = types
            .iter()
            .filter(|(_, kind)| *kind == "unknown")
            .map(|(name, _)| name)
            .collect();
        assert!(unknown.is_empty(), "{format}: untyped {unknown:?}");
    }
}

#[tokio::test]
async fn in_json_mode_every_line_is_json_with_one_timestamp_format() {
    let mut args = vec!["--log-format", "json", "--access-log"];
    args.extend(OPS);
    let mut host = Components::new().with("testbed").serve_with(&args);
    assert_eq!(host.get("/count").await.status, 200);
    assert_eq!(host.get("/nowhere").await.status, 404);
    host.wait_for_log(r#""target":"access""#).await;
    host.terminate();
    assert!(host.wait_exit(std::time::Duration::from_secs(20)).success());
    // The readers may still be taking the last lines.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let log = host.log();
    assert!(!log.contains('\u{1b}'), "colour codes in:\n{log}");
    let mut messages = Vec::new();
    for line in log.lines() {
        let value: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}\nin:\n{log}"));
        let timestamp = value["timestamp"].as_str().unwrap_or_else(|| {
            panic!("no timestamp string in {line}");
        });
        assert!(rfc3339_utc(timestamp), "{timestamp:?} in {line}");
        if let Some(message) = value["fields"]["message"].as_str() {
            messages.push(message.to_string());
        }
    }
    for said in [
        "testbed (cello app",
        "listening on http://",
        "shutting down",
    ] {
        assert!(
            messages.iter().any(|m| m.starts_with(said)),
            "{said:?} not in {messages:?}"
        );
    }
}

/// Whether `text` is an RFC 3339 UTC time with fractional seconds, as
/// `2026-11-30T14:48:42.123456Z`.
fn rfc3339_utc(text: &str) -> bool {
    let bytes = text.as_bytes();
    let digits = |range: std::ops::Range<usize>| {
        bytes
            .get(range)
            .is_some_and(|b| b.iter().all(u8::is_ascii_digit))
    };
    bytes.len() > 21
        && digits(0..4)
        && bytes[4] == b'-'
        && digits(5..7)
        && bytes[7] == b'-'
        && digits(8..10)
        && bytes[10] == b'T'
        && digits(11..13)
        && bytes[13] == b':'
        && digits(14..16)
        && bytes[16] == b':'
        && digits(17..19)
        && bytes[19] == b'.'
        && digits(20..bytes.len() - 1)
        && text.ends_with('Z')
}
