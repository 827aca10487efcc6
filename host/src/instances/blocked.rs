//! The watch on an event-loop instance for guest code that runs long
//! without awaiting, and so holds up every other request on the instance:
//! logged past `blocked-warn-ms`, trapped past `cpu-ms`.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use wasmtime::CallHook;

use crate::engine::{EPOCH_TICK, TICKS};
use crate::guest_log::CallsInFlight;
use crate::instances::state::{CpuExceeded, Owner, ticks_in};

/// What an event-loop instance serves: its blocked-loop warning gives the
/// advice that fits it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventLoopKind {
    /// A Cello app's `async def` routes.
    AsyncApp,
    /// A `wasi:http/service@0.3` component's requests.
    P3Service,
}

impl EventLoopKind {
    /// The handler that blocks the loop, and what to do about it.
    fn blocked(self) -> (&'static str, &'static str) {
        match self {
            Self::AsyncApp => ("an async handler", "use `def` for CPU-bound work"),
            Self::P3Service => (
                "a wasi:http 0.3 handler",
                "yield or split CPU-bound work, or set `p3-concurrency = 1` in the \
                 component's [limits]",
            ),
        }
    }
}

/// Tracks how long guest code has run without returning to the host.
pub(super) struct BlockedWatch {
    kind: EventLoopKind,
    threshold_ticks: u64,
    /// The CPU limit, and the same in ticks.
    cpu: Option<(Duration, u64)>,
    /// The tick at which the guest last started running.
    running_since: Option<u64>,
    warned: bool,
    /// For each host call the guest is in, innermost last, the call
    /// switches counted when it began.
    host_calls: Vec<u64>,
}

impl BlockedWatch {
    /// A watch warning past `threshold`, and trapping past `cpu` (the CPU
    /// limit, and the same in ticks) when there is one.
    pub(super) fn new(
        kind: EventLoopKind,
        threshold: Duration,
        cpu: Option<(Duration, u64)>,
    ) -> Self {
        Self {
            kind,
            threshold_ticks: ticks_in(threshold),
            cpu,
            running_since: None,
            warned: false,
            host_calls: Vec::new(),
        }
    }

    /// Only entering and leaving wasm count: a sync host call (a clock read,
    /// a log line) does not free the event loop, only returning to it does.
    ///
    /// Nor does the wasm a host call runs for the code that made it, with
    /// no other call's code run meanwhile: the guest's `realloc`, as the
    /// host hands it a string. Wasm entered while a host call waits, once
    /// another call's code ran (`switches`, as [`CallsInFlight`] counts
    /// them), is that call's own run.
    pub(super) fn on_transition(&mut self, hook: CallHook, switches: u64) {
        let within_host_call = self.host_calls.last() == Some(&switches);
        match hook {
            CallHook::CallingHost => self.host_calls.push(switches),
            CallHook::ReturningFromHost => {
                self.host_calls.pop();
            }
            CallHook::CallingWasm | CallHook::ReturningFromWasm if within_host_call => {}
            CallHook::CallingWasm => {
                self.running_since = Some(TICKS.load(Ordering::Relaxed));
                self.warned = false;
            }
            CallHook::ReturningFromWasm => self.running_since = None,
        }
    }

    /// Returns how many ticks the guest has run without awaiting.
    pub(super) fn on_tick(
        &mut self,
        owner: &Owner,
        calls: &CallsInFlight,
    ) -> wasmtime::Result<u64> {
        let Some(since) = self.running_since else {
            return Ok(0);
        };
        let ran = TICKS.load(Ordering::Relaxed).saturating_sub(since);
        if let Some((limit, ticks)) = self.cpu
            && ran >= ticks
        {
            return Err(CpuExceeded(limit).into());
        }
        if ran >= self.threshold_ticks && !self.warned {
            self.warned = true;
            owner.metrics.blocked_loops.inc();
            let routes: Vec<Arc<str>> = calls.routes();
            let (handler, advice) = self.kind.blocked();
            tracing::warn!(
                component = %owner.component,
                routes = routes.join(", "),
                "{handler} ran for {} ms without awaiting; it blocks every other \
                 request on its instance ({advice})",
                ran * EPOCH_TICK.as_millis() as u64
            );
        }
        Ok(ran)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn watch() -> BlockedWatch {
        BlockedWatch::new(EventLoopKind::AsyncApp, Duration::from_millis(100), None)
    }

    #[test]
    fn a_realloc_inside_a_host_call_is_part_of_the_run_that_made_it() {
        let mut watch = watch();
        watch.on_transition(CallHook::CallingWasm, 0);
        let since = watch.running_since;
        assert!(since.is_some());
        // The host hands the guest a string: it calls the guest's realloc.
        watch.on_transition(CallHook::CallingHost, 0);
        watch.on_transition(CallHook::CallingWasm, 0);
        watch.on_transition(CallHook::ReturningFromWasm, 0);
        watch.on_transition(CallHook::ReturningFromHost, 0);
        assert_eq!(watch.running_since, since);
        watch.on_transition(CallHook::ReturningFromWasm, 0);
        assert_eq!(watch.running_since, None);
    }

    #[test]
    fn another_calls_code_run_while_a_host_call_waits_is_a_run_of_its_own() {
        let mut watch = watch();
        watch.on_transition(CallHook::CallingWasm, 0);
        watch.on_transition(CallHook::CallingHost, 0);
        // The host call waits; the store switches to another call's code,
        // which runs and awaits.
        watch.warned = true;
        watch.on_transition(CallHook::CallingWasm, 2);
        assert!(watch.running_since.is_some());
        assert!(!watch.warned, "a new run is warned about afresh");
        watch.on_transition(CallHook::ReturningFromWasm, 3);
        assert_eq!(watch.running_since, None);
    }

    #[test]
    fn the_warning_gives_advice_that_fits_what_the_instance_serves() {
        let (handler, advice) = EventLoopKind::AsyncApp.blocked();
        assert_eq!(handler, "an async handler");
        assert!(advice.contains("use `def`"), "{advice}");
        let (handler, advice) = EventLoopKind::P3Service.blocked();
        assert_eq!(handler, "a wasi:http 0.3 handler");
        assert!(advice.contains("p3-concurrency = 1"), "{advice}");
        assert!(!advice.contains("def"), "{advice}");
    }
}
