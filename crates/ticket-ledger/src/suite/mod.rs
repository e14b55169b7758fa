//! The behaviour suite every [`LedgerStore`](crate::LedgerStore) must pass (feature `suite`).
//!
//! Each case is a `pub async fn <behaviour sentence>(store: Arc<dyn LedgerStore>)` that talks
//! to the store only through the trait and panics, saying what it expected, when the store
//! disagrees. The few cases about a database that disagrees with the ledger also take the
//! harness's [`Tamper`], the one thing the trait cannot do. A case checks the answer (outcome or error), the counters read back with
//! `order()`, and the audit trail. Cases create their own apps and orders under fresh names
//! ([`Fresh`]), so they may share one database and run concurrently.
//!
//! A store crate runs the whole suite with one line in a test (tokio must be a dev-dependency):
//!
//! ```ignore
//! ticket_ledger::behaviour_suite!(sqlite, async {
//!     Arc::new(HarnessedStore::open().await) // a LedgerStore that is also a suite::Tamper
//! });
//! ```
//!
//! The store expression is evaluated once per case, inside that case's test, so each case may
//! get its own store (a temporary SQLite file) or a handle to a shared database. The
//! surrounding module's names are visible to it.
//!
//! | Module | Rules | Cases |
//! |---|---|---|
//! | `apps` | — | registration, lookup, ping, access settings, secret rotation |
//! | `orders` | — | creation, its refusals, its audit entry |
//! | `resolve` | R4–R7 | which order a request names, and who may see it |
//! | `forms` | R1, R2, R10, R13–R15 | report forms and capacity |
//! | `counts` | R16–R19, R22 | retries and count modes |
//! | `dates` | R22–R27 | gate times, legacy `total_num`/`return_num` |
//! | `audit` | — | the trail, refusals writing nothing, reads after writes |
//! | `rejected` | — | the pruned record of calls refused before authentication |
//! | `history` | — | an order's latest events and their total; walking all of them while written |
//! | `races` | R28 | racing gates |
//! | `issuance` | R7 | issuance reports: first, replayed, conflicting, failed |
//! | `refunds` | R8, R9 | refund requests and notifications, and what they do to verify |
//! | `reversal` | — | operator reversals within the window |
//! | `anomalies` | — | anomalies stored, listed and resolved |
//! | `reconcile` | — | the vendor's counts applied as cumulative reports, whole or not at all |
//! | `sequences` | all | fixed random lifecycle sequences and the ledger's invariants |
//! | `tamper` | — | a write that changes no row: refused, rolled back, recorded as an anomaly |
//!
//! [`build`] has the public test-data builders (also for the server's tests); [`sequences`]
//! runs a lifecycle sequence and checks the ledger's invariants (also for property tests).

// The suite is test code compiled into the library behind a feature: it asserts and panics on
// purpose, with messages saying what each case expected.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod anomalies;
mod apps;
mod audit;
pub mod build;
mod check;
mod counts;
mod dates;
mod forms;
mod history;
mod issuance;
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

pub use anomalies::{
    anomalies_are_listed_newest_first_and_filtered_by_status_order_and_kind,
    flags_of_accepted_verifies_are_stored_as_anomalies,
    resolving_an_anomaly_records_resolution_note_and_time,
};
pub use apps::{
    access_changes_of_an_unknown_app_are_refused_with_unknown_app,
    app_access_settings_are_stored_and_replaced_whole, created_app_is_found_by_key,
    duplicate_app_key_is_refused_with_app_exists, metrics_totals_count_orders_capacity_and_uses,
    secret_rotation_keeps_the_replaced_secret_until_it_expires, store_answers_ping,
};
pub use audit::{
    audit_filters_by_order_app_outcome_after_seq_and_limit,
    audit_lists_oldest_first_with_increasing_seq, committed_counts_are_seen_by_later_reads,
    order_events_are_its_audit_entries_oldest_first, recorded_entry_is_listed_by_audit,
    refused_verify_writes_nothing, verify_audit_entry_is_the_plans_entry,
};
pub use counts::{
    cumulative_order_level_report_raises_the_order_total_only,
    cumulative_report_below_the_count_is_flagged_and_never_decreases,
    cumulative_report_beyond_capacity_is_refused,
    cumulative_report_equal_to_the_count_changes_nothing,
    delta_report_without_used_date_is_never_a_replay,
    delta_retry_mixing_old_and_new_entries_applies_only_the_new,
    retried_delta_verify_is_replayed_not_recounted, same_code_at_another_used_date_is_a_new_use,
};
pub use dates::{
    missing_used_date_uses_server_time_and_is_flagged, nonzero_return_num_is_accepted_and_flagged,
    total_num_below_the_uses_sold_is_accepted_and_flagged,
    total_num_beyond_the_uses_sold_is_refused,
    used_date_after_valid_until_is_accepted_and_flagged_late,
    used_date_before_the_order_is_refused, used_date_before_valid_from_is_refused_unless_allowed,
    used_date_beyond_the_skew_tolerance_is_refused_as_future,
};
pub use forms::{
    legacy_code_not_in_voucher_infos_is_refused, legacy_confirm_code_with_check_num_uses_that_code,
    multi_use_code_is_used_up_to_its_capacity, order_level_check_num_beyond_remaining_is_refused,
    order_level_check_num_draws_codes_in_issuance_order, over_capacity_refuses_the_whole_request,
    partial_use_makes_the_order_partly_used_then_used, unknown_code_refuses_the_whole_request,
    voucher_infos_win_over_legacy_fields,
};
pub use history::{
    order_view_shows_its_latest_events_oldest_first_and_counts_them_all,
    walking_an_orders_events_returns_each_once_in_seq_order_while_they_are_written,
};
pub use issuance::{
    failed_issuance_marks_issue_failed_and_a_later_success_issues,
    failure_after_success_is_refused_with_issue_conflict,
    issuance_fills_an_awaiting_order_and_moves_it_to_issued,
    issuance_of_another_apps_order_is_order_not_found,
    issuance_with_another_out_order_id_is_refused,
    issuance_with_other_codes_is_refused_with_issue_conflict,
    same_issuance_report_again_is_replayed_and_changes_nothing,
};
pub use orders::{
    duplicate_order_id_is_refused_with_order_exists, invalid_order_is_refused_and_not_stored,
    order_creation_is_recorded_in_its_events, order_for_unknown_app_is_refused_with_unknown_app,
    order_with_vouchers_is_issued_with_nothing_used, order_without_vouchers_awaits_issuance,
    out_order_id_is_unique_per_app_not_across_apps,
};
pub use races::{
    concurrent_identical_delta_retries_apply_exactly_once,
    concurrent_verifies_never_exceed_capacity,
};
pub use reconcile::{
    reconciliation_records_missing_uses_and_never_decreases,
    reconciliation_refused_at_its_last_code_changes_nothing,
};
pub use refunds::{
    each_pending_refund_holds_its_tickets_from_its_own_request, failed_refund_releases_its_tickets,
    refund_notification_is_idempotent_on_batch_no_and_flow_id,
    refund_notification_with_its_flow_id_settles_that_request,
    refund_notification_with_nothing_pending_is_refused_and_stored_as_an_anomaly,
    refund_notification_without_flow_id_settles_the_oldest_pending,
    refund_num_beyond_the_request_is_refused, refund_request_beyond_the_unused_tickets_is_refused,
    refund_request_within_refundable_tickets_is_pending_and_the_order_refunding,
    refund_results_move_the_order_to_partly_refunded_refunded_or_closed,
    verify_dated_after_a_pending_refund_cannot_take_its_reserved_uses,
    verify_dated_before_a_pending_refund_may_take_its_reserved_uses,
    verify_needing_uses_held_by_refunded_tickets_is_refused_and_stored_as_an_anomaly,
    verify_of_a_fully_refunded_order_is_refused_and_stored_as_an_anomaly,
};
pub use rejected::rejected_calls_are_listed_newest_first_and_pruned_to_the_newest_kept;
pub use resolve::{
    another_apps_order_is_indistinguishable_from_an_unknown_one,
    out_order_id_alone_resolves_within_the_calling_app,
    out_order_id_contradicting_order_id_is_refused,
    refusal_anomaly_of_a_verify_by_out_order_id_names_the_order, unissued_order_cannot_be_verified,
    verify_of_unknown_order_is_order_not_found,
};
pub use reversal::{
    reversal_gives_uses_back_newest_first, reversal_is_its_own_event_and_moves_the_status_back,
    reversal_never_takes_a_count_below_zero,
    uses_older_than_the_reversal_window_are_not_reversible,
};
pub use sequences::random_lifecycle_sequences_keep_the_ledger_consistent;
pub use tamper::{
    a_write_that_changes_no_row_refuses_the_call_keeps_nothing_and_records_an_anomaly, Tamper,
};

/// Runs the whole behaviour suite against a store: one `#[tokio::test]` per case, in a module
/// named `$name`.
///
/// ```ignore
/// ticket_ledger::behaviour_suite!(sqlite, async { /* an */ Arc<dyn ticket_ledger::LedgerStore> });
/// ```
///
/// A case listed with `#[ignore = "domain bug: ..."]` (or `"store bug: ..."`) shows a known bug:
/// it runs with `--ignored` and passes once the bug is fixed.
///
/// `$store` (usually an `async` block) is awaited at the start of every case; it must evaluate
/// to `Arc<S>` for a concrete `S` that implements both [`LedgerStore`](crate::LedgerStore) and
/// [`Tamper`] (the cases listed after `tampering` use both; a store whose harness cannot tamper
/// does not compile here, so no store skips them). The generated module imports the
/// surrounding module's names (`use super::*`), so the block can name them. The tests run on a
/// multi-thread runtime with 4 workers, so the race cases really race; the calling crate needs
/// tokio (features `macros`, `rt-multi-thread`) as a dev-dependency.
#[macro_export]
macro_rules! behaviour_suite {
    ($name:ident, $store:expr $(,)?) => {
        $crate::behaviour_suite!(@cases $name, $store, [
            // apps
            created_app_is_found_by_key,
            duplicate_app_key_is_refused_with_app_exists,
            store_answers_ping,
            metrics_totals_count_orders_capacity_and_uses,
            app_access_settings_are_stored_and_replaced_whole,
            secret_rotation_keeps_the_replaced_secret_until_it_expires,
            access_changes_of_an_unknown_app_are_refused_with_unknown_app,
            // orders
            order_without_vouchers_awaits_issuance,
            order_with_vouchers_is_issued_with_nothing_used,
            duplicate_order_id_is_refused_with_order_exists,
            order_for_unknown_app_is_refused_with_unknown_app,
            out_order_id_is_unique_per_app_not_across_apps,
            invalid_order_is_refused_and_not_stored,
            order_creation_is_recorded_in_its_events,
            // resolve (R4-R7)
            verify_of_unknown_order_is_order_not_found,
            out_order_id_contradicting_order_id_is_refused,
            out_order_id_alone_resolves_within_the_calling_app,
            another_apps_order_is_indistinguishable_from_an_unknown_one,
            unissued_order_cannot_be_verified,
            // forms (R1, R2, R10, R13-R15)
            voucher_infos_win_over_legacy_fields,
            legacy_code_not_in_voucher_infos_is_refused,
            order_level_check_num_draws_codes_in_issuance_order,
            order_level_check_num_beyond_remaining_is_refused,
            legacy_confirm_code_with_check_num_uses_that_code,
            unknown_code_refuses_the_whole_request,
            over_capacity_refuses_the_whole_request,
            partial_use_makes_the_order_partly_used_then_used,
            multi_use_code_is_used_up_to_its_capacity,
            // counts (R16-R19)
            retried_delta_verify_is_replayed_not_recounted,
            delta_retry_mixing_old_and_new_entries_applies_only_the_new,
            same_code_at_another_used_date_is_a_new_use,
            delta_report_without_used_date_is_never_a_replay,
            cumulative_report_equal_to_the_count_changes_nothing,
            cumulative_report_below_the_count_is_flagged_and_never_decreases,
            cumulative_report_beyond_capacity_is_refused,
            cumulative_order_level_report_raises_the_order_total_only,
            // dates and legacy totals (R22-R27)
            missing_used_date_uses_server_time_and_is_flagged,
            used_date_beyond_the_skew_tolerance_is_refused_as_future,
            used_date_before_the_order_is_refused,
            used_date_before_valid_from_is_refused_unless_allowed,
            used_date_after_valid_until_is_accepted_and_flagged_late,
            total_num_beyond_the_uses_sold_is_refused,
            total_num_below_the_uses_sold_is_accepted_and_flagged,
            nonzero_return_num_is_accepted_and_flagged,
            // audit
            recorded_entry_is_listed_by_audit,
            audit_lists_oldest_first_with_increasing_seq,
            audit_filters_by_order_app_outcome_after_seq_and_limit,
            order_events_are_its_audit_entries_oldest_first,
            verify_audit_entry_is_the_plans_entry,
            refused_verify_writes_nothing,
            committed_counts_are_seen_by_later_reads,
            // rejected anonymous calls
            rejected_calls_are_listed_newest_first_and_pruned_to_the_newest_kept,
            // history
            order_view_shows_its_latest_events_oldest_first_and_counts_them_all,
            walking_an_orders_events_returns_each_once_in_seq_order_while_they_are_written,
            // races (R28)
            concurrent_verifies_never_exceed_capacity,
            concurrent_identical_delta_retries_apply_exactly_once,
            // issuance
            issuance_fills_an_awaiting_order_and_moves_it_to_issued,
            same_issuance_report_again_is_replayed_and_changes_nothing,
            issuance_with_other_codes_is_refused_with_issue_conflict,
            failed_issuance_marks_issue_failed_and_a_later_success_issues,
            failure_after_success_is_refused_with_issue_conflict,
            issuance_with_another_out_order_id_is_refused,
            issuance_of_another_apps_order_is_order_not_found,
            // refunds
            refund_request_within_refundable_tickets_is_pending_and_the_order_refunding,
            refund_request_beyond_the_unused_tickets_is_refused,
            refund_notification_with_its_flow_id_settles_that_request,
            refund_notification_without_flow_id_settles_the_oldest_pending,
            refund_notification_with_nothing_pending_is_refused_and_stored_as_an_anomaly,
            refund_notification_is_idempotent_on_batch_no_and_flow_id,
            failed_refund_releases_its_tickets,
            refund_num_beyond_the_request_is_refused,
            refund_results_move_the_order_to_partly_refunded_refunded_or_closed,
            // refunds and verify (R8, R9)
            each_pending_refund_holds_its_tickets_from_its_own_request,
            refusal_anomaly_of_a_verify_by_out_order_id_names_the_order,
            verify_of_a_fully_refunded_order_is_refused_and_stored_as_an_anomaly,
            verify_needing_uses_held_by_refunded_tickets_is_refused_and_stored_as_an_anomaly,
            verify_dated_before_a_pending_refund_may_take_its_reserved_uses,
            verify_dated_after_a_pending_refund_cannot_take_its_reserved_uses,
            // reversal
            reversal_gives_uses_back_newest_first,
            uses_older_than_the_reversal_window_are_not_reversible,
            reversal_never_takes_a_count_below_zero,
            reversal_is_its_own_event_and_moves_the_status_back,
            // anomalies
            flags_of_accepted_verifies_are_stored_as_anomalies,
            anomalies_are_listed_newest_first_and_filtered_by_status_order_and_kind,
            resolving_an_anomaly_records_resolution_note_and_time,
            // reconciliation
            reconciliation_records_missing_uses_and_never_decreases,
            reconciliation_refused_at_its_last_code_changes_nothing,
            // random lifecycle sequences
            random_lifecycle_sequences_keep_the_ledger_consistent,
        ], tampering [
            // a database that disagrees with the ledger
            a_write_that_changes_no_row_refuses_the_call_keeps_nothing_and_records_an_anomaly,
        ]);
    };
    (@cases $name:ident, $store:expr, [$($(#[$attr:meta])* $case:ident),* $(,)?],
     tampering [$($(#[$tattr:meta])* $tcase:ident),* $(,)?]) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            $(
                $(#[$attr])*
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    let store: ::std::sync::Arc<dyn $crate::LedgerStore> = $store.await;
                    $crate::suite::$case(store).await;
                }
            )*
            $(
                $(#[$tattr])*
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $tcase() {
                    let harnessed = $store.await;
                    let tamper: ::std::sync::Arc<dyn $crate::suite::Tamper> =
                        harnessed.clone();
                    let store: ::std::sync::Arc<dyn $crate::LedgerStore> = harnessed;
                    $crate::suite::$tcase(store, tamper).await;
                }
            )*
        }
    };
}
