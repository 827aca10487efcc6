//! A Rust guest that uses the capabilities: key-value, config, outbound
//! HTTP, a startup hook and background tasks, each as a handler argument.

use std::time::Duration;

use cello::outbound::Client;
use cello::sse::{Event, KeepAlive, Sse};
use cello::{
    App, BackgroundTasks, Config, Kv, KvError, Path, Query, Response, StatusCode,
    StreamingResponse, config, kv,
};
use futures_util::Stream;
use serde::Deserialize;

#[derive(Deserialize)]
struct Fetch {
    #[serde(default)]
    url: String,
}

async fn fetch(http: Client, Query(fetch): Query<Fetch>) -> Response {
    match http.get(&fetch.url).send().await {
        Ok(reply) => Response::text(format!("{} {}", reply.status.as_u16(), reply.text())),
        Err(error) => {
            Response::text(format!("error: {error}")).with_status(StatusCode::BAD_GATEWAY)
        }
    }
}

/// A sync route whose stream awaits outbound HTTP: a sync call cannot
/// suspend, so the request blocks the instance and the body goes whole.
fn fetch_in_stream(http: Client, Query(fetch): Query<Fetch>) -> StreamingResponse {
    let body = futures_util::stream::once(async move {
        match http.get(&fetch.url).send().await {
            Ok(reply) => reply.status.as_u16().to_string(),
            Err(error) => format!("error: {error}"),
        }
    });
    StreamingResponse::new(body)
}

/// The same as events, keep-alive on: the keep-alive must not tick where
/// nothing can suspend (it blocked, a ping at a time, until the route's
/// timeout).
fn fetch_in_events(http: Client, Query(fetch): Query<Fetch>) -> Sse<impl Stream<Item = Event>> {
    let events = futures_util::stream::once(async move {
        let status = http.get(&fetch.url).send().await.map(|r| r.status.as_u16());
        Event::default().data(format!("{status:?}"))
    });
    Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_millis(300)))
}

fn later(Path(key): Path<String>, tasks: BackgroundTasks) -> &'static str {
    tasks.spawn(async move {
        cello::host::sleep(Duration::from_millis(300)).await;
        let _ = kv::set(&key, "written in the background", None);
    });
    "queued"
}

fn read(Path(key): Path<String>, kv: Kv) -> Response {
    match kv.get_text(&key) {
        Ok(Some(value)) => Response::text(value),
        Ok(None) => Response::text("absent").with_status(StatusCode::NOT_FOUND),
        Err(error) => Response::text(error.0).with_status(StatusCode::INTERNAL_SERVER_ERROR),
    }
}

fn write(Path(key): Path<String>, kv: Kv, body: String) -> Response {
    match kv.set(&key, body, None) {
        Ok(()) => Response::text("stored"),
        Err(error) => Response::text(error.0).with_status(StatusCode::INSUFFICIENT_STORAGE),
    }
}

fn app() -> App {
    App::new("rust-caps")
        .on_start(|| {
            if config::get("fail-startup").as_deref() == Some("yes") {
                return Err(KvError("the sidecar asked this instance to fail".into()));
            }
            kv::set("startup", "set by on_start", None)
        })
        .get("/startup", |kv: Kv| {
            kv.get_text("startup").map(|v| v.unwrap_or_default())
        })
        .post("/count", |kv: Kv| {
            kv.increment("count", 1).map(|n| n.to_string())
        })
        .get("/config", |config: Config| {
            let greeting = config.get("greeting").unwrap_or_default();
            let secret = config.secret("api-token");
            format!(
                "{greeting} {secret:?} {}",
                secret.as_ref().map_or(0, |s| s.reveal().len())
            )
        })
        .get("/fetch", fetch)
        .get("/fetch-in-stream", fetch_in_stream)
        .get("/fetch-in-events", fetch_in_events)
        .post("/later/{key}", later)
        .get("/kv/{key}", read)
        .put("/kv/{key}", write)
        .delete("/kv/{key}", |Path(key): Path<String>, kv: Kv| {
            kv.delete(&key).map(|gone| gone.to_string())
        })
}

cello::export_app!(app);
