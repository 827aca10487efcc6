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
//! A call (an event-loop instance above all) that moved comes back to the
//! task that moved it as soon as one of its turns ends with it awaiting
//! rather than still running long.
//!
//! Guest time is counted in epoch ticks, by the store's epoch callback
//! (see [`crate::instances::state`]), which fire only while guest code runs: a call
//! that the kernel merely preempted is not mistaken for a long one, and the
//! request path reads no clock. The callback raises a flag on its thread
//! ([`ask_to_move`]); the future polling the guest reads it once the poll
//! returns. The same count enforces `cpu-ms`.

use std::cell::Cell;
use std::collections::{HashMap, VecDeque};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker, ready};
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

use crate::config::ExecutionSettings;

/// A guest call (or instance) as a future the scheduler can move between
/// threads.
pub type GuestFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// Why the scheduler ended a guest call before it finished.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stopped {
    /// The long-call lane shut down (the host is stopping) while the call
    /// was on it.
    LaneClosed,
}

thread_local! {
    /// Set by a store's epoch callback, on the thread running the guest,
    /// when the guest has run long enough to leave it.
    static MOVE: Cell<bool> = const { Cell::new(false) };
    /// True on the long-call lane's threads.
    static ON_LANE: Cell<bool> = const { Cell::new(false) };
}

/// Asks the guest future being polled on this thread to move to the
/// long-call lane once its poll returns.
pub fn ask_to_move() {
    MOVE.set(true);
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
        let (nice, idle) = (settings.long_call_nice, settings.long_call_idle);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("cello-long-call")
            .on_thread_start(move || {
                ON_LANE.set(true);
                lower_priority(nice, idle);
            })
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

/// Lowers the calling thread's priority: its nice value (on Linux a
/// thread's own), with `idle` the kernel's idle policy, and where the
/// kernel allows it (Linux 6.12 and later) a short time slice of 0.1 ms.
///
/// `SCHED_IDLE` is an option, off by default: see
/// [`ExecutionSettings::long_call_idle`] for what it measured.
fn lower_priority(nice: i32, idle: bool) {
    #[cfg(target_os = "linux")]
    // SAFETY: the calls read their arguments only; `attr` outlives the call.
    unsafe {
        /// `struct sched_attr` of sched_setattr(2).
        #[repr(C)]
        struct SchedAttr {
            size: u32,
            policy: u32,
            flags: u64,
            nice: i32,
            priority: u32,
            runtime: u64,
            deadline: u64,
            period: u64,
        }
        let policy = if idle {
            libc::SCHED_IDLE
        } else {
            libc::SCHED_OTHER
        };
        let mut attr = SchedAttr {
            size: std::mem::size_of::<SchedAttr>() as u32,
            policy: policy as u32,
            flags: 0,
            nice,
            priority: 0,
            runtime: 100_000,
            deadline: 0,
            period: 0,
        };
        let set = |attr: &SchedAttr| {
            libc::syscall(libc::SYS_sched_setattr, 0, attr as *const SchedAttr, 0) == 0
        };
        if set(&attr) {
            return;
        }
        // Before Linux 6.12 a time slice cannot be asked for.
        attr.runtime = 0;
        if set(&attr) {
            return;
        }
        let tid = libc::gettid() as libc::id_t;
        if libc::setpriority(libc::PRIO_PROCESS, tid, nice) != 0 {
            tracing::debug!("cannot lower the long-call lane's priority");
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (nice, idle);
}

/// Where one tenant's (or one served component's) guest calls take their
/// turns.
#[derive(Clone)]
pub struct CpuShare {
    scheduler: Arc<Scheduler>,
    key: Arc<str>,
}

impl CpuShare {
    /// Epoch ticks of guest time after which a call moves to the
    /// long-call lane: at least two, so a short call that straddles a tick
    /// never moves.
    pub fn move_after_ticks(&self, tick: Duration) -> u64 {
        let ticks = self.scheduler.demote_after.as_nanos() / tick.as_nanos().max(1);
        (ticks as u64).max(2)
    }

    /// Runs `guest` under this share's policy. Dropping the returned future
    /// drops `guest`, wherever it is running.
    pub fn run<T: Send + 'static>(&self, guest: GuestFuture<T>) -> GuestRun<'_, T> {
        GuestRun {
            at: At::Here(guest),
            share: self,
            busy: Duration::ZERO,
            threshold: self.scheduler.demote_after,
        }
    }

    /// Runs `guest` on the long-call lane from the start, taking turns, and
    /// waits for it: a call known to run long.
    pub fn run_on_lane<T: Send + 'static>(&self, guest: GuestFuture<T>) -> GuestRun<'_, T> {
        let scheduler = &self.scheduler;
        let sliced = Sliced::new(guest, self, false);
        GuestRun {
            at: At::Lane(AbortOnDrop(scheduler.lane.spawn(sliced))),
            share: self,
            busy: Duration::ZERO,
            threshold: scheduler.demote_after,
        }
    }

    /// Runs `guest` on the long-call lane from the start, taking turns:
    /// background work (retiring an instance) that should never take a
    /// request's thread.
    pub fn spawn<T: Send + 'static>(&self, guest: GuestFuture<T>) {
        self.scheduler.lane.spawn(Sliced::new(guest, self, false));
    }
}

/// A guest future running under its [`CpuShare`]. It borrows the share
/// rather than cloning it: the share's counters are touched by every core,
/// and a call that never moves should not touch them.
///
/// It also times its polls: a guest can do much in one step that no epoch
/// tick interrupts (a `memory.fill` of its whole memory), and the caller
/// learns that the call ran long, to start the next one on the lane.
pub struct GuestRun<'a, T: Send + 'static> {
    at: At<T>,
    share: &'a CpuShare,
    /// Time spent polling the guest here.
    busy: Duration,
    threshold: Duration,
}

/// What a guest future gave, and whether it ran long (at least
/// `demote-after-ms` of polling, wherever it ran).
pub struct Ran<T> {
    pub out: T,
    pub long: bool,
}

enum At<T: Send + 'static> {
    /// Polled on the caller's task.
    Here(GuestFuture<T>),
    /// Moved to the long-call lane: gives the guest's output, or the guest
    /// itself once it has stopped running long, and the time spent polling
    /// it there.
    Lane(AbortOnDrop<(Leaving<T>, Duration)>),
    /// Between the two.
    Moving,
}

impl<T: Send + 'static> Future for GuestRun<'_, T> {
    type Output = Result<Ran<T>, Stopped>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        loop {
            if let At::Here(guest) = &mut this.at {
                MOVE.set(false);
                let started = Instant::now();
                let polled = guest.as_mut().poll(cx);
                this.busy += started.elapsed();
                if let Poll::Ready(out) = polled {
                    let long = this.busy >= this.threshold;
                    return Poll::Ready(Ok(Ran { out, long }));
                }
                // On the lane already (a call run there from the start), a
                // call stays where it is.
                if !MOVE.replace(false) || ON_LANE.get() {
                    return Poll::Pending;
                }
                let At::Here(guest) = std::mem::replace(&mut this.at, At::Moving) else {
                    unreachable!("matched above")
                };
                let sliced = Sliced::new(guest, this.share, true);
                this.at = At::Lane(AbortOnDrop(this.share.scheduler.lane.spawn(sliced)));
            }
            let At::Lane(task) = &mut this.at else {
                unreachable!("moved above")
            };
            let (leaving, there) = match ready!(Pin::new(&mut task.0).poll(cx)) {
                Ok(joined) => joined,
                Err(_) => return Poll::Ready(Err(Stopped::LaneClosed)),
            };
            this.busy += there;
            match leaving {
                Leaving::Done(out) => {
                    let long = this.busy >= this.threshold;
                    return Poll::Ready(Ok(Ran { out, long }));
                }
                // It awaits again: back to the caller's task, polled here
                // at once so that what it waits for wakes this task.
                Leaving::Home(guest) => this.at = At::Here(guest),
            }
        }
    }
}

/// How a guest future leaves the long-call lane.
enum Leaving<T> {
    /// It finished, with this output.
    Done(T),
    /// It has stopped running long: it goes back to the task that moved it.
    Home(GuestFuture<T>),
}

/// A guest future on the long-call lane: each poll waits for a turn. It
/// gives the guest's output (or, with `may_go_home`, the guest itself once
/// a poll ends with it awaiting, not running long) and the time spent
/// polling it.
///
/// Going home matters for event-loop instances: one that ran long once
/// (seeding a table on its first request) would otherwise cross threads
/// for every request it serves afterwards. Measured on the todos example's
/// PostgreSQL read, that crossing cost 10 context switches per request and
/// about 30% of the server's CPU.
struct Sliced<T> {
    guest: Option<GuestFuture<T>>,
    turns: Arc<FairTurns>,
    key: Arc<str>,
    taking: Option<TakeTurn>,
    busy: Duration,
    may_go_home: bool,
}

impl<T> Sliced<T> {
    fn new(guest: GuestFuture<T>, share: &CpuShare, may_go_home: bool) -> Self {
        Self {
            guest: Some(guest),
            turns: share.scheduler.turns.clone(),
            key: share.key.clone(),
            taking: None,
            busy: Duration::ZERO,
            may_go_home,
        }
    }
}

impl<T> Future for Sliced<T> {
    type Output = (Leaving<T>, Duration);

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let taking = this
            .taking
            .get_or_insert_with(|| this.turns.take(&this.key));
        let Poll::Ready(turn) = Pin::new(taking).poll(cx) else {
            return Poll::Pending;
        };
        this.taking = None;
        let guest = this.guest.as_mut().expect("polled after it left");
        MOVE.set(false);
        let started = Instant::now();
        let polled = guest.as_mut().poll(cx);
        this.busy += started.elapsed();
        // Raised by the epoch callback while the guest still runs long.
        let running_long = MOVE.replace(false);
        drop(turn);
        match polled {
            Poll::Ready(out) => Poll::Ready((Leaving::Done(out), this.busy)),
            Poll::Pending if this.may_go_home && !running_long => {
                let guest = this.guest.take().expect("taken once");
                Poll::Ready((Leaving::Home(guest), this.busy))
            }
            Poll::Pending => Poll::Pending,
        }
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

    /// A guest future that runs long for `long_polls` polls (each asks to
    /// move), then awaits for `waiting_polls`, then finishes; it records
    /// whether each poll ran on the lane.
    fn guest(
        long_polls: usize,
        waiting_polls: usize,
        seen: Arc<Mutex<Vec<bool>>>,
    ) -> GuestFuture<()> {
        let mut polls = 0;
        Box::pin(std::future::poll_fn(move |cx| {
            seen.lock().unwrap().push(ON_LANE.get());
            polls += 1;
            if polls > long_polls + waiting_polls {
                return Poll::Ready(());
            }
            if polls <= long_polls {
                ask_to_move();
            }
            cx.waker().wake_by_ref();
            Poll::Pending
        }))
    }

    #[tokio::test]
    async fn a_guest_that_runs_long_moves_to_the_lane_and_comes_back_once_it_awaits() {
        let scheduler = Scheduler::new(&ExecutionSettings::default()).unwrap();
        let share = scheduler.share("tenant");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let ran = share.run(guest(2, 2, seen.clone())).await.unwrap();
        // Poll 1 here asks to move; poll 2 runs long on the lane; poll 3
        // awaits there, so poll 4 is back here, and so is poll 5.
        assert_eq!(*seen.lock().unwrap(), [false, true, true, false, false]);
        assert!(!ran.long, "the polls were short");
    }

    #[tokio::test]
    async fn a_call_run_on_the_lane_from_the_start_stays_there() {
        let scheduler = Scheduler::new(&ExecutionSettings::default()).unwrap();
        let share = scheduler.share("tenant");
        let seen = Arc::new(Mutex::new(Vec::new()));
        share.run_on_lane(guest(0, 2, seen.clone())).await.unwrap();
        assert_eq!(*seen.lock().unwrap(), [true, true, true]);
    }
}
