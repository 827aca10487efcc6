//! Routes that let the tests observe the host from inside a guest.

use std::cell::Cell;
use std::hash::{BuildHasher, RandomState};
use std::time::Duration;

use cello::{App, Cache, RateLimit, Request, Response, StatusCode};

thread_local! {
    /// Random per instance: every instance has its own linear memory.
    static INSTANCE_ID: u64 = RandomState::new().hash_one(0u8);
    static CALLS: Cell<u64> = const { Cell::new(0) };
    static GUARDED: Cell<u64> = const { Cell::new(0) };
}

fn instance_id() -> String {
    format!("{:016x}", INSTANCE_ID.with(|id| *id))
}

/// Runs on the CPU for `ms` without returning to the host.
fn busy(ms: u64) -> u64 {
    let start = std::time::Instant::now();
    let mut n = 0u64;
    while start.elapsed() < Duration::from_millis(ms) {
        n = std::hint::black_box(n.wrapping_add(1));
    }
    n
}

fn ms(req: &Request) -> u64 {
    req.param("ms").and_then(|v| v.parse().ok()).unwrap_or(100)
}

/// The app, with `MANY_ROUTES` more routes (`/many/0`...) when its
/// environment names a number.
fn app() -> App {
    let many: usize = std::env::var("MANY_ROUTES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    (0..many).fold(routes(), |app, i| {
        app.get(&format!("/many/{i}"), |_req: Request| "many")
    })
}

fn routes() -> App {
    App::new("testbed")
        // Awaits the host for `ms` and names the instance that served it.
        .get_async("/wait/{ms}", async |req: Request| {
            let ms = req.param("ms").and_then(|v| v.parse().ok()).unwrap_or(100);
            cello::host::sleep(Duration::from_millis(ms)).await;
            instance_id()
        })
        .get("/instance", |_req: Request| instance_id())
        // Middleware: guarded and rate-limited routes, and what reached the guest.
        .get("/editor", |req: Request| {
            GUARDED.with(|c| c.set(c.get() + 1));
            format!("hello {}", req.user().unwrap_or_default())
        })
        .roles(&["editor"])
        .get("/scoped", |_req: Request| "scoped")
        .scopes(&["items:write"])
        .get("/guarded-calls", |_req: Request| {
            format!("{}", GUARDED.with(|c| c.get()))
        })
        .get("/claims", |req: Request| {
            req.claims_json.clone().unwrap_or_else(|| "none".into())
        })
        .get("/limited", |_req: Request| "limited")
        .rate_limit(RateLimit::token_bucket(2, 60))
        // One budget for every caller of the tenant's component.
        .get("/tenant-limited", || "tenant-limited")
        .rate_limit(RateLimit::token_bucket(2, 60).per_tenant())
        .get("/big/{n}", |req: Request| {
            let n = req.param("n").and_then(|v| v.parse().ok()).unwrap_or(0);
            "cello ".repeat(n)
        })
        // Counts calls on this instance, to observe reuse.
        .get("/count", |_req: Request| {
            let n = CALLS.with(|c| {
                c.set(c.get() + 1);
                c.get()
            });
            format!("{n}")
        })
        .get("/trap", |_req: Request| -> Response {
            panic!("the testbed was asked to trap")
        })
        .get_async("/trap-async", async |_req: Request| -> Response {
            panic!("the testbed was asked to trap in an async handler")
        })
        .get("/spin", |_req: Request| -> Response {
            loop {
                std::hint::black_box(busy(1000));
            }
        })
        .get_async("/spin-async", async |_req: Request| -> Response {
            loop {
                std::hint::black_box(busy(1000));
            }
        })
        .get("/busy/{ms}", |req: Request| format!("{}", busy(ms(&req))))
        // An async handler that hogs its event loop instead of awaiting.
        .get_async("/block/{ms}", async |req: Request| {
            format!("{}", busy(ms(&req)))
        })
        // Allocates until memory runs out, which aborts: a trap.
        .get("/hog", |_req: Request| {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                hoard.push(vec![1u8; 8 << 20]);
                std::hint::black_box(&hoard);
            }
            #[allow(unreachable_code)]
            Response::new(StatusCode::OK)
        })
        // Writes `mb` MiB in one step no epoch tick interrupts (a
        // `memory.fill`, after growing memory by as much).
        .get("/fill/{mb}", |req: Request| {
            let mb: usize = req.param("mb").and_then(|v| v.parse().ok()).unwrap_or(1);
            let filled = vec![1u8; mb << 20];
            format!("{}", std::hint::black_box(&filled).len())
        })
        // Holds `n` host resources (WASI pollables) at once.
        .get("/resources/{n}", |req: Request| {
            let n: u64 = req.param("n").and_then(|v| v.parse().ok()).unwrap_or(1);
            let held: Vec<_> = (0..n)
                .map(|_| wasip2::clocks::monotonic_clock::subscribe_duration(1))
                .collect();
            format!("{}", held.len())
        })
        // The call count, cached: a hit shows the count of the call that
        // filled the entry.
        .get("/cached-count", |_req: Request| {
            let n = CALLS.with(|c| {
                c.set(c.get() + 1);
                c.get()
            });
            format!("{n}")
        })
        .cached(Cache::ttl(60).tags(&["counts"]))
        .get("/bad-status", |_req: Request| {
            Response::default().with_unchecked_status(42)
        })
        // `n` response headers, `x-h-0` to `x-h-{n-1}`.
        .get("/headers/{n}", |req: Request| {
            let n: usize = req.param("n").and_then(|v| v.parse().ok()).unwrap_or(1);
            (0..n).fold(Response::default(), |response, i| {
                response.with_header(format!("x-h-{i}"), i.to_string())
            })
        })
        // `n` response headers of `kb` KiB each, cached.
        .get("/big-headers/{n}/{kb}", |req: Request| {
            let n: usize = req.param("n").and_then(|v| v.parse().ok()).unwrap_or(1);
            let kb: usize = req.param("kb").and_then(|v| v.parse().ok()).unwrap_or(1);
            let value = "v".repeat(kb << 10);
            (0..n).fold(Response::default(), |response, i| {
                response.with_header(format!("x-big-{i}"), value.clone())
            })
        })
        .cached(Cache::ttl(60).tags(&["big"]))
        .route(&[], "/any", |req: Request| req.method.to_string())
        .get("/trace-id", |req: Request| {
            req.trace_id().unwrap_or("none").to_string()
        })
        // Every part of the request as the handler sees it, a line each.
        .route(&[], "/parts/{name}", |req: Request| {
            let mut lines = vec![
                format!("method={}", req.method),
                format!("path={}", req.path),
                format!("query={}", req.query),
                format!("name={}", req.param("name").unwrap_or("-")),
                format!("request-id={}", req.request_id),
                format!("client={}", req.client_addr),
                format!("tenant={:?}", req.tenant),
                format!("claims={:?}", req.claims_json),
                format!("body={}", req.body.len()),
            ];
            for (name, value) in req.headers.iter() {
                if name.as_str().starts_with("x-") {
                    lines.push(format!("{name}={}", value.to_str().unwrap_or("?")));
                }
            }
            lines.join("\n")
        })
        .post("/echo", |req: Request| {
            let content_type = req
                .header("content-type")
                .unwrap_or("application/octet-stream")
                .to_string();
            Response::new(StatusCode::OK)
                .with_header("content-type", &content_type)
                .with_body(req.body)
        })
}

cello::export_app!(app);
