//! Vendor apps: who may call the gateway, with which secret, from which addresses and how
//! often (docs/PROTOCOL.md §5.1).

use std::fmt;
use std::net::IpAddr;

use chrono::{DateTime, Utc};
use ipnet::IpNet;

use crate::ids::AppKey;

/// A vendor application allowed to call the gateway.
#[derive(Clone, PartialEq, Eq)]
pub struct App {
    /// The key the vendor sends as `app_key`.
    pub app_key: AppKey,
    /// A human name for the operator's screens.
    pub name: String,
    /// The shared signing secret. Never printed by `Debug`.
    pub secret: String,
    /// When the operator registered it.
    pub created_at: DateTime<Utc>,
    /// Its rate limit and IP allow-list.
    pub access: AppAccess,
    /// The secret the last rotation replaced, still accepted until it expires.
    pub previous_secret: Option<PreviousSecret>,
}

impl App {
    /// An app with default access (the server's rate limit, any address) and no previous
    /// secret.
    pub fn new(app_key: AppKey, name: String, secret: String, created_at: DateTime<Utc>) -> Self {
        Self {
            app_key,
            name,
            secret,
            created_at,
            access: AppAccess::default(),
            previous_secret: None,
        }
    }

    /// The secrets a request received at `now` may be signed with: the current one, and the
    /// previous one while its overlap lasts (strictly before `expires_at`).
    pub fn secrets_at(&self, now: DateTime<Utc>) -> Vec<&str> {
        let mut secrets = vec![self.secret.as_str()];
        if let Some(previous) = &self.previous_secret {
            if now < previous.expires_at {
                secrets.push(previous.secret.as_str());
            }
        }
        secrets
    }
}

impl fmt::Debug for App {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("App")
            .field("app_key", &self.app_key)
            .field("name", &self.name)
            .field("secret", &"<redacted>")
            .field("created_at", &self.created_at)
            .field("access", &self.access)
            .field("previous_secret", &self.previous_secret)
            .finish()
    }
}

/// An app to register.
pub type NewApp = App;

/// A secret replaced by a rotation, accepted until `expires_at` so that vendors can switch
/// without a window in which their calls fail.
#[derive(Clone, PartialEq, Eq)]
pub struct PreviousSecret {
    /// The old secret. Never printed by `Debug`.
    pub secret: String,
    /// The first instant it is no longer accepted.
    pub expires_at: DateTime<Utc>,
}

impl fmt::Debug for PreviousSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PreviousSecret")
            .field("secret", &"<redacted>")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// A secret rotation: `new_secret` becomes the secret, the current one becomes the previous
/// secret until `previous_expires_at` (any earlier previous secret is forgotten).
#[derive(Clone, PartialEq, Eq)]
pub struct SecretRotation {
    /// The secret from now on. Never printed by `Debug`.
    pub new_secret: String,
    /// Until when the replaced secret is still accepted (now or earlier: not at all).
    pub previous_expires_at: DateTime<Utc>,
}

impl fmt::Debug for SecretRotation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretRotation")
            .field("new_secret", &"<redacted>")
            .field("previous_expires_at", &self.previous_expires_at)
            .finish()
    }
}

/// Who may call as an app and how often: checked by the gateway after authentication
/// (docs/PROTOCOL.md §5.1, "permissions and rate").
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppAccess {
    /// The app's own rate limit; `None` follows the server's default.
    pub rate_limit: Option<RateLimit>,
    /// Addresses allowed to call as the app; empty allows any.
    pub ip_allowlist: Vec<IpRange>,
}

impl AppAccess {
    /// Most entries an allow-list may hold.
    pub const MAX_ALLOWLIST: usize = 256;

    /// Whether `ip` may call as the app. An IPv4 peer matches IPv4 ranges and IPv6 ranges that
    /// hold its IPv4-mapped form (`::ffff:10.0.0.0/104`); a peer a dual-stack socket reports as
    /// `::ffff:10.0.0.1` matches the same ranges ([`IpRange`]).
    pub fn allows(&self, ip: IpAddr) -> bool {
        self.ip_allowlist.is_empty() || self.ip_allowlist.iter().any(|r| r.contains(ip))
    }

    /// The allow-list as stored: its entries joined by commas, `None` when empty.
    pub fn allowlist_text(&self) -> Option<String> {
        if self.ip_allowlist.is_empty() {
            return None;
        }
        let entries: Vec<String> = self.ip_allowlist.iter().map(IpRange::to_string).collect();
        Some(entries.join(","))
    }

    /// Parses a stored allow-list ([`AppAccess::allowlist_text`]).
    pub fn parse_allowlist(text: &str) -> Result<Vec<IpRange>, String> {
        text.split(',')
            .filter(|e| !e.trim().is_empty())
            .map(IpRange::parse)
            .collect()
    }
}

/// The unit of a [`RateLimit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RatePeriod {
    /// Requests per second (`/s`).
    Second,
    /// Requests per minute (`/m`).
    Minute,
    /// Requests per hour (`/h`).
    Hour,
}

impl RatePeriod {
    /// Its length in seconds.
    pub fn seconds(self) -> u32 {
        match self {
            Self::Second => 1,
            Self::Minute => 60,
            Self::Hour => 3600,
        }
    }

    /// The suffix after `/`.
    pub fn suffix(self) -> &'static str {
        match self {
            Self::Second => "s",
            Self::Minute => "m",
            Self::Hour => "h",
        }
    }
}

/// How often an app may call the gateway: a token bucket that holds at most `burst` calls and
/// refills at `requests` per `period`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RateLimit {
    /// No limit (written `0` or `unlimited`).
    Unlimited,
    /// At most `requests` per `period` on average, `burst` at once.
    Limited {
        /// Calls per period (1..=[`RateLimit::MAX`]).
        requests: u32,
        /// The period.
        period: RatePeriod,
        /// Calls allowed at once after a quiet spell (1..=[`RateLimit::MAX`]).
        burst: u32,
    },
}

impl RateLimit {
    /// The largest `requests` or `burst` accepted.
    pub const MAX: u32 = 1_000_000;

    /// Parses `20/s`, `600/m`, `10000/h` (a burst of one period's calls unless `burst` says
    /// otherwise), or `0` / `unlimited`. The error says what is expected.
    pub fn parse(rate: &str, burst: Option<u32>) -> Result<Self, String> {
        let rate = rate.trim();
        if rate == "0" || rate.eq_ignore_ascii_case("unlimited") {
            return match burst {
                None => Ok(Self::Unlimited),
                Some(_) => Err("a burst needs a limited rate".to_owned()),
            };
        }
        let expected = || {
            format!(
                "{rate:?}: expected <n>/s, <n>/m or <n>/h with n in 1..={}, or 0 for no limit",
                Self::MAX
            )
        };
        let (n, unit) = rate.split_once('/').ok_or_else(expected)?;
        let period = match unit {
            "s" => RatePeriod::Second,
            "m" => RatePeriod::Minute,
            "h" => RatePeriod::Hour,
            _ => return Err(expected()),
        };
        let requests: u32 = digits(n)
            .filter(|n| !n.starts_with('0'))
            .and_then(|n| n.parse().ok())
            .filter(|n| (1..=Self::MAX).contains(n))
            .ok_or_else(expected)?;
        let burst = burst.unwrap_or(requests);
        if !(1..=Self::MAX).contains(&burst) {
            return Err(format!("burst {burst}: expected 1..={}", Self::MAX));
        }
        Ok(Self::Limited {
            requests,
            period,
            burst,
        })
    }

    /// The rate as written: `20/s`, or `unlimited`.
    pub fn rate_text(&self) -> String {
        match self {
            Self::Unlimited => "unlimited".to_owned(),
            Self::Limited {
                requests, period, ..
            } => format!("{requests}/{}", period.suffix()),
        }
    }

    /// The burst, when limited.
    pub fn burst(&self) -> Option<u32> {
        match self {
            Self::Unlimited => None,
            Self::Limited { burst, .. } => Some(*burst),
        }
    }

    /// Calls per second on average, when limited.
    pub fn per_second(&self) -> Option<f64> {
        match self {
            Self::Unlimited => None,
            Self::Limited {
                requests, period, ..
            } => Some(f64::from(*requests) / f64::from(period.seconds())),
        }
    }
}

/// `text` when it is 1 to 9 ASCII digits (no sign, no spaces), so `+5/s` is refused rather
/// than read.
fn digits(text: &str) -> Option<&str> {
    (!text.is_empty() && text.len() <= 9 && text.bytes().all(|b| b.is_ascii_digit()))
        .then_some(text)
}

/// One entry of an IP allow-list: an address (`203.0.113.7`, `::1`) or a CIDR range
/// (`203.0.113.0/24`, `2001:db8::/32`, `::ffff:10.0.0.0/104`), held as an [`IpNet`].
///
/// IPv4 and IPv6 are one address space here, as on a dual-stack socket: the IPv4 address
/// `a.b.c.d` is the IPv4-mapped IPv6 address `::ffff:a.b.c.d`. So `10.0.0.0/8` admits a peer
/// reported as `::ffff:10.1.2.3`, and `::ffff:10.0.0.0/104` (the same range written in IPv6)
/// admits the IPv4 peer `10.1.2.3` — an operator copying ranges from a dual-stack system's
/// logs gets what they wrote. (`::/0` therefore admits every address, IPv4 too.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpRange(IpNet);

impl IpRange {
    /// Parses an address or a CIDR range. A range with host bits set (`10.0.0.1/8`) is
    /// refused: it is almost always a typo, and the error names the range it probably meant.
    /// The text is read here rather than by `IpNet`'s parser, so that a bare address is a
    /// one-address range and a prefix must be plain digits (`/+8` is refused).
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let (addr, prefix) = match text.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text, None),
        };
        let address: IpAddr = addr
            .parse()
            .map_err(|_| format!("{text:?}: expected an IPv4 or IPv6 address or CIDR range"))?;
        let max = max_prefix(address);
        let bad_prefix = || format!("{text:?}: the prefix length must be 0..={max}");
        let prefix = match prefix {
            None => max,
            Some(p) => digits(p)
                .and_then(|p| p.parse::<u8>().ok())
                .ok_or_else(bad_prefix)?,
        };
        let net = IpNet::new(address, prefix).map_err(|_| bad_prefix())?;
        if net.trunc() != net {
            return Err(format!(
                "{text:?} has host bits set; did you mean {}?",
                Self(net.trunc())
            ));
        }
        Ok(Self(net))
    }

    /// The network address.
    pub fn network(&self) -> IpAddr {
        self.0.network()
    }

    /// The prefix length (32 or 128 for a single address).
    pub fn prefix(&self) -> u8 {
        self.0.prefix_len()
    }

    /// Whether `ip` lies in the range, an IPv4 address and its IPv4-mapped IPv6 form being the
    /// same address (see the type's doc).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.0, ip.to_canonical()) {
            (IpNet::V4(net), IpAddr::V4(v4)) => net.contains(&v4),
            (IpNet::V6(net), IpAddr::V4(v4)) => net.contains(&v4.to_ipv6_mapped()),
            (IpNet::V6(net), IpAddr::V6(v6)) => net.contains(&v6),
            // Not IPv4-mapped (canonical above), so outside every IPv4 range.
            (IpNet::V4(_), IpAddr::V6(_)) => false,
        }
    }
}

fn max_prefix(ip: IpAddr) -> u8 {
    if ip.is_ipv4() {
        32
    } else {
        128
    }
}

/// A single address prints bare (`::1`), a range with its prefix (`10.0.0.0/8`).
impl fmt::Display for IpRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.prefix_len() == self.0.max_prefix_len() {
            write!(f, "{}", self.0.addr())
        } else {
            write!(f, "{}", self.0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("an address")
    }

    #[test]
    fn rate_limits_read_as_operators_write_them() {
        assert_eq!(
            RateLimit::parse("20/s", None),
            Ok(RateLimit::Limited {
                requests: 20,
                period: RatePeriod::Second,
                burst: 20
            })
        );
        let per_minute = RateLimit::parse("600/m", Some(5)).expect("600/m");
        assert_eq!(per_minute.rate_text(), "600/m");
        assert_eq!(per_minute.burst(), Some(5));
        assert_eq!(per_minute.per_second(), Some(10.0));
        assert_eq!(RateLimit::parse("0", None), Ok(RateLimit::Unlimited));
        assert_eq!(
            RateLimit::parse("unlimited", None),
            Ok(RateLimit::Unlimited)
        );
        for bad in [
            "",
            "20",
            "0/s",
            "05/s",
            "+5/s",
            "-1/s",
            "20/d",
            "20/ s",
            "2000000/s",
        ] {
            assert!(RateLimit::parse(bad, None).is_err(), "{bad:?}");
        }
        assert!(
            RateLimit::parse("0", Some(3)).is_err(),
            "a burst without a rate"
        );
        assert!(RateLimit::parse("5/s", Some(0)).is_err(), "a zero burst");
    }

    #[test]
    fn ip_ranges_match_their_addresses_only() {
        let net = IpRange::parse("10.0.0.0/8").expect("range");
        assert!(net.contains(ip("10.255.0.1")));
        assert!(!net.contains(ip("11.0.0.1")));
        assert!(!net.contains(ip("::1")));
        assert!(
            net.contains(ip("::ffff:10.1.2.3")),
            "an IPv4-mapped peer is IPv4"
        );
        let host = IpRange::parse("::1").expect("address");
        assert_eq!(host.to_string(), "::1");
        assert!(host.contains(ip("::1")) && !host.contains(ip("::2")));
        let v6 = IpRange::parse("2001:db8::/32").expect("range");
        assert!(v6.contains(ip("2001:db8:ffff::1")) && !v6.contains(ip("2001:db9::1")));
        let any = IpRange::parse("0.0.0.0/0").expect("everything");
        assert!(any.contains(ip("203.0.113.9")));
        assert_eq!(
            IpRange::parse("10.0.0.1/8"),
            Err("\"10.0.0.1/8\" has host bits set; did you mean 10.0.0.0/8?".to_owned())
        );
        for bad in [
            "",
            "10.0.0.0/33",
            "::/129",
            "10.0.0/8",
            "host",
            "10.0.0.0/",
            "1.2.3.4/-1",
        ] {
            assert!(IpRange::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn ipv4_and_its_ipv4_mapped_ipv6_form_match_the_same_ranges() {
        let mapped = IpRange::parse("::ffff:10.0.0.0/104").expect("range");
        assert!(mapped.contains(ip("10.1.2.3")), "an IPv4 peer");
        assert!(mapped.contains(ip("::ffff:10.1.2.3")), "a dual-stack peer");
        assert!(!mapped.contains(ip("11.0.0.1")));
        assert!(
            !mapped.contains(ip("::10.1.2.3")),
            "IPv4-compatible is not mapped"
        );
        assert!(!mapped.contains(ip("2001:db8::1")));
        assert_eq!(mapped.to_string(), "::ffff:10.0.0.0/104");
        let host = IpRange::parse("::ffff:192.0.2.7").expect("one address");
        assert!(host.contains(ip("192.0.2.7")) && !host.contains(ip("192.0.2.8")));
        let all_v4 = IpRange::parse("::ffff:0:0/96").expect("every IPv4 address");
        assert!(all_v4.contains(ip("203.0.113.9")) && !all_v4.contains(ip("::1")));
        let v6_only = IpRange::parse("2001:db8::/32").expect("range");
        assert!(!v6_only.contains(ip("10.1.2.3")));
        assert!(IpRange::parse("::/0")
            .expect("all")
            .contains(ip("10.1.2.3")));
        assert!(!IpRange::parse("0.0.0.0/0")
            .expect("all v4")
            .contains(ip("::1")));
        assert_eq!(
            IpRange::parse("::ffff:10.0.0.1/104"),
            Err(
                "\"::ffff:10.0.0.1/104\" has host bits set; did you mean ::ffff:10.0.0.0/104?"
                    .to_owned()
            )
        );
    }

    #[test]
    fn allow_lists_round_trip_through_their_stored_text() {
        let access = AppAccess {
            rate_limit: None,
            ip_allowlist: vec![
                IpRange::parse("203.0.113.0/24").expect("range"),
                IpRange::parse("::1").expect("address"),
                IpRange::parse("::ffff:10.0.0.0/104").expect("mapped range"),
            ],
        };
        let text = access.allowlist_text().expect("a non-empty list");
        assert_eq!(text, "203.0.113.0/24,::1,::ffff:10.0.0.0/104");
        assert_eq!(AppAccess::parse_allowlist(&text), Ok(access.ip_allowlist));
        assert_eq!(AppAccess::default().allowlist_text(), None);
        assert!(
            AppAccess::default().allows(ip("198.51.100.1")),
            "empty allows any"
        );
    }
}
