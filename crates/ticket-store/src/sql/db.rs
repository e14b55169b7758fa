//! [`Db`]: the pool, and how an operation runs on it — one attempt in a transaction, again when
//! the engine asks for a retry, its failure mapped to the domain once final (see the module
//! docs of [`super`]).

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use sqlx::{AnyConnection, AnyPool};
use ticket_ledger::{
    refusal_anomaly, LedgerError, NewAnomaly, OrderRef, VerifyCommand, VerifyOutcome,
};

use super::engine::{self, Engine, ErrorClass};
use super::outcome::Connector;
use super::queries::{q, q_owned};
use super::trace::Traced;
use super::{exec, ops, queries};

/// Why one attempt at an operation did not commit.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The ledger's rules (or a constraint standing for one) refused it: final.
    Refused(LedgerError),
    /// Another transaction changed what this one read: run it again (it will see the change).
    Conflict(&'static str),
    /// The database failed; [`Engine::classify`] decides whether to try again.
    Db {
        /// The step that failed.
        during: &'static str,
        /// The driver's error.
        error: sqlx::Error,
    },
    /// The connection failed while committing and no lookup could tell in time whether the
    /// commit happened (see [`super::outcome`]): final, never run again.
    OutcomeUnknown {
        /// The requests the write served (none for an app's settings).
        request_ids: Vec<String>,
        /// The commit's error, for the logs.
        why: String,
    },
}

impl From<LedgerError> for Failure {
    fn from(e: LedgerError) -> Self {
        Self::Refused(e)
    }
}

/// `.during("what")` on driver results.
pub(crate) trait During<T> {
    fn during(self, what: &'static str) -> Result<T, Failure>;
}

impl<T> During<T> for Result<T, sqlx::Error> {
    fn during(self, what: &'static str) -> Result<T, Failure> {
        self.map_err(|error| Failure::Db {
            during: what,
            error,
        })
    }
}

/// An operation: one attempt inside an open transaction (see [`ops`]).
type Op<C, T> =
    for<'a> fn(&'a mut AnyConnection, Engine, &'a C) -> BoxFuture<'a, Result<T, Failure>>;

/// The pool and how to run operations on it: shared by the store and its batcher.
#[derive(Debug, Clone)]
pub(crate) struct Db {
    pub(crate) engine: Engine,
    pub(crate) pool: AnyPool,
    pub(crate) max_attempts: u32,
    /// Connections outside the pool, to look up a commit that got no answer ([`outcome`](super::outcome))
    /// and to close the tables whose triggers did not load.
    pub(crate) connector: Connector,
    /// When the tables with triggers were last closed, and how often that was done or failed
    /// ([`Db::reload_trigger_tables`]).
    pub(crate) trigger_reloads: Arc<TriggerReloads>,
}

/// The closings of the tables with triggers ([`Db::reload_trigger_tables`]): when the last
/// was, and how many were done and failed, for `/metrics` (a failed one means writes to those
/// tables are refused until an operator closes them).
#[derive(Debug, Default)]
pub(crate) struct TriggerReloads {
    last: tokio::sync::Mutex<Option<std::time::Instant>>,
    pub(crate) closed: std::sync::atomic::AtomicU64,
    pub(crate) failed: std::sync::atomic::AtomicU64,
}

impl Db {
    /// Runs `op` in its own transaction, again when the engine asks for a retry; see the
    /// module docs.
    pub(crate) async fn write<C: Sync + Traced<T>, T: Send>(
        &self,
        ctx: &C,
        op: Op<C, T>,
    ) -> Result<T, LedgerError> {
        let mut attempt = 1;
        loop {
            let failure = match self.attempt(ctx, op).await {
                Ok(value) => return Ok(value),
                Err(Failure::Refused(refusal)) => return Err(refusal),
                Err(failure) => failure,
            };
            let class = match &failure {
                Failure::Db { error, .. } => self.engine.classify(error),
                Failure::Conflict(_) | Failure::Refused(_) => ErrorClass::Retry,
                // Running it again could apply it twice.
                Failure::OutcomeUnknown { .. } => ErrorClass::Other,
            };
            if self.again(&class, attempt).await {
                tracing::debug!(attempt, failure = %failure_text(&failure), "retrying a ledger write");
                attempt += 1;
                continue;
            }
            return Err(self.ledger_error(&failure, &class, attempt));
        }
    }

    /// Whether a failure of `class` on attempt `attempt` is run again, after what must come
    /// first: the backoff, and for triggers that did not load, closing their tables.
    pub(crate) async fn again(&self, class: &ErrorClass, attempt: u32) -> bool {
        let retry = match class {
            ErrorClass::Retry => true,
            // Closed also after the last attempt: the next request needs the tables too.
            ErrorClass::TriggersNotLoaded => {
                self.reload_trigger_tables().await;
                true
            }
            ErrorClass::Unavailable
            | ErrorClass::Unique(_)
            | ErrorClass::ForeignKey
            | ErrorClass::Other => false,
        };
        if !retry || attempt >= self.max_attempts {
            return false;
        }
        tokio::time::sleep(backoff(attempt)).await;
        true
    }

    /// Closes the tables that have triggers (`FLUSH LOCAL TABLES`, this server only, not
    /// replicated), so that the server opens them again and loads their triggers afresh: the
    /// only way to drop a table whose triggers failed to load from the server's table cache
    /// (see [`ErrorClass::TriggersNotLoaded`]). At most one at a time and one per
    /// [`RELOAD_EVERY`]: every write waiting to retry would otherwise close them again. On a
    /// connection of its own, so that its session setting changes no pooled connection and a
    /// pool full of the writes waiting to retry does not hold it up. It needs the RELOAD
    /// privilege; without it the writes end as busy answers, as before, and the log says so.
    async fn reload_trigger_tables(&self) {
        let mut last = self.trigger_reloads.last.lock().await;
        if last.is_some_and(|at| at.elapsed() < RELOAD_EVERY) {
            return;
        }
        let reloaded = async {
            let mut conn = self.connector.connect().await?;
            // A table in use is closed once its transaction ends; a long one is not waited for.
            q(self.engine, "SET SESSION lock_wait_timeout = 2")
                .execute(&mut conn)
                .await?;
            q_owned(
                self.engine,
                format!("FLUSH LOCAL TABLES {}", engine::TRIGGER_TABLES),
            )
            .execute(&mut conn)
            .await?;
            // Closed, the tables are; a connection that fails to say goodbye changes nothing.
            let _ = sqlx::Connection::close(conn).await;
            Ok::<_, sqlx::Error>(())
        }
        .await;
        *last = Some(std::time::Instant::now());
        let count = match reloaded {
            Ok(()) => &self.trigger_reloads.closed,
            Err(_) => &self.trigger_reloads.failed,
        };
        count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        match reloaded {
            Ok(()) => tracing::warn!(
                tables = engine::TRIGGER_TABLES,
                "a trigger failed to load in the database server; closed its tables so that \
                 they are opened again"
            ),
            Err(e) => tracing::error!(
                tables = engine::TRIGGER_TABLES,
                error = %crate::error::chain(&e),
                "a trigger failed to load in the database server, and its tables could not be \
                 closed (closing needs the RELOAD privilege); writes to them fail until they are"
            ),
        }
    }

    pub(crate) async fn attempt<C: Sync + Traced<T>, T: Send>(
        &self,
        ctx: &C,
        op: Op<C, T>,
    ) -> Result<T, Failure> {
        let mut tx = self.pool.begin().await.during("starting a transaction")?;
        match op(&mut tx, self.engine, ctx).await {
            Ok(value) => {
                // The value was computed before COMMIT: if the commit is found to have landed,
                // it is exactly the answer the caller would have had.
                self.commit(tx, || ctx.trace(&value)).await?;
                Ok(value)
            }
            Err(failure) => {
                // A rollback that fails leaves the connection unusable; the pool drops it.
                if let Err(e) = tx.rollback().await {
                    tracing::warn!(error = %e, "rolling back a ledger write failed");
                }
                Err(failure)
            }
        }
    }

    /// Runs `op` on a pooled connection, outside any explicit transaction (single statements).
    pub(crate) async fn read<C: Sync + ?Sized, T: Send>(
        &self,
        ctx: &C,
        op: Op<C, T>,
    ) -> Result<T, LedgerError> {
        let result = match self.pool.acquire().await.during("taking a connection") {
            Ok(mut conn) => op(&mut conn, self.engine, ctx).await,
            Err(failure) => Err(failure),
        };
        result.map_err(|failure| self.final_error(failure))
    }

    /// Runs `op` in a read-only transaction that sees one snapshot.
    pub(crate) async fn read_snapshot<C: Sync + ?Sized, T: Send>(
        &self,
        ctx: &C,
        op: Op<C, T>,
    ) -> Result<T, LedgerError> {
        let result = async {
            let mut conn = self.pool.acquire().await.during("taking a connection")?;
            let mut tx = self
                .engine
                .begin_snapshot(&mut conn)
                .await
                .during("starting a read transaction")?;
            let value = op(&mut tx, self.engine, ctx).await?;
            tx.commit().await.during("ending a read transaction")?;
            Ok(value)
        }
        .await;
        result.map_err(|failure| self.final_error(failure))
    }

    pub(crate) fn final_error(&self, failure: Failure) -> LedgerError {
        match failure {
            Failure::Refused(refusal) => refusal,
            Failure::Db { ref error, .. } => {
                let class = self.engine.classify(error);
                self.ledger_error(&failure, &class, 1)
            }
            Failure::Conflict(_) => self.ledger_error(&failure, &ErrorClass::Retry, 1),
            Failure::OutcomeUnknown { .. } => self.ledger_error(&failure, &ErrorClass::Other, 1),
        }
    }

    /// Maps a final failure to the domain, logged here with its whole source chain so callers
    /// answer with the generic system error alone
    /// (the details belong in the operator's log, not in an answer to a caller).
    pub(crate) fn ledger_error(
        &self,
        failure: &Failure,
        class: &ErrorClass,
        attempts: u32,
    ) -> LedgerError {
        let text = failure_text(failure);
        let during = match failure {
            Failure::Db { during, .. } => *during,
            // Logged where it was found out (`Db::commit`).
            Failure::OutcomeUnknown { request_ids, .. } => {
                return match request_ids.as_slice() {
                    [request_id] => LedgerError::OutcomeUnknown {
                        request_id: request_id.clone(),
                    },
                    // An app's settings belong to no request (and a batch answers each of its
                    // verifies itself).
                    _ => LedgerError::Internal(text),
                };
            }
            Failure::Conflict(_) | Failure::Refused(_) => "",
        };
        match class {
            // A connection lost while committing a write whose answer does not depend on it
            // (nothing to look up, see `outcome::Traced`): "nothing was written" cannot be
            // promised.
            ErrorClass::Unavailable if during == COMMITTING => {
                tracing::error!(error = %text, "ledger commit outcome unknown");
                LedgerError::Internal(format!("commit outcome unknown: {text}"))
            }
            ErrorClass::Unavailable => {
                tracing::warn!(error = %text, "ledger database unavailable");
                LedgerError::Unavailable(text)
            }
            ErrorClass::Retry | ErrorClass::TriggersNotLoaded => {
                tracing::warn!(attempts, error = %text, "ledger write kept conflicting");
                LedgerError::Unavailable(format!("busy after {attempts} attempts: {text}"))
            }
            _ => {
                tracing::error!(error = %text, "ledger database failure");
                LedgerError::Internal(text)
            }
        }
    }

    /// One verify in a transaction of its own: the path for verifies named by `out_order_id`
    /// alone, and for the verifies of a batch that failed as a whole, each then run alone so
    /// that no request fails for a neighbour.
    pub(crate) async fn verify_alone(
        &self,
        cmd: &VerifyCommand,
    ) -> Result<VerifyOutcome, LedgerError> {
        let result = self
            .write(cmd, |c, e, cmd| Box::pin(ops::verify(c, e, cmd)))
            .await;
        // The anomaly names the order the request resolved to, also when the vendor named it
        // by `out_order_id` alone (looked up only when a refusal raises an anomaly).
        let mut named = cmd.order.order_id();
        if let (Err(refusal), None, OrderRef::Out(_)) = (&result, named, &cmd.order) {
            if refusal_anomaly(refusal, None, Some(&cmd.app_key), &cmd.meta).is_some() {
                named = self
                    .read(cmd, |c, e, cmd| {
                        Box::pin(queries::resolve_order_id(c, e, cmd))
                    })
                    .await?;
            }
        }
        self.keeping_anomaly(result, |err| {
            refusal_anomaly(err, named, Some(&cmd.app_key), &cmd.meta)
        })
        .await
    }

    /// Stores the anomaly a refusal raises, in its own transaction (the refused operation's
    /// was rolled back), then returns the refusal.
    pub(crate) async fn keeping_anomaly<T>(
        &self,
        result: Result<T, LedgerError>,
        anomaly_of: impl FnOnce(&LedgerError) -> Option<NewAnomaly>,
    ) -> Result<T, LedgerError> {
        let Err(refusal) = result else {
            return result;
        };
        if refusal.is_retryable()
            || matches!(
                refusal,
                LedgerError::Internal(_) | LedgerError::OutcomeUnknown { .. }
            )
        {
            return Err(refusal);
        }
        if let Some(anomaly) = anomaly_of(&refusal) {
            self.write(&anomaly, |c, e, a| Box::pin(exec::insert_anomaly(c, e, a)))
                .await?;
        }
        Err(refusal)
    }
}

/// The least time between two closings of the tables with triggers ([`Db::reload_trigger_tables`]).
const RELOAD_EVERY: Duration = Duration::from_millis(100);

/// The `during` of a commit, to tell an unknown outcome from a clean failure.
pub(crate) const COMMITTING: &str = "committing";

/// The wait before attempt `attempt + 1`: 5 ms doubling, plus up to as much again at random so
/// that the transactions that collided do not collide again.
fn backoff(attempt: u32) -> Duration {
    let base = 5_u64 << attempt.min(6).saturating_sub(1);
    let jitter = rand::random_range(0..=base);
    Duration::from_millis(base + jitter)
}

pub(crate) fn failure_text(failure: &Failure) -> String {
    match failure {
        Failure::Refused(e) => e.to_string(),
        Failure::OutcomeUnknown { request_ids, why } => {
            format!("commit outcome unknown for {request_ids:?}: {why}")
        }
        Failure::Conflict(why) => format!("conflict: {why}"),
        Failure::Db { during, error } => format!("{during}: {}", crate::error::chain(error)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_and_stays_small() {
        for attempt in 1..10 {
            let wait = backoff(attempt);
            let base = 5_u64 << attempt.min(6).saturating_sub(1);
            assert!(wait >= Duration::from_millis(base), "{attempt}: {wait:?}");
            assert!(
                wait <= Duration::from_millis(2 * base),
                "{attempt}: {wait:?}"
            );
        }
    }
}
