//! Cello's host: serves HTTP from WebAssembly components.
//!
//! A request's path through the crate:
//!
//! - [`connections`] accepts connections, with timeouts and caps, and
//!   [`server`] hands each request to the [`pipeline`];
//! - the [`pipeline`] runs its stages in order: admission, routing (with
//!   [`registry`], what is in service, and [`router`], one route table),
//!   CORS, auth and rate limits (their settings and logic in
//!   [`middleware`]), then the call; on the way back, response headers,
//!   the access log and metrics;
//! - the call reaches an [`app`] (`cello:component/app`: sync routes on a
//!   pool of instances, async routes on event-loop instances), through the
//!   [`response_cache`] when the route is cacheable, or a [`proxy`]
//!   (`wasi:http/proxy`);
//! - [`instances`] are made from a component's [`instances::Prepared`]
//!   within its slots, kept warm for reuse, and carry their store's state;
//!   [`scheduler`] shares the CPU between guests; [`capabilities`] are the
//!   host functions guests import, each granted per component, linked by
//!   [`linker`];
//! - [`error`] turns every failure into a response, over [`body`];
//!   [`host_files`] are the files the host serves itself (Swagger UI).
//!
//! Around them: [`host`] puts it all together from the config (and
//! [`testing`] serves components in-process for tests); [`cli`] is the
//! `cello-host` command; [`loader`] turns `.wasm` files and sidecars
//! ([`config`]) into components, from the served directory, from
//! [`reload`] when it changes, and from uploads to [`tenants`] through the
//! [`admin`] API, shared between hosts by [`cluster`]; [`compile`] keeps
//! compiled artifacts on disk; [`engine`] holds the wasmtime configuration and [`world`] tells what a
//! component is, [`outline`] what its bytes say at their top level;
//! [`resources`] is what every component's instances share;
//! [`metrics`], [`ops`], [`logging`] (with [`guest_log`]) and
//! [`telemetry`] report on it all, and [`readiness`] says whether it is
//! ready; [`bindings`] is the generated contract.

pub mod admin;
pub mod allocator;
pub mod app;
pub mod bindings;
pub mod body;
pub mod capabilities;
pub mod cli;
pub mod cluster;
pub mod compile;
pub mod config;
pub mod connections;
pub mod engine;
pub mod error;
pub mod guest_log;
pub mod host;
pub mod host_files;
pub mod instances;
pub mod linker;
pub mod loader;
pub mod logging;
pub mod metrics;
pub mod middleware;
pub mod ops;
pub mod outline;
pub mod pipeline;
pub mod proxy;
pub mod proxy_p3;
pub mod readiness;
pub mod registry;
pub mod reload;
pub mod resources;
pub mod response_cache;
pub mod router;
pub mod scheduler;
pub mod server;
pub mod telemetry;
pub mod tenants;
pub mod testing;
pub mod world;
