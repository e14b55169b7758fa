//! A test double: the smallest honest [`LedgerStore`], kept in memory behind one mutex, used to
//! check the behaviour suite itself before a real store exists. Not for production: nothing is
//! durable, and one lock serialises everything.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;
use ticket_ledger::{
    plan_verify, App, AppKey, AuditEntry, AuditFilter, Fingerprint, LedgerError, LedgerStore,
    NewApp, NewOrder, OrderId, OrderRecord, OrderRef, OrderSnapshot, OrderView, VerifyCommand,
    VerifyOutcome, VoucherRecord,
};

#[derive(Debug, Default)]
struct State {
    apps: HashMap<AppKey, App>,
    orders: HashMap<OrderId, (OrderRecord, Vec<VoucherRecord>)>,
    fingerprints: HashMap<OrderId, HashSet<Fingerprint>>,
    audit: Vec<AuditEntry>,
}

impl State {
    fn append(&mut self, mut entry: AuditEntry) {
        entry.seq = i64::try_from(self.audit.len()).expect("fewer than 2^63 entries") + 1;
        self.audit.push(entry);
    }

    fn view(&self, id: OrderId) -> Option<OrderView> {
        let (order, vouchers) = self.orders.get(&id)?;
        Some(OrderView {
            order: order.clone(),
            vouchers: vouchers.clone(),
            events: self
                .audit
                .iter()
                .filter(|e| e.order_id == Some(id.get()))
                .cloned()
                .collect(),
        })
    }

    /// The order a request names, resolved as the trait asks: by id whoever owns it (the plan
    /// refuses foreign orders), by `out_order_id` within the calling app.
    fn resolve(&self, cmd: &VerifyCommand) -> Option<OrderId> {
        match &cmd.order {
            OrderRef::Id(id) | OrderRef::Both(id, _) => self.orders.contains_key(id).then_some(*id),
            OrderRef::Out(out) => self
                .orders
                .values()
                .find(|(o, _)| o.app_key == cmd.app_key && o.out_order_id.as_ref() == Some(out))
                .map(|(o, _)| o.order_id),
        }
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
            let taken = s
                .orders
                .values()
                .any(|(o, _)| o.app_key == order.app_key && o.out_order_id.as_ref() == Some(out));
            if taken {
                return Err(LedgerError::OutOrderIdTaken);
            }
        }
        let record = OrderRecord {
            order_id: order.order_id,
            app_key: order.app_key,
            out_order_id: order.out_order_id,
            quantity: order.quantity,
            valid_from: order.valid_from,
            valid_until: order.valid_until,
            created_at: order.created_at,
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
        s.orders.insert(order.order_id, (record, vouchers));
        s.append(audit);
        s.view(order.order_id)
            .ok_or_else(|| LedgerError::Internal("the order just inserted is missing".into()))
    }

    async fn order(&self, id: OrderId) -> Result<Option<OrderView>, LedgerError> {
        Ok(self.lock()?.view(id))
    }

    async fn verify(&self, cmd: VerifyCommand) -> Result<VerifyOutcome, LedgerError> {
        let mut s = self.lock()?;
        let id = s.resolve(&cmd).ok_or(LedgerError::OrderNotFound)?;
        let (order, vouchers) = s
            .orders
            .get(&id)
            .cloned()
            .ok_or(LedgerError::OrderNotFound)?;
        let recorded = s.fingerprints.get(&id);
        let seen = cmd
            .fingerprints()
            .into_iter()
            .filter(|fp| recorded.is_some_and(|r| r.contains(fp)))
            .collect();
        let snapshot = OrderSnapshot {
            order,
            vouchers,
            seen,
        };
        let plan = plan_verify(&snapshot, &cmd)?;

        // Apply like a store's conditional update would: check, then write everything.
        let mut vouchers = snapshot.vouchers;
        for change in &plan.changes {
            let v = vouchers
                .iter_mut()
                .find(|v| v.code == change.code)
                .ok_or_else(|| LedgerError::Internal("the plan names an unknown voucher".into()))?;
            if v.used != change.used_before || v.used + change.delta > v.capacity {
                return Err(LedgerError::Internal(
                    "the plan does not fit the counters".into(),
                ));
            }
            v.used += change.delta;
        }
        if let Some(slot) = s.orders.get_mut(&id) {
            slot.1 = vouchers;
        }
        s.fingerprints
            .entry(id)
            .or_default()
            .extend(plan.new_fingerprints.iter().cloned());
        s.append(plan.audit_entry(&cmd, "taobao.travel.ticket.order.verify"));
        Ok(plan.outcome)
    }

    async fn record(&self, entry: AuditEntry) -> Result<(), LedgerError> {
        self.lock()?.append(entry);
        Ok(())
    }

    async fn audit(&self, filter: AuditFilter) -> Result<Vec<AuditEntry>, LedgerError> {
        let limit = usize::try_from(filter.limit.unwrap_or(1000).min(1000)).unwrap_or(1000);
        Ok(self
            .lock()?
            .audit
            .iter()
            .filter(|e| filter.order_id.is_none_or(|id| e.order_id == Some(id)))
            .filter(|e| {
                filter
                    .app_key
                    .as_deref()
                    .is_none_or(|k| e.app_key.as_deref() == Some(k))
            })
            .filter(|e| filter.outcome.is_none_or(|o| e.outcome == o))
            .filter(|e| filter.after_seq.is_none_or(|after| e.seq > after))
            .take(limit)
            .cloned()
            .collect())
    }

    async fn ping(&self) -> Result<(), LedgerError> {
        self.lock().map(|_| ())
    }
}
