//! What a write leaves to find it by, should its `COMMIT` get no answer: the [`Trace`] of each
//! operation ([`Traced`]), looked up by [`super::outcome`].

use ticket_ledger::{
    Anomaly, AnomalyKind, App, AppAccess, AppKey, AuditEntry, IssueCommand, NewAnomaly, NewApp,
    NewOrder, OrderView, OutcomeKind, RefundCommand, RefundRequest, RefundRequestCommand,
    RejectedCall, RequestMeta, ResolveAnomaly, ReversalCommand, SecretRotation, VerifyCommand,
    VerifyOutcome,
};

/// How to find out, after the fact, whether one write (or one batch) committed.
#[derive(Debug, Clone)]
pub(crate) struct Trace {
    /// What the write locked, locked again before looking (`outcome` module docs, step 1).
    pub(crate) fence: Vec<Fence>,
    /// A row only the write's own transaction wrote (`outcome` module docs, step 2).
    pub(crate) mark: Mark,
    /// One anomaly per request the write served (several for a batch; none for app settings,
    /// which belong to no request), recorded if the outcome stays unknown. Their `detail` is
    /// filled in when they are recorded.
    pub(crate) requests: Vec<NewAnomaly>,
}

/// Rows a write locked.
#[derive(Debug, Clone)]
pub(crate) enum Fence {
    /// Orders, locked `FOR UPDATE` first by every order operation (in `order_id` order).
    Orders(Vec<i64>),
    /// An app's row: updated by access and secret changes, and share-locked by the foreign key
    /// check of an order inserted for the app (so a `create_order` still committing holds it).
    App(String),
    /// An anomaly being resolved.
    Anomaly(i64),
}

/// A row that tells a write committed.
#[derive(Debug, Clone)]
pub(crate) enum Mark {
    /// The request's audit entry, written in the write's transaction. Not a `rejected` one: the
    /// gateway writes those for refusals, after answering.
    Audit {
        /// The order it names (its index finds the entry).
        order_id: i64,
        /// The request.
        request_id: String,
    },
    /// An anomaly the write raised (a batch whose verifies were all refused writes nothing
    /// else).
    Anomaly {
        /// The order it names.
        order_id: Option<i64>,
        /// The request that raised it.
        request_id: String,
    },
    /// An anomaly resolved by the request.
    Resolution {
        /// The anomaly.
        id: i64,
        /// The resolving request.
        request_id: String,
    },
    /// The app exactly as the write read it back before committing.
    App(Box<App>),
}

impl Trace {
    /// A write on one order by one request: the order locked, the request's audit entry the
    /// mark (every order operation writes one, replays included).
    fn order(order_id: i64, app_key: Option<&AppKey>, meta: &RequestMeta) -> Self {
        Self {
            fence: vec![Fence::Orders(vec![order_id])],
            mark: Mark::Audit {
                order_id,
                request_id: meta.request_id.clone(),
            },
            requests: vec![unknown_anomaly(
                Some(order_id),
                app_key.map(|k| k.as_str().to_owned()),
                meta,
            )],
        }
    }

    /// A change to an app's row: no request to name.
    fn app(app: &App) -> Self {
        Self {
            fence: vec![Fence::App(app.app_key.as_str().to_owned())],
            mark: Mark::App(Box::new(app.clone())),
            requests: Vec::new(),
        }
    }

    /// The requests the anomalies name.
    pub(crate) fn request_ids(&self) -> Vec<String> {
        self.requests.iter().map(|a| a.request_id.clone()).collect()
    }

    /// The requests with their orders, for the logs an operator reconciles from.
    pub(crate) fn named(&self) -> Vec<String> {
        self.requests
            .iter()
            .map(|a| match a.order_id {
                Some(order) => format!("{} (order {order})", a.request_id),
                None => a.request_id.clone(),
            })
            .collect()
    }
}

/// The anomaly of a request whose outcome stayed unknown (`detail` is filled in when it is
/// recorded).
pub(crate) fn unknown_anomaly(
    order_id: Option<i64>,
    app_key: Option<String>,
    meta: &RequestMeta,
) -> NewAnomaly {
    NewAnomaly {
        kind: AnomalyKind::CommitOutcomeUnknown,
        order_id,
        app_key,
        request_id: meta.request_id.clone(),
        at: meta.received_at,
        detail: serde_json::Value::Null,
        request: meta.summary.value().clone(),
    }
}

/// How a write is traced: implemented by the context of every operation [`Db::write`] runs.
pub(crate) trait Traced<T> {
    /// How to find out whether the write that produced `value` committed, or `None` when its
    /// caller's answer does not depend on it.
    fn trace(&self, value: &T) -> Option<Trace>;
}

impl Traced<VerifyOutcome> for VerifyCommand {
    fn trace(&self, outcome: &VerifyOutcome) -> Option<Trace> {
        // The outcome names the order also when the vendor named it by `out_order_id` alone.
        Some(Trace::order(
            outcome.order_id.get(),
            Some(&self.app_key),
            &self.meta,
        ))
    }
}

impl Traced<OutcomeKind> for IssueCommand {
    fn trace(&self, _: &OutcomeKind) -> Option<Trace> {
        Some(Trace::order(
            self.order_id.get(),
            Some(&self.app_key),
            &self.meta,
        ))
    }
}

impl Traced<RefundRequest> for RefundRequestCommand {
    fn trace(&self, _: &RefundRequest) -> Option<Trace> {
        Some(Trace::order(self.order_id.get(), None, &self.meta))
    }
}

impl Traced<(RefundRequest, OutcomeKind)> for RefundCommand {
    fn trace(&self, _: &(RefundRequest, OutcomeKind)) -> Option<Trace> {
        Some(Trace::order(
            self.order_id.get(),
            Some(&self.app_key),
            &self.meta,
        ))
    }
}

impl Traced<i64> for ReversalCommand {
    fn trace(&self, _: &i64) -> Option<Trace> {
        Some(Trace::order(self.order_id.get(), None, &self.meta))
    }
}

impl Traced<OrderView> for (NewOrder, AuditEntry) {
    fn trace(&self, _: &OrderView) -> Option<Trace> {
        let (order, audit) = self;
        let id = order.order_id.get();
        let meta = RequestMeta {
            request_id: audit.request_id.clone(),
            received_at: audit.at,
            client_ip: audit.client_ip.clone(),
            summary: audit.detail.clone().into(),
        };
        Some(Trace {
            // The new order's row cannot be waited for on PostgreSQL (an uncommitted insert is
            // invisible), its app's row can: the foreign key check holds it.
            fence: vec![
                Fence::App(order.app_key.as_str().to_owned()),
                Fence::Orders(vec![id]),
            ],
            mark: Mark::Audit {
                order_id: id,
                request_id: audit.request_id.clone(),
            },
            requests: vec![unknown_anomaly(
                Some(id),
                Some(order.app_key.as_str().to_owned()),
                &meta,
            )],
        })
    }
}

impl Traced<Anomaly> for ResolveAnomaly {
    fn trace(&self, resolved: &Anomaly) -> Option<Trace> {
        Some(Trace {
            fence: vec![Fence::Anomaly(self.id)],
            mark: Mark::Resolution {
                id: self.id,
                request_id: self.meta.request_id.clone(),
            },
            requests: vec![unknown_anomaly(
                resolved.anomaly.order_id,
                resolved.anomaly.app_key.clone(),
                &self.meta,
            )],
        })
    }
}

impl Traced<App> for NewApp {
    fn trace(&self, app: &App) -> Option<Trace> {
        Some(Trace::app(app))
    }
}

impl Traced<App> for (AppKey, AppAccess) {
    fn trace(&self, app: &App) -> Option<Trace> {
        Some(Trace::app(app))
    }
}

impl Traced<App> for (AppKey, SecretRotation) {
    fn trace(&self, app: &App) -> Option<Trace> {
        Some(Trace::app(app))
    }
}

/// A refusal's anomaly: the caller is answered the refusal whatever became of it.
impl Traced<()> for NewAnomaly {
    fn trace(&self, (): &()) -> Option<Trace> {
        None
    }
}

/// A call refused before authentication, with how many to keep: its caller logs a failure and
/// answers the same either way.
impl Traced<()> for (RejectedCall, u64) {
    fn trace(&self, (): &()) -> Option<Trace> {
        None
    }
}

/// An audit record written apart (a refusal, an admin action): its caller logs a failure and
/// answers the same either way.
impl Traced<()> for AuditEntry {
    fn trace(&self, (): &()) -> Option<Trace> {
        None
    }
}

/// A relay claim `(holder, now, until)`: done again by the relay's next round whatever became
/// of it (claiming a lease one holds renews it).
impl Traced<Option<i64>> for (String, i64, i64) {
    fn trace(&self, _: &Option<i64>) -> Option<Trace> {
        None
    }
}

/// A relay advance `(holder, from, to)`: if it committed unseen, the relay's next claim reads
/// the new position; if not, the events are sent again and JetStream drops the duplicates.
impl Traced<bool> for (String, i64, i64) {
    fn trace(&self, _: &bool) -> Option<Trace> {
        None
    }
}
