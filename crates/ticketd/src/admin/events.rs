//! `GET /admin/events?after=SEQ&limit=N&wait=SECONDS`: the ledger's change feed
//! (`ticket_ledger::events`), each event a CloudEvents 1.0 object with its `seq`.
//!
//! A reader that always asks `after=next` sees every event exactly once and in `seq` order:
//! the stores hand out `seq`s so that an event is visible only after every event before it.
//! With `wait`, an empty answer is held (long poll) until an event past `after` exists or the
//! wait ends; the server re-reads the ledger every [`POLL`] meanwhile (another process may be
//! the one writing).

use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;
use ticket_ledger::Event;

use super::{query_error, AdminError};
use crate::paging::{self, Budget};
use crate::server::AppState;

/// The longest `wait` a request may ask for, in seconds.
pub const MAX_WAIT_SECS: u64 = 60;

/// How often a held request reads the ledger again.
pub const POLL: Duration = Duration::from_millis(100);

/// Requests held at once (each re-reads the ledger every [`POLL`]); one more is answered
/// 503 at once rather than held.
pub const MAX_WAITING: usize = 64;

/// The route, to be merged behind the admin token.
pub(super) fn router() -> Router<AppState> {
    Router::new().route("/admin/events", get(list))
}

#[derive(Debug, Deserialize)]
struct FeedQuery {
    /// Only events with a greater `seq` (default 0: from the first).
    after: Option<i64>,
    /// At most this many (default 100, at most 1000).
    limit: Option<u32>,
    /// Seconds to hold an empty answer for (default 0, at most [`MAX_WAIT_SECS`]).
    wait: Option<u64>,
}

/// One page of the feed. A client reads the events as [`Value`]s; the server writes each as
/// [`Event::to_json`] rendered it, the same bytes the relay publishes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeedPage<E = Value> {
    /// CloudEvents 1.0 objects, in `seq` order.
    pub events: Vec<E>,
    /// The `after` of the next request: the last event's `seq`, or the `after` asked when
    /// there was none.
    pub next: i64,
}

/// An event of a page as the server writes it: its text, and its `seq` for the page's `next`.
#[derive(Debug)]
pub(super) struct Rendered {
    seq: i64,
    /// JSON by construction (`Event::to_json` of data the store checked); were it not, the
    /// answer fails rather than send broken JSON.
    json: Result<Box<RawValue>, String>,
}

impl Rendered {
    fn of(ledger: &str, event: &Event) -> Self {
        Self {
            seq: event.seq,
            json: RawValue::from_string(event.to_json(ledger)).map_err(|e| e.to_string()),
        }
    }
}

impl Serialize for Rendered {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match &self.json {
            Ok(raw) => raw.serialize(serializer),
            Err(e) => Err(serde::ser::Error::custom(e)),
        }
    }
}

async fn list(
    State(state): State<AppState>,
    query: Result<Query<FeedQuery>, QueryRejection>,
) -> Result<Response, AdminError> {
    let Query(q) = query.map_err(query_error)?;
    let after = q.after.unwrap_or(0);
    if after < 0 {
        return Err(AdminError::field("after", "after must be 0 or more"));
    }
    let wait = q.wait.unwrap_or(0);
    if wait > MAX_WAIT_SECS {
        return Err(AdminError::field(
            "wait",
            format!("wait is at most {MAX_WAIT_SECS} seconds"),
        ));
    }
    let limit = paging::limit(q.limit);
    let first = read(&state, after, limit).await?;
    if !first.events.is_empty() || wait == 0 {
        return Ok(Json(first).into_response());
    }
    let Ok(_permit) = state.feed_waiting.try_acquire() else {
        return Err(AdminError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "busy",
            format!("{MAX_WAITING} requests are already waiting for events; ask again"),
        ));
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(wait);
    loop {
        let now = tokio::time::Instant::now();
        if now >= deadline {
            return Ok(Json(FeedPage::<Rendered> {
                events: Vec::new(),
                next: after,
            })
            .into_response());
        }
        tokio::time::sleep_until(deadline.min(now + POLL)).await;
        let page = read(&state, after, limit).await?;
        if !page.events.is_empty() {
            return Ok(Json(page).into_response());
        }
    }
}

/// One page after `after`, bounded by `limit` and the answer's byte budget.
async fn read(
    state: &AppState,
    after: i64,
    limit: usize,
) -> Result<FeedPage<Rendered>, AdminError> {
    let page = paging::page(
        limit,
        Budget::for_list(),
        Some(after),
        |from, n| {
            let store = state.store.clone();
            let from = from.unwrap_or(after);
            async move {
                let page = store.events(from, n).await.map_err(AdminError::from)?;
                let ledger = page.ledger_id;
                Ok::<_, AdminError>(
                    page.events
                        .into_iter()
                        .map(|event| (ledger.clone(), event))
                        .collect::<Vec<_>>(),
                )
            }
        },
        |(_, event): &(String, Event)| event.seq,
        |(ledger, event): &(String, Event)| Rendered::of(ledger, event),
    )
    .await?;
    let next = page.entries.last().map_or(after, |e| e.seq);
    Ok(FeedPage {
        events: page.entries,
        next,
    })
}
