//! Properties over random report sequences: a model of the ledger checked against
//! `plan_verify`, and a plan applied only to its own snapshot.

use super::*;

/// One random report, in terms of voucher indexes (index == number of vouchers names an
/// unknown code).
#[derive(Debug, Clone)]
enum Op {
    /// Delta `voucher_infos`: (voucher, quantity, gate time offset or none).
    Delta(Vec<(usize, i64, Option<i64>)>),
    /// Cumulative `voucher_infos`: (voucher, total).
    Cumulative(Vec<(usize, i64)>),
    /// Legacy code form.
    Code(usize, i64, WriteOffType),
    /// Legacy order-level form.
    Order(i64, WriteOffType),
}

fn mode() -> impl Strategy<Value = WriteOffType> {
    prop_oneof![Just(WriteOffType::Delta), Just(WriteOffType::Cumulative)]
}

fn op(n: usize) -> impl Strategy<Value = Op> {
    // Indexes 0..=n: n is an unknown code (R10), so refusals are exercised too.
    let idx = proptest::sample::subsequence((0..=n).collect::<Vec<_>>(), 1..=(n + 1).min(3));
    prop_oneof![
        4 => idx.clone().prop_flat_map(|ix| {
            let k = ix.len();
            (Just(ix), proptest::collection::vec((1_i64..=3, prop_oneof![4 => (0_i64..4).prop_map(Some), 1 => Just(None)]), k))
        }).prop_map(|(ix, qs)| Op::Delta(ix.into_iter().zip(qs).map(|(i, (q, t))| (i, q, t)).collect())),
        2 => idx.prop_flat_map(|ix| {
            let k = ix.len();
            (Just(ix), proptest::collection::vec(0_i64..=6, k))
        }).prop_map(|(ix, qs)| Op::Cumulative(ix.into_iter().zip(qs).collect())),
        1 => (0..=n, 0_i64..=4, mode()).prop_map(|(i, q, m)| Op::Code(i, if m == WriteOffType::Delta { q.max(1) } else { q }, m)),
        1 => (0_i64..=8, mode()).prop_map(|(q, m)| Op::Order(if m == WriteOffType::Delta { q.max(1) } else { q }, m)),
    ]
}

fn scenario() -> impl Strategy<Value = (Vec<i64>, Vec<Op>)> {
    proptest::collection::vec(1_i64..=5, 1..=4).prop_flat_map(|caps| {
        let n = caps.len();
        (Just(caps), proptest::collection::vec(op(n), 1..40))
    })
}

const CODES: [&str; 5] = ["V0", "V1", "V2", "V3", "UNKNOWN"];

fn code_of(i: usize, n: usize) -> &'static str {
    if i >= n {
        CODES[4]
    } else {
        CODES[i]
    }
}

fn command(op: &Op, n: usize) -> VerifyCommand {
    match op {
        Op::Delta(es) => cmd(
            WriteOffType::Delta,
            entries(
                &es.iter()
                    .map(|&(i, q, t)| (code_of(i, n), q, t.map(gate)))
                    .collect::<Vec<_>>(),
            ),
        ),
        Op::Cumulative(es) => cmd(
            WriteOffType::Cumulative,
            entries(
                &es.iter()
                    .map(|&(i, q)| (code_of(i, n), q, Some(gate(0))))
                    .collect::<Vec<_>>(),
            ),
        ),
        Op::Code(i, q, m) => cmd(
            *m,
            VerifyUses::Code {
                code: code(code_of(*i, n)),
                check_num: *q,
            },
        ),
        Op::Order(q, m) => cmd(*m, VerifyUses::Order { check_num: *q }),
    }
}

/// The ledger a store would keep: counters and remembered fingerprints.
struct Model {
    snap: OrderSnapshot,
    seen: HashSet<Fingerprint>,
}

impl Model {
    fn new(caps: &[i64]) -> Self {
        let vouchers: Vec<(&str, i64, i64)> = caps
            .iter()
            .enumerate()
            .map(|(i, &c)| (CODES[i], c, 0))
            .collect();
        Self {
            snap: snap(&vouchers),
            seen: HashSet::new(),
        }
    }

    /// Plans `c` the way a store does: `seen` holds only the command's own fingerprints.
    fn plan(&self, c: &VerifyCommand) -> Result<VerifyPlan, LedgerError> {
        let mut s = self.snap.clone();
        s.seen = c
            .fingerprints()
            .into_iter()
            .filter(|f| self.seen.contains(f))
            .collect();
        plan_verify(&s, c)
    }

    /// Applies an accepted plan, checking every change against the counters it was planned on.
    fn apply(&mut self, plan: &VerifyPlan) -> Result<(), TestCaseError> {
        for c in &plan.changes {
            let v = self
                .snap
                .vouchers
                .iter_mut()
                .find(|v| v.code == c.code)
                .expect("known code");
            prop_assert!(c.delta > 0, "changes only add: {c:?}");
            prop_assert_eq!(c.used_before, v.used, "planned on the current count");
            prop_assert_eq!(c.capacity, v.capacity);
            v.used += c.delta;
        }
        for f in &plan.new_fingerprints {
            prop_assert!(
                self.seen.insert(f.clone()),
                "a new fingerprint was already recorded: {f:?}"
            );
        }
        Ok(())
    }

    fn used(&self) -> Vec<i64> {
        self.snap.vouchers.iter().map(|v| v.used).collect()
    }
}

fn assert_replayed(model: &Model, c: &VerifyCommand) -> Result<(), TestCaseError> {
    let n = match &c.uses {
        VerifyUses::Vouchers { entries, .. } => entries.len(),
        _ => 0,
    };
    let plan = model.plan(c);
    prop_assert!(plan.is_ok(), "a replay must be accepted, got {plan:?}");
    if let Ok(plan) = plan {
        prop_assert_eq!(
            plan.outcome.kind,
            OutcomeKind::Replayed,
            "replay of {:?}",
            c.uses
        );
        prop_assert!(
            plan.changes.is_empty(),
            "a replay changes nothing: {:?}",
            plan.changes
        );
        prop_assert!(plan.new_fingerprints.is_empty());
        prop_assert_eq!(plan.outcome.replayed_entries, n);
        prop_assert_eq!(plan.outcome.applied_uses, 0);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// For any sequence of delta and cumulative reports applied as planned: no voucher is used
    /// beyond its capacity, no count ever decreases, cumulative reports leave the count at
    /// max(previous, reported), and replaying any accepted delta report (with gate times) is
    /// `Replayed` with no changes — right away and after everything else.
    #[test]
    fn random_reports_never_overuse_never_decrease_and_replay_cleanly((caps, ops) in scenario()) {
        let n = caps.len();
        let mut model = Model::new(&caps);
        let mut replayable = Vec::new();
        for op in &ops {
            let c = command(op, n);
            let before = model.used();
            let planned = model.plan(&c);
            if let Ok(plan) = &planned {
                // What a store applies to the snapshot it keeps is what the model applies.
                let mut kept = model.snap.clone();
                prop_assert!(plan.apply_to(&mut kept), "a plan fits its own snapshot");
                model.apply(plan)?;
                prop_assert_eq!(&kept.vouchers, &model.snap.vouchers);
                prop_assert_eq!(plan.outcome.applied_uses, plan.changes.iter().map(|c| c.delta).sum::<i64>());
                prop_assert_eq!(plan.outcome.kind == OutcomeKind::Applied, plan.outcome.applied_uses > 0);
            }
            let after = model.used();
            for (i, v) in model.snap.vouchers.iter().enumerate() {
                prop_assert!(v.used <= v.capacity, "{:?} over capacity after {:?}", v, op);
                prop_assert!(after[i] >= before[i], "count decreased after {:?}: {:?} -> {:?}", op, before, after);
            }
            match (op, &planned) {
                (Op::Cumulative(es), Ok(_)) => {
                    for &(i, q) in es {
                        prop_assert_eq!(after[i], before[i].max(q), "cumulative {:?}", op);
                    }
                }
                (Op::Delta(es), Ok(_)) if es.iter().all(|e| e.2.is_some()) => {
                    assert_replayed(&model, &c)?;
                    replayable.push(c);
                }
                (_, Err(_)) => prop_assert_eq!(&after, &before, "a refusal changes nothing"),
                _ => {}
            }
        }
        for c in &replayable {
            assert_replayed(&model, c)?;
        }
    }

    /// An order-level report never overuses either: draws stay within each code's capacity and
    /// sum to what was asked (delta) or to the raise (cumulative).
    #[test]
    fn order_level_reports_draw_exactly_what_they_ask(caps in proptest::collection::vec(1_i64..=5, 1..=4), used in proptest::collection::vec(0_i64..=5, 4), ask in 1_i64..=12, m in mode()) {
        let vouchers: Vec<(&str, i64, i64)> = caps.iter().enumerate().map(|(i, &c)| (CODES[i], c, used[i].min(c))).collect();
        let s = snap(&vouchers);
        let sold: i64 = caps.iter().sum();
        let recorded: i64 = vouchers.iter().map(|v| v.2).sum();
        let wanted = match m { WriteOffType::Delta => ask, WriteOffType::Cumulative => (ask - recorded).max(0) };
        match plan_verify(&s, &cmd(m, VerifyUses::Order { check_num: ask })) {
            Ok(plan) => {
                prop_assert!(wanted <= sold - recorded);
                prop_assert_eq!(plan.outcome.applied_uses, wanted);
                for c in &plan.changes {
                    prop_assert!(c.used_before + c.delta <= c.capacity);
                }
                // Issuance order: a code is drawn only once every earlier code is full.
                let drawn: Vec<usize> = plan.changes.iter().map(|c| s.vouchers.iter().position(|v| v.code == c.code).expect("known")).collect();
                if let Some(&first) = drawn.first() {
                    for v in &s.vouchers[..first] {
                        prop_assert_eq!(v.used, v.capacity, "codes before the first drawn must be full");
                    }
                }
                for (k, &i) in drawn.iter().enumerate().skip(1) {
                    let prev = drawn[k - 1];
                    let change = &plan.changes[k - 1];
                    prop_assert!(prev < i);
                    prop_assert_eq!(change.used_before + change.delta, change.capacity, "earlier code filled before the next");
                    for v in &s.vouchers[prev + 1..i] {
                        prop_assert_eq!(v.used, v.capacity, "a skipped code must be full");
                    }
                }
            }
            Err(e) => prop_assert_eq!(e, LedgerError::OrderCapacityExceeded { requested: wanted, remaining: sold - recorded }),
        }
    }
}

#[test]
fn a_plan_applies_to_its_own_snapshot_and_not_to_another() {
    let s = snap(&[("CODE0001", 3, 1), ("CODE0002", 2, 0)]);
    let plan = plan_verify(
        &s,
        &delta(&[
            ("CODE0002", 2, Some(gate(1))),
            ("CODE0001", 1, Some(gate(2))),
        ]),
    )
    .expect("accepted");
    let mut kept = s.clone();
    assert!(plan.apply_to(&mut kept));
    let used: Vec<i64> = kept.vouchers.iter().map(|v| v.used).collect();
    assert_eq!(used, vec![2, 2]);
    // Applied once more, the counts it was planned on no longer match: refused.
    assert!(!plan.apply_to(&mut kept));
}
