//! Prometheus metrics, rendered in the text exposition format (0.0.4) at `/metrics` by the
//! `prometheus-client` crate.
//!
//! Every label value comes from a closed set, because every distinct label set is a series that
//! lives as long as the process: a caller who could choose a label value could grow `/metrics`
//! (and the scraper's database) without bound. Once, a repeated 400,000-character parameter name
//! became a `sub_code` label, and 20 requests grew `/metrics` from 9.9 KB to 8 MB. So the label
//! types hold only `&'static str`s picked from known tables:
//!
//! - `method`: a [`Method`] name, or `unknown`;
//! - `code`: 0 (success) or a [`PlatformCode`], else `other`;
//! - `sub_code`: empty (none), or the base of the `sub_code` (before the first `:`, where TOP
//!   puts the parameter name) when it is a platform one (`top_protocol::error::sub_code`) or one
//!   of the business catalogue ([`BusinessError`]), else `other`.
//!
//! Names follow Prometheus conventions (`_total` counters, `_seconds` histograms with cumulative
//! `le` buckets). Counting a call takes two short locks and, for a label set already seen,
//! allocates nothing.

use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use ticket_api::{BusinessError, Method};
use top_protocol::error::sub_code;
use top_protocol::PlatformCode;

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// The label value for anything outside a closed set.
const OTHER: &str = "other";

/// The labels of `ticketd_top_calls_total`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct CallLabels {
    method: &'static str,
    code: CodeLabel,
    sub_code: &'static str,
}

/// The labels of `ticketd_top_call_duration_seconds`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct MethodLabels {
    method: &'static str,
}

/// A `code` label: 0 or a code of the platform table, else `other`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum CodeLabel {
    Known(u32),
    Other,
}

impl CodeLabel {
    fn of(code: u32) -> Self {
        if code == 0 || PlatformCode::from_code(code).is_some() {
            CodeLabel::Known(code)
        } else {
            CodeLabel::Other
        }
    }
}

impl EncodeLabelValue for CodeLabel {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        match self {
            CodeLabel::Known(code) => code.encode(encoder),
            CodeLabel::Other => OTHER.encode(encoder),
        }
    }
}

/// The `method` label: the TOP name of a method ticketd implements, or `unknown`.
fn method_label(method: Option<Method>) -> &'static str {
    method.map_or("unknown", Method::name)
}

/// The `sub_code` label: empty for none, the base of a known `sub_code`, else `other`.
fn sub_code_label(sub: &str) -> &'static str {
    if sub.is_empty() {
        return "";
    }
    let base = sub_code::base(sub);
    sub_code::ALL
        .iter()
        .copied()
        .chain(BusinessError::ALL.iter().map(|b| b.entry().sub_code))
        .find(|known| *known == base)
        .unwrap_or(OTHER)
}

fn latency_histogram() -> Histogram {
    Histogram::new(BUCKETS.iter().copied())
}

/// Everything ticketd counts.
///
/// The families are `prometheus-client` handles (an `Arc` inside), so [`Metrics::render`] can
/// register clones of them in a registry built for each scrape, beside that scrape's ledger
/// figures.
#[derive(Debug)]
pub struct Metrics {
    /// TOP calls by (method, code, sub_code).
    calls: Family<CallLabels, Counter>,
    /// TOP call latency by method.
    latency: Family<MethodLabels, Histogram>,
    /// Store failures (unavailable or internal) seen by any caller.
    store_errors: Counter,
    /// The last hour of calls by minute, for the console.
    traffic: crate::traffic::Traffic,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            calls: Family::default(),
            latency: Family::new_with_constructor(latency_histogram),
            store_errors: Counter::default(),
            traffic: crate::traffic::Traffic::default(),
        }
    }
}

impl Metrics {
    /// Counts one answered TOP call. The method is the parsed [`Method`] (`None`: missing or not
    /// one ticketd implements), and `sub_code` is reduced to its known base, so no text a caller
    /// chose becomes a label value (module doc).
    pub fn observe_call(
        &self,
        method: Option<Method>,
        code: u32,
        sub_code: &str,
        elapsed: Duration,
    ) {
        let method = method_label(method);
        self.calls
            .get_or_create(&CallLabels {
                method,
                code: CodeLabel::of(code),
                sub_code: sub_code_label(sub_code),
            })
            .inc();
        self.latency
            .get_or_create(&MethodLabels { method })
            .observe(elapsed.as_secs_f64());
    }

    /// The last hour of calls, minute by minute (the console's chart).
    pub fn traffic(&self) -> &crate::traffic::Traffic {
        &self.traffic
    }

    /// Counts a store failure.
    pub fn store_error(&self) {
        self.store_errors.inc();
    }

    /// The exposition text, followed by `extra` (`name`, help, value) from the store: a counter
    /// when the name ends in `_total`, else a gauge.
    ///
    /// The store's figures are read asynchronously for each scrape, so they are registered as
    /// constants in a registry built for this scrape, with this process's families beside them.
    pub fn render(&self, extra: &[(String, String, f64)]) -> String {
        let mut registry = Registry::default();
        // prometheus-client appends the `_total` of counters and the full stop of help texts.
        registry.register(
            "ticketd_top_calls",
            "TOP calls answered, by method, code (0 = success) and sub_code",
            self.calls.clone(),
        );
        registry.register(
            "ticketd_top_call_duration_seconds",
            "Time from request to answer, by method",
            self.latency.clone(),
        );
        registry.register(
            "ticketd_store_errors",
            "Ledger operations that failed (unavailable or internal)",
            self.store_errors.clone(),
        );
        for (name, help, value) in extra {
            let help = help.strip_suffix('.').unwrap_or(help);
            match name.strip_suffix("_total") {
                Some(stem) => registry.register(stem, help, ConstCounter::new(*value)),
                None => registry.register(name, help, ConstGauge::new(*value)),
            }
        }
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::prometheus_text::encode(&mut out, &registry) {
            // Writing to a String cannot fail and no metric here fails to encode; should one,
            // the scrape still gets what was written.
            tracing::error!(error = %e, "could not encode the metrics");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VERIFY: &str = "taobao.travel.ticket.order.verify";

    #[test]
    fn renders_counters_and_cumulative_buckets() {
        let m = Metrics::default();
        m.observe_call(Some(Method::Verify), 0, "", Duration::from_micros(700));
        m.observe_call(
            Some(Method::Verify),
            50,
            "isv.verify-num-exceed",
            Duration::from_millis(3),
        );
        m.store_error();
        let text = m.render(&[
            ("ticketd_ledger_vouchers".into(), "Vouchers.".into(), 2.0),
            ("ticketd_store_commits_total".into(), "Commits.".into(), 5.0),
        ]);
        assert!(text.contains(&format!(
            "ticketd_top_calls_total{{method=\"{VERIFY}\",code=\"0\",sub_code=\"\"}} 1\n"
        )));
        assert!(text.contains("code=\"50\",sub_code=\"isv.verify-num-exceed\"} 1\n"));
        assert!(text.contains("# TYPE ticketd_top_calls_total counter\n"));
        assert!(text.contains("# TYPE ticketd_top_call_duration_seconds histogram\n"));
        assert!(text.contains("le=\"0.0005\"} 0\n"));
        assert!(text.contains("le=\"0.001\"} 1\n"));
        assert!(text.contains("le=\"0.005\"} 2\n"));
        assert!(text.contains("le=\"+Inf\"} 2\n"));
        assert!(text.contains("ticketd_store_errors_total 1\n"));
        assert!(text.contains("# HELP ticketd_ledger_vouchers Vouchers.\n"));
        assert!(text.contains("# TYPE ticketd_ledger_vouchers gauge\nticketd_ledger_vouchers 2"));
        assert!(text
            .contains("# TYPE ticketd_store_commits_total counter\nticketd_store_commits_total 5"));
    }

    #[test]
    fn sub_code_labels_are_known_bases_or_other() {
        assert_eq!(sub_code_label(""), "");
        assert_eq!(
            sub_code_label("isv.invalid-parameter:order_id"),
            "isv.invalid-parameter"
        );
        assert_eq!(
            sub_code_label("isv.missing-parameter:check_num"),
            "isv.missing-parameter"
        );
        assert_eq!(
            sub_code_label("isv.verify-num-exceed"),
            "isv.verify-num-exceed"
        );
        assert_eq!(sub_code_label("isp.service-busy"), "isp.service-busy");
        assert_eq!(
            sub_code_label(sub_code::RATE_LIMITED),
            sub_code::RATE_LIMITED
        );
        assert_eq!(sub_code_label("isv.made-up"), OTHER);
        assert_eq!(sub_code_label(&"K".repeat(400_000)), OTHER);
        assert_eq!(sub_code_label(":isv.invalid-parameter"), OTHER);
    }

    #[test]
    fn code_and_method_labels_are_closed() {
        assert_eq!(CodeLabel::of(0), CodeLabel::Known(0));
        assert_eq!(CodeLabel::of(41), CodeLabel::Known(41));
        assert_eq!(CodeLabel::of(15), CodeLabel::Other);
        assert_eq!(CodeLabel::of(u32::MAX), CodeLabel::Other);
        assert_eq!(method_label(None), "unknown");
        assert_eq!(method_label(Some(Method::Refund)), Method::Refund.name());

        let m = Metrics::default();
        m.observe_call(None, 99_999, "x:y", Duration::ZERO);
        let text = m.render(&[]);
        assert!(
            text.contains(
                "ticketd_top_calls_total{method=\"unknown\",code=\"other\",sub_code=\"other\"} 1\n"
            ),
            "{text}"
        );
    }
}
