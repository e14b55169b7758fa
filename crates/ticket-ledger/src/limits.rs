//! The bounds on every count that enters the ledger, and the checked arithmetic on counts.
//!
//! This is the one place the maxima are written down. The wire parsers (`ticket-api`) refuse a
//! parameter above them with code 41, the admin API with 422 naming the field, and the
//! ledger's own validation ([`crate::NewOrder::validate`]) and planners refuse them again with
//! [`LedgerError::CountTooLarge`], because both the gateway and the admin API reach the ledger
//! and neither may be the only guard. `docs/SECURITY.md` has them as a table.
//!
//! # Why these numbers
//!
//! Each bound is far above any real order (the largest group tickets are a few thousand) and
//! far below what makes arithmetic dangerous:
//!
//! | bound | value | what it bounds |
//! |---|---|---|
//! | [`MAX_TICKETS`] | 100,000 | an order's `quantity`; refund requests, `refund_num`, `return_num` |
//! | [`MAX_CODE_USES`] | 1,000,000 | a code's capacity (issuance `quantity`), `used_quantity`, a code's `check_num`, reversals, reconciled counts |
//! | [`MAX_VOUCHERS`] | 999 | codes per order (the API's `voucher_infos` list size) |
//! | [`MAX_ORDER_USES`] | 999,000,000 | an order's uses: `total_num`, an order-level `check_num` |
//!
//! The largest value the planners compute is a product of tickets and uses
//! (refunded tickets × the order's capacity, when refunded tickets take their uses), at most
//! `MAX_TICKETS × MAX_ORDER_USES` ≈ 10¹⁴, five orders of magnitude below `i64::MAX` ≈ 9.2 × 10¹⁸.
//! Sums over one order stay below [`MAX_ORDER_USES`]. Sums over the whole ledger (`/metrics`)
//! would need more than nine billion orders of the largest size to pass `i64::MAX`; the stores
//! sum them as floating point anyway, so no state can make the totals fail.
//!
//! # Checked arithmetic
//!
//! A database written before these bounds existed, or edited behind the ledger's back, can
//! still hold larger counts (a code of capacity `i64::MAX` was once accepted). So the planners
//! never trust the bounds to make arithmetic safe: every sum, difference and product of counts
//! goes through the functions below, and an overflow is refused with
//! [`LedgerError::CountOverflow`] before anything is written — never wrapped into a number
//! that looks plausible (a wrapped "tickets touched" once made a 2-ticket order show 3
//! refundable).

use crate::LedgerError;

/// Most tickets one order may have (its `quantity`), and so most tickets any one refund
/// request, refund notification (`refund_num`) or legacy `return_num` may name.
pub const MAX_TICKETS: i64 = 100_000;

/// Most uses one code may allow (its issuance `quantity`, the ledger's `capacity`), and so most
/// uses any report may name for one code: `used_quantity` (delta or cumulative), the legacy
/// `check_num` with a `confirm_code`, a reversal, a reconciled count.
pub const MAX_CODE_USES: i64 = 1_000_000;

/// Most codes one order may have: the API's `voucher_infos` holds at most 999 entries.
pub const MAX_VOUCHERS: usize = 999;

/// Most uses one order may have (every code at [`MAX_CODE_USES`]), and so the bound of the
/// order-level counts: the legacy `total_num` and a `check_num` without a `confirm_code`.
pub const MAX_ORDER_USES: i64 = MAX_CODE_USES * MAX_VOUCHERS as i64;

/// `value` if it is at most `max`, else [`LedgerError::CountTooLarge`] naming `field` as the
/// request named it (`quantity`, `voucher_infos[2].used_quantity`).
pub fn at_most(field: impl FnOnce() -> String, value: i64, max: i64) -> Result<i64, LedgerError> {
    if value > max {
        return Err(LedgerError::CountTooLarge {
            field: field(),
            value,
            max,
        });
    }
    Ok(value)
}

/// The refusal of an overflowing computation: `what` says which.
fn overflow(what: &'static str) -> LedgerError {
    LedgerError::CountOverflow { what }
}

/// `a + b`, or [`LedgerError::CountOverflow`].
pub(crate) fn add(a: i64, b: i64, what: &'static str) -> Result<i64, LedgerError> {
    a.checked_add(b).ok_or_else(|| overflow(what))
}

/// `a - b`, or [`LedgerError::CountOverflow`].
pub(crate) fn sub(a: i64, b: i64, what: &'static str) -> Result<i64, LedgerError> {
    a.checked_sub(b).ok_or_else(|| overflow(what))
}

/// The sum of `values`, or [`LedgerError::CountOverflow`] as soon as a partial sum overflows.
pub(crate) fn sum(
    values: impl IntoIterator<Item = i64>,
    what: &'static str,
) -> Result<i64, LedgerError> {
    values
        .into_iter()
        .try_fold(0_i64, |acc, v| add(acc, v, what))
}

/// `⌊a × b ÷ d⌋`, computed exactly in `i128` (a product of two `i64` always fits), refused when
/// the result does not fit an `i64`. `d` must be positive: a zero or negative divisor (an order
/// without tickets, which the schema forbids) is refused too rather than divided by.
pub(crate) fn mul_div_floor(
    a: i64,
    b: i64,
    d: i64,
    what: &'static str,
) -> Result<i64, LedgerError> {
    if d <= 0 {
        return Err(overflow(what));
    }
    let q = (i128::from(a) * i128::from(b)).div_euclid(i128::from(d));
    i64::try_from(q).map_err(|_| overflow(what))
}

/// `⌈a × b ÷ d⌉`, like [`mul_div_floor`].
pub(crate) fn mul_div_ceil(a: i64, b: i64, d: i64, what: &'static str) -> Result<i64, LedgerError> {
    if d <= 0 {
        return Err(overflow(what));
    }
    let n = i128::from(a) * i128::from(b);
    let d = i128::from(d);
    let q = n.div_euclid(d) + i128::from(n.rem_euclid(d) != 0);
    i64::try_from(q).map_err(|_| overflow(what))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bounds_leave_every_product_the_planners_compute_far_inside_i64() {
        assert_eq!(MAX_ORDER_USES, 999_000_000);
        let largest_product = i128::from(MAX_TICKETS) * i128::from(MAX_ORDER_USES);
        assert!(largest_product * 10_000 < i128::from(i64::MAX));
    }

    #[test]
    fn at_most_names_the_field_above_the_bound_only() {
        assert_eq!(
            at_most(|| "quantity".into(), MAX_TICKETS, MAX_TICKETS),
            Ok(MAX_TICKETS)
        );
        assert_eq!(
            at_most(|| "quantity".into(), MAX_TICKETS + 1, MAX_TICKETS),
            Err(LedgerError::CountTooLarge {
                field: "quantity".into(),
                value: 100_001,
                max: MAX_TICKETS
            })
        );
    }

    #[test]
    fn an_overflow_is_refused_never_wrapped() {
        let refused = Err(LedgerError::CountOverflow { what: "w" });
        assert_eq!(add(i64::MAX, 1, "w"), refused);
        assert_eq!(sub(i64::MIN, 1, "w"), refused);
        assert_eq!(sum([i64::MAX, 1, -5], "w"), refused, "no wrap, then back");
        assert_eq!(sum([i64::MAX - 1, 1], "w"), Ok(i64::MAX));
        assert_eq!(sum(std::iter::empty(), "w"), Ok(0));
        assert_eq!(mul_div_floor(i64::MAX, 3, 2, "w"), refused);
        assert_eq!(mul_div_floor(1, 1, 0, "w"), refused, "no division by zero");
    }

    #[test]
    fn products_are_exact_where_i64_arithmetic_wrapped() {
        // The wrap behind "3 refundable tickets on a 2-ticket order": one use of a code of
        // capacity i64::MAX on 2 tickets touches ⌈1 × 2 ÷ i64::MAX⌉ = 1 ticket; in i64,
        // `1 × 2 + i64::MAX - 1` wrapped to i64::MIN and the quotient to -1.
        assert_eq!(mul_div_ceil(1, 2, i64::MAX, "w"), Ok(1));
        assert_eq!(mul_div_floor(2, i64::MAX, 2, "w"), Ok(i64::MAX));
        assert_eq!(mul_div_floor(1, i64::MAX, 2, "w"), Ok(i64::MAX / 2));
        assert_eq!(mul_div_ceil(0, i64::MAX, 7, "w"), Ok(0));
        assert_eq!(mul_div_ceil(7, 3, 7, "w"), Ok(3));
        assert_eq!(mul_div_ceil(8, 3, 7, "w"), Ok(4));
    }
}
