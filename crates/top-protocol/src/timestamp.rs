//! The `timestamp` parameter and Beijing-time dates (docs/PROTOCOL.md §2.1, §6).
//!
//! TOP times are wall-clock `yyyy-MM-dd HH:mm:ss` at UTC+08:00 (the platform's zone, \[JAVA\]
//! `GMT+8`), except that \[PY-OFF\] sends epoch milliseconds. Everything here converts to and from
//! `DateTime<Utc>` explicitly, so the host's time zone never matters.

use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, NaiveTime, TimeDelta, Timelike, Utc};

/// UTC+08:00 in seconds: China has had no daylight saving time since 1991.
const BEIJING_OFFSET_SECS: i64 = 8 * 3600;

/// TOP `timestamp` param: 13 ASCII digits → epoch ms; 10 digits → epoch s; otherwise exactly
/// "yyyy-MM-dd HH:mm:ss" read at UTC+08:00 (§2.1 rules 1–2).
///
/// `None` means code 31. Digit strings of any other length are refused: a 12-digit value is more
/// likely a truncated millisecond stamp than a time to trust.
pub fn parse_timestamp(s: &str) -> Option<DateTime<Utc>> {
    let b = s.as_bytes();
    if !b.is_empty() && b.iter().all(u8::is_ascii_digit) {
        let n: i64 = s.parse().ok()?;
        return match b.len() {
            13 => DateTime::from_timestamp_millis(n),
            10 => DateTime::from_timestamp(n, 0),
            _ => None,
        };
    }
    parse_beijing(s)
}

/// Strict "yyyy-MM-dd HH:mm:ss" at UTC+8 → UTC (also used for business dates like `used_date`).
/// Exactly 19 chars, zero-padded fields, a valid calendar date and time (no leap second).
///
/// Why strict: a lenient parser would accept `2024-5-1`, which no SDK sends, and then two
/// spellings of the same instant would be signed differently by callers.
pub fn parse_beijing(s: &str) -> Option<DateTime<Utc>> {
    let b = s.as_bytes();
    if b.len() != 19 || b[10] != b' ' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let date = parse_date(&b[..10])?;
    let time = NaiveTime::from_hms_opt(
        digits(&b[11..13])?,
        digits(&b[14..16])?,
        digits(&b[17..19])?,
    )?;
    from_beijing_naive(date.and_time(time))
}

/// Also accept "yyyy-MM-dd" (midnight UTC+8) — for admin dates, where a day is the usual input.
pub fn parse_beijing_date_or_datetime(s: &str) -> Option<DateTime<Utc>> {
    if s.len() == 10 {
        let date = parse_date(s.as_bytes())?;
        return from_beijing_naive(date.and_time(NaiveTime::MIN));
    }
    parse_beijing(s)
}

/// Formats an instant as "yyyy-MM-dd HH:mm:ss" in UTC+8, whatever the host's zone: the form
/// \[JAVA\] and the \[DOC\] expect in `timestamp` and business dates.
pub fn format_beijing(t: DateTime<Utc>) -> String {
    let local = t.naive_utc() + TimeDelta::seconds(BEIJING_OFFSET_SECS);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        local.year(),
        local.month(),
        local.day(),
        local.hour(),
        local.minute(),
        local.second()
    )
}

/// |now - ts| <= window: the clock-skew check of §2.1 rule 3, inclusive at both edges.
pub fn within_window(ts: DateTime<Utc>, now: DateTime<Utc>, window: chrono::Duration) -> bool {
    let skew = now.signed_duration_since(ts);
    skew <= window && -skew <= window
}

/// `yyyy-MM-dd` with zero-padded fields.
fn parse_date(b: &[u8]) -> Option<NaiveDate> {
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let year = i32::try_from(digits(&b[..4])?).ok()?;
    NaiveDate::from_ymd_opt(year, digits(&b[5..7])?, digits(&b[8..10])?)
}

/// A fixed-width run of ASCII digits (no sign, no spaces, unlike `str::parse`).
fn digits(b: &[u8]) -> Option<u32> {
    b.iter().try_fold(0u32, |acc, &c| {
        c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0'))
    })
}

fn from_beijing_naive(local: NaiveDateTime) -> Option<DateTime<Utc>> {
    local
        .checked_sub_signed(TimeDelta::seconds(BEIJING_OFFSET_SECS))
        .map(|n| n.and_utc())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn format_is_the_inverse_of_parse() {
        let t = parse_beijing("2024-12-31 23:59:59").unwrap();
        assert_eq!(format_beijing(t), "2024-12-31 23:59:59");
        assert_eq!(t.to_rfc3339(), "2024-12-31T15:59:59+00:00");
    }

    #[test]
    fn signs_inside_fields_are_refused() {
        assert_eq!(parse_beijing("+024-05-01 12:00:00"), None);
        assert_eq!(parse_beijing("2024-05-01 12:00:+0"), None);
        assert_eq!(parse_timestamp("+714536000000"), None);
    }
}
