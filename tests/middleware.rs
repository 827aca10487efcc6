//! The native middleware around components: CORS, JWT auth with roles and
//! scopes, rate limits, compression, security headers — over real HTTP,
//! against real guests.

use crate::support;

use std::io::Read;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::Method;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use support::{Components, Host};

const SECRET: &str = "a-test-secret-of-enough-length";

/// `sidecar` for the testbed, and a host config, served together.
fn serve(sidecar: &str, host_config: &str) -> Host {
    let components = Components::new()
        .with_sidecar("testbed", sidecar)
        .with_sidecar("python-testbed", "prefix = \"/py\"\n")
        .with_file("host-config.toml", host_config.as_bytes());
    let config = components.path().join("host-config.toml");
    components.serve_with(&["--config", config.to_str().unwrap()])
}

fn auth_config() -> String {
    format!(
        "[auth]\nalgorithm = \"HS256\"\nsecret = \"{SECRET}\"\nissuer = \"https://auth.test\"\naudience = \"cello\"\nleeway-s = 0\n"
    )
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn token_with(claims: Value, secret: &str) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

fn claims(extra: Value) -> Value {
    let mut claims = json!({
        "sub": "ada",
        "iss": "https://auth.test",
        "aud": "cello",
        "exp": now() + 600,
        "roles": ["editor"],
        "scope": "items:read items:write",
    });
    claims
        .as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    claims
}

async fn get_with_token(host: &Host, path: &str, token: &str) -> support::Reply {
    let bearer = format!("Bearer {token}");
    host.send(Method::GET, path, &[("authorization", &bearer)], vec![])
        .await
}

#[tokio::test]
async fn valid_expired_wrongly_signed_and_wrong_audience_tokens() {
    let host = serve("", &auth_config());
    let valid = token_with(claims(json!({})), SECRET);
    let reply = get_with_token(&host, "/editor", &valid).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body, "hello ada");
    // The verified claims reach the guest.
    let seen: Value =
        serde_json::from_str(&get_with_token(&host, "/claims", &valid).await.body).unwrap();
    assert_eq!(seen["sub"], "ada");
    assert_eq!(host.get("/claims").await.body, "none");

    for (token, why) in [
        (
            token_with(claims(json!({"exp": now() - 60})), SECRET),
            "expired",
        ),
        (
            token_with(claims(json!({})), "another-secret-of-enough-length"),
            "signature",
        ),
        (
            token_with(claims(json!({"aud": "someone-else"})), SECRET),
            "audience",
        ),
        ("not.a.token".to_string(), "malformed"),
    ] {
        let reply = get_with_token(&host, "/editor", &token).await;
        assert_eq!(reply.status, 401, "{why}: {}", reply.body);
        let challenge = reply.header("www-authenticate").unwrap();
        assert!(
            challenge.starts_with("Bearer realm=\"cello\""),
            "{challenge}"
        );
        assert!(reply.body.contains(why), "{why} not in {}", reply.body);
    }
    let reply = host.get("/editor").await;
    assert_eq!(reply.status, 401);
    assert!(reply.header("www-authenticate").is_some());
}

#[tokio::test]
async fn a_token_without_the_configured_audience_or_issuer_is_refused() {
    let host = serve("", &auth_config());
    for (claim, word) in [("aud", "\"aud\""), ("iss", "\"iss\"")] {
        let mut without = claims(json!({}));
        without.as_object_mut().unwrap().remove(claim);
        let token = token_with(without, SECRET);
        // A role-guarded route, and one that only reads the claims.
        for path in ["/editor", "/claims"] {
            let reply = get_with_token(&host, path, &token).await;
            assert_eq!(reply.status, 401, "no {claim} on {path}: {}", reply.body);
            let detail = reply.json()["detail"].as_str().unwrap().to_owned();
            assert!(detail.contains(word), "{detail}");
        }
    }
    let valid = token_with(claims(json!({})), SECRET);
    assert_eq!(get_with_token(&host, "/editor", &valid).await.status, 200);
}

#[tokio::test]
async fn roles_and_scopes_are_checked_before_the_guest_runs() {
    let host = serve("", &auth_config());
    let reader = token_with(
        claims(json!({"roles": ["reader"], "scope": "items:read"})),
        SECRET,
    );
    for path in ["/editor", "/scoped"] {
        let reply = get_with_token(&host, path, &reader).await;
        assert_eq!(reply.status, 403, "{}", reply.body);
    }
    assert!(
        get_with_token(&host, "/editor", &reader)
            .await
            .body
            .contains("\\\"editor\\\"")
    );
    // The guest never saw the refused calls.
    assert_eq!(host.get("/guarded-calls").await.body, "0");
    let editor = token_with(claims(json!({})), SECRET);
    assert_eq!(get_with_token(&host, "/scoped", &editor).await.status, 200);
    assert_eq!(get_with_token(&host, "/editor", &editor).await.status, 200);
    assert_eq!(host.get("/guarded-calls").await.body, "1");

    // The Python SDK's RoleGuard is enforced the same way, and its claims
    // reach `request.user`.
    let reply = get_with_token(&host, "/py/py-editor", &reader).await;
    assert_eq!(reply.status, 403);
    let reply = get_with_token(&host, "/py/py-editor", &editor).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json(), json!({"user": "ada", "roles": ["editor"]}));
}

#[tokio::test]
async fn es256_keys_and_jwks_files_verify_tokens() {
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    let public = fixtures.join("es256-public.pem");
    let private = std::fs::read(fixtures.join("es256-private.pem")).unwrap();
    let sidecar = format!(
        "[auth]\nalgorithm = \"ES256\"\npublic-key-file = \"{}\"\n",
        public.display()
    );
    let host = serve(&sidecar, "");
    let token = jsonwebtoken::encode(
        &Header::new(Algorithm::ES256),
        &json!({"sub": "eve", "exp": now() + 600, "roles": ["editor"]}),
        &EncodingKey::from_ec_pem(&private).unwrap(),
    )
    .unwrap();
    assert_eq!(
        get_with_token(&host, "/editor", &token).await.body,
        "hello eve"
    );
    let forged = token_with(json!({"sub": "eve", "exp": now() + 600}), SECRET);
    assert_eq!(get_with_token(&host, "/editor", &forged).await.status, 401);

    // A JWKS file: keys picked by `kid`.
    let jwks = json!({"keys": [{
        "kty": "oct", "kid": "k1", "alg": "HS256",
        "k": base64url(SECRET.as_bytes()),
    }]});
    let components = Components::new().with_file("jwks.json", jwks.to_string().as_bytes());
    let sidecar = format!(
        "[auth]\nalgorithm = \"HS256\"\njwks-file = \"{}\"\n",
        components.path().join("jwks.json").display()
    );
    let host = components.with_sidecar("testbed", &sidecar).serve();
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("k1".into());
    let token = jsonwebtoken::encode(
        &header,
        &json!({"sub": "kid", "exp": now() + 600, "roles": ["editor"]}),
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    assert_eq!(
        get_with_token(&host, "/editor", &token).await.body,
        "hello kid"
    );
}

fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().fold(0u32, |n, b| n << 8 | u32::from(*b)) << (8 * (3 - chunk.len()));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

#[tokio::test]
async fn cors_preflights_are_answered_by_the_host_and_responses_carry_the_headers() {
    let cors = "[cors]\nallow-origins = [\"https://app.example\"]\nallow-methods = [\"GET\", \"POST\"]\nallow-headers = [\"content-type\", \"authorization\"]\nmax-age-s = 300\n";
    let host = serve("", cors);
    let reply = host
        .send(
            Method::OPTIONS,
            "/count",
            &[
                ("origin", "https://app.example"),
                ("access-control-request-method", "POST"),
                ("access-control-request-headers", "content-type"),
            ],
            vec![],
        )
        .await;
    assert!(reply.status < 300, "{} {}", reply.status, reply.body);
    assert_eq!(
        reply.header("access-control-allow-origin"),
        Some("https://app.example")
    );
    assert!(
        reply
            .header("access-control-allow-methods")
            .unwrap()
            .contains("POST")
    );
    assert_eq!(reply.header("access-control-max-age"), Some("300"));
    // The preflight did not reach the guest: its counter starts at 1.
    let reply = host
        .send(
            Method::GET,
            "/count",
            &[("origin", "https://app.example")],
            vec![],
        )
        .await;
    assert_eq!(reply.body, "1");
    assert_eq!(
        reply.header("access-control-allow-origin"),
        Some("https://app.example")
    );
    let reply = host
        .send(
            Method::GET,
            "/count",
            &[("origin", "https://evil.example")],
            vec![],
        )
        .await;
    assert_eq!(reply.header("access-control-allow-origin"), None);
}

#[tokio::test]
async fn rate_limits_refuse_with_429_per_key_and_refill() {
    // The route's own limit: a bucket of 2 per minute, per client address;
    // the host believes X-Forwarded-For from loopback here.
    let host = serve(
        "[rate-limit]\nkind = \"sliding-window\"\ncapacity = 1000\nperiod-s = 1\ntrusted-proxies = [\"127.0.0.1\"]\n",
        "",
    );
    let from = |ip: &'static str| [("x-forwarded-for", ip)];
    for expected in ["1", "0"] {
        let reply = host
            .send(Method::GET, "/limited", &from("10.0.0.1"), vec![])
            .await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.header("ratelimit-remaining"), Some(expected));
        assert_eq!(reply.header("ratelimit-limit"), Some("2"));
    }
    let reply = host
        .send(Method::GET, "/limited", &from("10.0.0.1"), vec![])
        .await;
    assert_eq!(reply.status, 429, "{}", reply.body);
    assert!(reply.header("retry-after").unwrap().parse::<u64>().unwrap() >= 1);
    assert_eq!(reply.header("ratelimit-remaining"), Some("0"));
    // Another client has a bucket of its own.
    let reply = host
        .send(Method::GET, "/limited", &from("10.0.0.2"), vec![])
        .await;
    assert_eq!(reply.status, 200);

    // The Python SDK's per-route sliding window: one per minute.
    assert_eq!(host.get("/py/py-limited").await.status, 200);
    assert_eq!(host.get("/py/py-limited").await.status, 429);
}

#[tokio::test]
async fn a_sliding_window_refills_as_it_slides() {
    let host = serve(
        "[rate-limit]\nkind = \"sliding-window\"\ncapacity = 2\nperiod-s = 1\n",
        "",
    );
    assert_eq!(host.get("/count").await.status, 200);
    assert_eq!(host.get("/count").await.status, 200);
    let refused = host.get("/count").await;
    assert_eq!(refused.status, 429);
    assert_eq!(refused.header("retry-after"), Some("1"));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(host.get("/count").await.status, 200);
    // The guest ran for the allowed requests only.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(host.get("/count").await.body, "4");
}

#[tokio::test]
async fn large_responses_are_compressed_and_decode_to_the_original() {
    let host = serve("", "");
    let plain = host.get("/big/1000").await;
    assert_eq!(plain.header("content-encoding"), None);
    let reply = host
        .send(
            Method::GET,
            "/big/1000",
            &[("accept-encoding", "gzip")],
            vec![],
        )
        .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-encoding"), Some("gzip"));
    let mut decoded = String::new();
    flate2::read::GzDecoder::new(reply.bytes.as_slice())
        .read_to_string(&mut decoded)
        .unwrap();
    assert_eq!(decoded, "cello ".repeat(1000));
    // Small bodies go out as they are.
    let small = host
        .send(
            Method::GET,
            "/big/3",
            &[("accept-encoding", "gzip")],
            vec![],
        )
        .await;
    assert_eq!(small.header("content-encoding"), None);
    assert_eq!(small.body, "cello cello cello ");
}

#[tokio::test]
async fn security_headers_and_the_request_id_come_back() {
    let host = serve("", "");
    let reply = host
        .send(
            Method::GET,
            "/count",
            &[("x-request-id", "abc-123")],
            vec![],
        )
        .await;
    assert_eq!(reply.header("x-request-id"), Some("abc-123"));
    assert_eq!(reply.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(reply.header("x-frame-options"), Some("DENY"));
    assert_eq!(reply.header("referrer-policy"), Some("no-referrer"));
}

#[test]
fn bad_middleware_config_names_the_file_and_field() {
    let output = Components::new()
        .with_sidecar("testbed", "[auth]\nalgorithm = \"HS999\"\nsecret = \"x\"\n")
        .with_as(
            "testbed",
            "other",
            Some("prefix = \"/o\"\n[auth]\nalgorithm = \"RS256\"\npublic-key-file = \"missing.pem\"\n"),
        )
        .check();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(!output.status.success());
    assert!(
        stdout.contains("testbed.toml: [auth] algorithm: unknown algorithm \"HS999\""),
        "{stdout}"
    );
    assert!(
        stdout.contains("other.toml: [auth] public-key-file: cannot read"),
        "{stdout}"
    );
    assert!(stdout.contains("missing.pem"), "{stdout}");
}

#[tokio::test]
async fn the_access_log_has_a_structured_line_per_request() {
    let components = Components::new()
        .with("testbed")
        .with_file("host-config.toml", b"[access-log]\nenabled = true\n");
    let config = components.path().join("host-config.toml");
    let host =
        components.serve_with(&["--config", config.to_str().unwrap(), "--log-format", "json"]);
    host.send(
        Method::GET,
        "/count",
        &[("x-request-id", "logged-1")],
        vec![],
    )
    .await;
    let log = host.wait_for_log("logged-1").await;
    let line: Value = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|l| l["target"] == "access")
        .unwrap_or_else(|| panic!("no access line in:\n{log}"));
    let fields = &line["fields"];
    assert_eq!(fields["method"], "GET");
    assert_eq!(fields["path"], "/count");
    assert_eq!(fields["status"], 200);
    assert_eq!(fields["bytes"], 1);
    assert_eq!(fields["component"], "testbed");
    assert_eq!(fields["route"], "/count");
    assert_eq!(fields["request_id"], "logged-1");
    assert!(fields["duration_us"].as_u64().is_some());
}

const CAPS_GRANTS: &str =
    "[grants]\nkv = true\nconfig = true\noutbound = [\"http://127.0.0.1:*\"]\n";

async fn preflight(host: &Host, origin: &str) -> support::Reply {
    host.send(
        Method::OPTIONS,
        "/startup",
        &[("origin", origin), ("access-control-request-method", "GET")],
        vec![],
    )
    .await
}

#[tokio::test]
async fn an_apps_own_cors_and_logging_wishes_are_honoured_unless_the_operator_overrides() {
    // python-caps calls app.enable_cors(["https://py.example"]) and
    // app.enable_logging().
    let host = Components::new()
        .with_sidecar("python-caps", CAPS_GRANTS)
        .serve_with(&["--log-format", "json"]);
    let reply = preflight(&host, "https://py.example").await;
    assert_eq!(
        reply.header("access-control-allow-origin"),
        Some("https://py.example"),
        "{}",
        host.log()
    );
    host.send(
        Method::GET,
        "/config",
        &[("x-request-id", "wish-1")],
        vec![],
    )
    .await;
    let log = host.wait_for_log("wish-1").await;
    assert!(
        log.lines()
            .any(|l| l.contains(r#""target":"access""#) && l.contains("wish-1"))
    );

    // The sidecar's own [cors] wins over the app's.
    let sidecar = format!("{CAPS_GRANTS}[cors]\nallow-origins = [\"https://ops.example\"]\n");
    let host = Components::new()
        .with_sidecar("python-caps", &sidecar)
        .serve();
    assert_eq!(
        preflight(&host, "https://py.example")
            .await
            .header("access-control-allow-origin"),
        None
    );
    assert_eq!(
        preflight(&host, "https://ops.example")
            .await
            .header("access-control-allow-origin"),
        Some("https://ops.example")
    );

    // And the host config can refuse the wish outright.
    let components = Components::new()
        .with_sidecar("python-caps", CAPS_GRANTS)
        .with_file("host-config.toml", b"[app-policy]\ncors = false\n");
    let config = components.path().join("host-config.toml");
    let host = components.serve_with(&["--config", config.to_str().unwrap()]);
    let reply = preflight(&host, "https://py.example").await;
    assert_eq!(reply.header("access-control-allow-origin"), None);
    assert_eq!(reply.status, 405);
}

#[test]
fn a_bad_host_config_table_stops_the_start_naming_the_config_file() {
    let components = Components::new().with("testbed").with_file(
        "host-config.toml",
        b"[rate-limit]\nkind = \"leaky\"\ncapacity = 1\nperiod-s = 1\n",
    );
    let config = components.path().join("host-config.toml");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_cello-host"))
        .arg("check")
        .arg(components.path())
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("host-config.toml"), "{stderr}");
    assert!(
        stderr.contains("[rate-limit] kind: \"leaky\" is not token-bucket or sliding-window"),
        "{stderr}"
    );
}
