//! Prometheus metrics, per component. Handles are made once when a
//! component loads, so the request path only touches atomics.

use std::sync::OnceLock;
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, String)>;

/// The `status` label of the request counters, by class.
const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// Every metric family the host exports.
struct Families {
    registry: Registry,
    requests: Family<Labels, Counter>,
    duration: Family<Labels, Histogram, fn() -> Histogram>,
    instances_live: Family<Labels, Gauge>,
    instances_idle: Family<Labels, Gauge>,
    instantiations: Family<Labels, Counter>,
    instantiation_time: Family<Labels, Histogram, fn() -> Histogram>,
    traps: Family<Labels, Counter>,
    timeouts: Family<Labels, Counter>,
    queue_rejections: Family<Labels, Counter>,
    client_aborts: Family<Labels, Counter>,
    blocked_loops: Family<Labels, Counter>,
    cache: [Family<Labels, Counter>; 5],
    rate_limit_fallbacks: Counter,
    functions_compiled: Counter,
    functions_reused: Counter,
}

fn families() -> &'static Families {
    static FAMILIES: OnceLock<Families> = OnceLock::new();
    FAMILIES.get_or_init(|| {
        fn latency() -> Histogram {
            Histogram::new(exponential_buckets(0.000_1, 2.0, 20))
        }
        let mut registry = Registry::with_prefix("cello");
        let families = Families {
            requests: Family::default(),
            duration: Family::new_with_constructor(latency),
            instances_live: Family::default(),
            instances_idle: Family::default(),
            instantiations: Family::default(),
            instantiation_time: Family::new_with_constructor(latency),
            traps: Family::default(),
            timeouts: Family::default(),
            queue_rejections: Family::default(),
            client_aborts: Family::default(),
            blocked_loops: Family::default(),
            cache: Default::default(),
            rate_limit_fallbacks: Counter::default(),
            functions_compiled: Counter::default(),
            functions_reused: Counter::default(),
            registry: Registry::default(),
        };
        let f = &families;
        registry.register(
            "requests",
            "Requests answered, by status class",
            f.requests.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Time to answer a request",
            f.duration.clone(),
        );
        registry.register(
            "instances_live",
            "Instances alive",
            f.instances_live.clone(),
        );
        registry.register(
            "instances_idle",
            "Warm instances waiting for work",
            f.instances_idle.clone(),
        );
        registry.register(
            "instantiations",
            "Instances created",
            f.instantiations.clone(),
        );
        registry.register(
            "instantiation_duration_seconds",
            "Time to create an instance, on-start included",
            f.instantiation_time.clone(),
        );
        registry.register(
            "traps",
            "Guest traps; each discards its instance",
            f.traps.clone(),
        );
        registry.register(
            "timeouts",
            "Requests over their time limit (504)",
            f.timeouts.clone(),
        );
        registry.register(
            "queue_rejections",
            "Requests refused with 503 because the queue was full",
            f.queue_rejections.clone(),
        );
        registry.register(
            "client_aborts",
            "Requests whose client hung up before the response",
            f.client_aborts.clone(),
        );
        registry.register(
            "blocked_loops",
            "Async handlers that ran too long without awaiting",
            f.blocked_loops.clone(),
        );
        let help = [
            ("cache_hits", "Responses served from the cache"),
            ("cache_misses", "Cacheable requests that called the guest"),
            ("cache_stores", "Responses stored in the cache"),
            ("cache_evictions", "Cache entries evicted for space"),
            ("cache_invalidations", "Cache entries dropped by tag"),
        ];
        for ((name, text), family) in help.into_iter().zip(&f.cache) {
            registry.register(name, text, family.clone());
        }
        registry.register(
            "rate_limit_fallbacks",
            "Rate-limit decisions made on this host because the cluster's Redis failed",
            f.rate_limit_fallbacks.clone(),
        );
        registry.register(
            "functions_compiled",
            "Functions Cranelift compiled, with the function cache on",
            f.functions_compiled.clone(),
        );
        registry.register(
            "functions_reused",
            "Functions read back from the function cache instead of compiled",
            f.functions_reused.clone(),
        );
        Families {
            registry,
            ..families
        }
    })
}

/// The metrics of one component (or `-` for requests no component took).
#[derive(Clone)]
pub struct ComponentMetrics {
    by_class: [Counter; 5],
    duration: Histogram,
    pub instances_live: Gauge,
    pub instances_idle: Gauge,
    instantiations: Counter,
    instantiation_time: Histogram,
    pub traps: Counter,
    pub timeouts: Counter,
    pub queue_rejections: Counter,
    pub client_aborts: Counter,
    pub blocked_loops: Counter,
    pub cache_hits: Counter,
    pub cache_misses: Counter,
    pub cache_stores: Counter,
    pub cache_evictions: Counter,
    pub cache_invalidations: Counter,
}

impl ComponentMetrics {
    /// Handles for `component`, registered on first use.
    pub fn new(component: &str) -> Self {
        let f = families();
        let labels = vec![("component", component.to_string())];
        let class = |class: &str| {
            let mut labels = labels.clone();
            labels.push(("status", class.to_string()));
            f.requests.get_or_create(&labels).clone()
        };
        Self {
            by_class: STATUS_CLASSES.map(class),
            duration: f.duration.get_or_create(&labels).clone(),
            instances_live: f.instances_live.get_or_create(&labels).clone(),
            instances_idle: f.instances_idle.get_or_create(&labels).clone(),
            instantiations: f.instantiations.get_or_create(&labels).clone(),
            instantiation_time: f.instantiation_time.get_or_create(&labels).clone(),
            traps: f.traps.get_or_create(&labels).clone(),
            timeouts: f.timeouts.get_or_create(&labels).clone(),
            queue_rejections: f.queue_rejections.get_or_create(&labels).clone(),
            client_aborts: f.client_aborts.get_or_create(&labels).clone(),
            blocked_loops: f.blocked_loops.get_or_create(&labels).clone(),
            cache_hits: f.cache[0].get_or_create(&labels).clone(),
            cache_misses: f.cache[1].get_or_create(&labels).clone(),
            cache_stores: f.cache[2].get_or_create(&labels).clone(),
            cache_evictions: f.cache[3].get_or_create(&labels).clone(),
            cache_invalidations: f.cache[4].get_or_create(&labels).clone(),
        }
    }

    /// Removes `component`'s series, for a component taken away with its
    /// name (a tenant deleted): whoever loads a component of that name next
    /// starts from zero. Handles still held count on, unexported.
    pub fn forget(component: &str) {
        let f = families();
        let labels = vec![("component", component.to_string())];
        for class in STATUS_CLASSES {
            let mut labels = labels.clone();
            labels.push(("status", class.to_string()));
            f.requests.remove(&labels);
        }
        f.duration.remove(&labels);
        f.instantiation_time.remove(&labels);
        f.instances_live.remove(&labels);
        f.instances_idle.remove(&labels);
        for counter in [
            &f.instantiations,
            &f.traps,
            &f.timeouts,
            &f.queue_rejections,
            &f.client_aborts,
            &f.blocked_loops,
        ]
        .into_iter()
        .chain(&f.cache)
        {
            counter.remove(&labels);
        }
    }

    /// Handles for requests that no component took (404, 405).
    pub fn unrouted() -> &'static Self {
        static UNROUTED: OnceLock<ComponentMetrics> = OnceLock::new();
        UNROUTED.get_or_init(|| Self::new("-"))
    }

    /// Counts an instance created in `elapsed`.
    pub fn instantiated(&self, elapsed: Duration) {
        self.instantiations.inc();
        self.instantiation_time.observe(elapsed.as_secs_f64());
    }

    /// Counts an answered request.
    pub fn answered(&self, status: u16, elapsed: Duration) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        self.by_class[class].inc();
        self.duration.observe(elapsed.as_secs_f64());
    }
}

/// Counts a rate-limit decision made on this host, the cluster's shared
/// counter being out of reach.
pub fn rate_limit_fallback() {
    families().rate_limit_fallbacks.inc();
}

/// Counts a function Cranelift compiled.
pub fn function_compiled() {
    families().functions_compiled.inc();
}

/// Counts a function read back from the function cache.
pub fn function_reused() {
    families().functions_reused.inc();
}

/// The text formats `/metrics` speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exposition {
    /// OpenMetrics 1.0: counters' samples end in `_total` under a family
    /// without it, and the text ends with `# EOF`.
    OpenMetrics,
    /// Prometheus' classic text format 0.0.4: a counter's family is named
    /// as its sample, with `_total`.
    Prometheus,
}

impl Exposition {
    /// The format an `Accept` header asks for, as Prometheus' own client
    /// libraries choose it: OpenMetrics when it is listed, else the
    /// classic text.
    pub fn for_accept(accept: Option<&str>) -> Self {
        let asks_openmetrics = accept.is_some_and(|accept| {
            accept.split(',').any(|item| {
                let media = item.split(';').next().unwrap_or_default().trim();
                media.eq_ignore_ascii_case("application/openmetrics-text")
            })
        });
        if asks_openmetrics {
            Self::OpenMetrics
        } else {
            Self::Prometheus
        }
    }

    /// The `Content-Type` of a body in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Self::Prometheus => "text/plain; version=0.0.4; charset=utf-8",
        }
    }
}

/// Every metric, in `format`.
pub fn render(format: Exposition) -> String {
    let mut text = String::new();
    encode(&mut text, &families().registry).expect("writing to a String cannot fail");
    match format {
        Exposition::OpenMetrics => text,
        Exposition::Prometheus => classic(&text),
    }
}

/// OpenMetrics text as Prometheus' classic format: each counter's `HELP`
/// and `TYPE` name the `_total` its samples carry; `UNIT` and `EOF`, which
/// the classic format lacks, are left out.
fn classic(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = openmetrics
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let mut text = String::with_capacity(openmetrics.len() + counters.len() * 16);
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let descriptor = ["# HELP ", "# TYPE "]
            .into_iter()
            .find_map(|prefix| Some((prefix, line.strip_prefix(prefix)?)));
        match descriptor {
            Some((prefix, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                text.push_str(prefix);
                text.push_str(name);
                if counters.contains(name) {
                    text.push_str("_total");
                }
                text.push(' ');
                text.push_str(tail);
            }
            None => text.push_str(line),
        }
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::{Exposition, classic};

    #[test]
    fn openmetrics_is_served_only_when_accepted() {
        assert_eq!(Exposition::for_accept(None), Exposition::Prometheus);
        assert_eq!(
            Exposition::for_accept(Some("text/plain;version=0.0.4;q=0.3,*/*;q=0.1")),
            Exposition::Prometheus
        );
        let scraper = "application/openmetrics-text;version=1.0.0;q=0.5,text/plain;q=0.4";
        assert_eq!(
            Exposition::for_accept(Some(scraper)),
            Exposition::OpenMetrics
        );
    }

    #[test]
    fn the_classic_format_names_counters_with_their_total() {
        let openmetrics = "# HELP cello_requests Requests answered.\n\
                           # TYPE cello_requests counter\n\
                           cello_requests_total{status=\"2xx\"} 3\n\
                           # HELP cello_live Instances alive.\n\
                           # TYPE cello_live gauge\n\
                           cello_live 1\n\
                           # EOF\n";
        assert_eq!(
            classic(openmetrics),
            "# HELP cello_requests_total Requests answered.\n\
             # TYPE cello_requests_total counter\n\
             cello_requests_total{status=\"2xx\"} 3\n\
             # HELP cello_live Instances alive.\n\
             # TYPE cello_live gauge\n\
             cello_live 1\n"
        );
    }
}
