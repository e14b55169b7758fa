//! Pieces every console page draws the same way: times, statuses, notices and refusals.

use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use maud::{html, Markup};
use ticket_ledger::OrderStatus;
use top_protocol::timestamp::format_beijing;

use crate::admin::AdminError;

use super::i18n::Texts;

/// An instant as operators read them everywhere else (TOP's `yyyy-MM-dd HH:mm:ss`, UTC+8).
pub(super) fn time(at: DateTime<Utc>) -> String {
    format_beijing(at)
}

/// An order status in the page's language, with its wire name for searching and scripts.
pub(super) fn status(t: &Texts, status: OrderStatus) -> Markup {
    html! {
        span.status data-status=(status.as_str()) title=(status.as_str()) { (t.status_name(status)) }
    }
}

/// A refusal of the ledger or of a check, as the page shows it: what the admin API would
/// have answered, in the operator's words.
pub(super) fn refusal(t: &Texts, e: &AdminError) -> Markup {
    html! {
        div.refusal role="alert" {
            p.error { (t.not_done) }
            p { (e.message()) }
        }
    }
}

/// The HTTP status a page showing `e` is answered with: the admin API's.
pub(super) fn refusal_status(e: &AdminError) -> StatusCode {
    e.status()
}

/// A confirmation that an action was applied.
pub(super) fn notice(text: &str) -> Markup {
    html! { p.notice role="status" { (text) } }
}

/// The wire name of an audit outcome, in the page's language.
pub(super) fn outcome(t: &Texts, outcome: &str) -> Markup {
    let name = match outcome {
        "accepted" => t.accepted,
        "replayed" => t.replayed,
        "rejected" => t.refused,
        other => other,
    };
    html! { span.outcome data-outcome=(outcome) { (name) } }
}

/// A JSON detail, compact and cut to what a table cell can hold (the whole of it is in the
/// admin API).
pub(super) fn detail(value: &serde_json::Value) -> String {
    const SHOWN: usize = 240;
    let text = value.to_string();
    match text.char_indices().nth(SHOWN) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}
