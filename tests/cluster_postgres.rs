//! Cluster mode with PostgreSQL as the tenants' store of record: several
//! real hosts, each with its own state directory, on one real PostgreSQL
//! (a server of each test's own, so that outages touch no other test).
//! A change made through one host is served by every host; a host killed,
//! started late or cut off from the database catches up.
//!
//! The component is `wasi-config`, which answers `/v` with its settings'
//! variable `v`: each upload sets `v` to a label, so what a host answers
//! says which version it serves.

use crate::support;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use http::Method;
use support::admin::{OPERATOR, call, component, create_tenant, serve_with, wait_restored};
use support::postgres::Postgres;
use support::{Components, Host, Reply};

/// How long a change may take to reach every host on this loaded machine;
/// the target is 1 s, and the measured figure is printed.
const EVERYWHERE: Duration = Duration::from_secs(5);
/// The same, when each host compiles the component for the first time.
const EVERYWHERE_COLD: Duration = Duration::from_secs(20);

/// A cluster's shared settings: its PostgreSQL and the config file naming it.
struct Cluster {
    pg: Postgres,
    dir: tempfile::TempDir,
}

impl Cluster {
    fn new() -> Self {
        let pg = Postgres::start();
        let dir = tempfile::tempdir().unwrap();
        let config = format!("[cluster]\npostgres = \"{}\"\n", pg.url());
        std::fs::write(dir.path().join("cello.toml"), config).unwrap();
        Self { pg, dir }
    }

    fn config(&self) -> PathBuf {
        self.dir.path().join("cello.toml")
    }

    /// A new host of the cluster, with a state directory of its own, once
    /// it has loaded every tenant.
    async fn join(&self) -> Node {
        let node = self.start(Components::new(), tempfile::tempdir().unwrap());
        wait_restored(&node.host, Duration::from_secs(60)).await;
        node
    }

    /// Starts a host over `components` and `state`, without waiting.
    /// Three hosts, joined one after another.
    async fn three(&self) -> (Node, Node, Node) {
        (self.join().await, self.join().await, self.join().await)
    }

    fn start(&self, components: Components, state: tempfile::TempDir) -> Node {
        let host = serve_with(components, &args(&self.config(), state.path()));
        Node { host, state }
    }
}

/// One host of the cluster, and its state directory.
struct Node {
    host: Host,
    state: tempfile::TempDir,
}

fn args<'a>(config: &'a Path, state: &'a Path) -> [&'a str; 6] {
    [
        "--config",
        config.to_str().unwrap(),
        "--state-dir",
        state.to_str().unwrap(),
        "--ops-listen",
        "127.0.0.1:0",
    ]
}

/// Makes tenant acme, allowed to read its settings' variables.
async fn create_acme(host: &Host) {
    create_tenant(
        host,
        "acme",
        serde_json::json!({ "grants": { "config": true } }),
    )
    .await;
}

/// Uploads `wasi-config` as acme's `cfg`, its variable `v` set to `label`.
async fn upload(host: &Host, label: &str) -> Reply {
    let settings = format!("[variables]\nv = \"{label}\"\n");
    host.upload("acme", "cfg", OPERATOR, component("wasi-config"), &settings)
        .await
}

/// Uploads and expects 201; returns the version given.
async fn deploy(host: &Host, label: &str) -> u64 {
    let reply = upload(host, label).await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    reply.json()["version"].as_u64().unwrap()
}

/// Waits until `host` answers `/t/acme/v` with `label`; returns how long
/// it took from `since`.
async fn served(host: &Host, label: &str, since: Instant, within: Duration) -> Duration {
    loop {
        let reply = host.get("/t/acme/v").await;
        if reply.status == 200 && reply.body == label {
            return since.elapsed();
        }
        assert!(
            since.elapsed() < within,
            "{label:?} not served within {within:?}: {} {}; the host's log:\n{}",
            reply.status,
            reply.body,
            host.log()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Waits until `host` answers `/t/acme/v` with `status`.
async fn answers(host: &Host, status: u16, within: Duration) {
    let since = Instant::now();
    loop {
        let reply = host.get("/t/acme/v").await;
        if reply.status == status {
            return;
        }
        assert!(
            since.elapsed() < within,
            "/t/acme/v still answers {} {}, not {status}",
            reply.status,
            reply.body
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The slowest of `hosts` to serve `label`, from `since`.
async fn served_everywhere(
    hosts: &[&Host],
    label: &str,
    since: Instant,
    within: Duration,
) -> Duration {
    let mut slowest = Duration::ZERO;
    for host in hosts {
        slowest = slowest.max(served(host, label, since, within).await);
    }
    slowest
}

#[tokio::test]
async fn an_upload_through_one_host_is_served_by_every_host() {
    let cluster = Cluster::new();
    let (one, two, three) = cluster.three().await;
    create_acme(&one.host).await;

    // Cold: hosts 2 and 3 compile the component for the first time.
    deploy(&one.host, "first").await;
    let acknowledged = Instant::now();
    let cold = served_everywhere(
        &[&two.host, &three.host],
        "first",
        acknowledged,
        EVERYWHERE_COLD,
    )
    .await;

    // Warm: the same bytes, new settings; every compile cache has them.
    deploy(&one.host, "second").await;
    let acknowledged = Instant::now();
    let warm = served_everywhere(
        &[&two.host, &three.host],
        "second",
        acknowledged,
        EVERYWHERE,
    )
    .await;
    println!("upload to every host after its 201: {warm:?} (cold compile cache: {cold:?})");
    served(&one.host, "second", acknowledged, EVERYWHERE).await;
}

#[tokio::test]
async fn a_rollback_and_a_delete_through_one_host_apply_on_the_others() {
    let cluster = Cluster::new();
    let (one, two, three) = cluster.three().await;
    let hosts = [&one.host, &two.host, &three.host];
    create_acme(&one.host).await;
    deploy(&one.host, "first").await;
    deploy(&one.host, "second").await;
    served_everywhere(&hosts, "second", Instant::now(), EVERYWHERE_COLD).await;

    let rollback = "/v1/tenants/acme/components/cfg/rollback";
    let reply = call(&two.host, Method::POST, rollback, OPERATOR).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json()["version"], 1);
    served_everywhere(
        &[&one.host, &three.host],
        "first",
        Instant::now(),
        EVERYWHERE,
    )
    .await;
    let versions = call(
        &three.host,
        Method::GET,
        "/v1/tenants/acme/components/cfg/versions",
        OPERATOR,
    )
    .await;
    assert_eq!(versions.json()["current"], 1, "{}", versions.body);

    let reply = call(
        &two.host,
        Method::DELETE,
        "/v1/tenants/acme/components/cfg",
        OPERATOR,
    )
    .await;
    assert_eq!(reply.status, 204, "{}", reply.body);
    answers(&one.host, 404, EVERYWHERE).await;
    answers(&three.host, 404, EVERYWHERE).await;

    let reply = call(&two.host, Method::DELETE, "/v1/tenants/acme", OPERATOR).await;
    assert_eq!(reply.status, 204, "{}", reply.body);
    let since = Instant::now();
    while call(&three.host, Method::GET, "/v1/tenants/acme", OPERATOR)
        .await
        .status
        != 404
    {
        assert!(
            since.elapsed() < EVERYWHERE,
            "the tenant is still on host 3"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Sets acme's `max-components` quota through `host`.
async fn set_max_components(host: &Host, max: u32) {
    let quotas = serde_json::json!({ "quotas": { "max-components": max } });
    let reply = host
        .admin(
            Method::PATCH,
            "/v1/tenants/acme",
            OPERATOR,
            "application/json",
            quotas.to_string().into(),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
}

#[tokio::test]
async fn a_token_and_quotas_set_through_one_host_apply_on_the_others() {
    let cluster = Cluster::new();
    let (one, two) = (cluster.join().await, cluster.join().await);
    create_acme(&one.host).await;
    let reply = call(&one.host, Method::POST, "/v1/tenants/acme/tokens", OPERATOR).await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    let token = reply.json()["token"].as_str().unwrap().to_string();
    set_max_components(&one.host, 7).await;

    let since = Instant::now();
    loop {
        let reply = call(&two.host, Method::GET, "/v1/tenants/acme", &token).await;
        if reply.status == 200 && reply.json()["quotas"]["max-components"] == 7 {
            break;
        }
        assert!(
            since.elapsed() < EVERYWHERE,
            "not applied on host 2: {} {}",
            reply.status,
            reply.body
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Revoked through host 2, the token is refused by host 1 too.
    let ids = call(&two.host, Method::GET, "/v1/tenants/acme/tokens", OPERATOR).await;
    let path = format!(
        "/v1/tenants/acme/tokens/{}",
        ids.json()[0].as_str().unwrap()
    );
    let reply = call(&two.host, Method::DELETE, &path, OPERATOR).await;
    assert_eq!(reply.status, 204, "{}", reply.body);
    // At once a change through host 1, which may not have heard of it yet:
    // its copy of the tenant must not bring the token back.
    set_max_components(&one.host, 8).await;
    for host in [&one.host, &two.host] {
        let since = Instant::now();
        while call(host, Method::GET, "/v1/tenants/acme", &token)
            .await
            .status
            != 401
        {
            assert!(
                since.elapsed() < EVERYWHERE,
                "the revoked token still works"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    for host in [&one.host, &two.host] {
        let reply = call(host, Method::GET, "/v1/tenants/acme", &token).await;
        assert_eq!(reply.status, 401, "the revoked token came back");
    }
    let ids = call(&one.host, Method::GET, "/v1/tenants/acme/tokens", OPERATOR).await;
    assert_eq!(ids.json(), serde_json::json!([]));
}

#[tokio::test]
async fn a_host_killed_during_an_upload_loses_nothing_acknowledged() {
    let cluster = Cluster::new();
    let (one, two) = (cluster.join().await, cluster.join().await);
    create_acme(&one.host).await;
    deploy(&one.host, "v0").await;
    served(&two.host, "v0", Instant::now(), EVERYWHERE_COLD).await;

    // Uploads through host 1 while host 2 is killed mid-way.
    let Node { host, state } = two;
    let uploads = tokio::spawn(async move {
        let mut acknowledged = Vec::new();
        for i in 1..=4 {
            let label = format!("v{i}");
            if upload(&one.host, &label).await.status == 201 {
                acknowledged.push(label);
            }
        }
        (one, acknowledged)
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let components = host.kill();
    let (one, acknowledged) = uploads.await.unwrap();
    assert_eq!(
        acknowledged.len(),
        4,
        "host 1 refused uploads: {acknowledged:?}"
    );

    let two = cluster.start(components, state);
    wait_restored(&two.host, Duration::from_secs(60)).await;
    served(&two.host, "v4", Instant::now(), EVERYWHERE).await;
    let path = "/v1/tenants/acme/components/cfg/versions";
    let versions = call(&two.host, Method::GET, path, OPERATOR).await.json();
    let kept: Vec<u64> = versions["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_u64().unwrap())
        .collect();
    assert_eq!(kept, [1, 2, 3, 4, 5], "{versions}");
    drop(one);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_keep_serving_while_postgres_is_down_and_catch_up_after() {
    let cluster = Cluster::new();
    let (one, two, three) = cluster.three().await;
    let hosts = [&one.host, &two.host, &three.host];
    create_acme(&one.host).await;
    deploy(&one.host, "before").await;
    served_everywhere(&hosts, "before", Instant::now(), EVERYWHERE_COLD).await;

    // Traffic to every host, from before the outage until every host
    // caught up after it: each request is answered by one version or the
    // other, never refused.
    let (done, down) = (AtomicBool::new(false), AtomicBool::new(false));
    let answered_while_down = AtomicUsize::new(0);
    let traffic = async {
        let mut refused = Vec::new();
        while !done.load(Ordering::Relaxed) {
            for host in hosts {
                let reply = host.get("/t/acme/v").await;
                if down.load(Ordering::Relaxed) {
                    answered_while_down.fetch_add(1, Ordering::Relaxed);
                }
                if reply.status != 200 || !["before", "after"].contains(&reply.body.as_str()) {
                    refused.push(format!("{} {}", reply.status, reply.body));
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        refused
    };
    let outage = async {
        tokio::task::block_in_place(|| cluster.pg.stop());
        down.store(true, Ordering::Relaxed);
        let refused = upload(&two.host, "during").await;
        assert_eq!(refused.status, 503, "{}", refused.body);
        assert!(
            refused.header("retry-after").is_some(),
            "{:?}",
            refused.headers
        );
        let detail = refused.json()["detail"].as_str().unwrap().to_string();
        assert!(
            detail.contains("the tenants' store is unreachable"),
            "{detail}"
        );
        assert!(
            refused
                .body
                .contains("retry the change once PostgreSQL is back"),
            "{}",
            refused.body
        );
        // Ready all the same, with a warning once the host noticed.
        let since = Instant::now();
        loop {
            let ready = three.host.ops_get("/readyz").await;
            assert_eq!(ready.status, 200, "{}", ready.body);
            if ready
                .body
                .contains("degraded: the tenants' store is unreachable")
            {
                break;
            }
            assert!(since.elapsed() < EVERYWHERE, "no warning: {}", ready.body);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }

        while answered_while_down.load(Ordering::Relaxed) < 30 {
            assert!(since.elapsed() < Duration::from_secs(30), "no traffic");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        down.store(false, Ordering::Relaxed);
        tokio::task::block_in_place(|| cluster.pg.restart());
        let since = Instant::now();
        loop {
            let reply = upload(&two.host, "after").await;
            if reply.status == 201 {
                break;
            }
            assert_eq!(reply.status, 503, "{}", reply.body);
            assert!(
                since.elapsed() < Duration::from_secs(30),
                "uploads still refused: {}",
                reply.body
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        served_everywhere(&hosts, "after", Instant::now(), Duration::from_secs(15)).await;
        let since = Instant::now();
        while !three.host.ops_get("/readyz").await.body.eq("ready\n") {
            assert!(since.elapsed() < Duration::from_secs(15), "still degraded");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        done.store(true, Ordering::Relaxed);
    };
    let (refused, ()) = tokio::join!(traffic, outage);
    assert!(refused.is_empty(), "refused during the outage: {refused:?}");
}

#[test]
fn a_cluster_url_that_is_not_postgresql_stops_the_host_with_a_sentence() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("cello.toml");
    std::fs::write(&config, "[cluster]\npostgres = \"mysql://db/cello\"\n").unwrap();
    let args = ["--config", config.to_str().unwrap(), "--allow-empty"];
    let (status, output) = Components::new().serve_fails_with(&args);
    assert!(!status.success(), "{output}");
    assert!(
        output.contains("[cluster] postgres is not a PostgreSQL URL"),
        "{output}"
    );
}

#[tokio::test]
async fn a_host_started_while_postgres_is_down_is_not_ready_until_it_loads_every_tenant() {
    let cluster = Cluster::new();
    let one = cluster.join().await;
    create_acme(&one.host).await;
    deploy(&one.host, "stored").await;
    cluster.pg.stop();

    let late = cluster.start(Components::new(), tempfile::tempdir().unwrap());
    let since = Instant::now();
    while since.elapsed() < Duration::from_secs(2) {
        let ready = late.host.ops_get("/readyz").await;
        assert_eq!(ready.status, 503, "{}", ready.body);
        assert!(
            ready.body.contains("the tenants are not loaded yet"),
            "{}",
            ready.body
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(late.host.get("/t/acme/v").await.status, 404);

    cluster.pg.restart();
    served(
        &late.host,
        "stored",
        Instant::now(),
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(late.host.ops_get("/readyz").await.status, 200);
}

#[tokio::test]
async fn a_host_joining_late_serves_every_tenant() {
    let cluster = Cluster::new();
    let one = cluster.join().await;
    create_acme(&one.host).await;
    deploy(&one.host, "acme's").await;
    create_tenant(
        &one.host,
        "globex",
        serde_json::json!({ "grants": { "config": true } }),
    )
    .await;
    let settings = "[variables]\nv = \"globex's\"\n";
    let reply = one
        .host
        .upload(
            "globex",
            "cfg",
            OPERATOR,
            component("wasi-config"),
            settings,
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.body);

    let fourth = cluster.join().await;
    assert_eq!(fourth.host.get("/t/acme/v").await.body, "acme's");
    assert_eq!(fourth.host.get("/t/globex/v").await.body, "globex's");
    assert_eq!(fourth.host.ops_get("/readyz").await.body, "ready\n");
}

#[tokio::test]
async fn uploads_through_two_hosts_at_once_get_distinct_versions() {
    let cluster = Cluster::new();
    let (one, two) = (cluster.join().await, cluster.join().await);
    create_acme(&one.host).await;
    deploy(&one.host, "v0").await;
    served(&two.host, "v0", Instant::now(), EVERYWHERE_COLD).await;

    let labels = ["a1", "b1", "a2", "b2"];
    let (a, b) = tokio::join!(
        async {
            let first = deploy(&one.host, labels[0]).await;
            (first, deploy(&one.host, labels[2]).await)
        },
        async {
            let first = deploy(&two.host, labels[1]).await;
            (first, deploy(&two.host, labels[3]).await)
        },
    );
    let mut versions = vec![a.0, a.1, b.0, b.1];
    versions.sort();
    assert_eq!(versions, [2, 3, 4, 5], "two uploads got one number");

    // Both hosts end on the version committed last.
    let last = if a.1 == 5 { "a2" } else { "b2" };
    let path = "/v1/tenants/acme/components/cfg/versions";
    for host in [&one.host, &two.host] {
        served(host, last, Instant::now(), EVERYWHERE).await;
        let versions = call(host, Method::GET, path, OPERATOR).await.json();
        assert_eq!(versions["current"], 5, "{versions}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_writes_answer_503_and_reads_answer_from_memory_while_postgres_is_down() {
    let cluster = Cluster::new();
    let one = cluster.join().await;
    create_acme(&one.host).await;
    deploy(&one.host, "stored").await;
    tokio::task::block_in_place(|| cluster.pg.stop());

    let reply = call(&one.host, Method::GET, "/v1/tenants/acme", OPERATOR).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json()["components"]["cfg"]["version"], 1);
    let writes = [
        (Method::POST, "/v1/tenants/acme/tokens"),
        (Method::DELETE, "/v1/tenants/acme/components/cfg"),
        (Method::DELETE, "/v1/tenants/acme"),
    ];
    for (method, path) in writes {
        let reply = call(&one.host, method.clone(), path, OPERATOR).await;
        assert_eq!(reply.status, 503, "{method} {path}: {}", reply.body);
        assert!(reply.header("retry-after").is_some(), "{method} {path}");
        let detail = reply.json()["detail"].as_str().unwrap().to_string();
        assert!(detail.contains("retry once it is back"), "{detail}");
    }
    let body = serde_json::json!({ "name": "globex" }).to_string();
    let reply = one
        .host
        .admin(
            Method::POST,
            "/v1/tenants",
            OPERATOR,
            "application/json",
            body.into(),
        )
        .await;
    assert_eq!(reply.status, 503, "{}", reply.body);
    // Nothing was changed here either.
    assert_eq!(one.host.get("/t/acme/v").await.body, "stored");
}
