//! Deploys that neither block nor fail: a new version makes room for
//! itself among the old one's idle instances, one tenant's slow upload
//! never holds up another's admin calls, each validation step has a time
//! limit its refusal names, and a restart opens the listener before the
//! tenants' components are back.

use crate::support;

use std::time::{Duration, Instant};

use http::Method;
use support::admin::{
    OPERATOR, call, component, create_tenant, push, push_with, serve, serve_with, token,
    wait_restored,
};
use support::{Components, Host, Reply};

/// One instance per async request, so that a few requests fill the
/// tenant's instances.
const ONE_CALL_PER_INSTANCE: &str = "[limits]\nasync-concurrency = 1\n";

/// A host where tenant acme may have two instances, and serves the
/// testbed as `shop` with one request per instance.
async fn acme_with_two_instances() -> Host {
    let host = serve(Components::new());
    let quotas = serde_json::json!({ "quotas": { "max-instances": 2 } });
    create_tenant(&host, "acme", quotas).await;
    let reply = push_shop(&host).await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    host
}

async fn push_shop(host: &Host) -> Reply {
    let testbed = component("testbed");
    push_with(host, "acme", "shop", testbed, ONE_CALL_PER_INSTANCE).await
}

/// Tenant `name` may read config variables (the slow guest's delays).
async fn create_configurable(host: &Host, name: &str) {
    let grants = serde_json::json!({ "grants": { "config": true } });
    create_tenant(host, name, grants).await;
}

/// The slow-start guest with `settings` under `[variables]`.
async fn push_slow(host: &Host, tenant: &str, variables: &str) -> Reply {
    let settings = format!("[variables]\n{variables}\n");
    push_with(host, tenant, "slow", component("slow-start"), &settings).await
}

fn problems(reply: &Reply) -> String {
    reply.json()["problems"].to_string()
}

#[tokio::test]
async fn an_upload_after_a_burst_that_filled_the_tenants_instances_succeeds_at_once() {
    let host = acme_with_two_instances().await;
    let burst: Vec<_> = (0..6).map(|_| host.spawn_get("/t/acme/wait/300")).collect();
    for request in burst {
        let reply = request.await.unwrap();
        assert_eq!(reply.status, 200, "{}", reply.body);
    }

    // Both instances are idle now, and hold the tenant's two slots.
    let started = Instant::now();
    let reply = push_shop(&host).await;
    let took = started.elapsed();
    assert_eq!(reply.status, 201, "{}", reply.body);
    assert_eq!(reply.json()["version"], 2);
    assert!(took < Duration::from_secs(5), "the upload took {took:?}");
    assert_eq!(host.get("/t/acme/instance").await.status, 200);
}

#[tokio::test]
async fn an_upload_while_the_tenants_traffic_holds_every_instance_is_refused_within_seconds() {
    let host = acme_with_two_instances().await;
    let busy: Vec<_> = (0..2)
        .map(|_| host.spawn_get("/t/acme/wait/8000"))
        .collect();
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let started = Instant::now();
    let reply = push_shop(&host).await;
    let took = started.elapsed();
    assert_eq!(reply.status, 503, "{}", reply.body);
    assert!(reply.header("retry-after").is_some());
    let problems = problems(&reply);
    assert!(
        problems.contains("tenant acme is at its instance limit (max-instances = 2)")
            && problems.contains("retry"),
        "{problems}"
    );
    // Refused after the host's wait (3 s), not after the requests (8 s).
    assert!(took < Duration::from_secs(6), "the refusal took {took:?}");

    for request in busy {
        assert_eq!(request.await.unwrap().status, 200);
    }
    let listed = call(&host, Method::GET, "/v1/tenants/acme", OPERATOR).await;
    assert_eq!(listed.json()["components"]["shop"]["version"], 1);
}

#[tokio::test]
async fn a_slow_upload_of_one_tenant_never_delays_another_tenants_admin_calls() {
    let host = serve(Components::new());
    create_configurable(&host, "slow").await;
    create_tenant(&host, "quick", serde_json::json!({})).await;
    let quick = token(&host, "quick").await;
    // The guest is compiled once, so that the slow upload's time is its
    // on-start alone.
    let reply = push_slow(&host, "slow", "").await;
    assert_eq!(reply.status, 201, "{}", reply.body);

    let slow_upload = async {
        let reply = push_slow(&host, "slow", "start-ms = \"6000\"").await;
        (reply, Instant::now())
    };
    let other_calls = async {
        // Long enough for the slow upload to hold its tenant's lock.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let within = |what: &str, reply: &Reply, since: Instant, limit: Duration| {
            let took = since.elapsed();
            assert!(
                reply.status < 300,
                "{what}: {} {}",
                reply.status,
                reply.body
            );
            assert!(
                took < limit,
                "{what} took {took:?} while the slow upload ran"
            );
        };
        let one_second = Duration::from_secs(1);
        let t = Instant::now();
        let reply = call(&host, Method::GET, "/v1/tenants/quick", &quick).await;
        within("reading the tenant", &reply, t, one_second);
        let t = Instant::now();
        let reply = call(&host, Method::GET, "/v1/tenants", OPERATOR).await;
        within("listing tenants", &reply, t, one_second);
        let t = Instant::now();
        let reply = call(&host, Method::POST, "/v1/tenants/quick/tokens", OPERATOR).await;
        within("issuing a token", &reply, t, one_second);
        let t = Instant::now();
        let body = br#"{"quotas": {"max-instances": 4}}"#.to_vec();
        let reply = host
            .admin(
                Method::PATCH,
                "/v1/tenants/quick",
                OPERATOR,
                "application/json",
                body,
            )
            .await;
        within("changing quotas", &reply, t, one_second);
        let t = Instant::now();
        let reply = push(&host, "quick", "shop", &quick, component("testbed")).await;
        within("uploading", &reply, t, Duration::from_secs(3));
        Instant::now()
    };
    let ((slow, slow_done), others_done) = tokio::join!(slow_upload, other_calls);
    assert_eq!(slow.status, 201, "{}", slow.body);
    assert!(
        others_done < slow_done,
        "the other tenant's calls ended after the slow upload"
    );
    assert_eq!(host.get("/t/quick/count").await.status, 200);
}

/// A host whose validation steps may take one second each.
fn serve_impatient() -> (Host, tempfile::NamedTempFile) {
    let mut config = tempfile::NamedTempFile::new().unwrap();
    std::io::Write::write_all(
        &mut config,
        b"[deploys]\ndescribe-timeout-s = 1\nstart-timeout-s = 1\n",
    )
    .unwrap();
    let path = config.path().to_str().unwrap().to_string();
    (serve_with(Components::new(), &["--config", &path]), config)
}

#[tokio::test]
async fn an_on_start_past_its_time_limit_is_refused_naming_the_limit() {
    let (host, _config) = serve_impatient();
    create_configurable(&host, "acme").await;
    let reply = push_slow(&host, "acme", "start-ms = \"3000\"").await;
    assert_eq!(reply.status, 422, "{}", reply.body);
    let problems = problems(&reply);
    assert!(
        problems.contains("on-start did not return within 1 s"),
        "{problems}"
    );
}

#[tokio::test]
async fn a_describe_past_its_time_limit_is_refused_naming_the_limit() {
    let (host, _config) = serve_impatient();
    create_configurable(&host, "acme").await;
    let reply = push_slow(&host, "acme", "describe-ms = \"3000\"").await;
    assert_eq!(reply.status, 422, "{}", reply.body);
    let problems = problems(&reply);
    assert!(
        problems.contains("describe() did not return within 1 s"),
        "{problems}"
    );
}

#[tokio::test]
async fn after_a_restart_the_listener_answers_at_once_and_each_tenant_serves_once_restored() {
    const OPS: &[&str] = &["--ops-listen", "127.0.0.1:0"];
    let host = serve_with(Components::new(), OPS);
    create_configurable(&host, "slow").await;
    create_tenant(&host, "quick", serde_json::json!({})).await;
    let reply = push_slow(&host, "slow", "start-ms = \"6000\"").await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    let reply = push(&host, "quick", "shop", OPERATOR, component("testbed")).await;
    assert_eq!(reply.status, 201, "{}", reply.body);

    let host = serve_with(host.stop(), OPS);
    let reply = host.get("/t/slow/").await;
    assert_eq!(reply.status, 503, "{}", reply.body);
    assert!(reply.header("retry-after").is_some());
    assert!(
        reply.body.contains("still being restored"),
        "{}",
        reply.body
    );
    let ready = host.ops_get("/readyz").await;
    assert_eq!(ready.status, 503, "{}", ready.body);
    assert!(ready.body.contains("slow/slow"), "{}", ready.body);
    // A tenant that does not exist is still a 404.
    assert_eq!(host.get("/t/nobody/").await.status, 404);

    // The quick tenant serves while the slow one still starts.
    let quick = wait_for(&host, "/t/quick/count", 200, Duration::from_secs(30)).await;
    assert!(quick < Duration::from_secs(5), "quick took {quick:?}");
    assert_eq!(host.get("/t/slow/").await.status, 503);

    wait_for(&host, "/t/slow/", 200, Duration::from_secs(60)).await;
    wait_restored(&host, Duration::from_secs(10)).await;
    let ready = host.ops_get("/readyz").await;
    assert_eq!(ready.status, 200, "{}", ready.body);
}

/// Polls `path` until it answers `status`; how long that took.
async fn wait_for(host: &Host, path: &str, status: u16, within: Duration) -> Duration {
    let started = Instant::now();
    while host.get(path).await.status != status {
        assert!(
            started.elapsed() < within,
            "{path} did not answer {status} within {within:?}; the log:\n{}",
            host.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    started.elapsed()
}
