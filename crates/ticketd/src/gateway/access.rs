//! Per-app access controls: the "permissions and rate" step of docs/PROTOCOL.md §5.1, run after the
//! caller is authenticated and before the method's parameters are looked at.
//!
//! - **IP allow-list** (code 11, `isv.permission-ip-whitelist-limit`): the caller's address is
//!   the TCP peer's (`ConnectInfo`). `X-Forwarded-For` is never read: anyone can write it, so
//!   behind a reverse proxy every caller has the proxy's address (allow the proxy, or filter
//!   on the proxy) — see docs/SECURITY.md.
//! - **Rate limit** (code 7, `accesscontrol.limited-by-api-access-count`): a token bucket per
//!   app key, held in this process's memory. Several ticketd processes on one database each
//!   enforce the limit on their own, so an app may get up to N times its rate across N
//!   processes; divide the rate by the process count if that matters.
//!
//! Both run only for authenticated calls, so a forger learns nothing about the allow-list and
//! cannot spend a vendor's rate. Both refusals change nothing and are audited like every other
//! refusal of an authenticated caller (`record_refusal`).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use chrono::{DateTime, Utc};
use ticket_ledger::{App, AppKey, RateLimit};
use top_protocol::{PlatformCode, TopError};

use super::CallContext;

/// The sub_code of a caller outside the app's allow-list (docs/PROTOCOL.md §5.1, code 11).
pub const IP_NOT_ALLOWED: &str = top_protocol::error::sub_code::IP_NOT_ALLOWED;
/// The sub_code of a call over the app's rate (docs/PROTOCOL.md §5.1, code 7). taobaopy retries it
/// after a second (§5.2).
pub const RATE_LIMITED: &str = top_protocol::error::sub_code::RATE_LIMITED;

/// Refuses a caller the app's allow-list does not name (11), then a call over the app's rate
/// (7). A refused address does not spend a token.
pub fn check(limiter: &RateLimiter, app: &App, ctx: &CallContext) -> Result<(), TopError> {
    if !app.access.ip_allowlist.is_empty() {
        // No peer address (a router driven without a socket) cannot be shown to be allowed.
        let ip = ctx
            .client_ip
            .as_deref()
            .and_then(|ip| ip.parse::<IpAddr>().ok());
        if !ip.is_some_and(|ip| app.access.allows(ip)) {
            let shown = ctx.client_ip.as_deref().unwrap_or("unknown");
            return Err(
                TopError::platform(PlatformCode::InsufficientIsvPermissions).with_sub(
                    IP_NOT_ALLOWED,
                    format!("调用方IP {shown} 不在该应用的IP白名单内"),
                ),
            );
        }
    }
    limiter.acquire(app, ctx.received_at).map_err(|limit| {
        TopError::platform(PlatformCode::AppCallLimited).with_sub(
            RATE_LIMITED,
            format!("调用频率超过该应用的限制 {}", limit.rate_text()),
        )
    })
}

/// Token buckets per app key (in this process's memory), and the server's default rate for
/// apps that set none.
///
/// Each bucket is kept as its "theoretical arrival time" (the generic cell rate algorithm, an
/// exact form of the token bucket): a call is allowed when the bucket's time is at most
/// `(burst - 1)` intervals ahead of now, and moves it one interval (`period / requests`) on.
/// Integer microseconds, so refills are exact and a test can step the clock to the microsecond.
/// A clock that steps back only delays refills; it never hands out calls.
///
/// Concurrency: the map is behind an `RwLock` taken for writing only when an app calls for the
/// first time; each bucket has its own `Mutex`, so calls of different apps never wait for each
/// other. Both are `std` locks, held for a few arithmetic operations and never across an
/// `.await`. Only apps that exist and authenticated get a bucket, so the map is bounded by the
/// number of registered apps.
#[derive(Debug)]
pub struct RateLimiter {
    default: RateLimit,
    buckets: RwLock<HashMap<AppKey, Arc<Mutex<Bucket>>>>,
}

/// One app's bucket: when it will be full again if no call comes (UTC microseconds). A
/// changed limit keeps it, so changing a limit never hands out a fresh burst.
#[derive(Debug)]
struct Bucket {
    full_at_us: i64,
}

impl RateLimiter {
    /// A limiter applying `default` to apps without a rate of their own.
    pub fn new(default: RateLimit) -> Self {
        Self {
            default,
            buckets: RwLock::default(),
        }
    }

    /// The server's default (`--default-rate-limit`).
    pub fn default_limit(&self) -> RateLimit {
        self.default
    }

    /// The limit in force for `app`: its own, or the server's default.
    pub fn effective(&self, app: &App) -> RateLimit {
        app.access.rate_limit.unwrap_or(self.default)
    }

    /// Takes one call from `app`'s bucket at `now` (the injected clock, so tests move time
    /// instead of sleeping); the limit in force when there is none left.
    pub fn acquire(&self, app: &App, now: DateTime<Utc>) -> Result<(), RateLimit> {
        let limit = self.effective(app);
        let RateLimit::Limited {
            requests,
            period,
            burst,
        } = limit
        else {
            return Ok(());
        };
        // At most 3600 s / 1 call: the interval fits easily; at least 1 µs (1,000,000/s).
        let interval = (i64::from(period.seconds()) * 1_000_000 / i64::from(requests)).max(1);
        let tolerance = interval.saturating_mul(i64::from(burst) - 1);
        let now = now.timestamp_micros();
        let bucket = self.bucket(&app.app_key, now);
        let mut b = bucket.lock().unwrap_or_else(PoisonError::into_inner);
        let start = b.full_at_us.max(now);
        if start - now > tolerance {
            return Err(limit);
        }
        b.full_at_us = start.saturating_add(interval);
        Ok(())
    }

    /// The app's bucket, created full on its first call.
    fn bucket(&self, key: &AppKey, now_us: i64) -> Arc<Mutex<Bucket>> {
        if let Some(b) = self
            .buckets
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(key)
        {
            return Arc::clone(b);
        }
        let mut buckets = self.buckets.write().unwrap_or_else(PoisonError::into_inner);
        Arc::clone(
            buckets
                .entry(key.clone())
                .or_insert_with(|| Arc::new(Mutex::new(Bucket { full_at_us: now_us }))),
        )
    }
}

#[cfg(test)]
mod tests {
    use chrono::Duration;
    use ticket_ledger::{AppAccess, IpRange};

    use super::*;

    fn app(rate: Option<&str>, burst: Option<u32>, allow: &[&str]) -> App {
        let mut app = App::new(
            AppKey::parse("k").expect("key"),
            "n".into(),
            "s".into(),
            DateTime::UNIX_EPOCH,
        );
        app.access = AppAccess {
            rate_limit: rate.map(|r| RateLimit::parse(r, burst).expect("rate")),
            ip_allowlist: allow
                .iter()
                .map(|r| IpRange::parse(r).expect("range"))
                .collect(),
        };
        app
    }

    fn ctx(ip: Option<&str>, at: DateTime<Utc>) -> CallContext {
        CallContext {
            request_id: "r".into(),
            received_at: at,
            client_ip: ip.map(str::to_owned),
        }
    }

    #[test]
    fn a_bucket_allows_its_burst_then_refills_at_its_rate() {
        let t0 = DateTime::UNIX_EPOCH;
        let limiter = RateLimiter::new(RateLimit::Unlimited);
        let app = app(Some("2/s"), Some(3), &[]);
        for i in 0..3 {
            assert_eq!(limiter.acquire(&app, t0), Ok(()), "call {i} of the burst");
        }
        assert!(limiter.acquire(&app, t0).is_err(), "the burst is spent");
        assert!(
            limiter
                .acquire(&app, t0 + Duration::milliseconds(499))
                .is_err(),
            "not yet one token back"
        );
        assert_eq!(
            limiter.acquire(&app, t0 + Duration::milliseconds(500)),
            Ok(())
        );
        // Ten seconds refill at most the burst.
        let later = t0 + Duration::seconds(10);
        for _ in 0..3 {
            assert_eq!(limiter.acquire(&app, later), Ok(()));
        }
        assert!(limiter.acquire(&app, later).is_err());
        // A clock stepping back refills nothing.
        assert!(limiter.acquire(&app, t0).is_err());
    }

    #[test]
    fn the_server_default_applies_to_apps_without_a_rate_and_unlimited_overrides_it() {
        let t0 = DateTime::UNIX_EPOCH;
        let limiter = RateLimiter::new(RateLimit::parse("1/m", None).expect("rate"));
        let plain = app(None, None, &[]);
        assert_eq!(limiter.acquire(&plain, t0), Ok(()));
        assert!(limiter.acquire(&plain, t0).is_err());
        let mut free = app(Some("unlimited"), None, &[]);
        free.app_key = AppKey::parse("free").expect("key");
        for _ in 0..100 {
            assert_eq!(limiter.acquire(&free, t0), Ok(()));
        }
    }

    #[test]
    fn allow_lists_refuse_other_and_unknown_addresses_with_11_before_the_rate() {
        let t0 = DateTime::UNIX_EPOCH;
        let limiter = RateLimiter::new(RateLimit::Unlimited);
        let app = app(Some("1/h"), None, &["10.0.0.0/8", "::1"]);
        let refused = check(&limiter, &app, &ctx(Some("127.0.0.1"), t0)).expect_err("outside");
        assert_eq!(
            (refused.code, refused.sub_code.as_deref()),
            (11, Some(IP_NOT_ALLOWED))
        );
        assert_eq!(
            refused.sub_msg.as_deref(),
            Some("调用方IP 127.0.0.1 不在该应用的IP白名单内")
        );
        assert!(check(&limiter, &app, &ctx(None, t0)).is_err(), "no address");
        assert_eq!(check(&limiter, &app, &ctx(Some("10.1.2.3"), t0)), Ok(()));
        let limited = check(&limiter, &app, &ctx(Some("::1"), t0)).expect_err("over the rate");
        assert_eq!(
            (limited.code, limited.sub_code.as_deref()),
            (7, Some(RATE_LIMITED))
        );
    }
}
