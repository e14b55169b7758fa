//! Property: random lifecycle sequences — issue, verify (delta, cumulative, replays, racing
//! tasks), refund requests and notifications, reversals — keep the ledger's invariants after
//! every step, on the in-memory store (the reference the suite is checked against).
//!
//! The invariants and the runner are the suite's own (`ticket_ledger_suite::sequences`), so the
//! suite case `random_lifecycle_sequences_keep_the_ledger_consistent` holds every store to them
//! with fixed seeds, and this test searches (and shrinks) sequences proptest generates.

use std::sync::{Arc, OnceLock};

use proptest::prelude::*;
use ticket_ledger_suite::sequences::{
    run_sequence, sequence_from_seed, FlowPick, IssueReport, Report, Sequence, Step,
};

use crate::mem_store::MemStore;

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(4)
            .enable_all()
            .build()
            .expect("a tokio runtime")
    })
}

fn run(seq: &Sequence) -> Result<(), String> {
    let store = Arc::new(MemStore::default()) as Arc<dyn ticket_ledger::LedgerStore>;
    runtime().block_on(run_sequence(store, seq))
}

/// Mostly the order's two codes, sometimes a third or one never issued.
fn code() -> impl Strategy<Value = usize> {
    prop_oneof![12 => 0_usize..2, 1 => 2_usize..4]
}

fn report() -> impl Strategy<Value = Report> {
    any::<bool>().prop_flat_map(|cumulative| {
        let q = if cumulative { 0_i64..=5 } else { 1_i64..=3 };
        let gate = prop_oneof![5 => (0_i64..5400).prop_map(Some), 1 => Just(None)];
        proptest::collection::vec((code(), q, gate), 1..=3).prop_map(move |entries| Report {
            cumulative,
            entries,
        })
    })
}

fn flow() -> impl Strategy<Value = FlowPick> {
    prop_oneof![
        4 => Just(FlowPick::None),
        3 => Just(FlowPick::Newest),
        3 => Just(FlowPick::Oldest),
        1 => Just(FlowPick::Unknown),
    ]
}

/// A step that may run inside a race.
fn simple_step() -> impl Strategy<Value = Step> {
    let order = prop_oneof![2 => Just(0_usize), 1 => Just(1_usize)];
    prop_oneof![
        1 => (order.clone(), prop_oneof![
            2 => Just(IssueReport::Own),
            1 => Just(IssueReport::Other),
            1 => Just(IssueReport::Failed),
        ])
            .prop_map(|(order, report)| Step::Issue { order, report }),
        6 => (order.clone(), report()).prop_map(|(order, report)| Step::Verify { order, report }),
        2 => (0_usize..6).prop_map(|back| Step::Replay { back }),
        2 => (order.clone(), 0_i64..=3)
            .prop_map(|(order, tickets)| Step::RequestRefund { order, tickets }),
        3 => (
            order.clone(),
            proptest::bool::weighted(0.75),
            proptest::option::weighted(0.4, 0_i64..=3),
            flow(),
            proptest::option::weighted(0.7, 0_u8..5),
        )
            .prop_map(|(order, succeeded, refund_num, flow, batch)| Step::Refund {
                order,
                succeeded,
                refund_num,
                flow,
                batch,
            }),
        2 => (order, code(), 0_i64..=3, prop_oneof![Just(5_i64), Just(60), Just(1440)])
            .prop_map(|(order, code, quantity, window_mins)| Step::Reverse {
                order,
                code,
                quantity,
                window_mins,
            }),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        16 => simple_step(),
        2 => proptest::collection::vec(simple_step(), 2..=5).prop_map(Step::Race),
        2 => prop_oneof![Just(1_i64), Just(30), Just(120), Just(1500)]
            .prop_map(|mins| Step::Wait { mins }),
    ]
}

fn sequence() -> impl Strategy<Value = Sequence> {
    [1_i64..=5, 1_i64..=5, 1_i64..=5, 1_i64..=5].prop_flat_map(|caps| {
        (
            Just(caps),
            // Up to two tickets per use, so a ticket may carry less than one use (rounding).
            1..=2 * (caps[0] + caps[1]),
            1..=2 * (caps[2] + caps[3]),
            proptest::collection::vec(step(), 1..50),
        )
            .prop_map(|(caps, q0, q1, mut steps)| {
                // The second order is usually issued early, so its codes take part.
                steps.insert(
                    0,
                    Step::Issue {
                        order: 1,
                        report: IssueReport::Own,
                    },
                );
                Sequence {
                    caps,
                    quantities: [q0, q1],
                    steps,
                }
            })
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Every step of any sequence keeps the invariants (see `ticket_ledger_suite::sequences`):
    /// `0 ≤ used ≤ capacity` per voucher, used plus refunded uses within the order's capacity,
    /// refusals changing nothing, and the audit trail rebuilding counters, refunds and status.
    #[test]
    fn random_lifecycle_sequences_keep_the_invariants(seq in sequence()) {
        if let Err(e) = run(&seq) {
            prop_assert!(false, "{}", e);
        }
    }
}

/// The suite's fixed seeds also hold on the in-memory store with longer sequences than the
/// suite runs.
#[test]
fn seeded_long_sequences_keep_the_invariants() {
    for seed in 100..140_u64 {
        let seq = sequence_from_seed(seed, 150);
        if let Err(e) = run(&seq) {
            panic!("seed {seed}: {e}");
        }
    }
}
