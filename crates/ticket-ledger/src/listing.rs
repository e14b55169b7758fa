//! The operator's list of orders: newest first, paged by an opaque cursor, filtered by what the
//! operator typed (`q`), the app and the derived status ([`crate::LedgerStore::list_orders`]).
//!
//! An order's status is derived from its counters ([`OrderStatus::derive`]), not stored, so no
//! store can filter on it in SQL. Every store therefore walks the orders that match the other
//! filters newest first and keeps those whose status matches, as [`OrderScan`] decides: it
//! names each read (where it resumes and how many rows), takes what the read found, and stops
//! when the page is full, when nothing is left, or when it has looked at
//! [`OrderFilter::MAX_SCANNED`] orders — so one call costs a bounded amount whatever the ledger
//! holds, and a filter that matches rarely answers a short (even empty) page with a cursor to
//! continue from instead of reading the whole table.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};

use crate::ids::{AppKey, OrderId, OutOrderId};
use crate::order::{OrderRecord, VoucherRecord};
use crate::status::OrderStatus;

/// Where a page of orders resumes: newest first by (created_at, order_id) descending.
///
/// On the wire it is opaque text, `<created_at unix millis>.<order_id>` (`1764800000000.1234`):
/// what a page's `next` gave is what the next request passes as `after`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrderCursor {
    /// The `created_at` of the last order of the page.
    pub created_at: DateTime<Utc>,
    /// Its id, which orders orders created in the same millisecond.
    pub order_id: OrderId,
}

impl OrderCursor {
    /// The longest text [`OrderCursor::from_str`] reads: a sign, 19 digits, a dot and 19 digits
    /// fit with room to spare. Longer input is refused before it is looked at.
    pub const MAX_LEN: usize = 64;

    /// The cursor of `order`: a page that ends with it resumes after it.
    pub fn of(order: &OrderRecord) -> Self {
        Self {
            created_at: order.created_at,
            order_id: order.order_id,
        }
    }

    /// Whether `order` comes after this cursor in the list (is strictly older by
    /// `(created_at, order_id)`).
    pub fn precedes(&self, order: &OrderRecord) -> bool {
        (order.created_at, order.order_id) < (self.created_at, self.order_id)
    }
}

impl fmt::Display for OrderCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}.{}",
            self.created_at.timestamp_millis(),
            self.order_id
        )
    }
}

/// Text that is not an [`OrderCursor`] (only the `next` of a page is).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not a cursor of the order list: pass the `next` of the previous page as it was given")]
pub struct OrderCursorError;

impl FromStr for OrderCursor {
    type Err = OrderCursorError;

    /// Reads exactly what [`fmt::Display`] writes, and nothing else: no sign but a minus on the
    /// instant, no leading zeros, no spaces, an instant chrono can represent and a positive
    /// order id.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() > Self::MAX_LEN {
            return Err(OrderCursorError);
        }
        let (millis, id) = s.split_once('.').ok_or(OrderCursorError)?;
        let digits = millis.strip_prefix('-').unwrap_or(millis);
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(OrderCursorError);
        }
        let millis: i64 = millis.parse().map_err(|_| OrderCursorError)?;
        let cursor = Self {
            created_at: DateTime::from_timestamp_millis(millis).ok_or(OrderCursorError)?,
            order_id: OrderId::parse(id).ok_or(OrderCursorError)?,
        };
        // The canonical text only ("007.5", "-0.5" and "5.05" name cursors too, but no page
        // ever gave them), so one cursor has one spelling.
        if cursor.to_string() != s {
            return Err(OrderCursorError);
        }
        Ok(cursor)
    }
}

/// Which orders to list, and from where.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OrderFilter {
    /// Matches exactly an order_id (when it parses as one), an out_order_id, or an app_key.
    pub q: Option<String>,
    /// Only orders whose derived status is this one.
    pub status: Option<OrderStatus>,
    /// Only this app's orders.
    pub app_key: Option<AppKey>,
    /// Only orders after this cursor (the `next` of the previous page).
    pub after: Option<OrderCursor>,
    /// Page size; the store clamps to 1..=OrderFilter::MAX_LIMIT (200); 0/None-like -> default 50.
    pub limit: u32,
}

impl OrderFilter {
    /// Orders a page holds when the filter names no limit (0).
    pub const DEFAULT_LIMIT: u32 = 50;
    /// Orders a page holds at most, whatever the filter asks.
    pub const MAX_LIMIT: u32 = 200;
    /// Orders one call looks at, at most, to fill a page filtered by status: past it the call
    /// answers what it found, with the cursor of the last order it looked at.
    pub const MAX_SCANNED: u32 = 2000;

    /// The page size this filter asks for: [`OrderFilter::DEFAULT_LIMIT`] for 0, at most
    /// [`OrderFilter::MAX_LIMIT`].
    pub fn page_size(&self) -> u32 {
        match self.limit {
            0 => Self::DEFAULT_LIMIT,
            n => n.min(Self::MAX_LIMIT),
        }
    }

    /// What `q` can name, parsed as each identifier; `None` when the filter has no `q`.
    pub fn q_terms(&self) -> Option<OrderQuery> {
        self.q.as_deref().map(OrderQuery::parse)
    }

    /// Whether `order` passes the filters a store applies when it reads candidates (`q` and
    /// `app_key`; not the status, which [`OrderScan`] checks, nor the cursor).
    pub fn admits(&self, order: &OrderRecord) -> bool {
        self.app_key
            .as_ref()
            .is_none_or(|key| order.app_key == *key)
            && self.q_terms().is_none_or(|q| q.matches(order))
    }
}

/// The identifiers an operator's search text (`q`) can name: each is tried and an order
/// matching any one of them exactly is found. Text that is none of them finds nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OrderQuery {
    /// The text as an order id, when it is one.
    pub order_id: Option<OrderId>,
    /// The text as a vendor's order id, when it is one.
    pub out_order_id: Option<OutOrderId>,
    /// The text as an app key, when it is one.
    pub app_key: Option<AppKey>,
}

impl OrderQuery {
    /// Parses `q` as each identifier (an over-long or invisible text is none of them).
    pub fn parse(q: &str) -> Self {
        Self {
            order_id: OrderId::parse(q),
            out_order_id: OutOrderId::parse(q),
            app_key: AppKey::parse(q),
        }
    }

    /// Whether the text names nothing at all (every order fails to match).
    pub fn is_empty(&self) -> bool {
        self.order_id.is_none() && self.out_order_id.is_none() && self.app_key.is_none()
    }

    /// Whether `order` is named by any of the identifiers, exactly.
    pub fn matches(&self, order: &OrderRecord) -> bool {
        self.order_id == Some(order.order_id)
            || (self.out_order_id.is_some() && self.out_order_id == order.out_order_id)
            || self.app_key.as_ref() == Some(&order.app_key)
    }
}

/// One order as the list shows it: its row, its totals and its derived status.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderSummary {
    /// The order's row.
    pub order: OrderRecord,
    /// Uses issued over all its codes (the sum of voucher capacities).
    pub capacity: i64,
    /// Uses recorded over all its codes (the sum of voucher uses).
    pub used: i64,
    /// Derived exactly as [`crate::OrderView::status`] derives it.
    pub status: OrderStatus,
}

impl OrderSummary {
    /// The summary of `order` with its vouchers, `refund_pending` saying whether one of its
    /// refund requests is pending.
    pub fn new(order: OrderRecord, vouchers: &[VoucherRecord], refund_pending: bool) -> Self {
        let capacity = vouchers.iter().map(|v| i128::from(v.capacity)).sum();
        let used = vouchers.iter().map(|v| i128::from(v.used)).sum();
        Self::from_totals(order, capacity, used, refund_pending)
    }

    /// The summary of `order` from the sums of its voucher capacities and uses, for a store
    /// that sums them as it reads (`i128`, exact for any stored counts).
    ///
    /// A total beyond `i64` (only a ledger edited behind its back, or older than
    /// [`crate::limits`], can hold one) is shown as `i64::MAX`, not refused: one such order
    /// must not make the whole list fail. Its status is derived from the exact sums.
    pub fn from_totals(
        order: OrderRecord,
        capacity: i128,
        used: i128,
        refund_pending: bool,
    ) -> Self {
        let status = OrderStatus::derive_from_totals(&order, capacity, used, refund_pending);
        let shown = |total: i128| i64::try_from(total).unwrap_or(i64::MAX);
        Self {
            capacity: shown(capacity),
            used: shown(used),
            status,
            order,
        }
    }

    /// Where a page ending with this order resumes.
    pub fn cursor(&self) -> OrderCursor {
        OrderCursor::of(&self.order)
    }
}

/// Apps one [`crate::LedgerStore::list_apps`] call answers at most.
pub const MAX_APPS_LISTED: u32 = 200;

/// How many apps `list_apps(_, limit)` answers at most: `limit` clamped to
/// `1..=`[`MAX_APPS_LISTED`] (a 0 becomes 1, so a walk always moves on).
pub fn apps_page_size(limit: u32) -> u32 {
    limit.clamp(1, MAX_APPS_LISTED)
}

/// One page of the order list.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderPage {
    /// The orders, newest first by `(created_at, order_id)`.
    pub orders: Vec<OrderSummary>,
    /// Pass as [`OrderFilter::after`] for the next page: `Some` exactly when there may be more
    /// (the page is full, or the call looked at [`OrderFilter::MAX_SCANNED`] orders first);
    /// `None` at the end of the list.
    pub next: Option<OrderCursor>,
}

/// The walk every store makes to answer [`crate::LedgerStore::list_orders`], as a pure
/// decision over what the store reads, so every backend pages and stops alike.
///
/// ```ignore
/// let mut scan = OrderScan::new(&filter);
/// while let Some(read) = scan.next_read() {
///     // The orders admitted by the filter (`OrderFilter::admits`) after `read.after`,
///     // newest first, at most `read.limit`.
///     let found = store.candidates(&filter, read.after, read.limit)?;
///     scan.take(found);
/// }
/// Ok(scan.finish())
/// ```
#[derive(Debug, Clone)]
pub struct OrderScan {
    status: Option<OrderStatus>,
    page_size: usize,
    /// The cursor of the last order looked at (the filter's `after` before the first read).
    last: Option<OrderCursor>,
    /// Orders looked at so far.
    scanned: u32,
    orders: Vec<OrderSummary>,
    /// `Some(next)` once the page is complete.
    done: Option<Option<OrderCursor>>,
}

/// One read an [`OrderScan`] asks of the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrderRead {
    /// Orders after this cursor only (`None`: from the newest).
    pub after: Option<OrderCursor>,
    /// At most this many.
    pub limit: u32,
}

impl OrderScan {
    /// Rows read at a time when the page is filtered by status (without a status filter a
    /// read asks for what the page still lacks, and one more).
    pub const CHUNK: u32 = 200;

    /// A walk answering `filter`.
    pub fn new(filter: &OrderFilter) -> Self {
        Self {
            status: filter.status,
            page_size: usize::try_from(filter.page_size()).unwrap_or(usize::MAX),
            last: filter.after,
            scanned: 0,
            orders: Vec::new(),
            done: None,
        }
    }

    /// The next read, or `None` when the page is complete.
    pub fn next_read(&self) -> Option<OrderRead> {
        if self.done.is_some() {
            return None;
        }
        let budget = OrderFilter::MAX_SCANNED.saturating_sub(self.scanned);
        let wanted = match self.status {
            // Every order read is shown: what the page lacks, and one more to know whether
            // the list goes on.
            None => {
                let lacking = self.page_size.saturating_sub(self.orders.len());
                u32::try_from(lacking).unwrap_or(u32::MAX).saturating_add(1)
            }
            Some(_) => Self::CHUNK,
        };
        Some(OrderRead {
            after: self.last,
            limit: wanted.min(budget).max(1),
        })
    }

    /// Takes what the store found for the last [`OrderScan::next_read`]: the admitted orders
    /// after its cursor, newest first, at most its limit.
    pub fn take(&mut self, found: Vec<OrderSummary>) {
        let Some(read) = self.next_read() else {
            return;
        };
        let ended = found.len() < usize::try_from(read.limit).unwrap_or(usize::MAX);
        for summary in found {
            if self.orders.len() >= self.page_size {
                // Full, and at least this order follows.
                self.done = Some(self.last);
                return;
            }
            self.scanned = self.scanned.saturating_add(1);
            self.last = Some(summary.cursor());
            if self.status.is_none_or(|status| status == summary.status) {
                self.orders.push(summary);
            }
        }
        if ended {
            self.done = Some(None);
        } else if self.orders.len() >= self.page_size || self.scanned >= OrderFilter::MAX_SCANNED {
            // Full or out of budget, and the store may hold more.
            self.done = Some(self.last);
        }
    }

    /// The page. Call once [`OrderScan::next_read`] answers `None`; earlier, the page so far
    /// with a cursor to continue from.
    pub fn finish(self) -> OrderPage {
        let next = match self.done {
            Some(next) => next,
            None => self.last,
        };
        OrderPage {
            orders: self.orders,
            next,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::order::IssueState;

    fn at(ms: i64) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(ms).expect("in range")
    }

    fn record(id: i64, ms: i64) -> OrderRecord {
        OrderRecord {
            order_id: OrderId::new(id).expect("positive"),
            app_key: AppKey::parse("app").expect("valid"),
            out_order_id: None,
            quantity: 2,
            valid_from: None,
            valid_until: None,
            created_at: at(ms),
            issue_state: IssueState::Issued,
            issue_describe: None,
            refunded_tickets: 0,
        }
    }

    /// Orders `1..=n`, order `i` created at `i / 2` ms (pairs tie), `used` 1 for those in
    /// `used`, newest first.
    fn ledger(n: i64, used: &[i64]) -> Vec<OrderSummary> {
        let mut all: Vec<OrderSummary> = (1..=n)
            .map(|i| {
                let u = i128::from(used.contains(&i));
                OrderSummary::from_totals(record(i, i / 2), 2, u, false)
            })
            .collect();
        all.sort_by_key(|s| std::cmp::Reverse((s.order.created_at, s.order.order_id)));
        all
    }

    /// Runs a scan over `ledger` as a store would; returns the page and the reads made.
    fn scan(ledger: &[OrderSummary], filter: &OrderFilter) -> (OrderPage, Vec<OrderRead>) {
        let mut scan = OrderScan::new(filter);
        let mut reads = Vec::new();
        while let Some(read) = scan.next_read() {
            reads.push(read);
            let found = ledger
                .iter()
                .filter(|s| read.after.is_none_or(|c| c.precedes(&s.order)))
                .take(read.limit as usize)
                .cloned()
                .collect();
            scan.take(found);
        }
        (scan.finish(), reads)
    }

    fn ids(page: &OrderPage) -> Vec<i64> {
        page.orders.iter().map(|s| s.order.order_id.get()).collect()
    }

    #[test]
    fn cursors_round_trip_through_their_text_and_refuse_anything_else() {
        let c = OrderCursor {
            created_at: at(1_764_800_000_000),
            order_id: OrderId::new(1234).expect("positive"),
        };
        assert_eq!(c.to_string(), "1764800000000.1234");
        assert_eq!("1764800000000.1234".parse(), Ok(c));
        let early = OrderCursor {
            created_at: at(-5),
            order_id: OrderId::new(9).expect("positive"),
        };
        assert_eq!(early.to_string().parse(), Ok(early));
        let max = OrderCursor {
            created_at: at(4_102_444_800_000),
            order_id: OrderId::new(i64::MAX).expect("positive"),
        };
        assert_eq!(max.to_string().parse(), Ok(max));
        for bad in [
            "",
            ".",
            "1.",
            ".1",
            "1.0",
            "1.-2",
            "+1.2",
            "01.2",
            "1.02",
            "-0.2",
            " 1.2",
            "1.2 ",
            "1,2",
            "1.2.3",
            "a.b",
            "99999999999999999999.1",
            "9223372036854775807.1",
            "1.9223372036854775808",
            "１.２",
        ] {
            assert_eq!(bad.parse::<OrderCursor>(), Err(OrderCursorError), "{bad:?}");
        }
        let long = format!("1.{}", "1".repeat(OrderCursor::MAX_LEN));
        assert_eq!(long.parse::<OrderCursor>(), Err(OrderCursorError));
    }

    #[test]
    fn page_sizes_default_to_50_and_are_clamped_to_200() {
        let size = |limit| {
            OrderFilter {
                limit,
                ..OrderFilter::default()
            }
            .page_size()
        };
        assert_eq!(size(0), 50);
        assert_eq!(size(1), 1);
        assert_eq!(size(200), 200);
        assert_eq!(size(1_000_000), 200);
    }

    #[test]
    fn q_matches_an_order_id_an_out_order_id_or_an_app_key_exactly() {
        let mut o = record(42, 0);
        o.out_order_id = OutOrderId::parse("OUT-42");
        let q = |text: &str| OrderQuery::parse(text).matches(&o);
        assert!(q("42") && q("OUT-42") && q("app"));
        assert!(!q("4") && !q("OUT-4") && !q("ap") && !q("APP") && !q(""));
        o.out_order_id = None;
        assert!(
            !OrderQuery::parse("x").matches(&o),
            "no out_order_id is no match"
        );
        assert!(OrderQuery::parse("has space").is_empty());
    }

    #[test]
    fn statuses_parse_from_their_wire_names_only() {
        for status in OrderStatus::ALL {
            assert_eq!(OrderStatus::parse(status.as_str()), Some(*status));
        }
        assert_eq!(OrderStatus::parse("Issued"), None);
        assert_eq!(OrderStatus::parse(""), None);
    }

    #[test]
    fn pages_walk_every_order_once_across_ties_and_end_without_a_cursor() {
        let all = ledger(11, &[]);
        for limit in [1, 2, 3, 5, 11, 12, 200] {
            let mut seen = Vec::new();
            let mut after = None;
            let mut pages = 0;
            loop {
                let filter = OrderFilter {
                    after,
                    limit,
                    ..OrderFilter::default()
                };
                let (page, reads) = scan(&all, &filter);
                assert_eq!(reads.len(), 1, "one read a page without a status filter");
                pages += 1;
                seen.extend(ids(&page));
                match page.next {
                    Some(next) => after = Some(next),
                    None => break,
                }
            }
            assert_eq!(seen, (1..=11).rev().collect::<Vec<_>>(), "limit {limit}");
            assert_eq!(
                pages,
                11usize.div_ceil(limit as usize),
                "limit {limit}: no empty page"
            );
        }
    }

    #[test]
    fn a_status_filter_stops_after_max_scanned_orders_with_a_cursor_to_go_on() {
        let n = i64::from(OrderFilter::MAX_SCANNED) + 10;
        // Only the oldest order is used.
        let all = ledger(n, &[1]);
        let filter = OrderFilter {
            status: Some(OrderStatus::PartlyUsed),
            ..OrderFilter::default()
        };
        let (page, reads) = scan(&all, &filter);
        assert!(page.orders.is_empty());
        let read: u32 = reads.iter().map(|r| r.limit).sum();
        assert_eq!(read, OrderFilter::MAX_SCANNED, "{reads:?}");
        let next = page.next.expect("more may follow");
        assert_eq!(next, all[OrderFilter::MAX_SCANNED as usize - 1].cursor());
        let (page, _) = scan(
            &all,
            &OrderFilter {
                after: Some(next),
                ..filter
            },
        );
        assert_eq!((ids(&page), page.next), (vec![1], None));
    }

    #[test]
    fn a_full_page_names_a_cursor_only_while_orders_may_follow() {
        let all = ledger(6, &[2, 4, 6]);
        let used = OrderFilter {
            status: Some(OrderStatus::PartlyUsed),
            limit: 3,
            ..OrderFilter::default()
        };
        let (page, _) = scan(&all, &used);
        assert_eq!(ids(&page), [6, 4, 2]);
        assert_eq!(
            page.next,
            Some(all[4].cursor()),
            "order 1 was not looked at yet"
        );
        let (page, _) = scan(&all[..5], &used);
        assert_eq!(
            (ids(&page), page.next),
            (vec![6, 4, 2], None),
            "order 2 was the last"
        );
        let (page, _) = scan(
            &all,
            &OrderFilter {
                limit: 6,
                ..OrderFilter::default()
            },
        );
        assert_eq!(
            (page.orders.len(), page.next),
            (6, None),
            "exactly full, nothing follows"
        );
    }

    #[test]
    fn summaries_derive_the_status_of_the_order_view_and_never_fail_on_huge_counts() {
        let order = record(1, 0);
        let vouchers = [
            VoucherRecord {
                code: crate::ConfirmCode::parse("A").expect("valid"),
                capacity: i64::MAX,
                used: 1,
            },
            VoucherRecord {
                code: crate::ConfirmCode::parse("B").expect("valid"),
                capacity: i64::MAX,
                used: 0,
            },
        ];
        let s = OrderSummary::new(order.clone(), &vouchers, false);
        assert_eq!((s.capacity, s.used), (i64::MAX, 1));
        assert_eq!(s.status, OrderStatus::derive(&order, &vouchers, false));
        assert_eq!(
            OrderSummary::new(order.clone(), &vouchers, true).status,
            OrderStatus::Refunding
        );
    }
}
