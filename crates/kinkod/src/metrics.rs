//! Prometheus metrics: what kinkod counts and its text exposition (served by the metrics
//! listener). A leaf module. No metrics crate: a few atomics and a text renderer.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// A monotonically increasing counter.
#[derive(Debug, Default)]
pub(crate) struct Counter(AtomicU64);

impl Counter {
    pub(crate) fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Latency bucket bounds, seconds.
const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// A latency histogram with fixed buckets (cumulative when rendered).
#[derive(Debug, Default)]
pub(crate) struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    /// Sum in microseconds (integer, so it can be atomic).
    sum_us: AtomicU64,
}

impl Histogram {
    pub(crate) fn observe(&self, seconds: f64) {
        if let Some(i) = BUCKETS.iter().position(|b| seconds <= *b)
            && let Some(b) = self.buckets.get(i)
        {
            b.fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        // Saturating float-to-int conversion; negative or NaN become 0.
        let us = (seconds * 1e6) as u64;
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0u64;
        for (bound, b) in BUCKETS.iter().zip(&self.buckets) {
            cumulative = cumulative.saturating_add(b.load(Ordering::Relaxed));
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let sum = self.sum_us.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {count}");
    }
}

/// Everything kinkod counts.
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    /// Policy decisions by (rule, outcome).
    decisions: Mutex<BTreeMap<(String, &'static str), u64>>,
    /// Approved → signed (the whole signing step, audit records included).
    pub(crate) sign_seconds: Histogram,
    /// One durable audit append.
    pub(crate) audit_append_seconds: Histogram,
    /// HSM signing errors.
    pub(crate) hsm_errors: Counter,
    /// Audit appends that failed.
    pub(crate) audit_errors: Counter,
    /// Calls refused by the per-principal rate limit.
    pub(crate) rate_limited: Counter,
    /// Refused authentications beyond the logging rate (counted, not logged).
    pub(crate) auth_refusals_unlogged: Counter,
}

impl Metrics {
    pub(crate) fn record_decision(&self, rule: Option<&str>, denied: bool) {
        let key = (
            rule.unwrap_or("(none: denied by default)").to_string(),
            if denied { "deny" } else { "allow" },
        );
        if let Ok(mut d) = self.decisions.lock() {
            *d.entry(key).or_insert(0) += 1;
        }
    }

    /// The exposition text; `states` are the stored requests by state.
    pub(crate) fn render(&self, states: &[(String, u64)], frozen: bool) -> String {
        let mut out = String::new();
        out.push_str(
            "# HELP kinko_requests Stored withdrawal requests by state.\n# TYPE kinko_requests gauge\n",
        );
        for (state, n) in states {
            let _ = writeln!(out, "kinko_requests{{state=\"{}\"}} {n}", escape(state));
        }
        out.push_str(
            "# HELP kinko_decisions_total Policy decisions by rule and outcome.\n# TYPE kinko_decisions_total counter\n",
        );
        if let Ok(d) = self.decisions.lock() {
            for ((rule, outcome), n) in d.iter() {
                let _ = writeln!(
                    out,
                    "kinko_decisions_total{{rule=\"{}\",outcome=\"{outcome}\"}} {n}",
                    escape(rule)
                );
            }
        }
        self.sign_seconds.render(
            &mut out,
            "kinko_sign_seconds",
            "From quorum to signed transaction: authorization, audit records, HSM, verification.",
        );
        self.audit_append_seconds.render(
            &mut out,
            "kinko_audit_append_seconds",
            "One durable audit append (group commit).",
        );
        for (name, help, c) in [
            (
                "kinko_hsm_errors_total",
                "HSM signing calls that failed.",
                &self.hsm_errors,
            ),
            (
                "kinko_audit_errors_total",
                "Audit appends that failed (signing is refused while they fail).",
                &self.audit_errors,
            ),
            (
                "kinko_rate_limited_total",
                "Calls refused by the per-principal rate limit.",
                &self.rate_limited,
            ),
            (
                "kinko_auth_refusals_unlogged_total",
                "Refused authentications beyond the audit log's rate for them (counted only).",
                &self.auth_refusals_unlogged,
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                c.get()
            );
        }
        let _ = writeln!(
            out,
            "# HELP kinko_frozen 1 while signing is frozen.\n# TYPE kinko_frozen gauge\nkinko_frozen {}",
            u8::from(frozen)
        );
        out
    }
}

pub(crate) fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_render_cumulative_buckets_and_counts() {
        let h = Histogram::default();
        for s in [0.0004, 0.002, 0.002, 7.0] {
            h.observe(s);
        }
        let mut out = String::new();
        h.render(&mut out, "x", "help");
        assert!(out.contains("x_bucket{le=\"0.0005\"} 1\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"0.0025\"} 3\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"5\"} 3\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"+Inf\"} 4\n"), "{out}");
        assert!(out.contains("x_count 4\n"), "{out}");
    }

    #[test]
    fn decisions_and_states_are_labelled_and_escaped() {
        let m = Metrics::default();
        m.record_decision(Some("hot \"refill\""), false);
        m.record_decision(Some("hot \"refill\""), false);
        m.record_decision(None, true);
        let out = m.render(&[("signed".into(), 3)], true);
        assert!(
            out.contains("kinko_requests{state=\"signed\"} 3\n"),
            "{out}"
        );
        assert!(
            out.contains(
                "kinko_decisions_total{rule=\"hot \\\"refill\\\"\",outcome=\"allow\"} 2\n"
            ),
            "{out}"
        );
        assert!(out.contains("outcome=\"deny\"} 1\n"), "{out}");
        assert!(out.contains("kinko_frozen 1\n"), "{out}");
    }
}
