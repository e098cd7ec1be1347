//! What each channel did: its attempts by outcome and how long its
//! upstream took to answer (to the response head), for `GET
//! /admin/channels` and the Prometheus metrics. Kept across a catalog
//! reload with the channel's health.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::health::{Attempt, State};
use crate::catalog::Catalog;
use crate::metrics::{render_labels, Histogram};

#[derive(Default)]
pub struct ChannelStats {
    served: AtomicU64,
    failed: AtomicU64,
    refused: AtomicU64,
    /// Time from sending to the upstream's response head.
    latency: Histogram,
}

impl ChannelStats {
    pub fn record(&self, attempt: Attempt, took: Duration) {
        let counter = match attempt {
            Attempt::Served => &self.served,
            Attempt::Failed => &self.failed,
            Attempt::Refused => &self.refused,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        self.latency.observe(took.as_secs_f64());
    }

    /// Attempts served, failed and refused since start.
    pub fn attempts(&self) -> (u64, u64, u64) {
        (
            self.served.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
            self.refused.load(Ordering::Relaxed),
        )
    }

    pub fn latency(&self) -> &Histogram {
        &self.latency
    }
}

/// The channels' series in Prometheus' text format.
pub fn render(catalog: &Catalog, out: &mut String) {
    let mut models: Vec<&String> = catalog.channels.keys().collect();
    models.sort();
    let rows: Vec<(String, &super::Channel)> = models
        .into_iter()
        .flat_map(|model| {
            catalog.channels[model].iter().map(move |c| {
                let labels = render_labels(
                    &["model", "provider", "upstream_model"],
                    &[
                        model.clone(),
                        c.provider.name.clone(),
                        c.model.upstream_model.clone(),
                    ],
                );
                (labels, c)
            })
        })
        .collect();
    let _ = writeln!(
        out,
        "# HELP tollgate_channel_attempts_total Upstream calls per channel, by outcome (served, failed, refused_key).\n# TYPE tollgate_channel_attempts_total counter"
    );
    for (labels, c) in &rows {
        let (served, failed, refused) = c.stats.attempts();
        for (outcome, n) in [
            ("served", served),
            ("failed", failed),
            ("refused_key", refused),
        ] {
            let _ = writeln!(
                out,
                "tollgate_channel_attempts_total{{{labels},outcome=\"{outcome}\"}} {n}"
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP tollgate_channel_upstream_seconds Time from sending to the upstream's response head, per channel.\n# TYPE tollgate_channel_upstream_seconds histogram"
    );
    for (labels, c) in &rows {
        c.stats
            .latency()
            .render(out, "tollgate_channel_upstream_seconds", labels);
    }
    let _ = writeln!(
        out,
        "# HELP tollgate_channel_state Where each channel stands: 1 for its current state.\n# TYPE tollgate_channel_state gauge"
    );
    for (labels, c) in &rows {
        let state = match c.health.state() {
            State::Healthy => "healthy",
            State::CoolingDown { .. } => "cooling_down",
            State::HalfOpen { .. } => "half_open",
            State::Disabled { .. } => "disabled",
        };
        for name in ["healthy", "cooling_down", "half_open", "disabled"] {
            let value = u8::from(name == state);
            let _ = writeln!(
                out,
                "tollgate_channel_state{{{labels},state=\"{name}\"}} {value}"
            );
        }
    }
}
