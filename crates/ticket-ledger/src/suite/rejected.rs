//! The bounded record of calls refused before their caller was authenticated.

use std::sync::Arc;

use crate::LedgerStore;
use crate::{RejectedCall, RejectedCallFilter};

use super::build::{received_at, Fresh};

async fn list(store: &dyn LedgerStore, filter: RejectedCallFilter) -> Vec<RejectedCall> {
    store
        .rejected_calls(filter)
        .await
        .expect("listing rejected calls should succeed")
}

/// Refused anonymous calls are listed newest first with every field as recorded, page by page
/// through `before_seq`; each new one prunes the record to the newest `keep`, and `keep` 0
/// keeps nothing.
pub async fn rejected_calls_are_listed_newest_first_and_pruned_to_the_newest_kept(
    store: Arc<dyn LedgerStore>,
) {
    let f = Fresh::new();
    // The only case that writes this record, so counting it is safe on a shared database.
    let calls: Vec<RejectedCall> = (0..5_i64)
        .map(|i| {
            RejectedCall::new(
                &format!("rejected-{i}"),
                received_at() + chrono::Duration::seconds(i),
                Some("203.0.113.9"),
                Some(&f.key(&format!("claimed{i}"))),
                Some("taobao.travel.ticket.order.verify"),
                25,
                (i % 2 == 0).then_some("isv.invalid-signature"),
            )
        })
        .collect();
    for call in &calls {
        store
            .record_rejected_call(call.clone(), 1000)
            .await
            .expect("recording a rejected call should succeed");
    }
    let newest = list(&*store, RejectedCallFilter::default()).await;
    assert!(newest.len() >= 5, "all five kept: {newest:?}");
    for (got, sent) in newest.iter().zip(calls.iter().rev()) {
        assert_eq!(
            RejectedCall {
                seq: 0,
                ..got.clone()
            },
            *sent,
            "stored as recorded, newest first"
        );
    }
    assert!(
        newest.windows(2).all(|w| w[0].seq > w[1].seq),
        "seq strictly decreasing: {newest:?}"
    );

    let first = list(
        &*store,
        RejectedCallFilter {
            before_seq: None,
            limit: Some(2),
        },
    )
    .await;
    let second = list(
        &*store,
        RejectedCallFilter {
            before_seq: first.last().map(|c| c.seq),
            limit: Some(2),
        },
    )
    .await;
    assert_eq!(
        first
            .iter()
            .chain(&second)
            .map(|c| c.seq)
            .collect::<Vec<_>>(),
        newest.iter().take(4).map(|c| c.seq).collect::<Vec<_>>(),
        "paging by before_seq continues where the page stopped"
    );

    let last = RejectedCall::new("rejected-last", received_at(), None, None, None, 29, None);
    store
        .record_rejected_call(last.clone(), 3)
        .await
        .expect("recording a rejected call should succeed");
    let kept = list(&*store, RejectedCallFilter::default()).await;
    assert_eq!(kept.len(), 3, "pruned to the newest 3: {kept:?}");
    assert_eq!(
        RejectedCall {
            seq: 0,
            ..kept[0].clone()
        },
        last
    );
    assert_eq!(
        kept[1..].iter().map(|c| c.seq).collect::<Vec<_>>(),
        newest.iter().take(2).map(|c| c.seq).collect::<Vec<_>>(),
        "the two newest before it stay"
    );

    store
        .record_rejected_call(last, 0)
        .await
        .expect("keep 0 is accepted");
    assert_eq!(
        list(&*store, RejectedCallFilter::default()).await.len(),
        3,
        "keep 0 records nothing"
    );
}
