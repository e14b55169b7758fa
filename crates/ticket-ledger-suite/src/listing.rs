//! The operator's lists: orders newest first, paged by cursor and filtered by search text, app
//! and derived status (`list_orders`), and apps by key (`list_apps`).
//!
//! Cases share their database with others, so each looks only at its own apps' orders (the app
//! filter, or a search text only its own names can match) and at the apps under its own key
//! prefix.

use std::collections::HashSet;
use std::sync::Arc;

use chrono::Duration;
use futures::{stream, StreamExt};

use ticket_ledger::{LedgerStore, NewOrder, OrderStatus};
use ticket_ledger::{OrderCursor, OrderFilter, OrderPage, OrderSummary};

use super::build::{
    app_key, order, order_created_at, out, received_at, refund_request, verify_cmd, Fresh,
};
use super::check::{given_app, given_order, verify_ok, view};

cases! {
    orders_are_listed_newest_first_and_paged_without_loss_across_equal_times,
    search_text_matches_an_order_id_an_out_order_id_or_an_app_key_exactly,
    status_filter_keeps_exactly_the_orders_whose_derived_status_matches,
    status_filter_stops_after_max_scanned_orders_with_a_cursor_to_continue,
    page_size_is_clamped_to_200_and_defaults_to_50,
    app_filter_lists_only_that_apps_orders,
    apps_are_listed_by_key_and_paged_after_the_last_key,
}

/// One page; panics if the store fails.
async fn page(store: &dyn LedgerStore, filter: OrderFilter, ctx: &str) -> OrderPage {
    store
        .list_orders(filter.clone())
        .await
        .unwrap_or_else(|e| panic!("{ctx}: list_orders({filter:?}) should answer, got {e:?}"))
}

/// Every page of `filter` from its start, following `next`; returns the pages. Panics past
/// `max_pages` (a walk that never ends).
async fn walk(
    store: &dyn LedgerStore,
    filter: OrderFilter,
    max_pages: usize,
    ctx: &str,
) -> Vec<OrderPage> {
    let mut pages = Vec::new();
    let mut after = filter.after;
    loop {
        assert!(
            pages.len() < max_pages,
            "{ctx}: more than {max_pages} pages"
        );
        let got = page(
            store,
            OrderFilter {
                after,
                ..filter.clone()
            },
            ctx,
        )
        .await;
        let next = got.next;
        pages.push(got);
        match next {
            Some(next) => after = Some(next),
            None => return pages,
        }
    }
}

fn ids(orders: &[OrderSummary]) -> Vec<i64> {
    orders.iter().map(|s| s.order.order_id.get()).collect()
}

fn all_ids(pages: &[OrderPage]) -> Vec<i64> {
    pages.iter().flat_map(|p| ids(&p.orders)).collect()
}

/// An app filter for `key`.
fn of_app(key: &str) -> OrderFilter {
    OrderFilter {
        app_key: Some(app_key(key)),
        ..OrderFilter::default()
    }
}

/// An order of `app` with one code of capacity 2, created `secs` seconds after
/// [`order_created_at`].
fn order_at(id: i64, app: &str, secs: i64) -> NewOrder {
    let mut new = order(id, app, &[("LIST-0001", 2)]);
    new.created_at = order_created_at() + Duration::seconds(secs);
    new
}

/// Creates `orders` 16 at a time (so group-committing stores batch them).
async fn given_orders(store: &dyn LedgerStore, orders: Vec<NewOrder>) {
    stream::iter(orders)
        .for_each_concurrent(16, |o| async move {
            given_order(store, o).await;
        })
        .await;
}

/// Asserts a summary shows what `order()` shows of the same order.
async fn assert_summary_matches_view(store: &dyn LedgerStore, s: &OrderSummary, ctx: &str) {
    let id = s.order.order_id.get();
    let v = view(store, id, ctx).await;
    assert_eq!(s.order, v.order, "{ctx}: order {id}'s row");
    let capacity: i64 = v.vouchers.iter().map(|x| x.capacity).sum();
    let used: i64 = v.vouchers.iter().map(|x| x.used).sum();
    assert_eq!(
        (s.capacity, s.used, s.status),
        (capacity, used, v.status()),
        "{ctx}: order {id}'s (capacity, used, status) as order() derives them"
    );
}

/// `list_orders` is newest first by `(created_at, order_id)`: orders created in the same
/// instant come by decreasing id. Walking the pages with `next` as `after` returns every order
/// exactly once whatever the page size (1, 2, 3, all), with no empty page at the end; `next`
/// is `None` only on the last page. Each summary shows the totals and the status `order()`
/// shows.
async fn orders_are_listed_newest_first_and_paged_without_loss_across_equal_times(
    store: Arc<dyn LedgerStore>,
) {
    let f = Fresh::new();
    let a = f.key("app");
    given_app(&*store, &a).await;
    // Ids and times disagree on purpose: three orders in one second, two in another.
    let made = [(5, 10), (2, 10), (9, 10), (1, 20), (7, 20), (3, 0), (8, -5)];
    for (n, secs) in made {
        given_order(&*store, order_at(f.id(n), &a, secs)).await;
    }
    verify_ok(
        &*store,
        verify_cmd(&a, f.id(7)).entry("LIST-0001", 1).build(),
        "one use of order 7",
    )
    .await;
    let want: Vec<i64> = [7, 1, 9, 5, 2, 3, 8].iter().map(|&n| f.id(n)).collect();

    for limit in [1, 2, 3, 7, 50] {
        let ctx = format!("limit {limit}");
        let pages = walk(
            &*store,
            OrderFilter {
                limit,
                ..of_app(&a)
            },
            20,
            &ctx,
        )
        .await;
        assert_eq!(
            all_ids(&pages),
            want,
            "{ctx}: every order once, newest first"
        );
        assert_eq!(
            pages.len(),
            want.len().div_ceil(limit as usize),
            "{ctx}: full pages, and no empty page after the last"
        );
        for (n, p) in pages.iter().enumerate() {
            let last = n + 1 == pages.len();
            assert_eq!(
                p.next.is_none(),
                last,
                "{ctx}: next of page {n}: {:?}",
                p.next
            );
            if let (Some(next), Some(tail)) = (p.next, p.orders.last()) {
                assert_eq!(
                    next,
                    OrderCursor::of(&tail.order),
                    "{ctx}: next is the last order"
                );
            }
        }
    }
    let first = page(&*store, of_app(&a), "default page").await;
    for s in &first.orders {
        assert_summary_matches_view(&*store, s, "summaries").await;
    }
    assert_eq!(first.orders[0].used, 1, "order 7's use is counted");
    assert_eq!(first.orders[0].status, OrderStatus::PartlyUsed);

    // A cursor between orders of one instant resumes inside it.
    let after = OrderCursor {
        created_at: order_created_at() + Duration::seconds(10),
        order_id: ticket_ledger::OrderId::new(f.id(6)).expect("positive"),
    };
    let rest = page(
        &*store,
        OrderFilter {
            after: Some(after),
            ..of_app(&a)
        },
        "after a cursor that names no order",
    )
    .await;
    assert_eq!(ids(&rest.orders), [f.id(5), f.id(2), f.id(3), f.id(8)]);
    assert_eq!(rest.next, None);
}

/// A search text finds an order by its `order_id`, by its `out_order_id` (of any app) or by
/// its `app_key`, each compared whole: a prefix, a part or another case finds nothing. One
/// text naming orders several ways (an app whose key is another order's id) finds each of them
/// once, newest first.
async fn search_text_matches_an_order_id_an_out_order_id_or_an_app_key_exactly(
    store: Arc<dyn LedgerStore>,
) {
    let f = Fresh::new();
    let a = f.key("qa");
    let b = f.key("qb");
    given_app(&*store, &a).await;
    given_app(&*store, &b).await;
    let out_1 = f.key("OUT-1");
    let out_12 = format!("{out_1}2");
    let mut o1 = order_at(f.id(1), &a, 0);
    o1.out_order_id = Some(out(&out_1));
    let mut o2 = order_at(f.id(2), &b, 1);
    o2.out_order_id = Some(out(&out_12));
    given_order(&*store, o1).await;
    given_order(&*store, o2).await;
    given_order(&*store, order_at(f.id(3), &a, 2)).await;

    let ours: HashSet<i64> = (1..=9).map(|n| f.id(n)).collect();
    let search = |q: &str| OrderFilter {
        q: Some(q.to_owned()),
        ..OrderFilter::default()
    };
    let found = |p: &OrderPage| -> Vec<i64> {
        ids(&p.orders)
            .into_iter()
            .filter(|id| ours.contains(id))
            .collect()
    };
    let id_1 = f.id(1).to_string();
    for (q, want) in [
        (id_1.as_str(), vec![f.id(1)]),
        (out_1.as_str(), vec![f.id(1)]),
        (out_12.as_str(), vec![f.id(2)]),
        (a.as_str(), vec![f.id(3), f.id(1)]),
        (b.as_str(), vec![f.id(2)]),
    ] {
        let p = page(&*store, search(q), q).await;
        assert_eq!(ids(&p.orders), want, "q={q:?}: exactly these, newest first");
        assert_eq!(p.next, None, "q={q:?}: one page");
    }
    let id_prefix = &id_1[..id_1.len() - 1];
    for q in [
        &out_1[..out_1.len() - 1],
        &out_1[1..],
        &a[..a.len() - 1],
        id_prefix,
        &a.to_uppercase(),
        "has space",
        "",
    ] {
        let p = page(&*store, search(q), q).await;
        assert_eq!(found(&p), Vec::<i64>::new(), "q={q:?}: no whole match");
    }

    // An app whose key is order 1's id: the text names order 1 by id and the app's orders by
    // key; order 5 is also named by its out_order_id (the same text), and shows once.
    given_app(&*store, &id_1).await;
    given_order(&*store, order_at(f.id(4), &id_1, -10)).await;
    let mut o5 = order_at(f.id(5), &id_1, 10);
    o5.out_order_id = Some(out(&id_1));
    given_order(&*store, o5).await;
    let p = page(&*store, search(&id_1), "an id that is also a key").await;
    assert_eq!(ids(&p.orders), [f.id(5), f.id(1), f.id(4)]);
    let pages = walk(
        &*store,
        OrderFilter {
            limit: 1,
            ..search(&id_1)
        },
        10,
        "walking one at a time",
    )
    .await;
    assert_eq!(all_ids(&pages), [f.id(5), f.id(1), f.id(4)]);
    assert_eq!(pages.len(), 3, "one order a page");
    // With an app filter, only that app's orders among those the text names.
    let p = page(
        &*store,
        OrderFilter {
            app_key: Some(app_key(&a)),
            ..search(&id_1)
        },
        "text and app",
    )
    .await;
    assert_eq!(ids(&p.orders), [f.id(1)]);
}

/// A status filter keeps exactly the orders whose derived status (as `order()` derives it) is
/// that status, newest first; a status none has answers an empty last page.
async fn status_filter_keeps_exactly_the_orders_whose_derived_status_matches(
    store: Arc<dyn LedgerStore>,
) {
    let f = Fresh::new();
    let a = f.key("app");
    given_app(&*store, &a).await;
    let mut awaiting = order(f.id(1), &a, &[]);
    awaiting.created_at = order_created_at() + Duration::seconds(1);
    given_order(&*store, awaiting).await;
    for (n, secs) in [(2, 2), (3, 3), (4, 4), (5, 5), (6, 6)] {
        given_order(&*store, order_at(f.id(n), &a, secs)).await;
    }
    for (n, uses) in [(3, 1), (4, 2), (6, 1)] {
        verify_ok(
            &*store,
            verify_cmd(&a, f.id(n)).entry("LIST-0001", uses).build(),
            "uses",
        )
        .await;
    }
    store
        .request_refund(refund_request(f.id(5), 1, received_at()))
        .await
        .expect("a refund request of an unused ticket");

    for (status, want) in [
        (OrderStatus::AwaitingIssuance, vec![1]),
        (OrderStatus::Issued, vec![2]),
        (OrderStatus::PartlyUsed, vec![6, 3]),
        (OrderStatus::Used, vec![4]),
        (OrderStatus::Refunding, vec![5]),
        (OrderStatus::Refunded, vec![]),
    ] {
        let ctx = format!("status {}", status.as_str());
        let p = page(
            &*store,
            OrderFilter {
                status: Some(status),
                ..of_app(&a)
            },
            &ctx,
        )
        .await;
        let want: Vec<i64> = want.into_iter().map(|n| f.id(n)).collect();
        assert_eq!(ids(&p.orders), want, "{ctx}");
        assert_eq!(p.next, None, "{ctx}: nothing more");
        for s in &p.orders {
            assert_eq!(s.status, status, "{ctx}");
            assert_summary_matches_view(&*store, s, &ctx).await;
        }
    }
    let p = page(
        &*store,
        OrderFilter {
            status: Some(OrderStatus::PartlyUsed),
            limit: 1,
            ..of_app(&a)
        },
        "one at a time",
    )
    .await;
    assert_eq!(ids(&p.orders), [f.id(6)]);
    let next = p.next.expect("order 3 may follow");
    let p = page(
        &*store,
        OrderFilter {
            status: Some(OrderStatus::PartlyUsed),
            limit: 1,
            after: Some(next),
            ..of_app(&a)
        },
        "the next one",
    )
    .await;
    assert_eq!(ids(&p.orders), [f.id(3)]);
}

/// The status is derived, so a store walks the orders to filter on it, and one call looks at
/// no more than `OrderFilter::MAX_SCANNED` of them: with more than that many newer orders of
/// another status before the only match, the first call answers an empty page with a cursor,
/// and continuing from it finds the match and ends the list.
async fn status_filter_stops_after_max_scanned_orders_with_a_cursor_to_continue(
    store: Arc<dyn LedgerStore>,
) {
    let scopes = [Fresh::new(), Fresh::new(), Fresh::new()];
    let a = scopes[0].key("app");
    given_app(&*store, &a).await;
    let mut waiting = order(scopes[0].id(999), &a, &[]);
    waiting.created_at = order_created_at() - Duration::days(1);
    given_order(&*store, waiting).await;
    let newer = usize::try_from(OrderFilter::MAX_SCANNED).expect("small") + 5;
    let orders: Vec<NewOrder> = scopes
        .iter()
        .flat_map(|f| (1..999).map(move |n| f.id(n)))
        .take(newer)
        .enumerate()
        .map(|(i, id)| order_at(id, &a, i64::try_from(i).expect("small")))
        .collect();
    assert_eq!(orders.len(), newer);
    given_orders(&*store, orders).await;

    let waiting_only = OrderFilter {
        status: Some(OrderStatus::AwaitingIssuance),
        ..of_app(&a)
    };
    let first = page(&*store, waiting_only.clone(), "the first call").await;
    assert_eq!(
        ids(&first.orders),
        Vec::<i64>::new(),
        "nothing within the budget"
    );
    let next = first
        .next
        .expect("the budget ran out before the list did: a cursor to continue");
    let second = page(
        &*store,
        OrderFilter {
            after: Some(next),
            ..waiting_only.clone()
        },
        "continuing",
    )
    .await;
    assert_eq!(ids(&second.orders), [scopes[0].id(999)]);
    assert_eq!(second.next, None, "the end of the list");
    let issued = page(
        &*store,
        OrderFilter {
            status: Some(OrderStatus::Issued),
            limit: 200,
            ..of_app(&a)
        },
        "a status most orders have",
    )
    .await;
    assert_eq!(issued.orders.len(), 200, "a full page");
    assert!(issued.next.is_some());
}

/// A page holds at most `OrderFilter::MAX_LIMIT` (200) orders whatever the limit asks, 50 when
/// it asks 0; following `next` reaches the rest.
async fn page_size_is_clamped_to_200_and_defaults_to_50(store: Arc<dyn LedgerStore>) {
    let f = Fresh::new();
    let a = f.key("app");
    given_app(&*store, &a).await;
    let orders: Vec<NewOrder> = (1..=201).map(|n| order_at(f.id(n), &a, n)).collect();
    given_orders(&*store, orders).await;

    let huge = page(
        &*store,
        OrderFilter {
            limit: 1_000_000,
            ..of_app(&a)
        },
        "limit 1,000,000",
    )
    .await;
    assert_eq!(huge.orders.len(), 200, "clamped to 200");
    let next = huge.next.expect("one more order");
    let rest = page(
        &*store,
        OrderFilter {
            limit: u32::MAX,
            after: Some(next),
            ..of_app(&a)
        },
        "the rest",
    )
    .await;
    assert_eq!(ids(&rest.orders), [f.id(1)]);
    assert_eq!(rest.next, None);
    let default = page(&*store, of_app(&a), "limit 0").await;
    assert_eq!(default.orders.len(), 50, "the default page");
    assert_eq!(default.orders[0].order.order_id.get(), f.id(201));
}

/// The app filter lists only that app's orders, however they interleave in time with another
/// app's; an app with no orders (or none registered) lists nothing.
async fn app_filter_lists_only_that_apps_orders(store: Arc<dyn LedgerStore>) {
    let f = Fresh::new();
    let a = f.key("app-a");
    let b = f.key("app-b");
    given_app(&*store, &a).await;
    given_app(&*store, &b).await;
    for n in 1..=6 {
        let app = if n % 2 == 0 { &a } else { &b };
        given_order(&*store, order_at(f.id(n), app, n)).await;
    }
    let of = |key: &str| of_app(key);
    let p = page(&*store, of(&a), "app a").await;
    assert_eq!(ids(&p.orders), [f.id(6), f.id(4), f.id(2)]);
    assert!(p.orders.iter().all(|s| s.order.app_key.as_str() == a));
    let pages = walk(
        &*store,
        OrderFilter { limit: 2, ..of(&b) },
        5,
        "app b by twos",
    )
    .await;
    assert_eq!(all_ids(&pages), [f.id(5), f.id(3), f.id(1)]);
    for key in [f.key("app-c"), f.key("app")] {
        let p = page(&*store, of(&key), "no orders").await;
        assert_eq!((p.orders.len(), p.next), (0, None), "{key}");
    }
    // A's key as search text within B finds nothing.
    let p = page(
        &*store,
        OrderFilter {
            q: Some(a.clone()),
            ..of(&b)
        },
        "a's key within b",
    )
    .await;
    assert_eq!((p.orders.len(), p.next), (0, None));
}

/// `list_apps` lists apps in the order of their keys' bytes (capitals before small letters,
/// `-` before digits), after the `after` key, at most `limit` (1 for 0, at most 200); walking
/// with the last key as `after` sees every app once. Each app is as registered.
async fn apps_are_listed_by_key_and_paged_after_the_last_key(store: Arc<dyn LedgerStore>) {
    let f = Fresh::new();
    let prefix = format!("{}-", f.key("apps"));
    let suffixes = ["b", "B", "a", "a-1", "a0", "Z", "zz"];
    for s in suffixes {
        given_app(&*store, &format!("{prefix}{s}")).await;
    }
    let mut want: Vec<String> = suffixes.iter().map(|s| format!("{prefix}{s}")).collect();
    want.sort_by(|x, y| x.as_bytes().cmp(y.as_bytes()));
    assert_eq!(
        want.iter().map(|k| &k[prefix.len()..]).collect::<Vec<_>>(),
        ["B", "Z", "a", "a-1", "a0", "b", "zz"]
    );
    let list = |after: Option<String>, limit: u32| {
        let store = Arc::clone(&store);
        async move {
            store
                .list_apps(after.as_deref().map(app_key), limit)
                .await
                .unwrap_or_else(|e| panic!("list_apps should answer, got {e:?}"))
        }
    };
    // Keys before the prefix's first app are other cases': start just below it.
    let mut seen: Vec<String> = Vec::new();
    let mut after = Some(prefix.clone());
    loop {
        let apps = list(after.clone(), 2).await;
        assert!(apps.len() <= 2, "at most the limit: {}", apps.len());
        let keys: Vec<String> = apps.iter().map(|a| a.app_key.as_str().to_owned()).collect();
        let mut sorted = keys.clone();
        sorted.sort_by(|x, y| x.as_bytes().cmp(y.as_bytes()));
        assert_eq!(keys, sorted, "a page in key order");
        let mine: Vec<String> = keys
            .iter()
            .filter(|k| k.starts_with(&prefix))
            .cloned()
            .collect();
        seen.extend(mine.iter().cloned());
        if mine.len() < keys.len() || keys.len() < 2 {
            break;
        }
        after = keys.last().cloned();
    }
    assert_eq!(seen, want, "every app once, in key order");

    let one = list(Some(prefix.clone()), 0).await;
    assert_eq!(one.len(), 1, "a limit of 0 lists one app");
    let first = &one[0];
    assert_eq!(first.app_key.as_str(), want[0]);
    assert_eq!(
        (first.name.as_str(), first.created_at),
        (
            format!("suite app {}", want[0]).as_str(),
            super::build::app_created_at()
        ),
        "the app as registered"
    );
    let many = list(None, 1_000_000).await;
    assert!(many.len() <= 200, "at most 200: {}", many.len());
    let last = app_key(want.last().expect("apps"));
    let after_last = store
        .list_apps(Some(last), 200)
        .await
        .expect("list_apps after the last key");
    assert!(
        after_last
            .iter()
            .all(|a| !a.app_key.as_str().starts_with(&prefix)),
        "nothing of ours after the last key"
    );
}
