//! Guests sharing the CPU: a component whose requests loop cannot starve
//! the host or its neighbours, and a request past its CPU limit is ended.
//!
//! The tests of this file run one at a time: they measure latency, and a
//! neighbour test's guests would be noise.

#[path = "support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use support::{Components, Host};
use tokio::sync::Mutex;

static ONE_AT_A_TIME: Mutex<()> = Mutex::const_new(());

/// The median time `host` takes to answer `path`, over `n` requests one
/// after another.
async fn median_latency(host: &Host, path: &str, n: usize) -> Duration {
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let started = Instant::now();
        let reply = host.get(path).await;
        assert_eq!(reply.status, 200, "{path}: {}", reply.body);
        times.push(started.elapsed());
    }
    times.sort();
    times[n / 2]
}

#[tokio::test]
async fn a_quiet_component_keeps_answering_while_another_loops_on_every_core() {
    let _one = ONE_AT_A_TIME.lock().await;
    let looping = "prefix = \"/noisy\"\n[limits]\ntimeout-ms = 20000\nmax-instances = 8";
    let host = Components::new()
        .with_as("testbed", "noisy", Some(looping))
        .with_as("testbed", "quiet", Some("prefix = \"/quiet\""))
        .serve();
    let solo = median_latency(&host, "/quiet/count", 30).await;
    // Twice as many loops as this machine has cores (and at least four).
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let loops: Vec<_> = (0..(2 * cores).max(4))
        .map(|_| host.spawn_get("/noisy/spin"))
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let loaded = median_latency(&host, "/quiet/count", 30).await;
    // Served from the host alone, without a guest: a 404.
    let started = Instant::now();
    assert_eq!(host.get("/nowhere").await.status, 404);
    let not_found = started.elapsed();
    assert!(
        loops.iter().all(|l| !l.is_finished()),
        "the loops ended early"
    );
    // Before guests shared the CPU, each request waited behind the loops'
    // 10 ms slices: tens of milliseconds apiece.
    let bound = solo * 10 + Duration::from_millis(10);
    assert!(
        loaded <= bound,
        "quiet median {loaded:?} with loops going, {solo:?} alone (bound {bound:?})"
    );
    assert!(
        not_found < Duration::from_millis(250),
        "a 404 took {not_found:?}"
    );
    for l in loops {
        l.abort();
    }
}

#[tokio::test]
async fn a_quiet_component_keeps_answering_beside_uninterruptible_memory_fills() {
    let _one = ONE_AT_A_TIME.lock().await;
    // Every request a fresh instance that grows and fills 200 MiB in one
    // step: only the route's first call may do it on a request's thread.
    let filling = "prefix = \"/noisy\"\n[limits]\nisolation = \"per-request\"\nmax-instances = 8";
    let host = Components::new()
        .with_as("testbed", "noisy", Some(filling))
        .with_as("testbed", "quiet", Some("prefix = \"/quiet\""))
        .serve();
    let solo = median_latency(&host, "/quiet/count", 30).await;
    assert_eq!(host.get("/noisy/fill/200").await.status, 200);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let fillers: Vec<_> = (0..4)
        .map(|_| {
            let (url, stop) = (host.url("/noisy/fill/200"), stop.clone());
            tokio::spawn(async move {
                let mut filled = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let uri: http::Uri = url.parse().unwrap();
                    let request = http::Request::get(uri).body(Default::default()).unwrap();
                    let reply = support::client().request(request).await.unwrap();
                    assert_eq!(reply.status(), 200);
                    filled += 1;
                }
                filled
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let loaded = median_latency(&host, "/quiet/count", 30).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut filled = 0;
    for filler in fillers {
        filled += filler.await.unwrap();
    }
    assert!(filled > 0, "the fills made no progress");
    let bound = solo * 10 + Duration::from_millis(10);
    assert!(
        loaded <= bound,
        "quiet median {loaded:?} beside the fills, {solo:?} alone (bound {bound:?})"
    );
}

#[tokio::test]
async fn a_def_call_past_its_cpu_limit_gets_503_and_the_next_is_served() {
    let _one = ONE_AT_A_TIME.lock().await;
    let host = Components::new()
        .with_sidecar("testbed", "[limits]\ntimeout-ms = 20000\ncpu-ms = 200")
        .serve();
    let started = Instant::now();
    let spun = host.get("/spin").await;
    assert_eq!(spun.status, 503, "{}", spun.body);
    assert_eq!(
        spun.json(),
        json!({ "detail": "The request used more CPU time than it is allowed." })
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the CPU limit, not the 20 s timeout, ended it"
    );
    // A short call fits the limit; the discarded instance was replaced.
    assert_eq!(host.get("/busy/20").await.status, 200);
    assert_eq!(host.get("/count").await.body, "1");
}

#[tokio::test]
async fn an_async_handler_past_its_cpu_limit_without_awaiting_gets_503() {
    let _one = ONE_AT_A_TIME.lock().await;
    let host = Components::new()
        .with_sidecar("testbed", "[limits]\ntimeout-ms = 20000\ncpu-ms = 200")
        .serve();
    let spun = host.get("/spin-async").await;
    assert_eq!(spun.status, 503, "{}", spun.body);
    host.wait_for_log("CPU limit").await;
    assert_eq!(host.get("/wait/1").await.status, 200);
}

#[tokio::test]
async fn a_long_call_still_finishes_on_the_long_call_lane() {
    let _one = ONE_AT_A_TIME.lock().await;
    let host = Components::new().with("testbed").serve();
    let before = host.get("/instance").await.body;
    // 300 ms of guest work moves off the request's thread and completes.
    let reply = host.get("/busy/300").await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    // The instance came back from the lane to its pool, and is reused.
    assert_eq!(host.get("/instance").await.body, before);
}

/// The scheduling policy (`SCHED_*`) of each of `pid`'s threads named
/// `name`, read from /proc.
#[cfg(target_os = "linux")]
fn thread_policies(pid: u32, name: &str) -> Vec<u32> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).unwrap();
    let mut policies = Vec::new();
    for task in tasks {
        let dir = task.unwrap().path();
        let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        if comm.trim() != name {
            continue;
        }
        let stat = std::fs::read_to_string(dir.join("stat")).unwrap();
        // Fields after the command name, which ends with the last ')':
        // state is field 3 of stat(5) and policy field 41.
        let after = &stat[stat.rfind(')').unwrap() + 2..];
        let policy = after.split(' ').nth(41 - 3).unwrap();
        policies.push(policy.parse().unwrap());
    }
    policies
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn the_long_call_lane_runs_under_the_idle_policy_only_when_asked() {
    let _one = ONE_AT_A_TIME.lock().await;
    const SCHED_OTHER: u32 = 0;
    const SCHED_IDLE: u32 = 5;
    let threads = "[execution]\nlong-call-threads = 2\n";
    for (config, policy) in [
        (threads.to_string(), SCHED_OTHER),
        (format!("{threads}long-call-idle = true\n"), SCHED_IDLE),
    ] {
        let components = Components::new()
            .with("testbed")
            .with_file("host-config.toml", config.as_bytes());
        let path = components.path().join("host-config.toml");
        let host = components.serve_with(&["--config", path.to_str().unwrap()]);
        // A long call runs on the lane, and the host keeps serving.
        assert_eq!(host.get("/busy/50").await.status, 200);
        let lane = thread_policies(host.pid(), "cello-long-call");
        assert_eq!(lane, [policy, policy], "{config}");
        // The threads that serve requests keep the normal policy.
        let workers = thread_policies(host.pid(), "tokio-rt-worker");
        assert!(!workers.is_empty() && workers.iter().all(|p| *p == SCHED_OTHER));
    }
}
