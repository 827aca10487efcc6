//! How guest code shares the machine's CPU.
//!
//! Every guest call starts on the thread that serves its request: most
//! calls are short, and a hop to another thread would cost them more than
//! they run. A call that keeps running past `demote-after-ms` of guest time
//! (an event-loop instance: that runs that long without awaiting) moves to
//! the *long-call lane*: a runtime of its own whose threads run at a lower
//! OS priority. There calls take turns one epoch slice at a time, round-robin
//! between tenants (and between the served directory's components), so:
//!
//! - a guest that loops never holds a thread that accepts connections, reads
//!   requests or answers from the cache, and the kernel gives those threads
//!   the CPU first;
//! - a tenant running many long calls gets one turn in the rotation, as a
//!   tenant running one does.
//!
//! A call may also have a CPU-time limit (`cpu-ms`): its guest time is
//! summed across slices, and the call is ended once it passes the limit.

use std::collections::{HashMap, VecDeque};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

use crate::config::ExecutionSettings;

/// A guest call (or instance) as a future the scheduler can move between
/// threads.
pub type GuestFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// Why the scheduler ended a guest call before it finished.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stopped {
    /// The call used more guest time than its `cpu-ms` limit.
    CpuExceeded(Duration),
    /// The long-call lane shut down (the host is stopping) while the call
    /// was on it.
    LaneClosed,
}

/// The host's long-call lane and its turns, shared by every component.
pub struct Scheduler {
    /// Kept to shut the lane down with the host; `None` once it has.
    runtime: Option<tokio::runtime::Runtime>,
    lane: tokio::runtime::Handle,
    turns: Arc<FairTurns>,
    demote_after: Duration,
}

impl Scheduler {
    /// Starts the long-call lane as `settings` asks: its threads, their OS
    /// priority, and how much guest time a call may use before it moves
    /// there.
    pub fn new(settings: &ExecutionSettings) -> anyhow::Result<Arc<Self>> {
        let threads = settings.long_call_threads();
        let nice = settings.long_call_nice;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("cello-long-call")
            .on_thread_start(move || lower_priority(nice))
            .enable_all()
            .build()
            .map_err(|e| anyhow::anyhow!("cannot start the long-call lane: {e}"))?;
        Ok(Arc::new(Self {
            lane: runtime.handle().clone(),
            runtime: Some(runtime),
            turns: FairTurns::new(threads),
            demote_after: Duration::from_millis(settings.demote_after_ms),
        }))
    }

    /// The share of guest time the calls of `key` (a tenant, or a
    /// component of the served directory) take part in.
    pub fn share(self: &Arc<Self>, key: &str) -> CpuShare {
        CpuShare {
            scheduler: self.clone(),
            key: key.into(),
        }
    }
}

impl Drop for Scheduler {
    fn drop(&mut self) {
        // Dropping a runtime blocks, which an async context forbids.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Sets the calling thread's nice value: on Linux it is a thread's own.
fn lower_priority(nice: i32) {
    #[cfg(target_os = "linux")]
    // SAFETY: setpriority reads its arguments only; gettid cannot fail.
    unsafe {
        let tid = libc::gettid() as libc::id_t;
        if libc::setpriority(libc::PRIO_PROCESS, tid, nice) != 0 {
            tracing::debug!("cannot lower the long-call lane's priority");
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = nice;
}

/// Where one tenant's (or one served component's) guest calls take their
/// turns.
#[derive(Clone)]
pub struct CpuShare {
    scheduler: Arc<Scheduler>,
    key: Arc<str>,
}

/// How a guest future's time is judged.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Budget {
    /// One call: its guest time is summed over its life; past the
    /// scheduler's threshold it moves to the long-call lane, past `cpu`
    /// it is stopped.
    Call { cpu: Option<Duration> },
    /// An event-loop instance serving many calls: it moves to the long-call
    /// lane when a single stretch of guest code (one poll) runs past the
    /// threshold, and stays there for the rest of its life.
    Loop,
}

impl CpuShare {
    /// Runs `guest` under this share's policy. Dropping the returned future
    /// drops `guest`, wherever it is running.
    pub fn run<T: Send + 'static>(&self, guest: GuestFuture<T>, budget: Budget) -> GuestRun<'_, T> {
        GuestRun {
            at: At::Here(
                Metered {
                    guest,
                    used: Duration::ZERO,
                    budget,
                },
                self,
            ),
        }
    }
}

/// A guest future running under its [`CpuShare`]. It borrows the share
/// rather than cloning it: the share's counters are touched by every core,
/// and a call that never moves should not touch them.
pub struct GuestRun<'a, T: Send + 'static> {
    at: At<'a, T>,
}

enum At<'a, T: Send + 'static> {
    /// Polled on the caller's task.
    Here(Metered<T>, &'a CpuShare),
    /// Moved to the long-call lane.
    Lane(AbortOnDrop<Result<T, Stopped>>),
    /// Between the two.
    Moving,
}

impl<T: Send + 'static> Future for GuestRun<'_, T> {
    type Output = Result<T, Stopped>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let At::Here(metered, share) = &mut self.at {
            let demote_after = share.scheduler.demote_after;
            match metered.poll_timed(cx) {
                (Poll::Ready(out), _) => return Poll::Ready(out),
                (Poll::Pending, ran) if !metered.should_move(ran, demote_after) => {
                    return Poll::Pending;
                }
                (Poll::Pending, _) => {}
            }
            let At::Here(metered, share) = std::mem::replace(&mut self.at, At::Moving) else {
                unreachable!("matched above")
            };
            let scheduler = &share.scheduler;
            let sliced = Sliced {
                metered,
                turns: scheduler.turns.clone(),
                key: share.key.clone(),
                taking: None,
            };
            self.at = At::Lane(AbortOnDrop(scheduler.lane.spawn(sliced)));
        }
        match &mut self.at {
            At::Lane(task) => Pin::new(&mut task.0)
                .poll(cx)
                .map(|joined| joined.unwrap_or(Err(Stopped::LaneClosed))),
            At::Here(..) | At::Moving => unreachable!("moved above"),
        }
    }
}

/// A guest future and the guest time it has used.
struct Metered<T> {
    guest: GuestFuture<T>,
    used: Duration,
    budget: Budget,
}

impl<T> Metered<T> {
    /// Polls the guest once; returns what it gave and how long the poll
    /// took. A call past its CPU limit is stopped here, and dropped with
    /// its future.
    fn poll_timed(&mut self, cx: &mut Context<'_>) -> (Poll<Result<T, Stopped>>, Duration) {
        let started = Instant::now();
        let polled = self.guest.as_mut().poll(cx);
        let ran = started.elapsed();
        self.used += ran;
        let out = match polled {
            Poll::Ready(value) => Poll::Ready(Ok(value)),
            Poll::Pending => match self.budget {
                Budget::Call { cpu: Some(limit) } if self.used > limit => {
                    Poll::Ready(Err(Stopped::CpuExceeded(limit)))
                }
                _ => Poll::Pending,
            },
        };
        (out, ran)
    }

    /// True once the guest has run long enough to leave the caller's thread.
    fn should_move(&self, ran: Duration, threshold: Duration) -> bool {
        match self.budget {
            Budget::Call { .. } => self.used >= threshold,
            Budget::Loop => ran >= threshold,
        }
    }
}

/// A guest future on the long-call lane: each poll waits for a turn.
struct Sliced<T> {
    metered: Metered<T>,
    turns: Arc<FairTurns>,
    key: Arc<str>,
    taking: Option<TakeTurn>,
}

impl<T> Future for Sliced<T> {
    type Output = Result<T, Stopped>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let taking = this
            .taking
            .get_or_insert_with(|| this.turns.take(&this.key));
        let Poll::Ready(turn) = Pin::new(taking).poll(cx) else {
            return Poll::Pending;
        };
        this.taking = None;
        let (out, _) = this.metered.poll_timed(cx);
        drop(turn);
        out
    }
}

/// A task that is aborted when its handle is dropped.
struct AbortOnDrop<T>(JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Turns on the long-call lane: as many as it has threads, handed out
/// round-robin between keys, first come first served within a key. A key
/// with many calls waiting gets one turn per round, as a key with one does.
pub struct FairTurns {
    state: Mutex<TurnState>,
}

#[derive(Default)]
struct TurnState {
    free: usize,
    /// Keys with calls waiting, in the order their next turn comes.
    ring: VecDeque<Arc<str>>,
    /// The calls waiting, by key.
    queues: HashMap<Arc<str>, VecDeque<u64>>,
    wakers: HashMap<u64, Waker>,
    /// Calls given a turn that have not taken it yet.
    granted: std::collections::HashSet<u64>,
    next_id: u64,
}

impl TurnState {
    /// Passes a turn that came free to the next key in the ring, or keeps
    /// it; returns the waker of the call that got it.
    fn pass_on(&mut self) -> Option<Waker> {
        while let Some(key) = self.ring.pop_front() {
            let Some(queue) = self.queues.get_mut(&key) else {
                continue;
            };
            let Some(id) = queue.pop_front() else {
                self.queues.remove(&key);
                continue;
            };
            if queue.is_empty() {
                self.queues.remove(&key);
            } else {
                self.ring.push_back(key);
            }
            self.granted.insert(id);
            return self.wakers.remove(&id);
        }
        self.free += 1;
        None
    }
}

impl FairTurns {
    /// `turns` turns, all free.
    pub fn new(turns: usize) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(TurnState {
                free: turns.max(1),
                ..TurnState::default()
            }),
        })
    }

    /// Waits for a turn for `key`.
    pub fn take(self: &Arc<Self>, key: &Arc<str>) -> TakeTurn {
        TakeTurn {
            turns: self.clone(),
            key: key.clone(),
            queued: None,
        }
    }

    fn release(&self) {
        let waker = self.state.lock().unwrap().pass_on();
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

/// Waiting for a turn; see [`FairTurns::take`].
pub struct TakeTurn {
    turns: Arc<FairTurns>,
    key: Arc<str>,
    /// Its place in the key's queue, once it had to wait.
    queued: Option<u64>,
}

/// A turn on the long-call lane, given back when dropped.
pub struct Turn(Arc<FairTurns>);

impl Drop for Turn {
    fn drop(&mut self) {
        self.0.release();
    }
}

impl Future for TakeTurn {
    type Output = Turn;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Turn> {
        let this = &mut *self;
        let mut state = this.turns.state.lock().unwrap();
        match this.queued {
            None if state.free > 0 && state.ring.is_empty() => {
                state.free -= 1;
            }
            None => {
                let id = state.next_id;
                state.next_id += 1;
                let queue = state.queues.entry(this.key.clone()).or_default();
                queue.push_back(id);
                if queue.len() == 1 {
                    state.ring.push_back(this.key.clone());
                }
                state.wakers.insert(id, cx.waker().clone());
                this.queued = Some(id);
                return Poll::Pending;
            }
            Some(id) if state.granted.remove(&id) => this.queued = None,
            Some(id) => {
                state.wakers.insert(id, cx.waker().clone());
                return Poll::Pending;
            }
        }
        drop(state);
        Poll::Ready(Turn(this.turns.clone()))
    }
}

impl Drop for TakeTurn {
    fn drop(&mut self) {
        let Some(id) = self.queued else { return };
        let mut state = self.turns.state.lock().unwrap();
        state.wakers.remove(&id);
        if state.granted.remove(&id) {
            // Given a turn it will not take: pass it on.
            let waker = state.pass_on();
            drop(state);
            if let Some(waker) = waker {
                waker.wake();
            }
            return;
        }
        if let Some(queue) = state.queues.get_mut(&self.key) {
            queue.retain(|queued| *queued != id);
            if queue.is_empty() {
                state.queues.remove(&self.key);
                state.ring.retain(|key| *key != self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;

    fn key(name: &str) -> Arc<str> {
        name.into()
    }

    #[test]
    fn a_free_turn_is_taken_at_once() {
        let turns = FairTurns::new(1);
        let turn = turns.take(&key("a")).now_or_never().expect("free");
        assert!(turns.take(&key("b")).now_or_never().is_none());
        drop(turn);
        assert!(turns.take(&key("b")).now_or_never().is_some());
    }

    #[tokio::test]
    async fn turns_go_round_robin_between_keys() {
        let turns = FairTurns::new(1);
        let held = turns.take(&key("busy")).await;
        // Three calls of one key queue before one call of another.
        let mut waiting: Vec<(&str, TakeTurn)> = ["busy", "busy", "busy", "quiet"]
            .into_iter()
            .map(|k| (k, turns.take(&key(k))))
            .collect();
        for (_, take) in &mut waiting {
            assert!(take.now_or_never().is_none(), "no turn is free");
        }
        drop(held);
        let mut order = Vec::new();
        while !waiting.is_empty() {
            let ready = waiting
                .iter_mut()
                .position(|(_, take)| take.now_or_never().is_some())
                .expect("the released turn went to a waiting call");
            let (who, _) = waiting.remove(ready);
            order.push(who);
            // The turn taken above was dropped at once: the next one goes.
        }
        assert_eq!(order, ["busy", "quiet", "busy", "busy"]);
    }

    #[test]
    fn a_call_that_gives_up_waiting_leaves_no_trace() {
        let turns = FairTurns::new(1);
        let held = turns.take(&key("a")).now_or_never().unwrap();
        let mut gone = turns.take(&key("b"));
        assert!((&mut gone).now_or_never().is_none());
        drop(gone);
        drop(held);
        let state = turns.state.lock().unwrap();
        assert_eq!(state.free, 1);
        assert!(state.ring.is_empty() && state.queues.is_empty() && state.wakers.is_empty());
    }

    #[test]
    fn a_turn_granted_but_never_taken_passes_on() {
        let turns = FairTurns::new(1);
        let held = turns.take(&key("a")).now_or_never().unwrap();
        let mut first = turns.take(&key("b"));
        let mut second = turns.take(&key("c"));
        assert!((&mut first).now_or_never().is_none());
        assert!((&mut second).now_or_never().is_none());
        drop(held); // granted to `first`
        drop(first); // which gives up: `second` gets it
        assert!(second.now_or_never().is_some());
    }
}
