//! The last hour of TOP calls, minute by minute, for the console's overview chart.
//!
//! `/metrics` counts calls since the process started, which is what Prometheus wants; the
//! on-call engineer opening the console wants "what happened in the last hour", without a
//! Prometheus server. The audit trail has the answer too, but reading an hour of it at a
//! busy gate means millions of rows per page view, so this process keeps its own counts:
//! [`WINDOW_MINUTES`] minute slots of fixed size, reused as the clock moves on. Memory is
//! fixed whatever the callers send — outcomes are three, and codes are folded to the
//! platform's table (anything else counts as [`OTHER_CODE`]) — and a call costs one short
//! lock.
//!
//! Counts are this process's: with several ticketd processes on one ledger, each console
//! shows the calls its own process answered (the page says so).

use std::collections::BTreeMap;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use top_protocol::PlatformCode;

/// How many minutes the chart shows, the current one included.
pub const WINDOW_MINUTES: usize = 60;

/// The code under which calls answered with a code outside the platform's table are counted.
pub const OTHER_CODE: u32 = u32::MAX;

/// How a call was answered, as the chart colours it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallOutcome {
    /// `is_success` true, and the ledger changed (or had nothing to change by design).
    Accepted,
    /// `is_success` true for a retry: the ledger had recorded it before.
    Replayed,
    /// An `error_response`.
    Refused,
}

/// One minute's counts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MinuteCounts {
    /// The minute, as whole minutes since the Unix epoch (UTC).
    pub minute: i64,
    /// Calls accepted.
    pub accepted: u64,
    /// Calls answered as replays.
    pub replayed: u64,
    /// Calls refused.
    pub refused: u64,
    /// Calls by answer code (0 = success), codes outside the table as [`OTHER_CODE`].
    codes: Vec<(u32, u64)>,
}

impl MinuteCounts {
    /// All calls of the minute.
    pub fn total(&self) -> u64 {
        self.accepted
            .saturating_add(self.replayed)
            .saturating_add(self.refused)
    }
}

/// The last hour of calls (module docs).
#[derive(Debug)]
pub struct Traffic {
    slots: Mutex<Vec<MinuteCounts>>,
}

impl Default for Traffic {
    fn default() -> Self {
        Self {
            slots: Mutex::new(vec![MinuteCounts::default(); WINDOW_MINUTES]),
        }
    }
}

/// A window's figures, oldest minute first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrafficWindow {
    /// Exactly [`WINDOW_MINUTES`] minutes ending with the current one; minutes without
    /// calls are zero.
    pub minutes: Vec<MinuteCounts>,
    /// Calls of the window by answer code, ascending.
    pub codes: BTreeMap<u32, u64>,
}

impl TrafficWindow {
    /// The busiest minute's total (0 when there were no calls), the chart's scale.
    pub fn peak(&self) -> u64 {
        self.minutes
            .iter()
            .map(MinuteCounts::total)
            .max()
            .unwrap_or(0)
    }
}

fn minute_of(at: DateTime<Utc>) -> i64 {
    at.timestamp().div_euclid(60)
}

fn slot_of(minute: i64) -> usize {
    // WINDOW_MINUTES is small, so the remainder always fits.
    usize::try_from(minute.rem_euclid(WINDOW_MINUTES as i64)).unwrap_or(0)
}

impl Traffic {
    /// Counts one answered call, received at `at`, answered with `code`.
    pub fn observe(&self, at: DateTime<Utc>, outcome: CallOutcome, code: u32) {
        let minute = minute_of(at);
        let code = if code == 0 || PlatformCode::from_code(code).is_some() {
            code
        } else {
            OTHER_CODE
        };
        let mut slots = self.lock();
        let Some(slot) = slots.get_mut(slot_of(minute)) else {
            return;
        };
        if slot.minute != minute {
            // A slot last used an hour (or more) ago: start it afresh. A call stamped by a
            // clock that stepped back into an older minute is counted in that minute's slot
            // only when the slot still holds it, else dropped (the chart is for people).
            if slot.minute > minute {
                return;
            }
            *slot = MinuteCounts {
                minute,
                ..MinuteCounts::default()
            };
        }
        let count = match outcome {
            CallOutcome::Accepted => &mut slot.accepted,
            CallOutcome::Replayed => &mut slot.replayed,
            CallOutcome::Refused => &mut slot.refused,
        };
        *count = count.saturating_add(1);
        match slot.codes.iter_mut().find(|(c, _)| *c == code) {
            Some((_, n)) => *n = n.saturating_add(1),
            None => slot.codes.push((code, 1)),
        }
    }

    /// The [`WINDOW_MINUTES`] minutes ending with the one holding `now`.
    pub fn window(&self, now: DateTime<Utc>) -> TrafficWindow {
        let last = minute_of(now);
        let first = last.saturating_sub(WINDOW_MINUTES as i64 - 1);
        let slots = self.lock();
        let mut codes = BTreeMap::new();
        let minutes = (first..=last)
            .map(|minute| match slots.get(slot_of(minute)) {
                Some(slot) if slot.minute == minute => {
                    for (code, n) in &slot.codes {
                        let total: &mut u64 = codes.entry(*code).or_default();
                        *total = total.saturating_add(*n);
                    }
                    slot.clone()
                }
                _ => MinuteCounts {
                    minute,
                    ..MinuteCounts::default()
                },
            })
            .collect();
        TrafficWindow { minutes, codes }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<MinuteCounts>> {
        // A panic while counting leaves counts, not broken invariants: keep using them.
        self.slots
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use chrono::TimeZone;

    use super::*;

    fn at(minute: i64, second: u32) -> DateTime<Utc> {
        Utc.timestamp_opt(minute * 60 + i64::from(second), 0)
            .unwrap()
    }

    #[test]
    fn counts_land_in_their_minute_and_age_out_after_an_hour() {
        let t = Traffic::default();
        let base = 29_000_000;
        t.observe(at(base, 1), CallOutcome::Accepted, 0);
        t.observe(at(base, 59), CallOutcome::Replayed, 0);
        t.observe(at(base + 1, 0), CallOutcome::Refused, 25);
        t.observe(at(base + 1, 2), CallOutcome::Refused, 7);
        let w = t.window(at(base + 1, 30));
        assert_eq!(w.minutes.len(), WINDOW_MINUTES);
        let last = &w.minutes[WINDOW_MINUTES - 1];
        let before = &w.minutes[WINDOW_MINUTES - 2];
        assert_eq!((last.minute, last.refused, last.total()), (base + 1, 2, 2));
        assert_eq!((before.accepted, before.replayed), (1, 1));
        assert_eq!(w.codes, BTreeMap::from([(0, 2), (7, 1), (25, 1)]));
        assert_eq!(w.peak(), 2);
        // An hour on, the first minute has left the window, and its slot is reused.
        let w = t.window(at(base + 60, 0));
        assert_eq!(w.minutes[0].minute, base + 1);
        assert_eq!(w.minutes[0].refused, 2);
        t.observe(at(base + 60, 0), CallOutcome::Accepted, 0);
        let w = t.window(at(base + 60, 0));
        assert_eq!(w.minutes[WINDOW_MINUTES - 1].accepted, 1);
        assert_eq!(w.codes, BTreeMap::from([(0, 1), (7, 1), (25, 1)]));
        // Two hours of silence: nothing left.
        assert_eq!(t.window(at(base + 200, 0)).peak(), 0);
    }

    #[test]
    fn codes_a_caller_chooses_are_folded_so_the_counts_stay_bounded() {
        let t = Traffic::default();
        let now = at(29_000_000, 0);
        for code in 0..100_000u32 {
            t.observe(now, CallOutcome::Refused, code.wrapping_mul(7919));
        }
        let w = t.window(now);
        assert!(w.codes.len() <= 64, "{} codes kept", w.codes.len());
        assert!(w.codes.contains_key(&OTHER_CODE));
        assert_eq!(w.codes.values().sum::<u64>(), 100_000);
    }

    #[test]
    fn a_clock_stepping_back_past_the_window_changes_nothing() {
        let t = Traffic::default();
        let now = at(29_000_000, 0);
        t.observe(now, CallOutcome::Accepted, 0);
        t.observe(
            at(29_000_000 - WINDOW_MINUTES as i64, 0),
            CallOutcome::Refused,
            25,
        );
        let w = t.window(now);
        assert_eq!(w.minutes[WINDOW_MINUTES - 1].total(), 1);
        assert_eq!(w.codes, BTreeMap::from([(0, 1)]));
    }
}
