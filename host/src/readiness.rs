//! Whether the host is ready for traffic, and if not, why: what `/readyz`
//! answers, and what the traffic listener checks before the served
//! components have loaded.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

/// Names listed at most in one answer, so that it stays short.
const SHOWN: usize = 10;

/// Whether the host is ready for traffic, and if not, what it waits for.
#[derive(Default)]
pub struct Readiness {
    /// True once the served components have loaded: before, the traffic
    /// listener answers 503 with `Retry-After`.
    started: AtomicBool,
    /// True from when the traffic listener serves until draining starts.
    serving: AtomicBool,
    /// Components still loading, by name.
    loading: Mutex<BTreeSet<String>>,
    /// Components that did not load and serve nothing, with why.
    failed: Mutex<BTreeMap<String, String>>,
    /// Components whose new version was refused while the previous one
    /// keeps serving, with why: reported, but the host is still ready.
    stale: Mutex<BTreeMap<String, String>>,
    /// Shared services the host serves without, with what that costs
    /// (Redis down: KV fails, limits are per host): reported, but still
    /// ready, since the host still serves.
    degraded: Mutex<BTreeMap<String, String>>,
    /// What is wrong with the tenants' store of record (a cluster's
    /// PostgreSQL), if anything.
    store: Mutex<StoreHealth>,
}

/// The tenants' store of record, as readiness sees it.
#[derive(Default)]
enum StoreHealth {
    #[default]
    Fine,
    /// The tenants were never loaded from it: not ready, and why.
    Waiting(String),
    /// Lost after the tenants were loaded: what is loaded serves, but
    /// changes cannot be made. A warning, not unreadiness.
    Degraded(String),
}

impl Readiness {
    /// Notes that the served components have loaded: traffic is answered.
    pub fn set_started(&self) {
        self.started.store(true, Ordering::Release);
    }

    /// Whether the served components have loaded.
    pub fn started(&self) -> bool {
        self.started.load(Ordering::Acquire)
    }

    /// Marks the traffic listener serving (true), or draining (false).
    pub fn set_serving(&self, serving: bool) {
        self.serving.store(serving, Ordering::Relaxed);
    }

    /// Notes that `what` is loading.
    pub fn loading(&self, what: String) {
        self.loading.lock().unwrap().insert(what);
    }

    /// Notes that `what` is done loading, whether it loaded or not.
    pub fn loaded(&self, what: &str) {
        self.loading.lock().unwrap().remove(what);
    }

    /// Notes that `what` did not load and serves nothing: not ready until
    /// it loads, or is removed.
    pub fn failed(&self, what: &str, why: &str) {
        self.stale.lock().unwrap().remove(what);
        let mut failed = self.failed.lock().unwrap();
        failed.insert(what.to_string(), why.to_string());
    }

    /// Notes that a new version of `what` was refused, and the previous
    /// version keeps serving.
    pub fn stale(&self, what: &str, why: &str) {
        self.failed.lock().unwrap().remove(what);
        let mut stale = self.stale.lock().unwrap();
        stale.insert(what.to_string(), why.to_string());
    }

    /// Notes that `what` serves its latest version, or is gone: nothing
    /// to report about it any more.
    pub fn settled(&self, what: &str) {
        self.failed.lock().unwrap().remove(what);
        self.stale.lock().unwrap().remove(what);
    }

    /// Notes that the tenants are not loaded yet from their store, and why.
    pub fn store_waiting(&self, why: String) {
        *self.store.lock().unwrap() = StoreHealth::Waiting(why);
    }

    /// Notes that the tenants' store was lost after they were loaded.
    pub fn store_degraded(&self, why: String) {
        *self.store.lock().unwrap() = StoreHealth::Degraded(why);
    }

    /// Notes that the tenants' store is reached and followed.
    pub fn store_fine(&self) {
        *self.store.lock().unwrap() = StoreHealth::Fine;
    }

    /// Notes that `service` is out of reach, and what the host does
    /// without it.
    pub fn degraded(&self, service: &str, why: &str) {
        let mut degraded = self.degraded.lock().unwrap();
        degraded.insert(service.to_string(), why.to_string());
    }

    /// Notes that `service` answers again.
    pub fn restored(&self, service: &str) {
        self.degraded.lock().unwrap().remove(service);
    }

    /// None when ready; otherwise a sentence that says what is awaited.
    pub fn not_ready(&self) -> Option<String> {
        if !self.serving.load(Ordering::Relaxed) {
            return Some("not ready: not serving traffic (starting or shutting down)".into());
        }
        if let StoreHealth::Waiting(why) = &*self.store.lock().unwrap() {
            return Some(format!(
                "not ready: the tenants are not loaded yet from their store: {why}"
            ));
        }
        let failed = self.failed.lock().unwrap();
        if !failed.is_empty() {
            let listed = failed.iter().map(|(name, why)| format!("{name} ({why})"));
            return Some(format!(
                "not ready: {} component(s) failed to load: {}",
                failed.len(),
                shortened(listed, failed.len(), "; ")
            ));
        }
        drop(failed);
        let loading = self.loading.lock().unwrap();
        if loading.is_empty() {
            return None;
        }
        Some(format!(
            "not ready: still restoring {} component(s): {}",
            loading.len(),
            shortened(loading.iter().cloned(), loading.len(), ", ")
        ))
    }

    /// What a ready host reports beside being ready: shared servers it
    /// serves without (`degraded: ...`: the tenants' store, Redis), and
    /// components whose new version was refused, each a sentence.
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        if let StoreHealth::Degraded(why) = &*self.store.lock().unwrap() {
            warnings.push(format!(
                "degraded: the tenants' store is unreachable, so tenants' changes are \
                 refused (503) while what is loaded keeps serving: {why}"
            ));
        }
        let degraded = self.degraded.lock().unwrap();
        warnings.extend(degraded.values().map(|why| format!("degraded: {why}")));
        drop(degraded);
        let stale = self.stale.lock().unwrap();
        warnings.extend(stale.iter().take(SHOWN).map(|(name, why)| {
            format!("{name}: the previous version keeps serving; its new version failed: {why}")
        }));
        warnings
    }
}

/// The first [`SHOWN`] of `items` joined with `separator`, and how many
/// more there are.
fn shortened(items: impl Iterator<Item = String>, count: usize, separator: &str) -> String {
    let mut shown: Vec<String> = items.take(SHOWN).collect();
    if count > SHOWN {
        shown.push(format!("and {} more", count - SHOWN));
    }
    shown.join(separator)
}

#[cfg(test)]
mod tests {
    use super::Readiness;

    #[test]
    fn not_ready_until_serving_with_nothing_loading() {
        let ready = Readiness::default();
        assert!(ready.not_ready().unwrap().contains("not serving traffic"));
        ready.set_serving(true);
        assert_eq!(ready.not_ready(), None);
        ready.loading("acme/shop".into());
        ready.loading("globex/api".into());
        let why = ready.not_ready().unwrap();
        assert!(
            why.contains("2 component(s): acme/shop, globex/api"),
            "{why}"
        );
        ready.loaded("acme/shop");
        ready.loaded("globex/api");
        assert_eq!(ready.not_ready(), None);
        ready.set_serving(false);
        assert!(ready.not_ready().is_some());
    }

    #[test]
    fn a_long_list_of_loading_components_is_cut_short() {
        let ready = Readiness::default();
        ready.set_serving(true);
        for i in 0..25 {
            ready.loading(format!("t{i:02}/c"));
        }
        let why = ready.not_ready().unwrap();
        assert!(why.contains("25 component(s)"), "{why}");
        assert!(why.ends_with("and 15 more"), "{why}");
        assert!(!why.contains("t10/c"), "{why}");
    }

    #[test]
    fn a_failed_component_is_not_ready_until_it_loads() {
        let ready = Readiness::default();
        ready.set_serving(true);
        ready.failed("shop", "not a WebAssembly binary");
        let why = ready.not_ready().unwrap();
        assert!(
            why.contains("1 component(s) failed to load: shop (not a WebAssembly binary)"),
            "{why}"
        );
        ready.settled("shop");
        assert_eq!(ready.not_ready(), None);
    }

    #[test]
    fn a_store_never_reached_is_unreadiness_and_one_lost_later_a_warning() {
        let ready = Readiness::default();
        ready.set_serving(true);
        ready.store_waiting("connection refused".into());
        let why = ready.not_ready().unwrap();
        assert!(why.contains("not loaded yet"), "{why}");
        assert!(why.ends_with("connection refused"), "{why}");
        ready.store_fine();
        assert_eq!(ready.not_ready(), None);
        ready.store_degraded("connection reset".into());
        assert_eq!(ready.not_ready(), None);
        let warnings = ready.warnings();
        assert!(
            warnings[0].starts_with("degraded: the tenants' store"),
            "{warnings:?}"
        );
        ready.store_fine();
        assert!(ready.warnings().is_empty());
    }

    #[test]
    fn a_refused_new_version_is_a_warning_not_unreadiness() {
        let ready = Readiness::default();
        ready.set_serving(true);
        ready.stale("shop", "describe() failed");
        assert_eq!(ready.not_ready(), None);
        let warnings = ready.warnings();
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].starts_with("shop: the previous version keeps serving"));
        ready.settled("shop");
        assert!(ready.warnings().is_empty());
    }
}
