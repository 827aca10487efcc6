//! Tenants over the real admin API and the real traffic listener: uploads,
//! validation, swaps under load, isolation, persistence across a restart
//! and a crash, rollback, hot reload of the served directory, and the CLI.

use crate::support;

use std::io::Write as _;
use std::time::Duration;

use http::Method;
use support::admin::{
    OPERATOR, call, component, create_tenant, push, push_with, restarted, serve, serve_with, token,
};
use support::{Components, Host, Reply, components_dir};

/// A host where tenant acme, with `quotas`, serves the testbed as `shop`.
async fn serving_shop(quotas: serde_json::Value) -> Host {
    let host = serve(Components::new());
    create_tenant(&host, "acme", serde_json::json!({ "quotas": quotas })).await;
    let reply = push(&host, "acme", "shop", OPERATOR, component("testbed")).await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    host
}

fn problems(reply: &Reply) -> String {
    reply.json()["problems"].to_string()
}

async fn versions(host: &Host, tenant: &str, name: &str) -> serde_json::Value {
    let path = format!("/v1/tenants/{tenant}/components/{name}/versions");
    let reply = call(host, Method::GET, &path, OPERATOR).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.json()
}

#[tokio::test]
async fn a_tenants_python_app_reads_its_tenant_from_the_request() {
    let host = serve(Components::new());
    create_tenant(&host, "acme", serde_json::json!({})).await;
    let reply = push(&host, "acme", "py", OPERATOR, component("python-testbed")).await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    let reply = host
        .send(Method::POST, "/t/acme/seen/sync", &[], b"x".to_vec())
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json()["tenant"], "acme");
}

#[tokio::test]
async fn a_tenants_wasi_http_component_sees_the_path_without_the_tenant_prefix() {
    let host = serve(Components::new().with("hello-rust"));
    create_tenant(&host, "acme", serde_json::json!({})).await;
    let acme = token(&host, "acme").await;
    let reply = push(&host, "acme", "web", &acme, component("http-proxy")).await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    for (path, seen) in [("/t/acme/a/b?x=1", "/a/b?x=1"), ("/t/acme/", "/")] {
        let reply = host.get(path).await;
        assert_eq!(reply.status, 200, "{path}: {}", reply.body);
        assert_eq!(
            reply.body,
            format!("Hello from wasi:http! You asked for {seen}")
        );
    }
}

#[tokio::test]
async fn an_upload_is_served_and_tokens_only_reach_their_own_tenant() {
    let host = serve(Components::new().with("hello-rust"));
    create_tenant(&host, "acme", serde_json::json!({})).await;
    create_tenant(&host, "globex", serde_json::json!({})).await;
    let acme = token(&host, "acme").await;
    let globex = token(&host, "globex").await;

    let reply = push(&host, "acme", "shop", &acme, component("testbed")).await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    assert_eq!(reply.json()["version"], 1);
    let counted = host.get("/t/acme/count").await;
    assert_eq!(counted.status, 200, "{}", counted.body);
    // The served directory is untouched, and other tenants have nothing.
    assert_eq!(host.get("/").await.body, "Hello from Rust!");
    assert_eq!(host.get("/t/globex/count").await.status, 404);
    let nobody = host.get("/t/nobody/count").await;
    assert_eq!(nobody.status, 404);
    assert!(nobody.body.contains("no tenant named"), "{}", nobody.body);

    // Wrong, missing and other tenants' tokens.
    let reply = push(&host, "acme", "shop", "ct_acme.wrong", component("testbed")).await;
    assert_eq!(reply.status, 401, "{}", reply.body);
    assert!(reply.header("www-authenticate").is_some());
    let reply = push(&host, "acme", "shop", "", component("testbed")).await;
    assert_eq!(reply.status, 401);
    let reply = push(&host, "acme", "shop", &globex, component("testbed")).await;
    assert_eq!(reply.status, 403, "{}", reply.body);
    assert!(
        reply.body.contains("cannot act for tenant acme"),
        "{}",
        reply.body
    );
    // A tenant token cannot do what only the operator may.
    let reply = call(&host, Method::POST, "/v1/tenants/acme/tokens", &acme).await;
    assert_eq!(reply.status, 403);
    let reply = call(&host, Method::DELETE, "/v1/tenants/globex", &acme).await;
    assert_eq!(reply.status, 403);
    // Its own tenant it may read; the token itself is not stored.
    let reply = call(&host, Method::GET, "/v1/tenants/acme", &acme).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json()["components"]["shop"]["version"], 1);
    let record = host.tenants_dir().join("acme").join("tenant.json");
    let stored = std::fs::read_to_string(record).unwrap();
    assert!(stored.contains("token-hashes"), "{stored}");
    assert!(!stored.contains(acme.split('.').nth(1).unwrap()));

    let reply = call(
        &host,
        Method::DELETE,
        "/v1/tenants/acme/components/shop",
        &acme,
    )
    .await;
    assert_eq!(reply.status, 204, "{}", reply.body);
    assert_eq!(host.get("/t/acme/count").await.status, 404);
}

#[tokio::test]
async fn bad_uploads_list_every_problem_and_the_previous_version_keeps_serving() {
    let host = serving_shop(serde_json::json!({ "max-component-mb": 1 })).await;
    let before = host.get("/t/acme/instance").await;
    assert_eq!(before.status, 200);

    let refused = [
        (b"garbage bytes".to_vec(), 422, "not a WebAssembly binary"),
        (
            b"\0asm\x01\0\0\0".to_vec(),
            422,
            "a core WebAssembly module, not a component",
        ),
        (
            component("rust-caps"),
            422,
            "imports cello:component/kv@0.1.0, which it is not granted",
        ),
        (vec![0u8; 2 << 20], 413, "over the tenant's limit"),
    ];
    for (bytes, status, problem) in refused {
        let reply = push(&host, "acme", "shop", OPERATOR, bytes).await;
        assert_eq!(reply.status, status, "{}", reply.body);
        assert!(
            reply.body.contains(problem),
            "{problem:?} not in {}",
            reply.body
        );
        // Still the same version, on the same warm instance.
        let after = host.get("/t/acme/instance").await;
        assert_eq!(after.status, 200);
        assert_eq!(after.body, before.body);
    }

    // A second component whose routes collide with the first.
    let reply = push(&host, "acme", "copy", OPERATOR, component("testbed")).await;
    assert_eq!(reply.status, 409, "{}", reply.body);
    assert!(
        problems(&reply).contains("route conflict"),
        "{}",
        reply.body
    );
    // Settings a tenant may not use are all listed at once.
    let settings = "[grants]\nkv = true\n[limits]\nmemory-mb = 4096\n\
                    [variables]\nhome = { env = \"HOME\" }\n\
                    [environment]\nHOME = { env = \"HOME\" }\n\
                    [rate-limit]\ncapacity = 5\nperiod-s = 1\n\
                    trusted-proxies = [\"192.0.2.9\"]\n";
    let reply = push_with(&host, "acme", "shop", component("testbed"), settings).await;
    assert_eq!(reply.status, 422, "{}", reply.body);
    let listed = reply.json()["problems"].as_array().unwrap().len();
    assert_eq!(listed, 5, "{}", reply.body);
    for problem in ["[environment] HOME", "[rate-limit] trusted-proxies"] {
        assert!(problems(&reply).contains(problem), "{}", reply.body);
    }
    // A component whose describe() fails, and one whose on-start fails.
    let reply = push(&host, "acme", "broken", OPERATOR, component("bad-describe")).await;
    assert_eq!(reply.status, 422, "{}", reply.body);
    assert!(problems(&reply).contains("describe"), "{}", reply.body);
    let grants = br#"{"grants": {"kv": true, "config": true, "outbound": ["http://127.0.0.1:*"]}}"#;
    let reply = host
        .admin(
            Method::PATCH,
            "/v1/tenants/acme",
            OPERATOR,
            "application/json",
            grants.to_vec(),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let settings = "prefix = \"/caps\"\n[variables]\nfail-startup = \"yes\"\n";
    let reply = push_with(&host, "acme", "caps", component("rust-caps"), settings).await;
    assert_eq!(reply.status, 422, "{}", reply.body);
    assert!(
        problems(&reply).contains("on-start failed"),
        "{}",
        reply.body
    );
    assert_eq!(host.get("/t/acme/caps/startup").await.status, 404);

    assert_eq!(host.get("/t/acme/instance").await.body, before.body);
    assert_eq!(versions(&host, "acme", "shop").await["current"], 1);
}

#[tokio::test]
async fn a_new_version_under_continuous_load_fails_no_request() {
    let host = serving_shop(serde_json::json!({ "requests-per-second": 0 })).await;
    let url = host.url("/t/acme/instance");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut workers = Vec::new();
    for _ in 0..8 {
        let (url, stop) = (url.clone(), stop.clone());
        workers.push(tokio::spawn(async move {
            let client = support::client();
            let (mut ok, mut failed, mut seen) = (0, Vec::new(), std::collections::BTreeSet::new());
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let request = http::Request::get(&url)
                    .body(http_body_util::Full::new(bytes::Bytes::new()))
                    .unwrap();
                let reply = support::send(&client, request).await;
                if reply.status == 200 {
                    ok += 1;
                    seen.insert(reply.body);
                } else {
                    failed.push(format!("{}: {}", reply.status, reply.body));
                }
            }
            (ok, failed, seen)
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    for version in 2..=4 {
        let reply = push(&host, "acme", "shop", OPERATOR, component("testbed")).await;
        assert_eq!(reply.status, 201, "{}", reply.body);
        assert_eq!(reply.json()["version"], version);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (mut ok, mut failed, mut instances) = (0, Vec::new(), std::collections::BTreeSet::new());
    for worker in workers {
        let (n, f, seen) = worker.await.unwrap();
        ok += n;
        failed.extend(f);
        instances.extend(seen);
    }
    assert!(
        failed.is_empty(),
        "{} failed: {:?}",
        failed.len(),
        &failed[..failed.len().min(5)]
    );
    assert!(ok > 100, "only {ok} requests were served");
    // Each version ran on instances of its own.
    assert!(instances.len() >= 4, "instances seen: {instances:?}");
    assert_eq!(versions(&host, "acme", "shop").await["current"], 4);
}

#[tokio::test]
async fn tenants_cannot_reach_each_others_key_values_or_cached_responses() {
    let host = serve(Components::new());
    let grants = serde_json::json!({ "grants": { "kv": true, "config": true, "outbound": ["http://127.0.0.1:*"] } });
    for tenant in ["a", "b"] {
        create_tenant(&host, tenant, grants.clone()).await;
        let reply = push(&host, tenant, "caps", OPERATOR, component("rust-caps")).await;
        assert_eq!(reply.status, 201, "{}", reply.body);
        let reply = push_with(
            &host,
            tenant,
            "tb",
            component("testbed"),
            "prefix = \"/tb\"",
        )
        .await;
        assert_eq!(reply.status, 201, "{}", reply.body);
    }
    for n in 1..=3 {
        let reply = host.post("/t/a/count", "text/plain", "").await;
        assert_eq!(reply.body, n.to_string());
    }
    assert_eq!(host.post("/t/b/count", "text/plain", "").await.body, "1");
    // The response cache: the same route and path in two tenants are two
    // entries; b's first call is a miss that runs b's guest.
    let a_first = host.get("/t/a/tb/cached-count").await;
    assert_eq!(a_first.status, 200);
    for _ in 0..3 {
        assert_eq!(host.get("/t/b/tb/count").await.status, 200);
    }
    assert_eq!(host.get("/t/a/tb/cached-count").await.body, a_first.body);
    let b_first = host.get("/t/b/tb/cached-count").await;
    assert_eq!(
        b_first.header("x-cache"),
        Some("MISS"),
        "{:?}",
        b_first.headers
    );
    assert_ne!(b_first.body, a_first.body);
    assert_eq!(
        host.get("/t/b/tb/cached-count").await.header("x-cache"),
        Some("HIT")
    );
}

#[tokio::test]
async fn tenants_come_back_after_a_restart_and_a_crash_mid_upload_keeps_the_old_version() {
    let host = serve(Components::new());
    create_tenant(&host, "acme", serde_json::json!({})).await;
    let reply = push(&host, "acme", "shop", OPERATOR, component("testbed")).await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    let acme = token(&host, "acme").await;

    // A graceful restart.
    let host = restarted(host.stop()).await;
    assert_eq!(host.get("/t/acme/count").await.status, 200);
    let reply = call(&host, Method::GET, "/v1/tenants/acme", &acme).await;
    assert_eq!(
        reply.status, 200,
        "the token survives a restart: {}",
        reply.body
    );

    // Half an upload of a new version, then the host is killed.
    let admin = host.admin.unwrap();
    let mut stream = std::net::TcpStream::connect(admin).unwrap();
    let body = component("rust-caps");
    write!(
        stream,
        "PUT /v1/tenants/acme/components/shop HTTP/1.1\r\nHost: x\r\n\
         Authorization: Bearer {OPERATOR}\r\nContent-Type: application/wasm\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    stream.write_all(&body[..body.len() / 2]).unwrap();
    stream.flush().unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let host = restarted(host.kill()).await;
    drop(stream);
    assert_eq!(host.get("/t/acme/count").await.status, 200);
    let listed = versions(&host, "acme", "shop").await;
    assert_eq!(listed["current"], 1, "{listed}");
    assert_eq!(listed["versions"].as_array().unwrap().len(), 1, "{listed}");

    // A whole upload, killed while the host validates and writes it: after
    // the restart one version serves, intact, and it is the current one.
    let reply_to = tokio::spawn({
        let request = host_request(&host, component("testbed"));
        async move { support::client().request(request).await.map(|r| r.status()) }
    });
    tokio::time::sleep(Duration::from_millis(30)).await;
    let host = restarted(host.kill()).await;
    let _ = reply_to.await;
    let listed = versions(&host, "acme", "shop").await;
    let current = listed["current"].as_u64().unwrap();
    assert!(current == 1 || current == 2, "{listed}");
    assert_eq!(host.get("/t/acme/count").await.status, 200);
}

fn host_request(host: &Host, bytes: Vec<u8>) -> http::Request<http_body_util::Full<bytes::Bytes>> {
    http::Request::put(format!(
        "http://{}/v1/tenants/acme/components/shop",
        host.admin.unwrap()
    ))
    .header("authorization", format!("Bearer {OPERATOR}"))
    .header("content-type", "application/wasm")
    .body(http_body_util::Full::new(bytes::Bytes::from(bytes)))
    .unwrap()
}

#[tokio::test]
async fn rollback_serves_an_earlier_version_again() {
    let host = serve(Components::new());
    let grants = serde_json::json!({ "grants": { "kv": true, "config": true, "outbound": ["http://127.0.0.1:*"] } });
    create_tenant(&host, "acme", grants).await;
    assert_eq!(
        push(&host, "acme", "app", OPERATOR, component("testbed"))
            .await
            .status,
        201
    );
    assert_eq!(
        push(&host, "acme", "app", OPERATOR, component("rust-caps"))
            .await
            .status,
        201
    );
    assert_eq!(host.get("/t/acme/instance").await.status, 404);
    assert_eq!(host.get("/t/acme/startup").await.status, 200);

    let path = "/v1/tenants/acme/components/app/rollback";
    let reply = call(&host, Method::POST, path, OPERATOR).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json()["version"], 1);
    assert_eq!(host.get("/t/acme/instance").await.status, 200);
    assert_eq!(host.get("/t/acme/startup").await.status, 404);
    assert_eq!(versions(&host, "acme", "app").await["current"], 1);

    // Forward again by number; a version that never was is a 404.
    let body = br#"{"version": 2}"#.to_vec();
    let reply = host
        .admin(Method::POST, path, OPERATOR, "application/json", body)
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(host.get("/t/acme/startup").await.status, 200);
    let body = br#"{"version": 9}"#.to_vec();
    let reply = host
        .admin(Method::POST, path, OPERATOR, "application/json", body)
        .await;
    assert_eq!(reply.status, 404, "{}", reply.body);

    // The rollback is remembered across a restart.
    let reply = call(&host, Method::POST, path, OPERATOR).await;
    assert_eq!(reply.status, 200);
    let host = restarted(host.stop()).await;
    assert_eq!(host.get("/t/acme/instance").await.status, 200);
}

#[tokio::test]
async fn serve_dir_picks_up_added_changed_and_removed_files() {
    let components = Components::new().with("hello-rust");
    let dir = components.path().to_path_buf();
    let host = serve(components);
    assert_eq!(host.get("/count").await.status, 404);

    // Added: written to a temporary name, then renamed into place.
    let place = |name: &str, bytes: &[u8]| {
        let temp = dir.join(format!(".{name}.partial"));
        std::fs::write(&temp, bytes).unwrap();
        std::fs::rename(&temp, dir.join(name)).unwrap();
    };
    place("tb.wasm", &component("testbed"));
    wait_status(&host, "/count", 200).await;

    // Changed to something broken: the old version keeps serving.
    let instance = host.get("/instance").await.body;
    place("tb.wasm", b"not a component");
    host.wait_for_log("not reloaded, the previous version keeps serving")
        .await;
    assert_eq!(host.get("/instance").await.body, instance);

    // Changed: a new prefix in its sidecar moves its routes.
    place("tb.toml", b"prefix = \"/tb\"\n");
    place("tb.wasm", &component("testbed"));
    wait_status(&host, "/tb/count", 200).await;
    assert_eq!(host.get("/count").await.status, 404);

    // Removed.
    std::fs::remove_file(dir.join("tb.wasm")).unwrap();
    wait_status(&host, "/tb/count", 404).await;
    assert_eq!(host.get("/").await.body, "Hello from Rust!");
}

async fn wait_status(host: &Host, path: &str, status: u16) {
    for _ in 0..200 {
        if host.get(path).await.status == status {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{path} never answered {status}; the log:\n{}", host.log());
}

#[tokio::test]
async fn a_flooding_or_looping_tenant_is_limited_alone() {
    let host = serve(Components::new());
    let noisy = serde_json::json!({ "quotas": { "requests-per-second": 5, "timeout-ms": 300 } });
    create_tenant(&host, "noisy", noisy).await;
    create_tenant(&host, "quiet", serde_json::json!({})).await;
    for tenant in ["noisy", "quiet"] {
        let reply = push(&host, tenant, "app", OPERATOR, component("testbed")).await;
        assert_eq!(reply.status, 201, "{}", reply.body);
    }
    let mut limited = 0;
    for _ in 0..30 {
        let reply = host.get("/t/noisy/count").await;
        if reply.status == 429 {
            limited += 1;
            assert!(reply.header("retry-after").is_some());
        }
        assert_eq!(host.get("/t/quiet/count").await.status, 200);
    }
    assert!(limited >= 20, "only {limited} of 30 were limited");

    // A guest that loops is stopped at the tenant's time quota.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let looping = host.spawn_get("/t/noisy/spin");
    assert_eq!(host.get("/t/quiet/count").await.status, 200);
    assert_eq!(looping.await.unwrap().status, 504);

    // The quota on upload: a limit over the tenant's is refused.
    let reply = push_with(
        &host,
        "noisy",
        "app",
        component("testbed"),
        "[limits]\ntimeout-ms = 60000\n",
    )
    .await;
    assert_eq!(reply.status, 422, "{}", reply.body);
    assert!(
        reply.body.contains("over the tenant's quota of 300"),
        "{}",
        reply.body
    );
}

#[tokio::test]
async fn tenants_are_reached_by_host_name_when_a_domain_is_set() {
    let components = Components::new();
    let config = components.path().join("host.toml");
    std::fs::write(&config, "[tenants]\ndomain = \"apps.test\"\n").unwrap();
    let config = config.to_str().unwrap().to_string();
    let host = serve_with(components, &["--config", &config]);
    create_tenant(&host, "acme", serde_json::json!({})).await;
    assert_eq!(
        push(&host, "acme", "app", OPERATOR, component("testbed"))
            .await
            .status,
        201
    );
    for (name, status) in [("acme.apps.test:8080", 200), ("other.apps.test", 404)] {
        let headers = [("host", name)];
        let reply = host.send(Method::GET, "/count", &headers, Vec::new()).await;
        assert_eq!(reply.status, status, "{name}: {}", reply.body);
    }
    assert_eq!(host.get("/t/acme/count").await.status, 200);
}

#[tokio::test]
async fn the_cli_creates_tenants_issues_tokens_and_pushes() {
    let host = serve(Components::new());
    let url = format!("http://{}", host.admin.unwrap());
    let cli = |args: &[&str], token: &str| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_cello-host"))
            .args(args)
            .env("CELLO_ADMIN_URL", &url)
            .env("CELLO_TOKEN", token)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&output.stdout).into_owned()
            + &String::from_utf8_lossy(&output.stderr);
        (output.status.success(), text)
    };
    let (ok, text) = cli(
        &[
            "tenant",
            "create",
            "acme",
            "--quotas",
            r#"{"memory-mb": 64}"#,
        ],
        OPERATOR,
    );
    assert!(ok, "{text}");
    let (ok, text) = cli(&["tenant", "token", "acme"], OPERATOR);
    assert!(ok, "{text}");
    let issued: serde_json::Value = serde_json::from_str(&text).unwrap();
    let token = issued["token"].as_str().unwrap();
    let file = components_dir().join("testbed.wasm");
    let settings = std::env::temp_dir().join(format!("cello-cli-{}.toml", std::process::id()));
    std::fs::write(&settings, "prefix = \"/shop\"\n").unwrap();
    let push = ["push", "--tenant", "acme", "--name", "shop"];
    let settings_arg = ["--settings", settings.to_str().unwrap()];
    let (ok, text) = cli(
        &[&push[..], &settings_arg, &[file.to_str().unwrap()]].concat(),
        token,
    );
    assert!(ok, "{text}");
    assert_eq!(host.get("/t/acme/shop/count").await.status, 200);
    // Refusals are reported with the problems, and a non-zero exit.
    let (ok, text) = cli(&[&push[..], &[settings.to_str().unwrap()]].concat(), token);
    assert!(!ok);
    assert!(text.contains("not a WebAssembly binary"), "{text}");
    let (ok, text) = cli(&["tenant", "delete", "acme"], token);
    assert!(!ok, "a tenant token cannot delete: {text}");

    // A second token; the first, revoked by its id, is refused from then
    // on, by the API and the CLI alike, and the second still works.
    let (ok, text) = cli(&["tenant", "token", "acme"], OPERATOR);
    assert!(ok, "{text}");
    let second: serde_json::Value = serde_json::from_str(&text).unwrap();
    let second = second["token"].as_str().unwrap();
    let id = issued["id"].as_str().unwrap();
    assert_eq!(id.len(), 16, "{issued}");
    let (ok, text) = cli(&["tenant", "tokens", "acme"], token);
    assert!(ok, "{text}");
    let ids: Vec<String> = serde_json::from_str(&text).unwrap();
    assert_eq!(ids.len(), 2, "{text}");
    assert_eq!(ids[0], id);
    let (ok, text) = cli(&["tenant", "revoke", "acme", id], OPERATOR);
    assert!(ok, "{text}");
    let reply = call(&host, Method::GET, "/v1/tenants/acme", token).await;
    assert_eq!(reply.status, 401, "{}", reply.body);
    let (ok, text) = cli(
        &[&push[..], &settings_arg, &[file.to_str().unwrap()]].concat(),
        token,
    );
    assert!(!ok, "a revoked token pushed: {text}");
    let reply = call(&host, Method::GET, "/v1/tenants/acme", second).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let (ok, text) = cli(&["tenant", "revoke", "acme", id], OPERATOR);
    assert!(!ok && text.contains("no token with id"), "{text}");
    // A tenant may revoke its own, its last one too.
    let path = format!("/v1/tenants/acme/tokens/{}", ids[1]);
    let reply = call(&host, Method::DELETE, &path, second).await;
    assert_eq!(reply.status, 204, "{}", reply.body);
    assert_eq!(
        call(&host, Method::GET, "/v1/tenants/acme", second)
            .await
            .status,
        401
    );
    assert_eq!(host.get("/t/acme/shop/count").await.status, 200);

    let (ok, text) = cli(&["tenant", "delete", "acme"], OPERATOR);
    assert!(ok, "{text}");
    assert_eq!(host.get("/t/acme/shop/count").await.status, 404);
    let _ = std::fs::remove_file(settings);
}

#[tokio::test]
async fn a_replaced_version_is_retired_with_its_shutdown_hook() {
    let host = serve(Components::new());
    let grants = serde_json::json!({ "grants": { "kv": true, "config": true, "outbound": ["http://127.0.0.1:*"] } });
    create_tenant(&host, "acme", grants).await;
    let settings = "[variables]\ngreeting = \"hello\"\n[secrets]\napi-token = \"s3cret\"\n";
    let reply = push_with(&host, "acme", "app", component("python-caps"), settings).await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    assert_eq!(host.get("/t/acme/startup").await.status, 200);
    assert_eq!(host.get("/t/acme/kv/shutdown:count").await.status, 404);

    let reply = push_with(&host, "acme", "app", component("python-caps"), settings).await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    // The first version's instances ran their shutdown hook, which counts
    // itself in the key-value store both versions share.
    for _ in 0..100 {
        let reply = host.get("/t/acme/kv/shutdown:count").await;
        if reply.status == 200 {
            let stopped: u32 = reply.json()["value"].as_str().unwrap().parse().unwrap();
            assert!(stopped >= 1, "{}", reply.body);
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "the replaced version never ran on-stop; the log:\n{}",
        host.log()
    );
}

/// Opens an upload to `tenant`'s `name` that announces `length` bytes and
/// sends a few: it holds its place until the returned stream is dropped.
async fn stalled_upload(host: &Host, tenant: &str, name: &str) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt as _;
    let addr = host.admin.expect("an admin listener");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "PUT /v1/tenants/{tenant}/components/{name} HTTP/1.1\r\nhost: {addr}\r\n\
         authorization: Bearer {OPERATOR}\r\ncontent-type: application/wasm\r\n\
         content-length: 1000000\r\n\r\n\0asm"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream
}

/// Uploads in flight are bounded: a tenant with two bodies still arriving
/// is refused a third at once (429, holding nothing), while another
/// tenant's upload goes through; a body that does not arrive within
/// `upload-timeout-s` is a 408, and its place is free again.
#[tokio::test]
async fn uploads_in_flight_are_bounded_per_tenant_and_in_time() {
    use tokio::io::AsyncReadExt as _;
    let config = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(config.path(), "[server]\nupload-timeout-s = 2\n").unwrap();
    let host = serve_with(
        Components::new(),
        &["--config", config.path().to_str().unwrap()],
    );
    create_tenant(&host, "acme", serde_json::json!({})).await;
    create_tenant(&host, "globex", serde_json::json!({})).await;
    let mut stalled = vec![
        stalled_upload(&host, "acme", "a").await,
        stalled_upload(&host, "acme", "b").await,
    ];
    tokio::time::sleep(Duration::from_millis(300)).await;
    let reply = push(&host, "acme", "c", OPERATOR, component("testbed")).await;
    assert_eq!(reply.status, 429, "{}", reply.body);
    assert!(
        reply.body.contains("2 uploads in progress"),
        "{}",
        reply.body
    );
    let reply = push(&host, "globex", "c", OPERATOR, component("testbed")).await;
    assert_eq!(reply.status, 201, "{}", reply.body);

    // The stalled bodies run out of time: 408, and acme may upload again.
    for stream in &mut stalled {
        let mut answer = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer));
        let _ = read.await;
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(answer.contains("did not arrive within 2s"), "{answer}");
    }
    let reply = push(&host, "acme", "c", OPERATOR, component("testbed")).await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    assert_eq!(host.get("/t/acme/count").await.status, 200);
}

/// `bytes` with a custom section of `n` bytes appended: the same
/// component, larger.
fn padded(bytes: Vec<u8>, n: usize) -> Vec<u8> {
    let mut out = bytes;
    let mut size = n + 4; // the name's length byte and "pad"
    out.push(0);
    loop {
        let byte = (size & 0x7f) as u8;
        size >>= 7;
        out.push(if size == 0 { byte } else { byte | 0x80 });
        if size == 0 {
            break;
        }
    }
    out.extend([3, b'p', b'a', b'd']);
    out.resize(out.len() + n, 0);
    out
}

/// A kept version is held to the tenant's size quotas when rolled back to,
/// as an upload is: small current versions, rolled back to large kept
/// ones, would take more than `max-total-mb` otherwise.
#[tokio::test]
async fn a_rollback_past_the_tenants_size_quota_is_refused() {
    let host = serve(Components::new());
    let quotas = serde_json::json!({ "quotas": { "max-total-mb": 1 } });
    create_tenant(&host, "acme", quotas).await;
    let large = padded(component("testbed"), 400 << 10);
    assert_eq!(
        push(&host, "acme", "app", OPERATOR, large).await.status,
        201
    );
    let small = component("testbed");
    assert_eq!(
        push(&host, "acme", "app", OPERATOR, small).await.status,
        201
    );
    let other = component("hello-rust");
    let reply = push_with(&host, "acme", "other", other, "prefix = \"/o\"\n").await;
    assert_eq!(reply.status, 201, "{}", reply.body);

    let path = "/v1/tenants/acme/components/app/rollback";
    let reply = call(&host, Method::POST, path, OPERATOR).await;
    assert_eq!(reply.status, 413, "{}", reply.body);
    assert!(
        problems(&reply).contains("over its limit of 1 MiB in all"),
        "{}",
        reply.body
    );
    assert_eq!(versions(&host, "acme", "app").await["current"], 2);
    assert_eq!(host.get("/t/acme/count").await.status, 200);
    // Without the other component, it fits.
    let reply = call(
        &host,
        Method::DELETE,
        "/v1/tenants/acme/components/other",
        OPERATOR,
    )
    .await;
    assert_eq!(reply.status, 204, "{}", reply.body);
    let reply = call(&host, Method::POST, path, OPERATOR).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json()["version"], 1);
}

/// Stored bytes that are not the version their record names (damaged, or
/// put there by hand) are never served: the component is not restored,
/// saying why, and the tenant's other components are.
#[tokio::test]
async fn stored_bytes_that_do_not_match_their_record_are_not_served() {
    let host = serve(Components::new());
    create_tenant(&host, "acme", serde_json::json!({})).await;
    assert_eq!(
        push(&host, "acme", "shop", OPERATOR, component("testbed"))
            .await
            .status,
        201
    );
    let reply = push_with(
        &host,
        "acme",
        "hi",
        component("hello-rust"),
        "prefix = \"/hi\"\n",
    )
    .await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    let stored = host.tenants_dir().join("acme/components/shop/v1.wasm");
    let components = host.stop();
    std::fs::write(&stored, component("hello-rust")).unwrap();

    let host = serve(components);
    host.wait_for_log("do not match its record").await;
    assert_eq!(
        host.get_until_ok("/t/acme/hi/hello/ann").await.body,
        "Hello, ann!"
    );
    assert_eq!(host.get("/t/acme/count").await.status, 404);
    assert_eq!(host.get("/t/acme/").await.status, 404);
}

/// At most two compiles run at once, and one whose upload timed out keeps
/// its place until it ends: two slow uploads past `compile-timeout-s`
/// leave a third, small one waiting (and timing out) until they are done,
/// after which it compiles at once.
#[tokio::test]
async fn compiles_abandoned_by_their_uploads_hold_their_places_until_they_end() {
    let config = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(config.path(), "[deploys]\ncompile-timeout-s = 2\n").unwrap();
    let args = [
        "--config",
        config.path().to_str().unwrap(),
        "--no-compile-cache",
    ];
    let host = serve_with(Components::new(), &args);
    create_tenant(
        &host,
        "acme",
        serde_json::json!({ "quotas": { "max-component-mb": 64 } }),
    )
    .await;
    create_tenant(&host, "globex", serde_json::json!({})).await;
    let python = component("python-testbed");
    let (one, two) = tokio::join!(
        push(&host, "acme", "one", OPERATOR, python.clone()),
        push(&host, "acme", "two", OPERATOR, python),
    );
    for reply in [one, two] {
        assert_eq!(reply.status, 422, "{}", reply.body);
        assert!(
            reply.body.contains("did not finish within 2 s"),
            "{}",
            reply.body
        );
    }
    // Both compiles go on, holding both places: the small one waits.
    let reply = push(&host, "globex", "shop", OPERATOR, component("testbed")).await;
    assert_eq!(reply.status, 422, "{}", reply.body);
    assert!(
        reply
            .body
            .contains("could not start within 2 s: the host was compiling 2"),
        "{}",
        reply.body
    );
    // Once they are done, it compiles in time.
    let since = std::time::Instant::now();
    loop {
        let reply = push(&host, "globex", "shop", OPERATOR, component("testbed")).await;
        if reply.status == 201 {
            break;
        }
        assert!(since.elapsed() < Duration::from_secs(90), "{}", reply.body);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(host.get("/t/globex/count").await.status, 200);
}
