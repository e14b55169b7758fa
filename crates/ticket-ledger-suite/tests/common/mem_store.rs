//! A test double: the smallest honest [`LedgerStore`], kept in memory behind one mutex, used to
//! check the behaviour suite itself before a real store exists. Not for production: nothing is
//! durable, and one lock serialises everything.
//!
//! It is the reference the suite is checked against, so it does exactly what the trait asks of
//! every store: each operation loads an [`OrderSnapshot`], runs the domain's planner, and applies
//! the plan with its audit entries (the operation's own, then the status transition) and its
//! anomalies all at once, under the lock. A refusal writes nothing but the anomaly
//! [`refusal_anomaly`] names for it, like every store.
//!
//! Its [`Tamper`] hook stands in for a database trigger: a "write" whose guard no longer holds
//! (the refunded tickets would exceed the tampered quantity) changes nothing and refuses the
//! whole operation with [`LedgerError::WriteChangedNoRow`], as the SQL stores' conditional
//! updates do.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;
use ticket_ledger::{
    plan_issue, plan_reconcile, plan_refund, plan_refund_request, plan_resolution, plan_reversal,
    plan_verify, refusal_anomaly, Anomaly, AnomalyFilter, App, AppAccess, AppKey, AuditEntry,
    AuditFilter, Fingerprint, IssueCommand, LedgerError, LedgerStore, NewAnomaly, NewApp, NewOrder,
    OrderFilter, OrderId, OrderPage, OrderRecord, OrderRef, OrderScan, OrderSnapshot, OrderSummary,
    OrderView, OutcomeKind, PreviousSecret, ReconcileCommand, ReconcileOutcome, RefundCommand,
    RefundRequest, RefundRequestCommand, RefundState, ResolveAnomaly, ReversalCommand,
    SecretRotation, UseRecord, VerifyCommand, VerifyOutcome, VerifyPlan, VoucherRecord,
};
use ticket_ledger_suite::Tamper;

/// One order and everything hanging off it.
#[derive(Debug, Clone)]
struct OrderData {
    record: OrderRecord,
    vouchers: Vec<VoucherRecord>,
    /// Oldest first (by request time, then flow id, as the SQLite store lists them).
    refunds: Vec<RefundRequest>,
    /// Every applied use, for reversals.
    uses: Vec<UseRecord>,
}

#[derive(Debug, Default, Clone)]
struct State {
    apps: HashMap<AppKey, App>,
    orders: HashMap<OrderId, OrderData>,
    fingerprints: HashMap<OrderId, HashSet<Fingerprint>>,
    audit: Vec<AuditEntry>,
    anomalies: Vec<Anomaly>,
    /// The change events, `seq` 1, 2, 3, …
    events: Vec<ticket_ledger::Event>,
    /// The event relay: position, holder, lease end.
    relay: (i64, Option<String>, chrono::DateTime<chrono::Utc>),
    next_use_id: i64,
    rejected_calls: std::collections::VecDeque<ticket_ledger::RejectedCall>,
    next_rejected_seq: i64,
    /// [`Tamper`]: the quantity an order drops to when one of its refunds settles.
    quantity_on_settle: HashMap<OrderId, i64>,
}

/// The refusal of a guarded write whose guard does not hold.
fn changed_no_row(write: &'static str) -> LedgerError {
    LedgerError::WriteChangedNoRow { write }
}

impl State {
    fn append(&mut self, mut entry: AuditEntry) {
        entry.seq = i64::try_from(self.audit.len()).expect("fewer than 2^63 entries") + 1;
        if let Some(event) = ticket_ledger::NewEvent::of_entry(&entry) {
            self.publish(event, None);
        }
        self.audit.push(entry);
    }

    fn publish(&mut self, event: ticket_ledger::NewEvent, anomaly_id: Option<i64>) {
        let seq = i64::try_from(self.events.len()).expect("fewer than 2^63 events") + 1;
        self.events.push(ticket_ledger::Event {
            seq,
            kind: event.kind.as_str().to_owned(),
            order_id: event.order_id,
            at: event.at,
            data: serde_json::value::to_raw_value(&event.data).expect("JSON"),
            anomaly_id,
        });
    }

    fn store_anomaly(&mut self, anomaly: NewAnomaly) {
        let id = i64::try_from(self.anomalies.len()).expect("fewer than 2^63 anomalies") + 1;
        self.publish(ticket_ledger::NewEvent::of_anomaly(&anomaly), Some(id));
        self.anomalies.push(Anomaly {
            id,
            anomaly,
            resolution: None,
            note: None,
            resolved_at: None,
        });
    }

    /// The order's view: its latest [`OrderView::EVENTS_SHOWN`] entries and their total, as
    /// the trait asks.
    fn view(&self, id: OrderId) -> Option<OrderView> {
        let data = self.orders.get(&id)?;
        let history: Vec<&AuditEntry> = self.history(id).collect();
        let shown = usize::try_from(OrderView::EVENTS_SHOWN).expect("a small constant");
        let from = history.len().saturating_sub(shown);
        Some(OrderView {
            order: data.record.clone(),
            vouchers: data.vouchers.clone(),
            events: history[from..].iter().map(|e| (*e).clone()).collect(),
            events_total: i64::try_from(history.len()).expect("fewer than 2^63 entries"),
            refunds: data.refunds.clone(),
        })
    }

    /// Every entry naming the order, oldest first.
    fn history(&self, id: OrderId) -> impl Iterator<Item = &AuditEntry> {
        self.audit
            .iter()
            .filter(move |e| e.order_id == Some(id.get()))
    }

    /// The order a request names, resolved as the trait asks: by id whoever owns it (the plan
    /// refuses foreign orders), by `out_order_id` within the calling app.
    fn resolve(&self, cmd: &VerifyCommand) -> Option<OrderId> {
        match &cmd.order {
            OrderRef::Id(id) | OrderRef::Both(id, _) => self.orders.contains_key(id).then_some(*id),
            OrderRef::Out(out) => self
                .orders
                .values()
                .find(|d| {
                    d.record.app_key == cmd.app_key && d.record.out_order_id.as_ref() == Some(out)
                })
                .map(|d| d.record.order_id),
        }
    }

    /// What a planner needs, without fingerprints.
    fn snapshot(&self, id: OrderId) -> Result<OrderSnapshot, LedgerError> {
        let data = self.orders.get(&id).ok_or(LedgerError::OrderNotFound)?;
        Ok(OrderSnapshot {
            order: data.record.clone(),
            vouchers: data.vouchers.clone(),
            seen: HashSet::new(),
            refunds: data.refunds.clone(),
        })
    }

    fn data(&mut self, id: OrderId) -> Result<&mut OrderData, LedgerError> {
        self.orders
            .get_mut(&id)
            .ok_or_else(|| LedgerError::Internal("the order vanished under the lock".into()))
    }

    fn verify(&mut self, cmd: &VerifyCommand) -> Result<VerifyOutcome, LedgerError> {
        let id = self.resolve(cmd).ok_or(LedgerError::OrderNotFound)?;
        let mut snapshot = self.snapshot(id)?;
        let recorded = self.fingerprints.get(&id);
        snapshot.seen = cmd
            .fingerprints()
            .into_iter()
            .filter(|fp| recorded.is_some_and(|r| r.contains(fp)))
            .collect();
        let plan = plan_verify(&snapshot, cmd)?;
        self.apply_verify(id, &snapshot, &plan, cmd)?;
        Ok(plan.outcome)
    }

    /// Writes a verify plan planned on `snapshot`, checking every guarded write before it
    /// writes anything.
    fn apply_verify(
        &mut self,
        id: OrderId,
        snapshot: &OrderSnapshot,
        plan: &VerifyPlan,
        cmd: &VerifyCommand,
    ) -> Result<(), LedgerError> {
        // Apply like a store's conditional update would: check everything, then write.
        let mut vouchers = self.data(id)?.vouchers.clone();
        for change in &plan.changes {
            let v = vouchers
                .iter_mut()
                .find(|v| v.code == change.code)
                .filter(|v| v.used == change.used_before)
                .ok_or_else(|| changed_no_row("vouchers.used"))?;
            v.used = v
                .used
                .checked_add(change.delta)
                .filter(|used| *used <= v.capacity)
                .ok_or_else(|| changed_no_row("vouchers.used"))?;
        }
        let first_use = self.next_use_id;
        self.next_use_id += i64::try_from(plan.changes.len()).expect("few changes");
        let data = self.data(id)?;
        data.vouchers = vouchers;
        for (n, change) in plan.changes.iter().enumerate() {
            data.uses.push(UseRecord {
                id: first_use + i64::try_from(n).expect("few changes") + 1,
                code: change.code.clone(),
                quantity: change.delta,
                reversed: 0,
                recorded_at: cmd.meta.received_at,
            });
        }
        for r in &mut data.refunds {
            if plan.review_refunds.contains(&r.flow_id) {
                r.needs_review = true;
            }
        }
        self.fingerprints
            .entry(id)
            .or_default()
            .extend(plan.new_fingerprints.iter().cloned());
        for entry in plan.audit_entries(snapshot, cmd) {
            self.append(entry);
        }
        for anomaly in plan.anomalies(cmd) {
            self.store_anomaly(anomaly);
        }
        Ok(())
    }

    /// Applies every step of the reconciliation to a copy of the whole state and keeps the
    /// copy only when all of them held: a transaction.
    fn reconcile(&mut self, cmd: &ReconcileCommand) -> Result<ReconcileOutcome, LedgerError> {
        let snapshot = self.snapshot(cmd.order_id)?;
        let plan = plan_reconcile(&snapshot, cmd)?;
        let mut draft = self.clone();
        for step in &plan.steps {
            draft.apply_verify(cmd.order_id, &snapshot, &step.plan, &step.cmd)?;
        }
        *self = draft;
        Ok(plan.outcome(cmd.order_id))
    }

    fn issue(&mut self, cmd: &IssueCommand) -> Result<OutcomeKind, LedgerError> {
        let snapshot = self.snapshot(cmd.order_id)?;
        let plan = plan_issue(&snapshot, cmd)?;
        if let Some(out) = &plan.set_out_order_id {
            let taken = self.orders.values().any(|d| {
                d.record.order_id != cmd.order_id
                    && d.record.app_key == snapshot.order.app_key
                    && d.record.out_order_id.as_ref() == Some(out)
            });
            if taken {
                return Err(LedgerError::OutOrderIdTaken);
            }
        }
        let data = self.data(cmd.order_id)?;
        if plan.kind == OutcomeKind::Applied || plan.set_out_order_id.is_some() {
            data.record.issue_state = plan.state;
            if let Some(describe) = &plan.describe {
                data.record.issue_describe = Some(describe.clone());
            }
            if let Some(out) = &plan.set_out_order_id {
                data.record.out_order_id = Some(out.clone());
            }
        }
        data.vouchers
            .extend(plan.vouchers.iter().map(|v| VoucherRecord {
                code: v.code.clone(),
                capacity: v.capacity,
                used: 0,
            }));
        for entry in plan.audit_entries(&snapshot, cmd) {
            self.append(entry);
        }
        Ok(plan.kind)
    }

    fn request_refund(&mut self, cmd: &RefundRequestCommand) -> Result<RefundRequest, LedgerError> {
        let snapshot = self.snapshot(cmd.order_id)?;
        let plan = plan_refund_request(&snapshot, cmd)?;
        let data = self.data(cmd.order_id)?;
        data.refunds.push(plan.request.clone());
        data.refunds.sort_by(|a, b| {
            a.requested_at
                .cmp(&b.requested_at)
                .then_with(|| a.flow_id.cmp(&b.flow_id))
        });
        for entry in plan.audit_entries(&snapshot, cmd) {
            self.append(entry);
        }
        Ok(plan.request)
    }

    fn refund(&mut self, cmd: &RefundCommand) -> Result<(RefundRequest, OutcomeKind), LedgerError> {
        let snapshot = self.snapshot(cmd.order_id)?;
        let plan = plan_refund(&snapshot, cmd)?;
        let tampered = self.quantity_on_settle.get(&cmd.order_id).copied();
        // Written to a copy and kept only when every guarded write held: a transaction.
        let mut data = self.data(cmd.order_id)?.clone();
        if plan.kind == OutcomeKind::Applied {
            let request = data
                .refunds
                .iter_mut()
                .find(|r| r.flow_id == plan.flow_id && r.state == RefundState::Pending)
                .ok_or_else(|| changed_no_row("refund_requests.state"))?;
            request.state = plan.state;
            request.refunded_tickets = plan.refunded_tickets;
            request.batch_no.clone_from(&cmd.batch_no);
            request.failure_reason.clone_from(&cmd.failure_reason);
            request.settled_at = Some(cmd.meta.received_at);
            if let Some(quantity) = tampered {
                data.record.quantity = quantity;
            }
            data.record.refunded_tickets = data
                .record
                .refunded_tickets
                .checked_add(plan.refunded_tickets)
                .filter(|n| *n <= data.record.quantity)
                .ok_or_else(|| changed_no_row("orders.refunded_tickets"))?;
        }
        let settled = data
            .refunds
            .iter()
            .find(|r| r.flow_id == plan.flow_id)
            .cloned()
            .ok_or_else(|| LedgerError::Internal("the settled refund is missing".into()))?;
        *self.data(cmd.order_id)? = data;
        for entry in plan.audit_entries(&snapshot, cmd) {
            self.append(entry);
        }
        Ok((settled, plan.kind))
    }

    fn reverse(&mut self, cmd: &ReversalCommand) -> Result<i64, LedgerError> {
        let snapshot = self.snapshot(cmd.order_id)?;
        let since = cmd.meta.received_at - cmd.window;
        let uses: Vec<UseRecord> = self.orders[&cmd.order_id]
            .uses
            .iter()
            .filter(|u| u.code == cmd.code && u.recorded_at >= since && u.reversed < u.quantity)
            .cloned()
            .collect();
        let plan = plan_reversal(&snapshot, &uses, cmd)?;
        // Written to a copy and kept only when every guarded write held: a transaction.
        let mut data = self.data(cmd.order_id)?.clone();
        let voucher = data
            .vouchers
            .iter_mut()
            .find(|v| v.code == plan.code)
            .ok_or_else(|| changed_no_row("vouchers.used"))?;
        voucher.used = voucher
            .used
            .checked_sub(plan.quantity)
            .filter(|used| *used >= 0)
            .ok_or_else(|| changed_no_row("vouchers.used"))?;
        for (use_id, n) in &plan.takes {
            let u = data
                .uses
                .iter_mut()
                .find(|u| u.id == *use_id)
                .ok_or_else(|| changed_no_row("voucher_uses.reversed"))?;
            u.reversed = u
                .reversed
                .checked_add(*n)
                .filter(|reversed| *reversed <= u.quantity)
                .ok_or_else(|| changed_no_row("voucher_uses.reversed"))?;
        }
        *self.data(cmd.order_id)? = data;
        for entry in plan.audit_entries(&snapshot, cmd) {
            self.append(entry);
        }
        Ok(plan.used_after)
    }

    fn resolve_anomaly(&mut self, cmd: &ResolveAnomaly) -> Result<Anomaly, LedgerError> {
        let index = self
            .anomalies
            .iter()
            .position(|a| a.id == cmd.id)
            .ok_or(LedgerError::AnomalyNotFound)?;
        let plan = plan_resolution(&self.anomalies[index], cmd)?;
        self.anomalies[index] = plan.resolved.clone();
        self.append(plan.audit);
        Ok(plan.resolved)
    }
}

/// The in-memory store.
#[derive(Debug, Default)]
pub(crate) struct MemStore {
    state: Mutex<State>,
}

impl MemStore {
    fn lock(&self) -> Result<MutexGuard<'_, State>, LedgerError> {
        self.state
            .lock()
            .map_err(|_| LedgerError::Internal("a test panicked while holding the lock".into()))
    }
}

/// Keeps the anomaly a refusal raises: the refused request changed nothing (every operation
/// above checks before it writes), but the fact must reach the operator.
fn keeping_anomaly<T>(
    state: &mut State,
    result: Result<T, LedgerError>,
    anomaly_of: impl FnOnce(&LedgerError) -> Option<NewAnomaly>,
) -> Result<T, LedgerError> {
    match result {
        Err(e @ (LedgerError::Unavailable(_) | LedgerError::Internal(_))) => Err(e),
        Err(refusal) => {
            if let Some(anomaly) = anomaly_of(&refusal) {
                state.store_anomaly(anomaly);
            }
            Err(refusal)
        }
        ok => ok,
    }
}

#[async_trait]
impl LedgerStore for MemStore {
    async fn create_app(&self, app: NewApp) -> Result<App, LedgerError> {
        let mut s = self.lock()?;
        if s.apps.contains_key(&app.app_key) {
            return Err(LedgerError::AppExists);
        }
        s.apps.insert(app.app_key.clone(), app.clone());
        Ok(app)
    }

    async fn app(&self, key: &AppKey) -> Result<Option<App>, LedgerError> {
        Ok(self.lock()?.apps.get(key).cloned())
    }

    async fn set_app_access(&self, key: &AppKey, access: AppAccess) -> Result<App, LedgerError> {
        let mut s = self.lock()?;
        let app = s.apps.get_mut(key).ok_or(LedgerError::UnknownApp)?;
        app.access = access;
        Ok(app.clone())
    }

    async fn rotate_app_secret(
        &self,
        key: &AppKey,
        rotation: SecretRotation,
    ) -> Result<App, LedgerError> {
        let mut s = self.lock()?;
        let app = s.apps.get_mut(key).ok_or(LedgerError::UnknownApp)?;
        let old = std::mem::replace(&mut app.secret, rotation.new_secret);
        app.previous_secret = Some(PreviousSecret {
            secret: old,
            expires_at: rotation.previous_expires_at,
        });
        Ok(app.clone())
    }

    async fn create_order(
        &self,
        order: NewOrder,
        audit: AuditEntry,
    ) -> Result<OrderView, LedgerError> {
        order.validate()?;
        let mut s = self.lock()?;
        if s.orders.contains_key(&order.order_id) {
            return Err(LedgerError::OrderExists);
        }
        if !s.apps.contains_key(&order.app_key) {
            return Err(LedgerError::UnknownApp);
        }
        if let Some(out) = &order.out_order_id {
            let taken = s.orders.values().any(|d| {
                d.record.app_key == order.app_key && d.record.out_order_id.as_ref() == Some(out)
            });
            if taken {
                return Err(LedgerError::OutOrderIdTaken);
            }
        }
        let issue_state = order.first_issue_state();
        let record = OrderRecord {
            order_id: order.order_id,
            app_key: order.app_key,
            out_order_id: order.out_order_id,
            quantity: order.quantity,
            valid_from: order.valid_from,
            valid_until: order.valid_until,
            created_at: order.created_at,
            issue_state,
            issue_describe: None,
            refunded_tickets: 0,
        };
        let vouchers = order
            .vouchers
            .into_iter()
            .map(|v| VoucherRecord {
                code: v.code,
                capacity: v.capacity,
                used: 0,
            })
            .collect();
        s.orders.insert(
            order.order_id,
            OrderData {
                record,
                vouchers,
                refunds: Vec::new(),
                uses: Vec::new(),
            },
        );
        s.append(audit);
        s.view(order.order_id)
            .ok_or_else(|| LedgerError::Internal("the order just inserted is missing".into()))
    }

    async fn order(&self, id: OrderId) -> Result<Option<OrderView>, LedgerError> {
        Ok(self.lock()?.view(id))
    }

    async fn order_events(
        &self,
        id: OrderId,
        after_seq: Option<i64>,
        limit: u32,
    ) -> Result<Option<Vec<AuditEntry>>, LedgerError> {
        let s = self.lock()?;
        if !s.orders.contains_key(&id) {
            return Ok(None);
        }
        let limit = usize::try_from(limit.min(1000)).unwrap_or(1000);
        Ok(Some(
            s.history(id)
                .filter(|e| after_seq.is_none_or(|after| e.seq > after))
                .take(limit)
                .cloned()
                .collect(),
        ))
    }

    async fn list_orders(&self, filter: OrderFilter) -> Result<OrderPage, LedgerError> {
        let s = self.lock()?;
        // Every order the filter admits, newest first, read chunk by chunk as the scan asks,
        // like a store walking its index.
        let mut admitted: Vec<&OrderData> = s
            .orders
            .values()
            .filter(|d| filter.admits(&d.record))
            .collect();
        admitted.sort_by_key(|d| std::cmp::Reverse((d.record.created_at, d.record.order_id)));
        let mut scan = OrderScan::new(&filter);
        while let Some(read) = scan.next_read() {
            let found = admitted
                .iter()
                .filter(|d| read.after.is_none_or(|after| after.precedes(&d.record)))
                .take(usize::try_from(read.limit).unwrap_or(usize::MAX))
                .map(|d| {
                    let pending = d.refunds.iter().any(|r| r.state == RefundState::Pending);
                    OrderSummary::new(d.record.clone(), &d.vouchers, pending)
                })
                .collect();
            scan.take(found);
        }
        Ok(scan.finish())
    }

    async fn list_apps(&self, after: Option<AppKey>, limit: u32) -> Result<Vec<App>, LedgerError> {
        let s = self.lock()?;
        let mut apps: Vec<&App> = s
            .apps
            .values()
            .filter(|a| after.as_ref().is_none_or(|after| a.app_key > *after))
            .collect();
        // `AppKey` orders as its text's bytes, like every store.
        apps.sort_by(|a, b| a.app_key.cmp(&b.app_key));
        let limit = usize::try_from(ticket_ledger::apps_page_size(limit)).unwrap_or(usize::MAX);
        Ok(apps.into_iter().take(limit).cloned().collect())
    }

    async fn verify(&self, cmd: VerifyCommand) -> Result<VerifyOutcome, LedgerError> {
        let mut s = self.lock()?;
        // The anomaly names the order the request resolved to, however it named it.
        let resolved = s.resolve(&cmd).or(cmd.order.order_id());
        let result = s.verify(&cmd);
        keeping_anomaly(&mut s, result, |e| {
            refusal_anomaly(e, resolved, Some(&cmd.app_key), &cmd.meta)
        })
    }

    async fn reconcile(&self, cmd: ReconcileCommand) -> Result<ReconcileOutcome, LedgerError> {
        let mut s = self.lock()?;
        let result = s.reconcile(&cmd);
        keeping_anomaly(&mut s, result, |e| cmd.refusal_anomaly(e))
    }

    async fn issue(&self, cmd: IssueCommand) -> Result<OutcomeKind, LedgerError> {
        let mut s = self.lock()?;
        let result = s.issue(&cmd);
        keeping_anomaly(&mut s, result, |e| {
            refusal_anomaly(e, Some(cmd.order_id), Some(&cmd.app_key), &cmd.meta)
        })
    }

    async fn request_refund(
        &self,
        cmd: RefundRequestCommand,
    ) -> Result<RefundRequest, LedgerError> {
        let mut s = self.lock()?;
        let result = s.request_refund(&cmd);
        keeping_anomaly(&mut s, result, |e| {
            refusal_anomaly(e, Some(cmd.order_id), None, &cmd.meta)
        })
    }

    async fn refund(
        &self,
        cmd: RefundCommand,
    ) -> Result<(RefundRequest, OutcomeKind), LedgerError> {
        let mut s = self.lock()?;
        let result = s.refund(&cmd);
        keeping_anomaly(&mut s, result, |e| {
            refusal_anomaly(e, Some(cmd.order_id), Some(&cmd.app_key), &cmd.meta)
        })
    }

    async fn reverse(&self, cmd: ReversalCommand) -> Result<i64, LedgerError> {
        let mut s = self.lock()?;
        let result = s.reverse(&cmd);
        keeping_anomaly(&mut s, result, |e| {
            refusal_anomaly(e, Some(cmd.order_id), None, &cmd.meta)
        })
    }

    async fn anomalies(&self, filter: AnomalyFilter) -> Result<Vec<Anomaly>, LedgerError> {
        let limit = usize::try_from(filter.limit.unwrap_or(100).min(1000)).unwrap_or(1000);
        Ok(self
            .lock()?
            .anomalies
            .iter()
            .rev()
            .filter(|a| {
                filter
                    .open
                    .is_none_or(|open| a.resolution.is_none() == open)
            })
            .filter(|a| {
                filter
                    .order_id
                    .is_none_or(|id| a.anomaly.order_id == Some(id))
            })
            .filter(|a| filter.kind.is_none_or(|k| a.anomaly.kind == k))
            .filter(|a| filter.before_id.is_none_or(|before| a.id < before))
            .take(limit)
            .cloned()
            .collect())
    }

    async fn resolve_anomaly(&self, cmd: ResolveAnomaly) -> Result<Anomaly, LedgerError> {
        self.lock()?.resolve_anomaly(&cmd)
    }

    async fn record(&self, entry: AuditEntry) -> Result<(), LedgerError> {
        self.lock()?.append(entry);
        Ok(())
    }

    async fn record_rejected_call(
        &self,
        mut call: ticket_ledger::RejectedCall,
        keep: u64,
    ) -> Result<(), LedgerError> {
        if keep == 0 {
            return Ok(());
        }
        let mut state = self.lock()?;
        state.next_rejected_seq += 1;
        call.seq = state.next_rejected_seq;
        state.rejected_calls.push_back(call);
        while state.rejected_calls.len() as u64 > keep {
            state.rejected_calls.pop_front();
        }
        Ok(())
    }

    async fn events(
        &self,
        after: i64,
        limit: u32,
    ) -> Result<ticket_ledger::EventPage, LedgerError> {
        let limit = if limit == 0 { 100 } else { limit.min(1000) };
        let state = self.lock()?;
        let events: Vec<_> = state
            .events
            .iter()
            .filter(|e| e.seq > after)
            .take(limit as usize)
            .cloned()
            .collect();
        let next = events.last().map_or(after.max(0), |e| e.seq);
        Ok(ticket_ledger::EventPage {
            ledger_id: "mem".into(),
            last_seq: i64::try_from(state.events.len()).unwrap_or(i64::MAX),
            events,
            next,
        })
    }

    async fn claim_relay(
        &self,
        holder: &str,
        now: chrono::DateTime<chrono::Utc>,
        lease: chrono::Duration,
    ) -> Result<Option<i64>, LedgerError> {
        let mut state = self.lock()?;
        let (position, current, until) = &mut state.relay;
        let free = current.is_none() || current.as_deref() == Some(holder) || *until < now;
        if !free {
            return Ok(None);
        }
        *current = Some(holder.to_owned());
        *until = now + lease;
        Ok(Some(*position))
    }

    async fn advance_relay(&self, holder: &str, from: i64, to: i64) -> Result<bool, LedgerError> {
        let mut state = self.lock()?;
        let (position, current, _) = &mut state.relay;
        if current.as_deref() != Some(holder) || *position != from {
            return Ok(false);
        }
        *position = to;
        Ok(true)
    }

    async fn rejected_calls(
        &self,
        filter: ticket_ledger::RejectedCallFilter,
    ) -> Result<Vec<ticket_ledger::RejectedCall>, LedgerError> {
        let limit = usize::try_from(filter.limit.unwrap_or(100).clamp(1, 1000)).unwrap_or(1000);
        let before = filter.before_seq.unwrap_or(i64::MAX);
        Ok(self
            .lock()?
            .rejected_calls
            .iter()
            .rev()
            .filter(|c| c.seq < before)
            .take(limit)
            .cloned()
            .collect())
    }

    async fn audit(&self, filter: AuditFilter) -> Result<Vec<AuditEntry>, LedgerError> {
        let limit = usize::try_from(filter.limit.unwrap_or(100).min(1000)).unwrap_or(1000);
        let state = self.lock()?;
        let entries: Box<dyn Iterator<Item = &AuditEntry>> = if filter.descending() {
            Box::new(state.audit.iter().rev())
        } else {
            Box::new(state.audit.iter())
        };
        Ok(entries
            .filter(|e| filter.order_id.is_none_or(|id| e.order_id == Some(id)))
            .filter(|e| {
                filter
                    .app_key
                    .as_deref()
                    .is_none_or(|k| e.app_key.as_deref() == Some(k))
            })
            .filter(|e| filter.outcome.is_none_or(|o| e.outcome == o))
            .filter(|e| filter.after_seq.is_none_or(|after| e.seq > after))
            .filter(|e| filter.before_seq.is_none_or(|before| e.seq < before))
            .take(limit)
            .cloned()
            .collect())
    }

    async fn ping(&self) -> Result<(), LedgerError> {
        self.lock().map(|_| ())
    }

    async fn metrics(&self) -> Result<ticket_ledger::StoreMetrics, LedgerError> {
        let state = self.lock()?;
        // Summed as floating point, like the SQL stores: no state can make the totals fail.
        let vouchers = state.orders.values().flat_map(|o| &o.vouchers);
        let (capacity, used) = vouchers.fold((0.0, 0.0), |(c, u), v| {
            (c + v.capacity as f64, u + v.used as f64)
        });
        Ok(ticket_ledger::StoreMetrics {
            orders: state.orders.len() as i64,
            capacity,
            used,
            refunded_tickets: state
                .orders
                .values()
                .map(|o| o.record.refunded_tickets as f64)
                .sum(),
            open_anomalies: state
                .anomalies
                .iter()
                .filter(|a| a.resolution.is_none())
                .count() as i64,
            batches: None,
            trigger_reloads: 0,
            failed_trigger_reloads: 0,
        })
    }
}

#[async_trait]
impl Tamper for MemStore {
    async fn lower_quantity_when_a_refund_settles(&self, order_id: i64, quantity: i64) {
        let id = OrderId::new(order_id).expect("a valid order id");
        self.lock()
            .expect("the store's lock")
            .quantity_on_settle
            .insert(id, quantity);
    }
}
