//! The writer's memory of the orders it verifies, so a verify does not read its order back.
//!
//! Every verify needs its order, the order's vouchers and its refund requests before the
//! domain can plan ([`ticket_ledger::plan_verify`]); reading and decoding them was about a
//! fifth of the writer's time per verify. Only the writer thread changes the ledger, so it can
//! keep what it read, and what it wrote since, and trust it — under four rules:
//!
//! 1. **Taken, then put back.** A verify *takes* its order's snapshot out of the cache and puts
//!    it back, updated, only once its own writes succeeded (or, for a refusal, unchanged). A
//!    job that fails midway simply never puts it back, and the next verify reads the order
//!    again from the database.
//! 2. **A failed batch forgets everything**: its transaction was rolled back, so snapshots
//!    put back by its jobs describe writes that never happened.
//! 3. **Another connection's commit forgets everything.** At the start of each batch (inside
//!    its write transaction, so nothing else can commit until it ends) the writer compares
//!    `PRAGMA data_version`, which changes exactly when another connection — another process,
//!    an operator's `sqlite3` shell — committed to the file.
//! 4. **Every other operation on an order forgets that order** before it runs (issuance,
//!    refunds, reversals, creation) and an import forgets everything: only the verify path
//!    keeps snapshots up to date, so nothing else has to.
//!
//! It also holds the writer's memory of the pending fingerprints ([`Pending`], see
//! [`super::fold`]), forgotten under the same rules 2–4, and with each order the latest gate
//! time of its fingerprints ([`Horizon`]), which lives and dies with the order's snapshot.
//!
//! The cache is bounded by the vouchers it holds ([`MAX_VOUCHERS`]); past it, arbitrary orders
//! are dropped, which costs their next verify one read.

use std::collections::HashMap;

use rusqlite::Connection;
use ticket_ledger::{OrderId, OrderSnapshot};

use super::fold::{Horizon, Pending};

/// Vouchers held at most (≈ 100 bytes each with their order's share): about 10 MB.
pub(crate) const MAX_VOUCHERS: usize = 100_000;

/// Snapshots of orders as the last commit left them (see the module docs).
#[derive(Debug, Default)]
pub(crate) struct Snapshots {
    orders: HashMap<OrderId, (OrderSnapshot, Horizon)>,
    /// Vouchers in `orders`, for the bound.
    vouchers: usize,
    /// Fingerprints written since the last fold.
    pub(crate) pending: Pending,
    /// `PRAGMA data_version` at the start of the last batch.
    data_version: Option<i64>,
    /// Lookups answered from memory and from the database, for tests and tuning.
    pub(crate) hits: u64,
    pub(crate) misses: u64,
    /// Fingerprints looked up (those a [`Horizon`] let through), for tests and tuning.
    pub(crate) lookups: u64,
}

impl Snapshots {
    /// Rule 3: called inside each batch's transaction, before its jobs run.
    pub(crate) fn begin_batch(&mut self, conn: &Connection) -> rusqlite::Result<()> {
        let version: i64 = conn.pragma_query_value(None, "data_version", |row| row.get(0))?;
        if self.data_version != Some(version) {
            self.clear();
            self.data_version = Some(version);
        }
        Ok(())
    }

    /// Rule 1: the order's snapshot and horizon, if held; the caller puts them back with
    /// [`Snapshots::put`].
    pub(crate) fn take(&mut self, id: OrderId) -> Option<(OrderSnapshot, Horizon)> {
        let taken = self.orders.remove(&id);
        match &taken {
            Some((s, _)) => {
                self.vouchers -= s.vouchers.len();
                self.hits += 1;
            }
            None => self.misses += 1,
        }
        taken
    }

    /// Rule 1: remembers `snapshot` and `horizon` as the order stands once the current job's
    /// writes commit.
    pub(crate) fn put(&mut self, mut snapshot: OrderSnapshot, horizon: Horizon) {
        // Fingerprints are looked up per request, never kept.
        snapshot.seen.clear();
        let size = snapshot.vouchers.len();
        if size > MAX_VOUCHERS {
            return;
        }
        while self.vouchers + size > MAX_VOUCHERS {
            let Some(&victim) = self.orders.keys().next() else {
                break;
            };
            self.evict(victim);
        }
        self.vouchers += size;
        if let Some((old, _)) = self
            .orders
            .insert(snapshot.order.order_id, (snapshot, horizon))
        {
            self.vouchers -= old.vouchers.len();
        }
    }

    /// Rule 4: drops one order, and the memory of pending fingerprints (the operation may
    /// write some, as a reconciliation does).
    pub(crate) fn forget(&mut self, id: OrderId) {
        self.evict(id);
        self.pending.invalidate();
    }

    /// Drops one order to make room.
    fn evict(&mut self, id: OrderId) {
        if let Some((old, _)) = self.orders.remove(&id) {
            self.vouchers -= old.vouchers.len();
        }
    }

    /// Rules 2–4: drops every order and the memory of pending fingerprints.
    pub(crate) fn clear(&mut self) {
        self.orders.clear();
        self.vouchers = 0;
        self.pending.invalidate();
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use chrono::DateTime;
    use ticket_ledger::{AppKey, ConfirmCode, IssueState, OrderRecord, VoucherRecord};

    use super::*;

    fn snapshot(id: i64, vouchers: usize) -> OrderSnapshot {
        OrderSnapshot {
            order: OrderRecord {
                order_id: OrderId::new(id).expect("id"),
                app_key: AppKey::parse("app").expect("key"),
                out_order_id: None,
                quantity: 1,
                valid_from: None,
                valid_until: None,
                created_at: DateTime::UNIX_EPOCH,
                issue_state: IssueState::Issued,
                issue_describe: None,
                refunded_tickets: 0,
            },
            vouchers: (0..vouchers)
                .map(|i| VoucherRecord {
                    code: ConfirmCode::parse(&format!("CODE{i:06}")).expect("code"),
                    capacity: 1,
                    used: 0,
                })
                .collect(),
            seen: HashSet::new(),
            refunds: Vec::new(),
        }
    }

    #[test]
    fn the_cache_never_holds_more_vouchers_than_its_bound() {
        let mut cache = Snapshots::default();
        let per_order = 999;
        let orders = MAX_VOUCHERS / per_order + 50;
        for id in 1..=orders {
            cache.put(snapshot(id as i64, per_order), Horizon::default());
            assert!(
                cache.vouchers <= MAX_VOUCHERS,
                "{} vouchers",
                cache.vouchers
            );
        }
        let held: usize = cache.orders.values().map(|(s, _)| s.vouchers.len()).sum();
        assert_eq!(held, cache.vouchers, "the count matches what is held");
        assert!(
            held > MAX_VOUCHERS - per_order,
            "evicts only what it must: {held}"
        );
        // The last order put is always held.
        assert!(cache
            .take(OrderId::new(orders as i64).expect("id"))
            .is_some());
    }

    #[test]
    fn taking_removes_and_putting_back_replaces() {
        let mut cache = Snapshots::default();
        let id = OrderId::new(7).expect("id");
        assert!(cache.take(id).is_none());
        cache.put(snapshot(7, 3), Horizon::default());
        let (mut taken, horizon) = cache.take(id).expect("held");
        assert!(cache.take(id).is_none(), "taken out until put back");
        taken.vouchers[0].used = 1;
        cache.put(taken, horizon);
        assert_eq!(cache.take(id).expect("held").0.vouchers[0].used, 1);
        assert_eq!((cache.hits, cache.misses), (2, 2));
        assert_eq!(cache.vouchers, 0);
    }
}
