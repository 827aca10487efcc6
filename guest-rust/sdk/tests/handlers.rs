//! Handlers run natively through the test client: what each extractor
//! reads, what each result answers, and how rejections are answered.

use std::rc::Rc;

use cello::outbound::{Client, Reply, SendError};
use cello::{
    App, BackgroundTasks, Claims, FromRequest, Header, HttpError, Invalid, Json, Kv, Path, Query,
    Request, State, StatusCode,
};
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Deserialize)]
struct Search {
    q: String,
    limit: Option<u32>,
}

#[derive(Deserialize)]
struct Agent {
    user_agent: String,
}

#[test]
fn path_query_and_header_extractors_read_their_parts() {
    let app = App::new("t").get(
        "/users/{id}/posts/{slug}",
        |Path((id, slug)): Path<(u32, String)>,
         Query(search): Query<Search>,
         Header(agent): Header<Agent>| {
            format!(
                "{id} {slug} {} {:?} {}",
                search.q, search.limit, agent.user_agent
            )
        },
    );
    let reply = app
        .test_client()
        .get("/users/7/posts/a%20b?q=x+y&limit=3")
        .header("User-Agent", "curl")
        .send();
    assert_eq!(reply.text(), "7 a b x y Some(3) curl");
}

#[test]
fn every_rejected_argument_is_listed_in_one_422() {
    let app = App::new("t").get(
        "/users/{id}",
        |Path(_id): Path<u32>, Query(_search): Query<Search>, Header(_agent): Header<Agent>| "ok",
    );
    let reply = app.test_client().get("/users/x?limit=many").send();
    assert_eq!(reply.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let detail = reply.json::<Value>()["detail"].clone();
    assert_eq!(
        detail,
        json!([
            {"type": "int_parsing", "loc": ["path", "id"], "msg": "Input should be a valid integer", "input": "x"},
            {"type": "int_parsing", "loc": ["query", "limit"], "msg": "Input should be a valid integer", "input": "many"},
            {"type": "missing", "loc": ["header", "user-agent"], "msg": "Field required", "input": null},
        ])
    );
}

#[test]
fn state_comes_from_an_async_on_start_hook_and_with_state() {
    #[derive(Clone)]
    struct Greeting(&'static str);
    let app = App::new("t")
        .with_state(7u32)
        .on_start(async || Ok::<_, String>(Greeting("hi")))
        .get("/", |State(g): State<Greeting>, State(n): State<u32>| {
            format!("{} {n}", g.0)
        });
    assert_eq!(app.test_client().get("/").send().text(), "hi 7");
}

#[test]
fn a_failing_on_start_hook_answers_503() {
    let app = App::new("t")
        .on_start(|| Err::<(), _>("no database"))
        .get("/", || "never");
    assert_eq!(
        app.test_client().get("/").send().status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
}

#[test]
fn results_answer_as_documented() {
    let app = App::new("t")
        .get("/none", || None::<String>)
        .get("/http-error", || -> Result<String, HttpError> {
            Err(HttpError::new(StatusCode::CONFLICT, "taken"))
        })
        .get("/anyhow", || -> anyhow::Result<String> {
            Err(anyhow::anyhow!("the secret reason"))
        })
        .get("/created", || (StatusCode::CREATED, Json(json!({"id": 1}))))
        .get("/empty", || ())
        .get("/http", || {
            http::Response::builder()
                .status(StatusCode::ACCEPTED)
                .header("x-made-by", "http")
                .body("made")
                .unwrap()
        });
    let client = app.test_client();
    let none = client.get("/none").send();
    assert_eq!(none.status(), StatusCode::NOT_FOUND);
    assert_eq!(none.json::<Value>(), json!({"detail": "Not Found"}));
    let conflict = client.get("/http-error").send();
    assert_eq!(conflict.status(), StatusCode::CONFLICT);
    assert_eq!(conflict.json::<Value>(), json!({"detail": "taken"}));
    let failed = client.get("/anyhow").send();
    assert_eq!(failed.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert!(!failed.text().contains("secret"));
    assert_eq!(client.get("/created").send().status(), StatusCode::CREATED);
    assert_eq!(client.get("/empty").send().status(), StatusCode::NO_CONTENT);
    let made = client.get("/http").send();
    assert_eq!(made.status(), StatusCode::ACCEPTED);
    assert_eq!(made.header("x-made-by"), Some("http"));
    assert_eq!(made.text(), "made");
}

/// A custom extractor that builds on another: the SDK's `Depends`.
struct Owner(String);

impl FromRequest for Owner {
    type Rejection = HttpError;

    async fn from_request(req: &Request) -> Result<Self, HttpError> {
        let Claims(claims) = req.extract::<Claims>().await?;
        match claims["sub"].as_str() {
            Some(sub) => Ok(Owner(sub.to_string())),
            None => Err(HttpError::new(StatusCode::FORBIDDEN, "no subject")),
        }
    }
}

#[test]
fn a_custom_extractor_runs_others_and_answers_its_own_rejection() {
    let app = App::new("t").get("/me", |Owner(name): Owner| name);
    let client = app.test_client();
    assert_eq!(client.get("/me").send().status(), StatusCode::UNAUTHORIZED);
    let reply = client.get("/me").claims(&json!({"sub": "ann"})).send();
    assert_eq!(reply.text(), "ann");
}

#[test]
fn the_old_request_style_still_works_beside_extractors() {
    let app = App::new("t")
        .get("/hello/{name}", |req: Request| {
            format!("Hello, {}!", req.param("name").unwrap_or("you"))
        })
        .get_async("/slow", async |req: Request| req.path.clone())
        .post("/echo", |req: Request| req.json::<Value>().map(Json));
    let client = app.test_client();
    assert_eq!(client.get("/hello/ann").send().text(), "Hello, ann!");
    assert_eq!(client.get("/slow").send().text(), "/slow");
    let bad = client.post("/echo").body("{").send();
    assert_eq!(bad.json::<Value>()["detail"][0]["type"], "json_invalid");
}

#[test]
fn kv_and_background_tasks_use_the_in_memory_store() {
    let app = App::new("t").post(
        "/later/{key}",
        |Path(key): Path<String>, tasks: BackgroundTasks| {
            tasks.spawn(async move {
                Kv.set(&key, "done", None).unwrap();
            });
            "queued"
        },
    );
    let client = app.test_client().with_kv("seed", "x");
    assert_eq!(client.post("/later/job").send().text(), "queued");
    assert_eq!(client.kv_text("job").as_deref(), Some("done"));
    assert_eq!(client.kv_text("seed").as_deref(), Some("x"));
}

#[test]
fn outbound_requests_reach_the_stub() {
    let app = App::new("t").get("/fetch", async |http: Client| {
        match http.get("https://api.example/x").send().await {
            Ok(reply) => reply.text(),
            Err(e) => e.to_string(),
        }
    });
    let seen = Rc::new(std::cell::RefCell::new(String::new()));
    let saw = seen.clone();
    let client = app.test_client().with_outbound(move |req| {
        *saw.borrow_mut() = req.url().to_string();
        Ok::<_, SendError>(Reply::new(StatusCode::OK, "stubbed"))
    });
    assert_eq!(client.get("/fetch").send().text(), "stubbed");
    assert_eq!(*seen.borrow(), "https://api.example/x");
}

#[test]
fn routing_follows_the_host() {
    let app = App::new("t")
        .get("/items/{id}", |Path(id): Path<String>| id)
        .get("/items/new", || "static")
        .delete("/items/{id}", || ());
    let client = app.test_client();
    assert_eq!(client.get("/items/new").send().text(), "static");
    assert_eq!(client.get("/items/3").send().text(), "3");
    assert_eq!(client.head("/items/3").send().bytes(), b"");
    assert_eq!(
        client.get("/nowhere").send().status(),
        StatusCode::NOT_FOUND
    );
    let refused = client.post("/items/3").send();
    assert_eq!(refused.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(refused.header("allow"), Some("DELETE, GET"));
}

#[test]
fn a_sync_handler_whose_extractor_waits_on_the_host_is_a_500() {
    struct Slow;
    impl FromRequest for Slow {
        type Rejection = Invalid;
        async fn from_request(_req: &Request) -> Result<Self, Invalid> {
            Pending.await;
            Ok(Slow)
        }
    }
    /// A future that is never ready on its first poll.
    struct Pending;
    impl std::future::Future for Pending {
        type Output = ();
        fn poll(
            self: std::pin::Pin<&mut Self>,
            _cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<()> {
            std::task::Poll::Pending
        }
    }
    let app = App::new("t").get("/", |_slow: Slow| "never");
    assert_eq!(
        app.test_client().get("/").send().status(),
        StatusCode::INTERNAL_SERVER_ERROR
    );
}

/// As in a component, where the host's sync call blocks the instance for
/// the sleep: the route answers, late.
#[test]
fn a_sync_handler_whose_extractor_sleeps_answers_after_the_sleep() {
    struct Rested(std::time::Duration);
    impl FromRequest for Rested {
        type Rejection = Invalid;
        async fn from_request(_req: &Request) -> Result<Self, Invalid> {
            let started = std::time::Instant::now();
            cello::host::sleep(std::time::Duration::from_millis(30)).await;
            Ok(Rested(started.elapsed()))
        }
    }
    let app = App::new("t").get("/", |Rested(slept): Rested| {
        format!("slept {}", slept.as_millis() >= 30)
    });
    let reply = app.test_client().get("/").send();
    assert_eq!(reply.status(), StatusCode::OK);
    assert_eq!(reply.text(), "slept true");
}

#[test]
fn the_trace_id_is_read_from_a_valid_traceparent_only() {
    let app = App::new("t").get("/", |req: Request| format!("{:?}", req.trace_id()));
    let client = app.test_client();
    let trace = |traceparent: Option<&str>| {
        let request = client.get("/");
        match traceparent {
            Some(value) => request.header("traceparent", value).send().text(),
            None => request.send().text(),
        }
    };
    assert_eq!(
        trace(Some(
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
        )),
        r#"Some("0af7651916cd43dd8448eb211c80319c")"#
    );
    assert_eq!(trace(None), "None");
    for bad in [
        "00-00000000000000000000000000000000-b7ad6b7169203331-01",
        "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",
        "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "00-0af7651916cd43dd8448eb211c80319c",
        "garbage",
    ] {
        assert_eq!(trace(Some(bad)), "None", "{bad}");
    }
}

#[test]
fn request_headers_read_alike_before_and_after_the_map_is_built() {
    let app = App::new("t").get("/", |mut req: Request| {
        // Read from the host's list, before any map exists.
        let before = (
            req.header("x-token").map(str::to_owned),
            req.header("X-TOKEN").map(str::to_owned),
            req.header("x-name").map(str::to_owned),
            req.header("x-missing").map(str::to_owned),
        );
        // The map, built on first use, then changed through it.
        let all: Vec<String> = req
            .headers
            .get_all("x-token")
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect();
        req.headers.insert("x-added", "yes".parse().unwrap());
        let after = (
            req.header("x-token").map(str::to_owned),
            req.header("x-name").map(str::to_owned),
            req.header("x-added").map(str::to_owned),
        );
        format!("{before:?} {all:?} {after:?}")
    });
    let reply = app
        .test_client()
        .get("/")
        .header("X-Token", "a")
        .header("x-token", "b")
        .header("x-name", "Zoë")
        .send();
    assert_eq!(
        reply.text(),
        r#"(Some("a"), Some("a"), None, None) ["a", "b"] (Some("a"), None, Some("yes"))"#
    );
}
