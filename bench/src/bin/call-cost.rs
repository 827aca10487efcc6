//! What one call on a `def` route costs the host with no HTTP around it:
//! the instance pool, the guest call through wasmtime, and the guest. Run
//! by `make bench` on the Rust hello, next to the whole request's CPU cost.
//!
//! Usage: `call-cost COMPONENT STATE_DIR [CALLS] [--event-loop]`; prints
//! microseconds per call, the best of a few rounds of CALLS calls (100,000
//! unless given; `run.py instructions` runs it with two counts under
//! callgrind and takes the difference, leaving out start-up). With
//! `--event-loop` the same route is called as an `async def` route's
//! would be: `handle-async`, on an instance's event loop.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context as _;
use cello_host::bindings::Request;
use cello_host::bindings::cello::component::types::Context;
use cello_host::config::HostConfig;
use cello_host::host::HostBuilder;
use cello_host::loader::LoadedKind;

// The host's allocator, so that a call costs here what it does there.
#[global_allocator]
static ALLOCATOR: cello_host::allocator::Allocator = cello_host::allocator::Allocator;

const WARMUP: usize = 20_000;
const CALLS: usize = 100_000;
const ROUNDS: usize = 5;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let (flags, args): (Vec<_>, Vec<_>) = std::env::args_os()
        .skip(1)
        .partition(|a| a == "--event-loop");
    let event_loop = !flags.is_empty();
    let mut args = args.into_iter();
    let usage = "usage: call-cost COMPONENT STATE_DIR [CALLS] [--event-loop]";
    let component = PathBuf::from(args.next().context(usage)?);
    let state = PathBuf::from(args.next().context(usage)?);
    let calls = match args.next() {
        Some(calls) => calls.to_str().and_then(|c| c.parse().ok()).context(usage)?,
        None => CALLS,
    };
    let host = HostBuilder::new(HostConfig::default(), state).build()?;
    let loaded = host
        .loader()
        .load_file(&component)
        .await
        .map_err(anyhow::Error::msg)?;
    let LoadedKind::App(app, manifest) = &loaded.kind else {
        anyhow::bail!("{} is not an app component", component.display());
    };
    let route = manifest
        .routes
        .iter()
        .position(|r| r.path == "/" && !r.is_async)
        .context("the component has no `def` route at /")? as u32;
    // What the host makes of `wrk`'s request.
    let request = Box::new(Request {
        method: "GET".into(),
        path: "/".into(),
        query: String::new(),
        headers: vec![("host".into(), "127.0.0.1:8080".into())],
        body: Vec::new(),
        route,
        params: Vec::new(),
        context: Context {
            request_id: "0123456789ab-00000000".into(),
            client_addr: "127.0.0.1:40000".into(),
            tenant: None,
            claims: None,
        },
    });
    let call = async || {
        app.handle(request.clone(), event_loop)
            .await
            .map_err(|e| anyhow::anyhow!("the call failed: {e}"))
    };
    for _ in 0..WARMUP {
        call().await?;
    }
    let mut best = f64::MAX;
    for _ in 0..ROUNDS {
        let started = Instant::now();
        for _ in 0..calls {
            call().await?;
        }
        best = best.min(started.elapsed().as_secs_f64() * 1e6 / calls as f64);
    }
    println!("{best:.2}");
    Ok(())
}
