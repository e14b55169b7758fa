//! Prometheus metrics, rendered in the text exposition format at `/metrics`.
//!
//! Hand-rolled rather than a metrics framework: the set is small and fixed, and the verify hot
//! path pays one short uncontended lock per request. Names follow Prometheus conventions
//! (`_total` counters, `_seconds` histograms with cumulative `le` buckets).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// A latency histogram.
#[derive(Debug, Default, Clone)]
struct Histogram {
    /// Observations per bucket (not cumulative; `BUCKETS.len()` + the overflow bucket).
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, seconds: f64) {
        if self.counts.is_empty() {
            self.counts = vec![0; BUCKETS.len() + 1];
        }
        let i = BUCKETS
            .iter()
            .position(|b| seconds <= *b)
            .unwrap_or(BUCKETS.len());
        self.counts[i] += 1;
        self.sum += seconds;
        self.count += 1;
    }
}

/// TOP calls by method, then code (0 is success), then sub_code: nested so that counting a
/// call already seen looks its labels up by reference and allocates nothing.
type Calls = BTreeMap<&'static str, BTreeMap<u32, BTreeMap<String, u64>>>;

/// Everything ticketd counts.
#[derive(Debug, Default)]
pub struct Metrics {
    /// TOP calls by (method, code, sub_code).
    calls: Mutex<Calls>,
    /// TOP call latency by method.
    latency: Mutex<BTreeMap<&'static str, Histogram>>,
    /// Store failures (unavailable or internal) seen by any caller.
    store_errors: AtomicU64,
}

impl Metrics {
    /// Counts one answered TOP call. `method` is one of the known names (or `unknown`): a
    /// caller could otherwise grow the label set without bound.
    pub fn observe_call(&self, method: &'static str, code: u32, sub_code: &str, elapsed: Duration) {
        let method = if method.is_empty() { "unknown" } else { method };
        if let Ok(mut calls) = self.calls.lock() {
            let by_sub = calls.entry(method).or_default().entry(code).or_default();
            match by_sub.get_mut(sub_code) {
                Some(n) => *n += 1,
                None => {
                    by_sub.insert(sub_code.to_owned(), 1);
                }
            }
        }
        if let Ok(mut latency) = self.latency.lock() {
            latency
                .entry(method)
                .or_default()
                .observe(elapsed.as_secs_f64());
        }
    }

    /// Counts a store failure.
    pub fn store_error(&self) {
        self.store_errors.fetch_add(1, Ordering::Relaxed);
    }

    /// The exposition text, followed by `extra` gauges (`name`, help, value) from the store.
    pub fn render(&self, extra: &[(String, String, f64)]) -> String {
        let mut out = String::new();
        out.push_str("# HELP ticketd_top_calls_total TOP calls answered, by method, code (0 = success) and sub_code.\n");
        out.push_str("# TYPE ticketd_top_calls_total counter\n");
        if let Ok(calls) = self.calls.lock() {
            let rows = calls.iter().flat_map(|(method, by_code)| {
                by_code.iter().flat_map(move |(code, by_sub)| {
                    by_sub.iter().map(move |(sub, n)| (method, code, sub, n))
                })
            });
            for (method, code, sub, n) in rows {
                let _ = writeln!(
                    out,
                    "ticketd_top_calls_total{{method=\"{}\",code=\"{code}\",sub_code=\"{}\"}} {n}",
                    escape(method),
                    escape(sub)
                );
            }
        }
        out.push_str(
            "# HELP ticketd_top_call_duration_seconds Time from request to answer, by method.\n",
        );
        out.push_str("# TYPE ticketd_top_call_duration_seconds histogram\n");
        if let Ok(latency) = self.latency.lock() {
            for (method, h) in latency.iter() {
                let method = escape(method);
                let mut cumulative = 0;
                for (i, bound) in BUCKETS.iter().enumerate() {
                    cumulative += h.counts.get(i).copied().unwrap_or(0);
                    let _ = writeln!(
                        out,
                        "ticketd_top_call_duration_seconds_bucket{{method=\"{method}\",le=\"{bound}\"}} {cumulative}"
                    );
                }
                let _ = writeln!(
                    out,
                    "ticketd_top_call_duration_seconds_bucket{{method=\"{method}\",le=\"+Inf\"}} {}",
                    h.count
                );
                let _ = writeln!(
                    out,
                    "ticketd_top_call_duration_seconds_sum{{method=\"{method}\"}} {}",
                    h.sum
                );
                let _ = writeln!(
                    out,
                    "ticketd_top_call_duration_seconds_count{{method=\"{method}\"}} {}",
                    h.count
                );
            }
        }
        out.push_str("# HELP ticketd_store_errors_total Ledger operations that failed (unavailable or internal).\n");
        out.push_str("# TYPE ticketd_store_errors_total counter\n");
        let _ = writeln!(
            out,
            "ticketd_store_errors_total {}",
            self.store_errors.load(Ordering::Relaxed)
        );
        for (name, help, value) in extra {
            let _ = writeln!(out, "# HELP {name} {help}");
            let kind = if name.ends_with("_total") {
                "counter"
            } else {
                "gauge"
            };
            let _ = writeln!(out, "# TYPE {name} {kind}");
            let _ = writeln!(out, "{name} {value}");
        }
        out
    }
}

/// Escapes a label value.
fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_cumulative_buckets() {
        let m = Metrics::default();
        m.observe_call(
            "taobao.travel.ticket.order.verify",
            0,
            "",
            Duration::from_micros(700),
        );
        m.observe_call(
            "taobao.travel.ticket.order.verify",
            50,
            "isv.verify-num-exceed",
            Duration::from_millis(3),
        );
        m.store_error();
        let text = m.render(&[("ticketd_ledger_vouchers".into(), "Vouchers.".into(), 2.0)]);
        assert!(text.contains("ticketd_top_calls_total{method=\"taobao.travel.ticket.order.verify\",code=\"0\",sub_code=\"\"} 1"));
        assert!(text.contains("code=\"50\",sub_code=\"isv.verify-num-exceed\"} 1"));
        assert!(text.contains("le=\"0.0005\"} 0"));
        assert!(text.contains("le=\"0.001\"} 1"));
        assert!(text.contains("le=\"0.005\"} 2"));
        assert!(text.contains("le=\"+Inf\"} 2"));
        assert!(text.contains("ticketd_store_errors_total 1"));
        assert!(text.contains("# TYPE ticketd_ledger_vouchers gauge\nticketd_ledger_vouchers 2"));
    }
}
