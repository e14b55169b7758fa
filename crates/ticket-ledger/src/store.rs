//! The storage boundary. Every backend (SQLite, PostgreSQL, MySQL) implements [`LedgerStore`]
//! and must pass the behaviour suite (the `ticket-ledger-suite` crate).
//!
//! The trait is object-safe (`Arc<dyn LedgerStore>`) so the server picks a backend at run time
//! from the database URL without being generic over it.

use async_trait::async_trait;

use crate::anomaly::{Anomaly, AnomalyFilter, ResolveAnomaly};
use crate::app::{App, AppAccess, NewApp, SecretRotation};
use crate::audit::{AuditEntry, AuditFilter};
use crate::events::EventPage;
use crate::ids::{AppKey, OrderId};
use crate::issue::IssueCommand;
use crate::listing::{OrderFilter, OrderPage};
use crate::metrics::StoreMetrics;
use crate::order::{NewOrder, OrderView};
use crate::reconcile::{ReconcileCommand, ReconcileOutcome};
use crate::refund::{RefundCommand, RefundRequest, RefundRequestCommand};
use crate::rejected::{RejectedCall, RejectedCallFilter};
use crate::reversal::ReversalCommand;
use crate::verify::{OutcomeKind, VerifyCommand, VerifyOutcome};
use crate::LedgerError;

/// Durable storage of apps, orders, vouchers and the audit trail.
///
/// Guarantees every implementation gives (the suite checks them):
/// - [`LedgerStore::verify`] loads the order, runs [`crate::plan_verify`] and applies the plan
///   with its audit entry in **one** transaction, serialised per order, so concurrent verifies
///   never use a voucher beyond its capacity and a retry is never counted twice.
/// - When a method returns `Ok`, what it wrote is durable (it survives a crash or power loss).
/// - A refused or failed method writes nothing (callers record rejections separately with
///   [`LedgerStore::record`]) — except the anomaly [`crate::refusal_anomaly`] names for a
///   refusal that matters to money or trust, which is stored although the request changed
///   nothing.
/// - Every operation that moves an order's status also appends the transition as an event
///   (the plans' `audit_entries`), and stores the anomalies its plan raises, in the same
///   transaction.
#[async_trait]
pub trait LedgerStore: Send + Sync + std::fmt::Debug {
    /// Registers an app. [`LedgerError::AppExists`] when the key is taken.
    async fn create_app(&self, app: NewApp) -> Result<App, LedgerError>;

    /// Looks an app up by key (the gateway does this for every request).
    ///
    /// A store may answer from a cache; a change made through this store is seen at once, one
    /// made through another process on the same database within a few seconds.
    async fn app(&self, key: &AppKey) -> Result<Option<App>, LedgerError>;

    /// Replaces an app's access settings (rate limit, IP allow-list) and returns the app as
    /// stored. [`LedgerError::UnknownApp`] when the key is not registered.
    async fn set_app_access(&self, key: &AppKey, access: AppAccess) -> Result<App, LedgerError>;

    /// Rotates an app's secret in one write: the current secret becomes the previous one
    /// (accepted until `rotation.previous_expires_at`, replacing any earlier previous secret)
    /// and `rotation.new_secret` the current one. Returns the app as stored;
    /// [`LedgerError::UnknownApp`] when the key is not registered.
    async fn rotate_app_secret(
        &self,
        key: &AppKey,
        rotation: SecretRotation,
    ) -> Result<App, LedgerError>;

    /// Creates an order (with its vouchers, if issued) in the first issuance state
    /// [`crate::plan_order_creation`] plans, and appends `audit` (that plan's entry) in one
    /// transaction. Refuses [`LedgerError::OrderExists`], [`LedgerError::UnknownApp`],
    /// [`LedgerError::OutOrderIdTaken`] and what [`NewOrder::validate`] refuses.
    async fn create_order(
        &self,
        order: NewOrder,
        audit: AuditEntry,
    ) -> Result<OrderView, LedgerError>;

    /// An order with its vouchers, refunds and its latest [`OrderView::EVENTS_SHOWN`] audit
    /// entries with their total, whoever owns it (operator view), read in one snapshot. It
    /// reads a bounded number of entries however long the history is: the latest ones by
    /// `seq` and a count, both on the `(order_id, seq)` index.
    async fn order(&self, id: OrderId) -> Result<Option<OrderView>, LedgerError>;

    /// One page of an order's history: its audit entries with `seq` greater than `after_seq`
    /// (all when `None`), oldest first, at most `limit` (capped at 1000). `None` when the
    /// order does not exist.
    ///
    /// Walking it — `after_seq` the last `seq` of the previous page, until a page comes back
    /// empty — returns every entry of the order exactly once and in `seq` order, even while
    /// new ones are written. Every store gives that by committing an order's entries in `seq`
    /// order, so what a reader sees of one order is always a prefix of its history: SQLite
    /// has one writer; PostgreSQL and MySQL take the order's row lock before writing any entry
    /// that names an existing order (including [`LedgerStore::record`]).
    async fn order_events(
        &self,
        id: OrderId,
        after_seq: Option<i64>,
        limit: u32,
    ) -> Result<Option<Vec<AuditEntry>>, LedgerError>;

    /// One page of the operator's order list ([`crate::listing`]): the orders `filter` admits,
    /// newest first by `(created_at, order_id)`, after `filter.after`, each with its totals and
    /// derived status, at most [`OrderFilter::page_size`] of them.
    ///
    /// The status is derived from the counters, never stored, so a status filter cannot be a
    /// `WHERE`: the store walks the candidates in order as [`crate::OrderScan`] decides and
    /// looks at no more than [`OrderFilter::MAX_SCANNED`] of them per call, so a rare status
    /// answers a short page (even an empty one) with `next` to go on rather than reading the
    /// whole ledger in one request. Candidates are read on indexes (`(created_at, order_id)`,
    /// `(app_key, created_at, order_id)`, `out_order_id`) so a page costs what it reads, and
    /// within one call from one snapshot, so totals and status agree with each other.
    async fn list_orders(&self, filter: OrderFilter) -> Result<OrderPage, LedgerError>;

    /// Registered apps ordered by app_key, after `after`, at most `limit` (clamped to 1..=200,
    /// [`crate::apps_page_size`]).
    ///
    /// Ordered by the key's bytes on every store (whatever the database's collation), so a
    /// walk passing the last key of a page as `after` sees every app once. The answer holds
    /// the apps' secrets, like [`LedgerStore::app`]: callers showing it to anyone leave them
    /// out.
    async fn list_apps(&self, after: Option<AppKey>, limit: u32) -> Result<Vec<App>, LedgerError>;

    /// Applies a verify report atomically; see the trait docs.
    async fn verify(&self, cmd: VerifyCommand) -> Result<VerifyOutcome, LedgerError>;

    /// Applies an issuance report ([`crate::plan_issue`]).
    async fn issue(&self, cmd: IssueCommand) -> Result<OutcomeKind, LedgerError>;

    /// Opens a refund request ([`crate::plan_refund_request`]) and returns it.
    async fn request_refund(&self, cmd: RefundRequestCommand)
        -> Result<RefundRequest, LedgerError>;

    /// Applies a refund notification ([`crate::plan_refund`]); returns the request it settled
    /// and whether it changed anything.
    async fn refund(&self, cmd: RefundCommand)
        -> Result<(RefundRequest, OutcomeKind), LedgerError>;

    /// Gives uses back ([`crate::plan_reversal`]); returns the code's count after.
    async fn reverse(&self, cmd: ReversalCommand) -> Result<i64, LedgerError>;

    /// Compares the vendor's counts with the order's and, with `cmd.apply`, records the missing
    /// uses ([`crate::plan_reconcile`]): every step in **one** transaction under the order's
    /// lock, each with its own audit entries and anomalies as a verify of that code would
    /// write them, or nothing at all when any step is refused (a refusal keeps only the anomaly
    /// [`ReconcileCommand::refusal_anomaly`] names). [`LedgerError::OrderNotFound`] when the
    /// order does not exist.
    async fn reconcile(&self, cmd: ReconcileCommand) -> Result<ReconcileOutcome, LedgerError>;

    /// Lists anomalies, newest first, at most `filter.limit` (default 100, capped at 1000).
    async fn anomalies(&self, filter: AnomalyFilter) -> Result<Vec<Anomaly>, LedgerError>;

    /// Resolves an open anomaly as [`crate::plan_resolution`] plans it, with its audit entry;
    /// [`LedgerError::AnomalyResolved`] when it was already.
    async fn resolve_anomaly(&self, cmd: ResolveAnomaly) -> Result<Anomaly, LedgerError>;

    /// Appends one audit entry on its own (rejected attempts, protocol failures). An entry that
    /// names an existing order is written in turn with that order's other writes, so the
    /// order's history stays in `seq` order for [`LedgerStore::order_events`].
    async fn record(&self, entry: AuditEntry) -> Result<(), LedgerError>;

    /// Lists audit entries, oldest first — newest first when [`AuditFilter::descending`] —
    /// at most `filter.limit` (default 100, capped at 1000).
    async fn audit(&self, filter: AuditFilter) -> Result<Vec<AuditEntry>, LedgerError>;

    /// Keeps a call refused before its caller was authenticated, then drops the oldest such
    /// records past the newest `keep` (0 keeps none). Unlike the audit trail this record is
    /// pruned: an anonymous caller must not be able to grow what the ledger keeps.
    async fn record_rejected_call(&self, call: RejectedCall, keep: u64) -> Result<(), LedgerError>;

    /// Lists kept refused calls, newest first ([`RejectedCallFilter`]).
    async fn rejected_calls(
        &self,
        filter: RejectedCallFilter,
    ) -> Result<Vec<RejectedCall>, LedgerError>;

    /// The change events with `seq` greater than `after`, in `seq` order, at most `limit`
    /// (default 100 when 0, capped at 1000); see [`crate::events`].
    ///
    /// Every store hands out `seq`s from one counter row, advanced in the transaction of the
    /// change, whose lock that transaction holds until it commits: so `seq`s are consecutive,
    /// and an event is visible only after every event before it is. A reader that always asks
    /// after the last `seq` it has seen therefore sees every event once, in order.
    async fn events(&self, after: i64, limit: u32) -> Result<EventPage, LedgerError>;

    /// Takes, or renews, the event relay's lease for `holder` until `now + lease`, if nobody
    /// else holds a current one; answers the relay's position (the last `seq` relayed) when
    /// `holder` holds the lease, `None` when another does. One relay at a time per ledger,
    /// whatever the number of processes.
    async fn claim_relay(
        &self,
        holder: &str,
        now: chrono::DateTime<chrono::Utc>,
        lease: chrono::Duration,
    ) -> Result<Option<i64>, LedgerError>;

    /// Moves the relay's position from `from` to `to`, only while `holder` holds the lease and
    /// nobody moved it meanwhile; `false` when not (the caller lost the lease).
    async fn advance_relay(&self, holder: &str, from: i64, to: i64) -> Result<bool, LedgerError>;

    /// Ledger totals and batching counters for `/metrics`. The totals scan the ledger, so
    /// call it at scrape frequency, not per request.
    async fn metrics(&self) -> Result<StoreMetrics, LedgerError>;

    /// Cheap round trip proving the store can answer (for readiness).
    async fn ping(&self) -> Result<(), LedgerError>;

    /// Stops taking work, lets what is queued commit and answer, and returns when nothing is
    /// in flight (graceful shutdown). Later calls answer [`LedgerError::Unavailable`].
    async fn close(&self) {}
}
