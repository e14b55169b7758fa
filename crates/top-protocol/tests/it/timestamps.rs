//! `timestamp` and Beijing-time dates (docs/PROTOCOL.md §2.1).

use chrono::{DateTime, Duration, Utc};
use top_protocol::timestamp::{
    format_beijing, parse_beijing, parse_beijing_date_or_datetime, parse_timestamp, within_window,
};

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

#[test]
fn beijing_wall_clock_is_utc_plus_8() {
    assert_eq!(
        parse_timestamp("2024-05-01 12:00:00"),
        Some(utc("2024-05-01T04:00:00Z"))
    );
    assert_eq!(
        parse_beijing("2024-05-01 12:00:00"),
        Some(utc("2024-05-01T04:00:00Z"))
    );
    // Crossing midnight backwards into the previous UTC day.
    assert_eq!(
        parse_beijing("2024-03-01 07:59:59"),
        Some(utc("2024-02-29T23:59:59Z"))
    );
}

#[test]
fn thirteen_digits_are_epoch_milliseconds() {
    assert_eq!(
        parse_timestamp("1714536000000"),
        Some(utc("2024-05-01T04:00:00Z"))
    );
    assert_eq!(
        parse_timestamp("1714536000123"),
        Some(utc("2024-05-01T04:00:00.123Z"))
    );
}

#[test]
fn ten_digits_are_epoch_seconds() {
    assert_eq!(
        parse_timestamp("1714536000"),
        Some(utc("2024-05-01T04:00:00Z"))
    );
}

#[test]
fn malformed_timestamps_are_refused() {
    for bad in [
        "2024-5-1 12:00:00",
        "2024-02-30 00:00:00",
        "2024-05-01 12:00:00 ",
        " 2024-05-01 12:00:00",
        "171453600000",
        "17145360000000",
        "171453600",
        "2024-05-01T12:00:00",
        "2024-05-01 24:00:00",
        "2024-05-01 12:60:00",
        "2024-05-01 23:59:60",
        "2023-02-29 00:00:00",
        "2024/05/01 12:00:00",
        "",
        "2024-05-01",
        "１７１４５３６０００００", // full-width digits are not ASCII digits
    ] {
        assert_eq!(parse_timestamp(bad), None, "{bad:?}");
    }
}

#[test]
fn leap_day_is_a_valid_date() {
    assert!(parse_beijing("2024-02-29 00:00:00").is_some());
}

#[test]
fn date_only_is_beijing_midnight() {
    assert_eq!(
        parse_beijing_date_or_datetime("2024-05-01"),
        Some(utc("2024-04-30T16:00:00Z"))
    );
    assert_eq!(
        parse_beijing_date_or_datetime("2024-05-01 12:00:00"),
        Some(utc("2024-05-01T04:00:00Z"))
    );
    assert_eq!(parse_beijing_date_or_datetime("2024-02-30"), None);
    assert_eq!(parse_beijing_date_or_datetime("2024-5-01"), None);
    // A date-only value is not a request timestamp.
    assert_eq!(parse_beijing("2024-05-01"), None);
}

#[test]
fn format_beijing_ignores_the_host_zone() {
    assert_eq!(
        format_beijing(utc("2024-05-01T04:00:00Z")),
        "2024-05-01 12:00:00"
    );
    assert_eq!(
        format_beijing(utc("2024-04-30T16:00:00Z")),
        "2024-05-01 00:00:00"
    );
    assert_eq!(
        format_beijing(utc("2024-05-01T04:00:00.999Z")),
        "2024-05-01 12:00:00"
    );
}

#[test]
fn window_is_inclusive_at_600_seconds() {
    let now = utc("2024-05-01T04:00:00Z");
    let w = Duration::seconds(600);
    assert!(within_window(now, now, w));
    assert!(within_window(now - Duration::seconds(600), now, w));
    assert!(within_window(now + Duration::seconds(600), now, w));
    assert!(!within_window(now - Duration::seconds(601), now, w));
    assert!(!within_window(now + Duration::seconds(601), now, w));
    assert!(!within_window(
        now + Duration::milliseconds(600_001),
        now,
        w
    ));
}

#[test]
fn a_client_on_a_utc_host_is_eight_hours_off() {
    // [NODE] on a UTC host formats the UTC wall clock; read as Beijing time it is 8 h early.
    let now = utc("2024-05-01T04:00:00Z");
    let sent = parse_timestamp("2024-05-01 04:00:00").unwrap();
    assert!(!within_window(sent, now, Duration::seconds(600)));
}
