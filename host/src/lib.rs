//! Cello's host: serves HTTP from WebAssembly components.
//!
//! A request's path through the crate, in module order:
//!
//! - [`connections`] accepts connections, with timeouts and caps;
//! - [`server`] turns each request into a call;
//! - [`registry`] holds what is in service and says which route table
//!   answers: the served directory's, or a tenant's (`/t/{tenant}/...`);
//! - [`router`] picks the component and route for its method and path;
//! - [`middleware`] wraps the call: CORS, JWT auth with route roles and
//!   scopes, rate limits (the rest of the chain is in [`server`]);
//! - [`app`] runs Cello app components (`cello:component/app`), sync routes
//!   on a pool of instances and async routes on event-loop instances;
//! - [`response_cache`] answers cacheable requests without the guest;
//! - [`proxy`] runs standard `wasi:http/proxy` components;
//! - [`capabilities`] are the host functions guests import, each granted
//!   per component: key-value, config, outbound HTTP;
//! - [`scheduler`] shares the CPU between guests: long-running calls move
//!   off the threads that serve requests and take turns, tenant by tenant;
//! - [`capacity`] bounds the instances of each component and queues the
//!   requests that wait for one;
//! - [`warm`] keeps the instances that serve one call at a time (sync
//!   routes, `wasi:http` requests) warm for reuse;
//! - [`error`] turns every failure into a response.
//!
//! Around them: [`cli`] is the `cello-host` command; [`loader`] turns
//! `.wasm` files and sidecars ([`config`]) into components, from the
//! served directory, from [`reload`] when it changes, and from uploads to
//! [`tenants`] through the [`admin`] API;
//! [`compile`] keeps compiled artifacts on disk; [`engine`] holds the
//! wasmtime configuration and the pooling allocator; [`state`] is what each
//! instance's store carries; [`metrics`], [`ops`], [`logging`] (with [`guest_log`]) and
//! [`telemetry`] report on
//! it all, and [`readiness`] says whether it is ready; and
//! [`bindings`] is the generated contract.

pub mod admin;
pub mod app;
pub mod bindings;
pub mod body;
pub mod capabilities;
pub mod capacity;
pub mod cli;
pub mod compile;
pub mod config;
pub mod connections;
pub mod engine;
pub mod error;
pub mod guest_log;
pub mod host;
pub mod linker;
pub mod loader;
pub mod logging;
pub mod metrics;
pub mod middleware;
pub mod ops;
pub mod pipeline;
pub mod proxy;
pub mod readiness;
pub mod registry;
pub mod reload;
pub mod resources;
pub mod response_cache;
pub mod router;
pub mod scheduler;
pub mod server;
pub mod state;
pub mod telemetry;
pub mod tenants;
pub mod testing;
pub mod warm;
pub mod world;
