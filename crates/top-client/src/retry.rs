//! When a call is sent again, and how long to wait in between.
//!
//! Two conditions must both hold before a retry (see the crate docs, "Retries"):
//! the failure is retryable ([`ClientError::is_retryable`](crate::ClientError::is_retryable):
//! a transport failure, or an `isp.*` / 7 / 10 answer), **and** the call is idempotent on the
//! server, so that a first attempt which did reach the ledger is not applied twice. The
//! functions below say which typed calls are.

use std::time::Duration;

use ticket_api::refund::RefundParams;
use ticket_api::verify::{VerifyParams, WriteOffType};

/// How often and how patiently an idempotent call is retried.
///
/// Delays grow exponentially from `initial_backoff`, doubling per retry up to `max_backoff`,
/// with "equal jitter" (each delay is drawn uniformly from the upper half of its bound) so that
/// many gates failing at once do not retry in lockstep. No retry starts once it would end past
/// `max_elapsed` after the first attempt began.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included: `1` never retries.
    pub max_attempts: u32,
    /// Bound of the first delay.
    pub initial_backoff: Duration,
    /// Largest delay bound.
    pub max_backoff: Duration,
    /// Time budget for the whole call, measured from the start of the first attempt.
    pub max_elapsed: Duration,
}

impl Default for RetryPolicy {
    /// 4 attempts, delays from 200 ms doubling up to 5 s, 30 s in all.
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 4,
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(5),
            max_elapsed: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// A policy that never retries anything.
    pub fn never() -> Self {
        RetryPolicy {
            max_attempts: 1,
            ..RetryPolicy::default()
        }
    }

    /// The bound of the delay before retry number `retry` (1 for the first retry):
    /// `initial_backoff × 2^(retry-1)`, capped at `max_backoff`.
    pub fn backoff_bound(&self, retry: u32) -> Duration {
        let factor = 2u32.saturating_pow(retry.saturating_sub(1));
        self.initial_backoff
            .saturating_mul(factor)
            .min(self.max_backoff)
    }

    /// The delay before retry number `retry`: uniform in `[bound/2, bound]`.
    pub fn backoff(&self, retry: u32) -> Duration {
        let bound = self.backoff_bound(retry);
        let half = bound / 2;
        half + (bound - half).mul_f64(rand::random::<f64>())
    }
}

/// Whether a verify can be sent twice without counting twice: a cumulative report
/// (`write_off_type` 1: "used so far", never decreases a count), or a `voucher_infos` report
/// whose every entry carries its gate time `used_date` (the server recognises a repeat by order,
/// code, `used_date` and `used_quantity`). A legacy `confirm_code` + `check_num` report, or a
/// `voucher_infos` entry without `used_date`, is counted again on every arrival.
pub fn verify_is_idempotent(params: &VerifyParams) -> bool {
    matches!(params.mode(), Ok(WriteOffType::Cumulative))
        || (!params.voucher_infos.is_empty()
            && params
                .voucher_infos
                .iter()
                .all(|v| v.used_date.as_deref().is_some_and(|d| !d.is_empty())))
}

/// Whether a refund notification can be sent twice without being applied twice: it names its
/// `refund_batch_no` (the vendor's idempotency key) or the `fliggy_refund_flow_id` it settles;
/// the server answers a repeat of either as the first time.
pub fn refund_is_idempotent(params: &RefundParams) -> bool {
    let set = |v: &Option<String>| v.as_deref().is_some_and(|s| !s.is_empty());
    set(&params.refund_batch_no) || set(&params.fliggy_refund_flow_id)
}

#[cfg(test)]
mod tests {
    use ticket_api::verify::VoucherInfo;

    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        let p = RetryPolicy {
            max_attempts: 10,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(500),
            max_elapsed: Duration::from_secs(10),
        };
        let bounds: Vec<u128> = (1..=5).map(|r| p.backoff_bound(r).as_millis()).collect();
        assert_eq!(bounds, [100, 200, 400, 500, 500]);
        assert_eq!(p.backoff_bound(u32::MAX), Duration::from_millis(500));
        for r in 1..=5 {
            let d = p.backoff(r);
            assert!(
                d >= p.backoff_bound(r) / 2 && d <= p.backoff_bound(r),
                "{d:?}"
            );
        }
    }

    fn entry(date: Option<&str>) -> VoucherInfo {
        VoucherInfo {
            confirm_code: "C".into(),
            used_quantity: 1,
            used_date: date.map(str::to_owned),
        }
    }

    #[test]
    fn only_fingerprinted_or_cumulative_verifies_are_idempotent() {
        let legacy = VerifyParams {
            order_id: Some(1),
            confirm_code: Some("C".into()),
            check_num: Some(1),
            ..Default::default()
        };
        assert!(!verify_is_idempotent(&legacy));
        assert!(verify_is_idempotent(&VerifyParams {
            write_off_type: 1,
            ..legacy.clone()
        }));
        let dated = VerifyParams {
            order_id: Some(1),
            voucher_infos: vec![entry(Some("2024-05-01 10:00:00"))],
            ..Default::default()
        };
        assert!(verify_is_idempotent(&dated));
        let mixed = VerifyParams {
            voucher_infos: vec![entry(Some("2024-05-01 10:00:00")), entry(None)],
            ..dated
        };
        assert!(!verify_is_idempotent(&mixed));
    }

    #[test]
    fn refunds_are_idempotent_with_a_batch_number_or_flow_id() {
        let bare = RefundParams {
            order_id: 1,
            refund_status: 1,
            refund_num: Some(1),
            refund_batch_no: None,
            refund_failure_reason: None,
            refund_type: 1,
            fliggy_refund_flow_id: None,
        };
        assert!(!refund_is_idempotent(&bare));
        assert!(!refund_is_idempotent(&RefundParams {
            refund_batch_no: Some(String::new()),
            ..bare.clone()
        }));
        assert!(refund_is_idempotent(&RefundParams {
            refund_batch_no: Some("RB-1".into()),
            ..bare.clone()
        }));
        assert!(refund_is_idempotent(&RefundParams {
            fliggy_refund_flow_id: Some("F-1".into()),
            ..bare
        }));
    }
}
