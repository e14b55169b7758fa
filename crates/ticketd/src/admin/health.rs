//! `/healthz`, `/readyz` and `/metrics`: unauthenticated, for load balancers and scrapers.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use crate::server::AppState;

/// This area's routes.
pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/healthz",
            get(|| async { Json(HealthAnswer::status("ok")) }),
        )
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
}

/// The answer of `/healthz` (`ok`) and `/readyz` (`ready`, or 503 `unready` with the
/// reason). Fields in alphabetical order, as the answers have always had them on the wire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HealthAnswer {
    /// Why the ledger cannot take a write now; absent unless `unready`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// `ok` (the process answers), `ready` (the ledger takes writes) or `unready`.
    pub status: String,
}

impl HealthAnswer {
    fn status(status: &str) -> Self {
        Self {
            reason: None,
            status: status.to_owned(),
        }
    }
}

async fn readyz(State(state): State<AppState>) -> Response {
    match state.store.ping().await {
        Ok(()) => Json(HealthAnswer::status("ready")).into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(HealthAnswer {
                reason: Some(e.to_string()),
                ..HealthAnswer::status("unready")
            }),
        )
            .into_response(),
    }
}

/// Prometheus text exposition. Unauthenticated like the health endpoints (scrapers rarely send
/// tokens); move it off the public listener with `--admin-listen` where that matters.
async fn metrics(State(state): State<AppState>) -> Response {
    let mut extra = Vec::new();
    let gauge = |name: &str, help: &str, value: f64| (name.to_owned(), help.to_owned(), value);
    let relay = &state.relay;
    if relay.enabled.load(std::sync::atomic::Ordering::Relaxed) {
        use std::sync::atomic::Ordering::Relaxed;
        extra.push(gauge(
            "ticketd_events_relay_lag_events",
            "Change events not yet acknowledged by NATS JetStream (as the relay last saw).",
            relay.lag_events.load(Relaxed) as f64,
        ));
        extra.push(gauge(
            "ticketd_events_relay_lag_seconds",
            "Age of the oldest change event not yet acknowledged by NATS JetStream.",
            relay.lag_ms.load(Relaxed) as f64 / 1000.0,
        ));
        extra.push(gauge(
            "ticketd_events_relay_leading",
            "1 while this process holds the relay's lease (one process relays per ledger).",
            f64::from(u8::from(relay.leading.load(Relaxed))),
        ));
        extra.push(gauge(
            "ticketd_events_relayed_total",
            "Change events this process published and JetStream acknowledged.",
            relay.published.load(Relaxed) as f64,
        ));
        extra.push(gauge(
            "ticketd_events_relay_unchained_pages_total",
            "Pages of events published one by one because their chain broke: after a restart, \
             or because something else publishes to the stream.",
            relay.unchained.load(Relaxed) as f64,
        ));
    }
    match state.store.metrics().await {
        Ok(m) => {
            extra.push(gauge(
                "ticketd_ledger_orders",
                "Orders in the ledger.",
                m.orders as f64,
            ));
            extra.push(gauge(
                "ticketd_ledger_capacity_uses",
                "Uses issued over all vouchers.",
                m.capacity,
            ));
            extra.push(gauge(
                "ticketd_ledger_used_uses",
                "Uses recorded over all vouchers.",
                m.used,
            ));
            extra.push(gauge(
                "ticketd_ledger_refunded_tickets",
                "Tickets refunded over all orders.",
                m.refunded_tickets,
            ));
            extra.push(gauge(
                "ticketd_ledger_open_anomalies",
                "Anomalies waiting for an operator.",
                m.open_anomalies as f64,
            ));
            if let Some(b) = m.batches {
                extra.push(gauge(
                    "ticketd_store_commits_total",
                    "Group-commit transactions committed.",
                    b.commits as f64,
                ));
                extra.push(gauge(
                    "ticketd_store_failed_batches_total",
                    "Group-commit transactions that failed.",
                    b.failed_batches as f64,
                ));
                extra.push(gauge(
                    "ticketd_store_jobs_total",
                    "Writes run through group commit.",
                    b.jobs as f64,
                ));
                extra.push(gauge(
                    "ticketd_store_largest_batch",
                    "The most writes one transaction carried.",
                    b.largest_batch as f64,
                ));
                extra.push(gauge(
                    "ticketd_store_syncs_total",
                    "fsyncs that made committed transactions durable.",
                    b.syncs as f64,
                ));
                extra.push(gauge(
                    "ticketd_store_folds_total",
                    "Folds of the lookups keyed by order into their tables (SQLite).",
                    b.folds as f64,
                ));
                extra.push(gauge(
                    "ticketd_store_counted_uses_total",
                    "Uses added to the stored counters from the use log (SQLite).",
                    b.counted_uses as f64,
                ));
                extra.push(gauge(
                    "ticketd_store_guarded_reruns_total",
                    "Transactions run again with a savepoint for each write, after a write \
                     without one failed once it had written (SQLite).",
                    b.guarded_reruns as f64,
                ));
                extra.push(gauge(
                    "ticketd_store_queued_writes",
                    "Writes waiting for a batch.",
                    b.queued as f64,
                ));
            }
            extra.push(gauge(
                "ticketd_store_trigger_reloads_total",
                "Closings of the MySQL/MariaDB tables whose triggers failed to load, so that \
                 the server loads them again.",
                m.trigger_reloads as f64,
            ));
            extra.push(gauge(
                "ticketd_store_failed_trigger_reloads_total",
                "Such closings that failed: writes to those tables are refused until an \
                 operator closes them.",
                m.failed_trigger_reloads as f64,
            ));
            extra.push(gauge(
                "ticketd_ledger_up",
                "1 when the ledger answered this scrape.",
                1.0,
            ));
        }
        Err(e) => {
            state.metrics.store_error();
            tracing::warn!(error = %e, "ledger metrics unavailable");
            extra.push(gauge(
                "ticketd_ledger_up",
                "1 when the ledger answered this scrape.",
                0.0,
            ));
        }
    }
    let body = state.metrics.render(&extra);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response()
}
