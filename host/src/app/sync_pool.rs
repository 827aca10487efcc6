//! Calls on `def` routes: each holds one warm instance to itself until it
//! returns. If the client hangs up mid-call, the instance is dropped with
//! the call, never reused.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tracing::Instrument as _;

use super::{AppCalls, Instance, Shared, packed};
use crate::bindings::{Request, Response};
use crate::error::CallError;
use crate::instances::warm::{WarmParts, WarmPool};
use crate::telemetry;

/// How long after its deadline a call blocked in a host call is dropped:
/// guest code past it traps at the next epoch tick, well within this.
const BLOCKED_GRACE: Duration = Duration::from_millis(20);

/// The idle instances of a component's `def` routes.
pub(super) type SyncPool = WarmPool<AppCalls>;

/// Runs `handle`, or `packed.handle` when the component exports it, on a
/// warm instance from `pool` or a new one.
pub(super) async fn call(
    pool: &Arc<SyncPool>,
    shared: &Arc<Shared>,
    req: Box<Request>,
) -> Result<Response, CallError> {
    let deadline = Instant::now() + shared.limits.timeout;
    let mut instance: Instance = pool
        .checkout(&shared.capacity, deadline, |slot| shared.instantiate(slot))
        .instrument(telemetry::stage("instance checkout"))
        .await?;
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        // Its start (`on-start`) outlasted the request: the instance is
        // sound, and kept for the next one.
        pool.checkin(instance);
        return Err(shared.owner.timed_out(shared.limits.timeout));
    }
    let index = req.route;
    let route = shared.route_name(index);
    let state = instance.store.data_mut();
    state.set_deadline(Some(left));
    state.track_call(&route, &req.context.request_id, false);
    instance.store.set_epoch_deadline(1);
    // The call owns its instance, so that the scheduler can move it off this
    // thread if it runs long. On a timeout or a trap the instance is dropped
    // with it: its state can no longer be trusted. Boxed at once: its state
    // (wasmtime's call in it) is kilobytes, which each wrapper below would
    // otherwise copy.
    let call = Box::pin(async move {
        let WarmParts {
            store, bindings, ..
        } = &mut *instance;
        // Packed only for a component that exports `packed`.
        let packed =
            (bindings.packed.as_ref()).and_then(|export| Some((export, packed::pack(&req)?)));
        let result = match packed {
            Some((export, (body_len, request))) => {
                let route = req.route;
                export.call_handle(store, route, body_len, &request).await
            }
            None => bindings.call_handle(store, &req).await,
        };
        (instance, req, result)
    });
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
            shared.ran(req.route, ran.long);
            return Err(shared.owner.call_failed(trap, shared.limits.timeout));
        }
        Err(_blocked) => {
            shared.ran(index, ran.long);
            return Err(shared.owner.timed_out(shared.limits.timeout));
        }
    };
    shared.ran(req.route, ran.long);
    let state = instance.store.data_mut();
    state.set_deadline(None);
    state.track_call(&route, &req.context.request_id, true);
    instance.served += 1;
    if response.background {
        // The instance stays checked out until its tasks are done.
        let pool = pool.clone();
        let shared = shared.clone();
        let request_id = req.context.request_id.clone();
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
