//! The fixed sequences every store runs: a seed stands for one sequence, drawn by a tiny
//! deterministic generator, so the suite case is the same on every store and every run.

use super::{FlowPick, IssueReport, Report, Sequence, Step};

/// SplitMix64: a tiny deterministic generator, so every store runs the same sequences.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `lo..=hi`.
    fn range(&mut self, lo: i64, hi: i64) -> i64 {
        let span = u64::try_from(hi - lo + 1).unwrap_or(1).max(1);
        lo + i64::try_from(self.next() % span).unwrap_or(0)
    }

    fn index(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % u64::try_from(n.max(1)).unwrap_or(1)).unwrap_or(0)
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

/// A code index: mostly the order's two codes, sometimes a third or one never issued.
fn random_code(rng: &mut Rng) -> usize {
    if rng.chance(7) {
        2 + rng.index(2)
    } else {
        rng.index(2)
    }
}

fn random_report(rng: &mut Rng) -> Report {
    let cumulative = rng.chance(30);
    let n = rng.index(2) + 1;
    let entries = (0..n)
        .map(|_| {
            let q = if cumulative {
                rng.range(0, 5)
            } else {
                rng.range(1, 2)
            };
            let gate = if rng.chance(15) {
                None
            } else {
                Some(rng.range(0, 5400))
            };
            (random_code(rng), q, gate)
        })
        .collect();
    Report {
        cumulative,
        entries,
    }
}

fn random_step(rng: &mut Rng, nested: bool) -> Step {
    let order = if rng.chance(65) { 0 } else { 1 };
    // Weights out of 20: issue 1, verify 6, replay 2, refund request 2, refund 3, reversal 2,
    // race 2, wait 2 (no race or wait inside a race).
    match rng.index(if nested { 16 } else { 20 }) {
        0 => Step::Issue {
            order,
            report: match rng.index(4) {
                0 | 1 => IssueReport::Own,
                2 => IssueReport::Other,
                _ => IssueReport::Failed,
            },
        },
        1..=6 => Step::Verify {
            order,
            report: random_report(rng),
        },
        7 | 8 => Step::Replay { back: rng.index(6) },
        9 | 10 => Step::RequestRefund {
            order,
            tickets: if rng.chance(10) { 0 } else { rng.range(1, 2) },
        },
        11..=13 => Step::Refund {
            order,
            succeeded: rng.chance(75),
            refund_num: if rng.chance(60) {
                None
            } else {
                Some(rng.range(0, 3))
            },
            flow: match rng.index(20) {
                0..=7 => FlowPick::None,
                8..=12 => FlowPick::Newest,
                13..=17 => FlowPick::Oldest,
                _ => FlowPick::Unknown,
            },
            batch: if rng.chance(30) {
                None
            } else {
                Some(u8::try_from(rng.index(5)).unwrap_or(0))
            },
        },
        14 | 15 => Step::Reverse {
            order,
            code: random_code(rng),
            quantity: if rng.chance(10) { 0 } else { rng.range(1, 2) },
            window_mins: [5, 60, 1440][rng.index(3)],
        },
        16 | 17 => Step::Race(
            (0..rng.range(2, 5))
                .map(|_| random_step(rng, true))
                .collect(),
        ),
        _ => Step::Wait {
            mins: [1, 30, 120, 1500][rng.index(4)],
        },
    }
}

/// The sequence of `len` steps a seed stands for.
pub fn sequence_from_seed(seed: u64, len: usize) -> Sequence {
    let mut rng = Rng(seed);
    let caps = [
        rng.range(1, 6),
        rng.range(1, 6),
        rng.range(1, 6),
        rng.range(1, 6),
    ];
    let quantities = [
        rng.range(1, caps[0] + caps[1]),
        rng.range(1, caps[2] + caps[3]),
    ];
    let mut steps = vec![Step::Issue {
        order: 1,
        report: IssueReport::Own,
    }];
    steps.extend((0..len).map(|_| random_step(&mut rng, false)));
    Sequence {
        caps,
        quantities,
        steps,
    }
}
