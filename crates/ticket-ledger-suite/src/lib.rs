//! The behaviour suite every [`LedgerStore`] must pass, and the runner that makes each of its
//! cases a test of the store crate that calls it.
//!
//! Each case is an `async fn <behaviour sentence>(store: Arc<dyn LedgerStore>)` that talks to
//! the store only through the trait and panics, saying what it expected, when the store
//! disagrees. The few cases about a database that disagrees with the ledger also take the
//! harness's [`Tamper`], the one thing the trait cannot do. A case checks the answer (outcome or
//! error), the counters read back with `order()`, and the audit trail. Cases create their own
//! apps and orders under fresh names ([`Fresh`]), so they may share one database and run
//! concurrently.
//!
//! A store crate runs the whole suite from a test target with `harness = false` (its
//! `main` is the test binary):
//!
//! ```ignore
//! fn main() -> std::process::ExitCode {
//!     ticket_ledger_suite::run([
//!         // Called once per case, inside that case's test; `None` skips it (no server here).
//!         Store::new("sqlite", || async { Some(Arc::new(HarnessedStore::open().await)) }),
//!     ])
//! }
//! ```
//!
//! Every case becomes one test named `<store>::<case>`, with libtest's command line: a name
//! filter, `--exact`, `--ignored`, `--list`, `--test-threads`. See [`run`].
//!
//! Each module registers its cases once, in its `cases!` list, and `CASES` lists the modules.
//! The cases are private functions, so one left out of its module's list is dead code, which
//! the workspace's `-D warnings` refuses.
//!
//! | Module | Rules | Cases |
//! |---|---|---|
//! | `apps` | — | registration, lookup, ping, access settings, secret rotation |
//! | `orders` | — | creation, its refusals, its audit entry |
//! | `resolve` | R4–R7 | which order a request names, and who may see it |
//! | `forms` | R1, R2, R10, R13–R15 | report forms and capacity |
//! | `counts` | R16–R19, R22 | retries and count modes |
//! | `dates` | R22–R27 | gate times, legacy `total_num`/`return_num` |
//! | `audit` | — | the trail (oldest or newest first), refusals writing nothing, reads after writes |
//! | `rejected` | — | the pruned record of calls refused before authentication |
//! | `history` | — | an order's latest events and their total; walking all of them while written |
//! | `races` | R28 | racing gates |
//! | `issuance` | R7 | issuance reports: first, replayed, conflicting, failed |
//! | `refunds` | R8, R9 | refund requests and notifications, and what they do to verify |
//! | `reversal` | — | operator reversals within the window |
//! | `anomalies` | — | anomalies stored, listed and resolved |
//! | `listing` | — | the order list (newest first, cursor paging, search text, app, status, scan budget) and the app list |
//! | `reconcile` | — | the vendor's counts applied as cumulative reports |
//! | `events` | — | change events: one per accepted change, gap-free, followed while written |
//! | `sequences` | all | fixed random lifecycle sequences and the ledger's invariants |
//! | `tamper` | — | a write that changes no row: refused, rolled back, recorded as an anomaly |
//!
//! [`build`] has the public test-data builders (also for the server's tests); [`sequences`]
//! runs a lifecycle sequence and checks the ledger's invariants (also for property tests).
//!
//! This crate is test code (`publish = false`): store crates and the server use it only as a
//! dev-dependency, and `ticket-ledger` stays the domain alone.

// The suite asserts and panics on purpose, with messages saying what each case expected.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[cfg(doc)]
use ticket_ledger::LedgerStore;

// First: the `cases!` macro the case modules below use.
#[macro_use]
mod case;
mod runner;

mod anomalies;
mod apps;
mod audit;
pub mod build;
mod check;
mod counts;
mod dates;
mod events;
mod forms;
mod history;
mod issuance;
mod listing;
mod orders;
mod races;
mod reconcile;
mod refunds;
mod rejected;
mod resolve;
mod reversal;
pub mod sequences;
mod tamper;

pub use build::{
    app, app_created_at, app_key, audit_entry, code, gate_time, gate_time_plus, issue_cmd, meta_at,
    order, order_created_at, order_created_audit, order_id, out, received_at, reconcile_cmd,
    record_of, refund_cmd, refund_request, request_id, resolve_cmd, retry_of, reversal, verify_cmd,
    Fresh, IssueCommandBuilder, RefundCommandBuilder, VerifyCommandBuilder,
};
pub use check::{given_app, given_order};
pub use runner::{run, Store};
pub use tamper::Tamper;

use case::Case;

/// Every case of the suite, module by module: each module's `cases!` list.
const CASES: &[&[Case]] = &[
    apps::CASES,
    orders::CASES,
    resolve::CASES,
    forms::CASES,
    counts::CASES,
    dates::CASES,
    audit::CASES,
    rejected::CASES,
    history::CASES,
    races::CASES,
    issuance::CASES,
    refunds::requests::CASES,
    refunds::notifications::CASES,
    refunds::verify::CASES,
    reversal::CASES,
    anomalies::CASES,
    listing::CASES,
    reconcile::CASES,
    events::CASES,
    sequences::CASES,
    tamper::CASES,
];

/// Every case of the suite, in the order of [`CASES`].
fn cases() -> impl Iterator<Item = &'static Case> {
    CASES.iter().flat_map(|module| module.iter())
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    /// Test names are `<store>::<case>`, so two cases of one name would be one test twice.
    #[test]
    fn every_case_has_its_own_name() {
        let mut seen = HashSet::new();
        for case in cases() {
            assert!(seen.insert(case.name), "{} is registered twice", case.name);
        }
    }

    /// A case is ignored only to show a known bug, and its reason says which kind.
    #[test]
    fn ignored_cases_say_which_bug_they_show() {
        for case in cases() {
            if let Some(why) = case.ignored {
                assert!(
                    why.starts_with("domain bug: ") || why.starts_with("store bug: "),
                    "{}: an ignored case must name the bug it shows, not {why:?}",
                    case.name
                );
            }
        }
    }
}
