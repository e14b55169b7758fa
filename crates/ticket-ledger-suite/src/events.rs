//! The change events (`ticket_ledger::events`): every accepted change is one event, written
//! with it; `seq`s are consecutive across the ledger; a reader following the feed sees every
//! event once, in order, while writers race.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use ticket_ledger::{AnomalyFilter, Event, LedgerStore, OutcomeKind, Resolution};

use super::build::{
    gate_time_plus, order, refund_cmd, resolve_cmd, retry_of, reversal, verify_cmd, Fresh,
};
use super::check::{given_app, given_order};

cases! {
    one_relay_holds_the_lease_and_only_it_moves_the_position,
    every_accepted_change_is_one_event_and_replays_and_refusals_are_none,
    a_reader_following_the_feed_sees_every_event_once_in_order_while_writers_race,
    refusals_raced_together_each_open_an_anomaly_that_their_own_event_names,
}

/// Reads every event after `after`, page by page (pages of `limit`), checking that `seq`s
/// follow each other without a gap; returns them and the last `seq`.
async fn follow(store: &dyn LedgerStore, after: i64, limit: u32) -> (Vec<Event>, i64) {
    let mut all = Vec::new();
    let mut next = after;
    loop {
        let page = store.events(next, limit).await.expect("events should list");
        assert!(!page.ledger_id.is_empty(), "every ledger has an id");
        if page.events.is_empty() {
            assert_eq!(page.next, next, "an empty page points where it was asked");
            return (all, next);
        }
        for event in &page.events {
            assert_eq!(
                event.seq,
                next + 1,
                "event seqs follow each other without a gap (after {next})"
            );
            next = event.seq;
        }
        assert_eq!(page.next, next, "next is the page's last seq");
        all.extend(page.events);
    }
}

/// The types of `events` naming order `id`, in order.
fn types_of(events: &[Event], id: i64) -> Vec<&str> {
    events
        .iter()
        .filter(|e| e.order_id == Some(id))
        .map(|e| e.kind.as_str())
        .collect()
}

/// Creating an order, a verify, its retry, a refused verify and a reversal: the accepted
/// changes are events of the right types naming the order, each once, with the request's id
/// and the codes masked; the retry and the refusal add no `voucher.used`.
async fn every_accepted_change_is_one_event_and_replays_and_refusals_are_none(
    store: Arc<dyn LedgerStore>,
) {
    let f = Fresh::new();
    let a = f.key("app");
    let id = f.id(1);
    let (_, start) = follow(&*store, 0, 1000).await;
    given_app(&*store, &a).await;
    given_order(&*store, order(id, &a, &[("EVENTCODE01", 2)])).await;

    let used = verify_cmd(&a, id)
        .entry_at("EVENTCODE01", 1, Some(gate_time_plus(1)))
        .build();
    let outcome = store.verify(used.clone()).await.expect("verify applies");
    assert_eq!(outcome.kind, OutcomeKind::Applied);
    let retry = store
        .verify(retry_of(&used, 5))
        .await
        .expect("retry answers");
    assert_eq!(retry.kind, OutcomeKind::Replayed);
    let too_many = verify_cmd(&a, id)
        .entry_at("EVENTCODE01", 5, Some(gate_time_plus(2)))
        .build();
    assert!(store.verify(too_many).await.is_err(), "over capacity");
    let (events, _) = follow(&*store, start, 7).await;
    let mine = types_of(&events, id);
    assert_eq!(
        mine.iter()
            .filter(|t| !t.starts_with("ticketd.anomaly."))
            .copied()
            .collect::<Vec<_>>(),
        [
            "ticketd.order.created",
            "ticketd.voucher.used",
            "ticketd.order.status_changed"
        ],
        "the creation, the verify and the status it moved: not the retry, not the refusal"
    );
    let verify = events
        .iter()
        .find(|e| e.order_id == Some(id) && e.kind == "ticketd.voucher.used")
        .expect("the verify's event");
    let data = verify.data_value();
    assert_eq!(data["request_id"], used.meta.request_id.as_str());
    assert_eq!(data["app_key"], a.as_str());
    let text = verify.data.get();
    assert!(
        !text.contains("EVENTCODE01"),
        "codes are masked in events: {text}"
    );
    assert!(
        text.contains("****DE01"),
        "the masked code keeps its tail: {text}"
    );

    let left = store
        .reverse(reversal(
            id,
            "EVENTCODE01",
            1,
            chrono::Duration::days(3650),
            gate_time_plus(10),
        ))
        .await
        .expect("the use is given back");
    assert_eq!(left, 0);
    let (after, _) = follow(&*store, start, 1000).await;
    let reversed = types_of(&after, id)
        .into_iter()
        .filter(|t| *t == "ticketd.voucher.use_reversed")
        .count();
    assert_eq!(reversed, 1, "one reversal, one event");
    // A refund notification without a refund request is refused and opens an anomaly: its
    // event names it, and resolving it is an event that names the same anomaly.
    assert!(store.refund(refund_cmd(&a, id).build()).await.is_err());
    let (after, _) = follow(&*store, start, 1000).await;
    let open = store
        .anomalies(AnomalyFilter {
            order_id: Some(id),
            ..AnomalyFilter::default()
        })
        .await
        .expect("anomalies list");
    let anomaly = open.first().expect("the refusal opened an anomaly");
    let opened: Vec<&Event> = after
        .iter()
        .filter(|e| e.order_id == Some(id) && e.kind == "ticketd.anomaly.opened")
        .collect();
    assert_eq!(opened.len(), open.len(), "one event per anomaly");
    assert!(
        opened.iter().any(|e| e.anomaly_id == Some(anomaly.id)),
        "the event names anomaly {}: {opened:?}",
        anomaly.id
    );
    let rendered = opened[0].cloud_event("L");
    assert!(rendered["data"]["anomaly_id"].is_i64(), "{rendered}");
    store
        .resolve_anomaly(resolve_cmd(anomaly.id, Resolution::Dismissed, "checked"))
        .await
        .expect("resolve");
    let (last, _) = follow(&*store, start, 1000).await;
    let resolved = last
        .iter()
        .find(|e| e.order_id == Some(id) && e.kind == "ticketd.anomaly.resolved")
        .expect("the resolution's event");
    assert_eq!(resolved.data_value()["detail"]["anomaly_id"], anomaly.id);
    // The whole feed from the start is gap-free too.
    follow(&*store, 0, 1000).await;
}

/// Readers follow the feed while writers verify many orders at once: each reader sees every
/// event once, in `seq` order, and the events of each verify that applied are there.
async fn a_reader_following_the_feed_sees_every_event_once_in_order_while_writers_race(
    store: Arc<dyn LedgerStore>,
) {
    let f = Fresh::new();
    let a = f.key("app");
    let orders: Vec<i64> = (1..=8).map(|n| f.id(n)).collect();
    given_app(&*store, &a).await;
    for &id in &orders {
        given_order(
            &*store,
            order(id, &a, &[("FEEDCODE01", 100), ("FEEDCODE02", 100)]),
        )
        .await;
    }
    let (_, start) = follow(&*store, 0, 1000).await;
    let done = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..2)
        .map(|r| {
            let store = Arc::clone(&store);
            let done = Arc::clone(&done);
            tokio::spawn(async move {
                let mut seen: Vec<Event> = Vec::new();
                let mut next = start;
                loop {
                    let finished = done.load(Ordering::SeqCst);
                    let (page, last) = follow(&*store, next, 3 + r).await;
                    next = last;
                    seen.extend(page);
                    if finished {
                        return seen;
                    }
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();
    let writers: Vec<_> = (0..16)
        .map(|w| {
            let store = Arc::clone(&store);
            let a = a.clone();
            let orders = orders.clone();
            tokio::spawn(async move {
                let mut applied = Vec::new();
                for n in 0..6 {
                    let id = orders[(w + n) % orders.len()];
                    let code = if (w + n) % 2 == 0 {
                        "FEEDCODE01"
                    } else {
                        "FEEDCODE02"
                    };
                    let cmd = verify_cmd(&a, id)
                        .entry_at(
                            code,
                            1,
                            Some(gate_time_plus(i64::try_from(w * 10 + n).unwrap())),
                        )
                        .build();
                    let outcome = store.verify(cmd.clone()).await.expect("verify applies");
                    assert_eq!(outcome.kind, OutcomeKind::Applied);
                    applied.push(cmd.meta.request_id.clone());
                }
                applied
            })
        })
        .collect();
    let mut applied = Vec::new();
    for writer in writers {
        applied.extend(writer.await.expect("writer"));
    }
    done.store(true, Ordering::SeqCst);
    let mut followers = Vec::new();
    for reader in readers {
        followers.push(reader.await.expect("reader"));
    }
    // Other cases may write on: what a follower saw is a prefix of what is there now (read
    // once every follower has stopped, or a busy neighbour's events could reach a follower's
    // last pages and not this read).
    let (all, _) = follow(&*store, start, 1000).await;
    for seen in followers {
        assert!(seen.len() <= all.len());
        assert_eq!(
            seen[..],
            all[..seen.len()],
            "a follower sees every event once, in order"
        );
        // It read on after every writer finished: every verify is there, once.
        let used: BTreeMap<String, usize> = seen
            .iter()
            .filter(|e| e.kind == "ticketd.voucher.used")
            .filter_map(|e| e.data_value()["request_id"].as_str().map(str::to_owned))
            .fold(BTreeMap::new(), |mut m, r| {
                *m.entry(r).or_default() += 1;
                m
            });
        for request in &applied {
            assert_eq!(
                used.get(request.as_str()),
                Some(&1),
                "the verify {request} is one event"
            );
        }
    }
}

/// Verifies of a refunded order started at once (so a store that batches writes them in one
/// batch): each is refused and opens its own `verify_after_refund` anomaly, and each of those
/// anomalies is named by exactly one `anomaly.opened` event, none by two (PostgreSQL writes a
/// batch's events in a statement of their own, after the one writing its anomalies, and
/// each event looks its anomaly up by request and kind).
async fn refusals_raced_together_each_open_an_anomaly_that_their_own_event_names(
    store: Arc<dyn LedgerStore>,
) {
    use ticket_ledger::{AnomalyKind, LedgerError};
    let f = Fresh::new();
    let a = f.key("app");
    let id = f.id(1);
    given_app(&*store, &a).await;
    given_order(&*store, order(id, &a, &[("REFUNDED-RACE-01", 1)])).await;
    let t = super::build::received_at() - chrono::Duration::hours(3);
    store
        .request_refund(super::build::refund_request(id, 1, t))
        .await
        .expect("refund request");
    store
        .refund(refund_cmd(&a, id).received_at(t).build())
        .await
        .expect("refund");
    let (_, start) = follow(&*store, 0, 1000).await;

    let n = 8;
    let cmds = (0..n)
        .map(|i| {
            verify_cmd(&a, id)
                .entry_at("REFUNDED-RACE-01", 1, Some(gate_time_plus(i)))
                .build()
        })
        .collect();
    for answer in super::races::race(&store, cmds).await {
        assert_eq!(answer, Err(LedgerError::OrderRefunded));
    }
    let anomalies: BTreeMap<i64, AnomalyKind> =
        super::check::anomalies_of(&*store, id, "refused verifies")
            .await
            .into_iter()
            .map(|x| (x.id, x.anomaly.kind))
            .collect();
    assert_eq!(anomalies.len(), 8, "one anomaly per refusal: {anomalies:?}");
    assert!(anomalies
        .values()
        .all(|kind| *kind == AnomalyKind::VerifyAfterRefund));
    let (events, _) = follow(&*store, start, 1000).await;
    let mut named: Vec<i64> = events
        .iter()
        .filter(|e| e.order_id == Some(id) && e.kind == "ticketd.anomaly.opened")
        .map(|e| e.anomaly_id.expect("an anomaly's event names it"))
        .collect();
    named.sort_unstable();
    assert_eq!(
        named,
        anomalies.keys().copied().collect::<Vec<_>>(),
        "each anomaly is named by one event"
    );
}

/// The relay's lease: one holder at a time, renewed by its holder, taken over once it
/// expires; only the holder moves the position, and only from where it stands.
async fn one_relay_holds_the_lease_and_only_it_moves_the_position(store: Arc<dyn LedgerStore>) {
    let f = Fresh::new();
    let (a, b) = (f.key("relay-a"), f.key("relay-b"));
    let lease = chrono::Duration::seconds(10);
    // A day ago: every lease taken here has expired for whatever relays this ledger next.
    let t0 = chrono::Utc::now() - chrono::Duration::days(1);
    let at = |s: i64| t0 + chrono::Duration::seconds(s);
    let start = store
        .claim_relay(&a, at(0), lease)
        .await
        .expect("claim")
        .expect("a free lease is taken");
    assert_eq!(
        store.claim_relay(&b, at(1), lease).await.expect("claim"),
        None
    );
    assert_eq!(
        store.claim_relay(&a, at(5), lease).await.expect("renew"),
        Some(start),
        "the holder renews"
    );
    assert!(!store
        .advance_relay(&b, start, start + 3)
        .await
        .expect("advance"));
    assert!(store
        .advance_relay(&a, start, start + 3)
        .await
        .expect("advance"));
    assert!(
        !store
            .advance_relay(&a, start, start + 4)
            .await
            .expect("advance"),
        "only from where it stands"
    );
    // Renewed at 5 s, so still held at 14 s; free at 16 s.
    assert_eq!(
        store.claim_relay(&b, at(14), lease).await.expect("claim"),
        None
    );
    assert_eq!(
        store.claim_relay(&b, at(16), lease).await.expect("claim"),
        Some(start + 3),
        "an expired lease is taken over, with the position"
    );
    assert!(!store
        .advance_relay(&a, start + 3, start + 5)
        .await
        .expect("advance"));
    // Back where it stood, for whatever relays this ledger next.
    assert!(store
        .advance_relay(&b, start + 3, start)
        .await
        .expect("advance"));
}
