//! The integration tests: real components served by the real host over
//! real HTTP, one module per area, in one test binary (see `Cargo.toml`).
//! `cargo test -p cello-tests --test integration p3::` runs one area.

mod support;

mod cache;
mod cache_isolation;
mod capabilities;
mod cluster_postgres;
mod cluster_redis;
mod concurrency;
mod connections;
mod deploy_config;
mod deploys;
mod docs_page;
mod examples;
mod failures;
mod forwarded_prefix;
mod javascript;
mod limits;
mod middleware;
mod ops;
mod p3;
mod p3_concurrency;
mod pipeline;
mod pydantic;
mod python_async;
mod python_p3;
mod python_seeds;
mod quotas;
mod rust_sdk;
mod serving;
mod sql;
mod sql_postgres;
mod start;
mod streaming;
mod sync_apps;
mod telemetry;
mod tenants;
mod wasi_keyvalue;
