//! Calls on `def` routes: each holds one warm instance to itself until it
//! returns. If the client hangs up mid-call, the instance is dropped with
//! the call, never reused.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tracing::Instrument as _;

use super::packed::{self, Packed};
use super::{AppCalls, Instance, Shared};
use crate::bindings::{Request, Response};
use crate::error::CallError;
use crate::instances::warm::{WarmParts, WarmPool};
use crate::telemetry;

/// How long after its deadline a call blocked in a host call is dropped:
/// guest code past it traps at the next epoch tick, well within this.
const BLOCKED_GRACE: Duration = Duration::from_millis(20);

/// The idle instances of a component's `def` routes.
pub(super) type SyncPool = WarmPool<AppCalls>;

/// A `def` call's request: packed already, from the request as the
/// pipeline holds it, or the `request` record (packed here when the
/// component exports `packed`).
pub enum DefRequest {
    Record(Box<Request>),
    Packed(Packed),
}

impl DefRequest {
    pub(super) fn route(&self) -> u32 {
        match self {
            DefRequest::Record(req) => req.route,
            DefRequest::Packed(req) => req.route,
        }
    }

    pub(super) fn request_id(&self) -> &str {
        match self {
            DefRequest::Record(req) => &req.context.request_id,
            DefRequest::Packed(req) => &req.request_id,
        }
    }

    /// The request id, to keep: the packed request's is shared, not copied.
    fn shared_request_id(&self) -> Arc<str> {
        match self {
            DefRequest::Record(req) => Arc::from(req.context.request_id.as_str()),
            DefRequest::Packed(req) => req.request_id.clone(),
        }
    }

    /// Calls `handle`, or `packed.handle` when the component exports it.
    async fn call(
        &self,
        store: &mut wasmtime::Store<crate::instances::state::InstanceState>,
        bindings: &AppCalls,
    ) -> wasmtime::Result<Response> {
        let export = bindings.packed.as_ref();
        match (self, export) {
            (DefRequest::Packed(req), Some(export)) => {
                (export.call_handle(store, req.route, req.body_len, &req.bytes)).await
            }
            (DefRequest::Record(req), Some(export)) => match packed::pack(req) {
                Some((body_len, bytes)) => {
                    export.call_handle(store, req.route, body_len, &bytes).await
                }
                None => bindings.call_handle(store, req).await,
            },
            (DefRequest::Record(req), None) => bindings.call_handle(store, req).await,
            (DefRequest::Packed(_), None) => Err(wasmtime::Error::msg(
                "a packed request for a component that does not export `packed`",
            )),
        }
    }
}

/// Runs `req` on a warm instance from `pool` or a new one.
pub(super) async fn call(
    pool: &Arc<SyncPool>,
    shared: &Arc<Shared>,
    req: DefRequest,
) -> Result<Response, CallError> {
    let timeout = shared.limits.timeout;
    let deadline = Instant::now() + timeout;
    let index = req.route();
    let route = shared.route_name(index);
    // In a block: the instance goes into the call's box before the next
    // await, and would otherwise take room in this future's state.
    let call = {
        // One span for the checkout (none when traces are off), however
        // the instance is found.
        let span = telemetry::stage("instance checkout");
        let (mut instance, left) = match span.in_scope(|| pool.take_idle()) {
            // An idle instance at once: the whole time is left.
            Some(instance) => (instance, timeout),
            None => {
                // Boxed: waiting for a slot is rare, and its future large.
                let checkout =
                    pool.checkout(&shared.capacity, deadline, |slot| shared.instantiate(slot));
                let checkout = checkout.instrument(span);
                let instance: Instance = Box::pin(checkout).await?;
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    // Its start (`on-start`) outlasted the request: the
                    // instance is sound, and kept for the next one.
                    pool.checkin(instance);
                    return Err(shared.owner.timed_out(timeout));
                }
                (instance, left)
            }
        };
        let state = instance.store.data_mut();
        state.set_deadline(Some(left));
        state.call_started(&route, req.shared_request_id());
        instance.store.set_epoch_deadline(1);
        // The call owns its instance, so that the scheduler can move it off
        // this thread if it runs long. On a timeout or a trap the instance
        // is dropped with it: its state can no longer be trusted. Boxed at
        // once: its state (wasmtime's call in it) is kilobytes, which each
        // wrapper below would otherwise copy.
        Box::pin(async move {
            let WarmParts {
                store, bindings, ..
            } = &mut *instance;
            let result = req.call(store, bindings).await;
            (instance, req, result)
        })
    };
    // Guest code past the deadline traps at the next epoch tick; a guest
    // blocked in a host call (a WASI sleep, say) sees no tick, so a little
    // after the deadline the call is dropped, and its instance with it.
    let call = tokio::time::timeout_at(deadline + BLOCKED_GRACE, call);
    // The scheduler may move a long call to another thread: the trace's
    // span goes with it, for the host calls the guest makes.
    let call = Box::pin(call.instrument(telemetry::current()));
    let ran = shared.owner.run_guest_timed(call).await?;
    let (mut instance, req, response) = match ran.out {
        Ok((instance, req, Ok(response))) => (instance, req, response),
        Ok((_, req, Err(trap))) => {
            shared.ran(req.route(), ran.long);
            return Err(shared.owner.call_failed(trap, shared.limits.timeout));
        }
        Err(_blocked) => {
            shared.ran(index, ran.long);
            return Err(shared.owner.timed_out(shared.limits.timeout));
        }
    };
    shared.ran(req.route(), ran.long);
    let state = instance.store.data_mut();
    state.set_deadline(None);
    state.track_call(&route, req.request_id(), true);
    instance.served += 1;
    if response.background {
        // The instance stays checked out until its tasks are done.
        let pool = pool.clone();
        let shared = shared.clone();
        let request_id = req.request_id().to_owned();
        let owner = shared.owner.clone();
        let tasks = Box::pin(async move { shared.run_background(instance, request_id).await });
        tokio::spawn(async move {
            if let Ok(Some(instance)) = owner.run_guest(tasks).await {
                pool.checkin(instance);
            }
        });
    } else {
        pool.checkin(instance);
    }
    Ok(response)
}
