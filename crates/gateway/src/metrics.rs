//! Prometheus metrics, rendered in the text exposition format.
//!
//! Series are created on first use and then updated with atomics; the map is
//! only written when a new label combination appears.

use std::fmt::Write;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::RwLock;

/// Upper bounds of the latency histogram, seconds.
const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 60.0,
];

/// A latency histogram over [`LATENCY_BUCKETS`].
#[derive(Default)]
pub struct Histogram {
    /// Observations per bucket, each counted once (not cumulative).
    buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    /// One observation: three atomic additions (its bucket alone; the
    /// cumulative counts Prometheus wants are summed when rendered).
    pub fn observe(&self, seconds: f64) {
        if let Some(i) = LATENCY_BUCKETS.iter().position(|bound| seconds <= *bound) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add((seconds * 1e6) as u64, Ordering::Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// The mean, in seconds (0 with no observation).
    pub fn mean(&self) -> f64 {
        match self.count() {
            0 => 0.0,
            n => self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6 / n as f64,
        }
    }

    /// An upper bound of quantile `q` (0–1): the bound of the first bucket
    /// holding it (`None` with no observation, or beyond the last bucket).
    pub fn quantile_bound(&self, q: f64) -> Option<f64> {
        let n = self.count();
        if n == 0 {
            return None;
        }
        let rank = (q.clamp(0.0, 1.0) * n as f64).ceil().max(1.0) as u64;
        let mut below = 0;
        LATENCY_BUCKETS
            .iter()
            .zip(&self.buckets)
            .find(|(_, count)| {
                below += count.load(Ordering::Relaxed);
                below >= rank
            })
            .map(|(bound, _)| *bound)
    }

    /// Its series, `name_bucket`, `name_sum` and `name_count`, each with
    /// `labels` (already rendered, e.g. `route="/v1/x"`).
    pub fn render(&self, out: &mut String, name: &str, labels: &str) {
        let mut cumulative = 0;
        for (i, bound) in LATENCY_BUCKETS.iter().enumerate() {
            cumulative += self.buckets[i].load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{bound}\"}} {cumulative}");
        }
        let count = self.count();
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels},le=\"+Inf\"}} {count}\n\
             {name}_sum{{{labels}}} {}\n\
             {name}_count{{{labels}}} {count}",
            self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6
        );
    }
}

/// Maps of the metrics: hashbrown's (foldhash, and lookups by an
/// equivalent borrowed key), so that counting a request allocates nothing.
type Map<K, V> = hashbrown::HashMap<K, V>;

/// A family of counters keyed by their label values.
#[derive(Default)]
struct CounterFamily(RwLock<Map<Vec<String>, AtomicU64>>);

/// Label values as given, to find a series' `Vec<String>` key without
/// building one: a slice of `&str` hashes as the `Vec<String>` does.
struct Labels<'a>(&'a [&'a str]);

impl Hash for Labels<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }
}

impl hashbrown::Equivalent<Vec<String>> for Labels<'_> {
    fn equivalent(&self, key: &Vec<String>) -> bool {
        self.0.len() == key.len() && self.0.iter().zip(key).all(|(a, b)| *a == b)
    }
}

impl CounterFamily {
    fn add(&self, labels: &[&str], value: u64) {
        if let Ok(map) = self.0.read() {
            if let Some(counter) = map.get(&Labels(labels)) {
                counter.fetch_add(value, Ordering::Relaxed);
                return;
            }
        }
        if let Ok(mut map) = self.0.write() {
            map.entry(labels_key(labels))
                .or_default()
                .fetch_add(value, Ordering::Relaxed);
        }
    }

    fn render(&self, out: &mut String, name: &str, help: &str, label_names: &[&str]) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        if let Ok(map) = self.0.read() {
            let mut rows: Vec<_> = map.iter().collect();
            rows.sort_by(|a, b| a.0.cmp(b.0));
            for (labels, value) in rows {
                let value = value.load(Ordering::Relaxed);
                let _ = match label_names {
                    [] => writeln!(out, "{name} {value}"),
                    _ => writeln!(
                        out,
                        "{name}{{{}}} {value}",
                        render_labels(label_names, labels)
                    ),
                };
            }
        }
    }
}

fn labels_key(labels: &[&str]) -> Vec<String> {
    labels.iter().map(|s| s.to_string()).collect()
}

pub fn render_labels(names: &[&str], values: &[String]) -> String {
    names
        .iter()
        .zip(values)
        .map(|(n, v)| format!("{n}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"")))
        .collect::<Vec<_>>()
        .join(",")
}

#[derive(Default)]
pub struct Metrics {
    requests: CounterFamily,
    latency: RwLock<Map<String, Histogram>>,
    upstream_errors: CounterFamily,
    tokens: CounterFamily,
    cost: CounterFamily,
    estimated: CounterFamily,
    over_hold: CounterFamily,
    over_hold_nano: CounterFamily,
    shed: CounterFamily,
    client_stalls: CounterFamily,
    failovers: CounterFamily,
    rate_limited: CounterFamily,
    redis_failures: CounterFamily,
    admitted_locally: CounterFamily,
}

impl Metrics {
    pub fn record_request(&self, route: &str, status: u16, seconds: f64) {
        match axum::http::StatusCode::from_u16(status) {
            Ok(code) => self.requests.add(&[route, code.as_str()], 1),
            Err(_) => self.requests.add(&[route, &status.to_string()], 1),
        }
        if let Ok(map) = self.latency.read() {
            if let Some(hist) = map.get(route) {
                return hist.observe(seconds);
            }
        }
        if let Ok(mut map) = self.latency.write() {
            map.entry_ref(route).or_default().observe(seconds);
        }
    }

    pub fn record_upstream_error(&self, provider: &str, kind: &str) {
        self.upstream_errors.add(&[provider, kind], 1);
    }

    pub fn record_usage(&self, model: &str, input: u64, output: u64, cost_nano: i64) {
        self.tokens.add(&[model, "input"], input);
        self.tokens.add(&[model, "output"], output);
        self.cost.add(&[model], cost_nano.max(0) as u64);
    }

    /// A request charged from an estimate (the upstream reported no usage).
    pub fn record_estimate(&self, model: &str) {
        self.estimated.add(&[model], 1);
    }

    /// An upstream reported usage costing more than the request's hold:
    /// `excess` nano-USD were not charged (see `billing`).
    pub fn record_over_hold(&self, model: &str, excess: i64) {
        self.over_hold.add(&[model], 1);
        self.over_hold_nano.add(&[model], excess.max(0) as u64);
    }

    /// A request refused because the gateway is overloaded (`reason`).
    pub fn record_shed(&self, reason: &str) {
        self.shed.add(&[reason], 1);
    }

    /// A request that left a failing provider for the model's next channel.
    pub fn record_failover(&self, from_provider: &str) {
        self.failovers.add(&[from_provider], 1);
    }

    /// A request a rate limit refused (`kind`: requests, tokens, concurrency).
    pub fn record_rate_limited(&self, kind: &str) {
        self.rate_limited.add(&[kind], 1);
    }

    /// A client that stopped reading its stream and was dropped.
    /// A call to Redis that failed (`op`: connect, admit, settle, apply).
    pub fn record_redis_failure(&self, op: &str) {
        self.redis_failures.add(&[op], 1);
    }

    /// A request admitted on this instance's own limits and ledger because
    /// Redis could not be reached (`on_failure = "local"`).
    pub fn record_admitted_locally(&self) {
        self.admitted_locally.add(&[], 1);
    }

    pub fn record_client_stall(&self, route: &str) {
        self.client_stalls.add(&[route], 1);
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        self.requests.render(
            &mut out,
            "tollgate_requests_total",
            "HTTP requests served, by route and status.",
            &["route", "status"],
        );
        let _ = writeln!(
            out,
            "# HELP tollgate_request_duration_seconds Time to the response head, by route.\n# TYPE tollgate_request_duration_seconds histogram"
        );
        if let Ok(map) = self.latency.read() {
            let mut routes: Vec<_> = map.iter().collect();
            routes.sort_by(|a, b| a.0.cmp(b.0));
            for (route, h) in routes {
                h.render(
                    &mut out,
                    "tollgate_request_duration_seconds",
                    &render_labels(&["route"], std::slice::from_ref(route)),
                );
            }
        }
        self.upstream_errors.render(
            &mut out,
            "tollgate_upstream_errors_total",
            "Failed upstream calls, by provider and kind.",
            &["provider", "kind"],
        );
        self.tokens.render(
            &mut out,
            "tollgate_tokens_total",
            "Tokens metered, by model and direction.",
            &["model", "direction"],
        );
        self.cost.render(
            &mut out,
            "tollgate_cost_nano_usd_total",
            "Amount charged in nano-USD, by model.",
            &["model"],
        );
        self.estimated.render(
            &mut out,
            "tollgate_estimated_charges_total",
            "Requests charged from a local estimate because the upstream reported no usage, by model.",
            &["model"],
        );
        self.over_hold.render(
            &mut out,
            "tollgate_charges_over_hold_total",
            "Requests whose reported usage cost more than their hold (charged the hold), by model.",
            &["model"],
        );
        self.over_hold_nano.render(
            &mut out,
            "tollgate_charges_over_hold_nano_usd_total",
            "Reported cost above the hold, not charged, in nano-USD, by model.",
            &["model"],
        );
        self.shed.render(
            &mut out,
            "tollgate_shed_total",
            "Requests refused with 503 because the gateway was overloaded, by reason.",
            &["reason"],
        );
        self.client_stalls.render(
            &mut out,
            "tollgate_client_stalls_total",
            "Streams dropped because their client stopped reading, by kind.",
            &["kind"],
        );
        self.failovers.render(
            &mut out,
            "tollgate_failovers_total",
            "Requests moved to another channel after a provider failed before answering, by that provider.",
            &["provider"],
        );
        self.rate_limited.render(
            &mut out,
            "tollgate_rate_limited_total",
            "Requests refused with 429 by a rate limit, by the limit's kind.",
            &["kind"],
        );
        self.redis_failures.render(
            &mut out,
            "tollgate_redis_failures_total",
            "Calls to Redis that failed or timed out, by operation.",
            &["op"],
        );
        self.admitted_locally.render(
            &mut out,
            "tollgate_admitted_locally_total",
            "Requests admitted on this instance's own limits and ledger while Redis was unreachable.",
            &[],
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_histograms() {
        let m = Metrics::default();
        m.record_request("/v1/chat/completions", 200, 0.002);
        m.record_request("/v1/chat/completions", 200, 0.2);
        m.record_usage("gpt", 10, 5, 1234);
        let text = m.render();
        assert!(text
            .contains("tollgate_requests_total{route=\"/v1/chat/completions\",status=\"200\"} 2"));
        assert!(text.contains("le=\"0.0025\"} 1"));
        assert!(text.contains("le=\"0.25\"} 2"), "cumulative");
        assert!(text
            .contains("tollgate_request_duration_seconds_count{route=\"/v1/chat/completions\"} 2"));
        assert!(text.contains("tollgate_tokens_total{model=\"gpt\",direction=\"input\"} 10"));
        assert!(text.contains("tollgate_cost_nano_usd_total{model=\"gpt\"} 1234"));
    }

    #[test]
    fn a_histogram_bounds_its_quantiles() {
        let h = Histogram::default();
        assert_eq!((h.mean(), h.quantile_bound(0.5)), (0.0, None));
        for _ in 0..90 {
            h.observe(0.004);
        }
        for _ in 0..10 {
            h.observe(0.2);
        }
        assert_eq!(h.quantile_bound(0.5), Some(0.005));
        assert_eq!(h.quantile_bound(0.9), Some(0.005));
        assert_eq!(h.quantile_bound(0.95), Some(0.25));
        assert!((h.mean() - 0.0236).abs() < 1e-9);
        h.observe(100.0);
        assert_eq!(h.quantile_bound(1.0), None, "beyond the last bucket");
    }
}
