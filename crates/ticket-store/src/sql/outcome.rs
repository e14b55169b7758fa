//! A commit whose answer was lost is resolved, not guessed.
//!
//! When the connection to the database fails after `COMMIT` was sent, the write may or may not
//! have been committed: the server may have committed it and lost only the answer. Answering
//! "nothing was written" (the retryable `isp.service-busy`) would be a lie in the first case,
//! and some official SDKs resend `isp.*` answers by themselves (docs/PROTOCOL.md §5.2): a resent
//! legacy report (`confirm_code` + `check_num`, no gate time to recognise it by) would then
//! count its use twice.
//!
//! So [`Db::commit`] finds out. Over a fresh connection (the pool may be full of requests
//! waiting for their answers, and its connections may be as broken as the one that failed) it
//! 1. locks again what the write locked ([`Fence`], part of the write's [`Trace`], see
//!    [`super::trace`]: its orders, its app, its anomaly). While
//!    the server is still committing the write — or still waiting for a `COMMIT` that may yet
//!    arrive — the write's own transaction holds those locks; once the lookup holds them, the
//!    write is over one way or the other and cannot land later;
//! 2. looks for a row only that transaction wrote ([`Mark`]: the request's own audit entry,
//!    found by `order_id` and `request_id` through the order's index; for an app, its row as
//!    the write left it).
//!
//! Found: the write landed, and the caller gets exactly the answer it would have had. Not
//! found: nothing was written, and the caller gets what any failed write gets
//! (`LedgerError::Unavailable`, retryable). A lookup that fails (the server is still away, a
//! lock is still held) is tried again, for at most [`RESOLVE_BOUND`] in all. Still unknown
//! after that, the caller gets [`LedgerError::OutcomeUnknown`](ticket_ledger::LedgerError::OutcomeUnknown), which the SDKs do not retry,
//! and a `commit_outcome_unknown` anomaly naming each request is recorded in the background as
//! soon as the database answers again, with what it then shows (`"landed"`).
//!
//! Only a failed *connection* leaves an outcome open ([`ErrorClass::Unavailable`]): an error
//! the server answers to `COMMIT` means it rolled the transaction back, and is handled like any
//! failed attempt.
//!
//! Limits: a write that only inserts (registering an app) locks no existing row, so on
//! PostgreSQL the lookup cannot wait for it and may, in a window of milliseconds, find it
//! missing although it is being committed; the operator then gets a retryable refusal and
//! `app_exists` on the retry. Every order operation locks its order, and creating an order
//! holds its app's row (the foreign key check), so those are exact on both engines.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use sqlx::{AnyConnection, Connection};
use ticket_ledger::NewAnomaly;
use tokio::time::Instant;

use super::db::{failure_text, During, Failure, COMMITTING};
use super::engine::{Engine, ErrorClass};
use super::queries::q;
use super::trace::{Fence, Mark, Trace};
use super::{exec, queries, Db};
use crate::statements;

/// How long, in all, a commit that got no answer is looked up before its outcome is declared
/// unknown. A few seconds: long enough to ride out a dropped connection or a server restart
/// that is quick, short enough that the vendor's gate (and its HTTP client's timeout, often
/// 10–30 s) is still waiting for the answer.
pub(crate) const RESOLVE_BOUND: Duration = Duration::from_secs(3);

/// The pause after the first failed lookup; it doubles up to [`LOOK_PAUSE_MAX`].
const LOOK_PAUSE: Duration = Duration::from_millis(50);

/// The longest pause between two lookups.
const LOOK_PAUSE_MAX: Duration = Duration::from_millis(500);

/// The longest pause between two attempts at recording the anomalies of unknown outcomes
/// (there is no bound on how long that keeps trying: the database must come back some time).
const RECORD_PAUSE_MAX: Duration = Duration::from_secs(5);

/// The `during` of a commit the lookup found had not happened: a failed write like any other
/// (so `Unavailable`, and not the "outcome unknown" of [`COMMITTING`]).
pub(crate) const NOT_COMMITTED: &str = "committing (the lookup found it was not committed)";

/// What looking up a commit that got no answer found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Resolution {
    /// The write is in the database: answer as if the commit had answered.
    Landed,
    /// The write is not, and can no longer be: answer as a failed write.
    NotLanded,
    /// No lookup could tell within the bound.
    Unknown,
}

/// Runs `look` until it tells, for at most `bound` in all (each attempt is cut at the bound
/// too), pausing between failed attempts. Pure apart from the clock, so that it is tested
/// with tokio's paused time.
pub(crate) async fn resolve_within<F, Fut, E>(bound: Duration, mut look: F) -> Resolution
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<bool, E>>,
    E: std::fmt::Display,
{
    let deadline = Instant::now() + bound;
    let mut pause = LOOK_PAUSE;
    for attempt in 1_u32.. {
        match tokio::time::timeout_at(deadline, look()).await {
            Ok(Ok(true)) => return Resolution::Landed,
            Ok(Ok(false)) => return Resolution::NotLanded,
            Ok(Err(error)) => {
                tracing::debug!(attempt, %error, "looking up a commit's outcome failed");
            }
            Err(_) => return Resolution::Unknown,
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        tokio::time::sleep(pause.min(left)).await;
        pause = (pause * 2).min(LOOK_PAUSE_MAX);
    }
    Resolution::Unknown
}

/// Opens connections outside the pool: for lookups (module docs), and for closing the tables
/// whose triggers did not load (`Db::reload_trigger_tables`).
#[derive(Clone)]
pub(crate) struct Connector {
    /// The database URL, password included: never printed. The host it names changes when
    /// the store follows a failover (`hosts.rs`).
    url: super::hosts::Current,
    /// The session setup every connection runs (`Engine::session_setup`).
    setup: Arc<[String]>,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector").finish_non_exhaustive()
    }
}

impl Connector {
    pub(crate) fn new(url: super::hosts::Current, setup: Vec<String>) -> Self {
        Self {
            url,
            setup: setup.into(),
        }
    }

    /// A connection of its own, set up as the pool's are.
    pub(crate) async fn connect(&self) -> Result<AnyConnection, sqlx::Error> {
        let url = self.url.get();
        let mut conn = AnyConnection::connect(&url).await?;
        for statement in self.setup.iter() {
            sqlx::raw_sql(sqlx::AssertSqlSafe(statement.clone()))
                .execute(&mut conn)
                .await?;
        }
        Ok(conn)
    }
}

impl Fence {
    async fn lock(&self, conn: &mut AnyConnection, e: Engine) -> Result<(), Failure> {
        let query = match self {
            Self::Orders(ids) => {
                let ids = serde_json::to_string(ids).map_err(|err| {
                    Failure::Refused(ticket_ledger::LedgerError::Internal(format!(
                        "serialising order ids: {err}"
                    )))
                })?;
                queries::q_owned(e, e.select_by_ids(&statements::BULK_LOCK_ORDER_ROWS)).bind(ids)
            }
            Self::App(key) => q(e, statements::LOCK_APP_ROW).bind(key.clone()),
            Self::Anomaly(id) => q(e, statements::LOCK_ANOMALY_ROW).bind(*id),
        };
        query
            .fetch_all(conn)
            .await
            .during("locking what a commit locked")
            .map(drop)
    }
}

impl Mark {
    /// Whether the row is there (read after the fence, so it sees the write if it landed).
    async fn found(&self, conn: &mut AnyConnection, e: Engine) -> Result<bool, Failure> {
        let query = match self {
            Self::Audit {
                order_id,
                request_id,
            } => q(e, statements::SERVER_AUDIT_MARK)
                .bind(*order_id)
                .bind(request_id.clone()),
            Self::Anomaly {
                order_id: Some(order_id),
                request_id,
            } => q(e, statements::SERVER_ANOMALY_MARK)
                .bind(*order_id)
                .bind(request_id.clone()),
            Self::Anomaly {
                order_id: None,
                request_id,
            } => q(e, statements::SERVER_ANOMALY_MARK_NO_ORDER).bind(request_id.clone()),
            Self::Resolution { id, request_id } => q(e, statements::SERVER_RESOLUTION_MARK)
                .bind(*id)
                .bind(request_id.clone()),
            Self::App(app) => {
                let stored = queries::app(conn, e, &app.app_key).await?;
                return Ok(stored.as_ref() == Some(app.as_ref()));
            }
        };
        query
            .fetch_optional(conn)
            .await
            .during("looking for a commit's mark")
            .map(|row| row.is_some())
    }
}

/// One lookup on `conn`: steps 1 and 2 of the module docs, in a transaction that only locks
/// and reads, rolled back.
async fn look(conn: &mut AnyConnection, e: Engine, trace: &Trace) -> Result<bool, Failure> {
    let mut tx = conn.begin().await.during("starting a lookup")?;
    for fence in &trace.fence {
        fence.lock(&mut tx, e).await?;
    }
    let found = trace.mark.found(&mut tx, e).await?;
    tx.rollback().await.during("ending a lookup")?;
    Ok(found)
}

impl Db {
    /// Commits `tx`, and when the connection fails while committing, finds out what happened
    /// (module docs) with `trace`, which is only built then (`None`: the caller's answer does
    /// not depend on the commit).
    ///
    /// `Ok` means committed, found or not. An error is a failed attempt as usual —
    /// [`NOT_COMMITTED`] when the lookup found the commit had not happened, [`COMMITTING`]
    /// when the server answered an error (it rolled back) or there was nothing to look up —
    /// or [`Failure::OutcomeUnknown`] naming the requests, whose anomalies are then recorded in
    /// the background.
    pub(crate) async fn commit(
        &self,
        tx: sqlx::Transaction<'_, sqlx::Any>,
        trace: impl FnOnce() -> Option<Trace>,
    ) -> Result<(), Failure> {
        self.settle(tx.commit().await, trace).await
    }

    /// [`Db::commit`] for a commit already sent: `committed` is the server's answer to it
    /// (or the error that took its place).
    pub(crate) async fn settle(
        &self,
        committed: Result<(), sqlx::Error>,
        trace: impl FnOnce() -> Option<Trace>,
    ) -> Result<(), Failure> {
        let error = match committed {
            Ok(()) => return Ok(()),
            Err(error) => error,
        };
        let trace = match (self.engine.classify(&error), trace()) {
            (ErrorClass::Unavailable, Some(trace)) => trace,
            _ => {
                return Err(Failure::Db {
                    during: COMMITTING,
                    error,
                })
            }
        };
        let why = crate::error::chain(&error);
        let requests = trace.request_ids();
        tracing::warn!(error = %why, ?requests, "the connection failed while committing; looking up whether the commit happened");
        match resolve_within(RESOLVE_BOUND, || self.look_once(&trace)).await {
            Resolution::Landed => {
                tracing::warn!(?requests, "the commit had happened; answered as committed");
                Ok(())
            }
            Resolution::NotLanded => {
                tracing::warn!(
                    ?requests,
                    "the commit had not happened; answered as a failed write"
                );
                Err(Failure::Db {
                    during: NOT_COMMITTED,
                    error,
                })
            }
            Resolution::Unknown => {
                tracing::error!(
                    requests = ?trace.named(),
                    bound = ?RESOLVE_BOUND,
                    error = %why,
                    "commit outcome unknown; a commit_outcome_unknown anomaly will name each \
                     request once the database answers"
                );
                self.record_unknown_later(trace);
                Err(Failure::OutcomeUnknown {
                    request_ids: requests,
                    why,
                })
            }
        }
    }

    /// One lookup over a connection of its own, closed after (dropped, if the lookup is cut at
    /// the bound: the server then rolls the lookup back and releases its locks).
    async fn look_once(&self, trace: &Trace) -> Result<bool, String> {
        let mut conn = self
            .connector
            .connect()
            .await
            .map_err(|e| format!("connecting: {}", crate::error::chain(&e)))?;
        let found = look(&mut conn, self.engine, trace)
            .await
            .map_err(|f| failure_text(&f));
        let _ = conn.close().await;
        found
    }

    /// Records the anomalies of an unknown outcome in the background, trying until the
    /// database takes them or the store is closed.
    fn record_unknown_later(&self, trace: Trace) {
        if trace.requests.is_empty() {
            return;
        }
        let db = self.clone();
        tokio::spawn(async move {
            let mut pause = LOOK_PAUSE_MAX;
            loop {
                match db.record_unknown(&trace).await {
                    Ok(landed) => {
                        tracing::warn!(
                            requests = ?trace.named(),
                            landed,
                            "recorded the commit_outcome_unknown anomalies"
                        );
                        return;
                    }
                    Err(failure) if db.pool.is_closed() => {
                        tracing::error!(
                            requests = ?trace.named(),
                            failure = %failure_text(&failure),
                            "the ledger closed before the commit_outcome_unknown anomalies \
                             could be recorded; reconcile these requests from this log"
                        );
                        return;
                    }
                    Err(failure) => {
                        tracing::debug!(failure = %failure_text(&failure), "recording commit_outcome_unknown anomalies failed; trying again");
                    }
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(RECORD_PAUSE_MAX);
            }
        });
    }

    /// One attempt at recording the anomalies: behind the same fence as a lookup, so that
    /// `landed` is final; nothing if they are already there (an earlier attempt's commit may
    /// have landed without answering). Returns `landed`.
    async fn record_unknown(&self, trace: &Trace) -> Result<bool, Failure> {
        let mut tx = self
            .pool
            .begin()
            .await
            .during("starting to record unknown outcomes")?;
        for fence in &trace.fence {
            fence.lock(&mut tx, self.engine).await?;
        }
        let landed = trace.mark.found(&mut tx, self.engine).await?;
        // A transaction dropped unfinished is rolled back.
        let Some(first) = trace.requests.first() else {
            return Ok(landed);
        };
        if unknown_recorded(&mut tx, self.engine, first).await? {
            return Ok(landed);
        }
        for anomaly in &trace.requests {
            let anomaly = NewAnomaly {
                detail: json!({
                    "landed": landed,
                    "note": if landed {
                        "the write was committed: the request is recorded although its caller \
                         was told the outcome is unknown"
                    } else {
                        "the write was not committed: nothing of the request is recorded"
                    },
                }),
                ..anomaly.clone()
            };
            exec::insert_anomaly(&mut tx, self.engine, &anomaly).await?;
        }
        tx.commit()
            .await
            .during("recording commit_outcome_unknown anomalies")?;
        Ok(landed)
    }
}

/// Whether the `commit_outcome_unknown` anomaly of `request` is recorded already.
async fn unknown_recorded(
    conn: &mut AnyConnection,
    e: Engine,
    request: &NewAnomaly,
) -> Result<bool, Failure> {
    let query = match request.order_id {
        Some(order_id) => q(e, statements::SERVER_UNKNOWN_RECORDED).bind(order_id),
        None => q(e, statements::SERVER_UNKNOWN_RECORDED_NO_ORDER),
    };
    query
        .bind(request.request_id.clone())
        .fetch_optional(conn)
        .await
        .during("looking for recorded unknown outcomes")
        .map(|row| row.is_some())
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    /// Resolves with a lookup that answers from `script`, one entry per attempt (`None`: it
    /// never returns; past the end: it fails); what it found, after how many attempts and how
    /// long.
    async fn run(script: &[Option<Result<bool, &'static str>>]) -> (Resolution, usize, Duration) {
        let calls = Cell::new(0);
        let started = Instant::now();
        let resolution = resolve_within(RESOLVE_BOUND, || {
            let step = script
                .get(calls.replace(calls.get() + 1))
                .copied()
                .unwrap_or(Some(Err("still down")));
            async move {
                match step {
                    Some(result) => result,
                    None => std::future::pending().await,
                }
            }
        })
        .await;
        (resolution, calls.get(), started.elapsed())
    }

    #[tokio::test(start_paused = true)]
    async fn a_mark_found_is_landed_and_a_mark_missing_is_not() {
        assert_eq!(
            run(&[Some(Ok(true))]).await,
            (Resolution::Landed, 1, Duration::ZERO)
        );
        assert_eq!(
            run(&[Some(Ok(false))]).await,
            (Resolution::NotLanded, 1, Duration::ZERO)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn failed_lookups_are_tried_again_until_one_tells() {
        let (resolution, calls, took) =
            run(&[Some(Err("refused")), Some(Err("refused")), Some(Ok(true))]).await;
        assert_eq!((resolution, calls), (Resolution::Landed, 3));
        // Two pauses: 50 ms, then 100 ms.
        assert_eq!(took, Duration::from_millis(150));
        let (resolution, calls, _) = run(&[Some(Err("refused")), Some(Ok(false))]).await;
        assert_eq!((resolution, calls), (Resolution::NotLanded, 2));
    }

    #[tokio::test(start_paused = true)]
    async fn lookups_that_keep_failing_leave_the_outcome_unknown_at_the_bound() {
        let (resolution, calls, took) = run(&[]).await;
        assert_eq!(resolution, Resolution::Unknown);
        assert_eq!(took, RESOLVE_BOUND, "unknown exactly at the bound");
        // 50, 100, 200, 400, then 500 ms pauses: a handful of attempts, not a busy loop.
        assert!((5..=12).contains(&calls), "{calls} attempts");
    }

    #[tokio::test(start_paused = true)]
    async fn a_lookup_that_hangs_is_cut_at_the_bound() {
        // A lock that is never granted, a server that never answers.
        let (resolution, calls, took) = run(&[Some(Err("refused")), None]).await;
        assert_eq!((resolution, calls), (Resolution::Unknown, 2));
        assert_eq!(took, RESOLVE_BOUND);
    }
}
