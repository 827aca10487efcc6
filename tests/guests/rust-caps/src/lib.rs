//! A Rust guest that uses the capabilities: key-value, config, outbound
//! HTTP, a startup hook and background tasks.

use std::time::Duration;

use cello::{App, Request, Response, background, config, http, kv};

fn app() -> App {
    App::new("rust-caps")
        .on_start(|| {
            if config::get("fail-startup").as_deref() == Some("yes") {
                return Err("the sidecar asked this instance to fail".into());
            }
            kv::set("startup", "set by on_start", None)
        })
        .get("/startup", |_req: Request| {
            kv::get_text("startup").map(|v| v.unwrap_or_default())
        })
        .post("/count", |_req: Request| {
            kv::increment("count", 1).map(|n| n.to_string())
        })
        .get("/config", |_req: Request| {
            let greeting = config::get("greeting").unwrap_or_default();
            let secret = config::secret("api-token");
            format!(
                "{greeting} {secret:?} {}",
                secret.as_ref().map_or(0, |s| s.reveal().len())
            )
        })
        .get_async("/fetch", async |req: Request| {
            let url = req.query_param("url").unwrap_or_default();
            match http::get(&url).await {
                Ok(reply) => Response::text(format!("{} {}", reply.status, reply.text())),
                Err(error) => Response::text(format!("error: {error}")).with_status(502),
            }
        })
        .post("/later/{key}", |req: Request| {
            let key = req.param("key").unwrap_or("later").to_string();
            background::spawn(&req, async move {
                cello::host::sleep(Duration::from_millis(300)).await;
                let _ = kv::set(&key, "written in the background", None);
            });
            "queued"
        })
        .get("/kv/{key}", |req: Request| {
            match kv::get_text(req.param("key").unwrap_or_default()) {
                Ok(Some(value)) => Response::text(value),
                Ok(None) => Response::text("absent").with_status(404),
                Err(error) => Response::text(error).with_status(500),
            }
        })
        .put("/kv/{key}", |req: Request| {
            match kv::set(req.param("key").unwrap_or_default(), req.text(), None) {
                Ok(()) => Response::text("stored"),
                Err(error) => Response::text(error).with_status(507),
            }
        })
        .delete("/kv/{key}", |req: Request| {
            kv::delete(req.param("key").unwrap_or_default()).map(|gone| gone.to_string())
        })
}

cello::export_app!(app);
