//! The console's sign-ins: sessions (an opaque random id in a cookie, a CSRF token bound to
//! each) and the per-address limit on sign-in attempts. Both live in this process's memory
//! and both are bounded: a caller, signed in or not, can make ticketd keep at most
//! [`MAX_SESSIONS`] sessions and [`MAX_TRACKED_ADDRESSES`] attempt counters.
//!
//! Sessions are not shared between ticketd processes: an operator behind a load balancer
//! signs in to each process it reaches (or the balancer keeps them on one).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use subtle::ConstantTimeEq;

/// Sessions kept at once; signing in past it ends the session closest to expiring.
pub const MAX_SESSIONS: usize = 256;

/// Sign-in attempts one client address may make per [`ATTEMPT_WINDOW`].
pub const MAX_ATTEMPTS: u32 = 10;

/// The window [`MAX_ATTEMPTS`] counts in.
pub const ATTEMPT_WINDOW: Duration = Duration::from_secs(60);

/// Client addresses whose attempts are counted at once; past it the oldest count is dropped.
pub const MAX_TRACKED_ADDRESSES: usize = 4096;

/// Confirmation tokens a session holds at once; issuing one more forgets the oldest (its
/// page then answers "open the page again" instead of applying).
pub const MAX_PENDING_CONFIRMATIONS: usize = 32;

/// One signed-in operator.
#[derive(Debug, Clone)]
struct Session {
    csrf: String,
    expires: Instant,
    /// One-time tokens of the confirmation pages shown and not yet used.
    pending: std::collections::VecDeque<String>,
}

/// The signed-in sessions.
#[derive(Debug)]
pub struct Sessions {
    ttl: Duration,
    by_id: Mutex<HashMap<String, Session>>,
}

/// A session as a request sees it: its CSRF token, for the forms a page renders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedIn {
    /// The id (the cookie's value), to end it on sign-out.
    pub id: String,
    /// The token every state-changing form carries.
    pub csrf: String,
}

impl SignedIn {
    /// Whether `presented` is this session's CSRF token (compared in constant time).
    pub fn csrf_matches(&self, presented: &str) -> bool {
        !self.csrf.is_empty() && bool::from(presented.as_bytes().ct_eq(self.csrf.as_bytes()))
    }
}

impl Sessions {
    /// Sessions that last `ttl` from sign-in (`--console-session-ttl`).
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            by_id: Mutex::new(HashMap::new()),
        }
    }

    /// How long a session lasts.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Starts a session; answers it.
    pub fn start(&self, now: Instant) -> SignedIn {
        let id = random_token();
        let csrf = random_token();
        let mut map = self.lock();
        map.retain(|_, s| s.expires > now);
        if map.len() >= MAX_SESSIONS {
            if let Some(oldest) = map
                .iter()
                .min_by_key(|(_, s)| s.expires)
                .map(|(id, _)| id.clone())
            {
                map.remove(&oldest);
            }
        }
        map.insert(
            id.clone(),
            Session {
                csrf: csrf.clone(),
                expires: now + self.ttl,
                pending: std::collections::VecDeque::new(),
            },
        );
        SignedIn { id, csrf }
    }

    /// The live session of the cookie value `id`, if any.
    pub fn get(&self, id: &str, now: Instant) -> Option<SignedIn> {
        let mut map = self.lock();
        match map.get(id) {
            Some(s) if s.expires > now => Some(SignedIn {
                id: id.to_owned(),
                csrf: s.csrf.clone(),
            }),
            Some(_) => {
                map.remove(id);
                None
            }
            None => None,
        }
    }

    /// A one-time token for a confirmation page of session `id` (empty when the session is
    /// gone). A confirmed action spends it ([`Sessions::spend`]), so sending the confirmation
    /// twice — a double click, the browser resending a POST — applies the action once.
    pub fn confirmation(&self, id: &str) -> String {
        let mut map = self.lock();
        let Some(session) = map.get_mut(id) else {
            return String::new();
        };
        let token = random_token();
        if session.pending.len() >= MAX_PENDING_CONFIRMATIONS {
            session.pending.pop_front();
        }
        session.pending.push_back(token.clone());
        token
    }

    /// Spends the confirmation token `presented` of session `id`: true the first time it is
    /// presented, false after that or for a token the session never had.
    pub fn spend(&self, id: &str, presented: &str) -> bool {
        let mut map = self.lock();
        let Some(session) = map.get_mut(id) else {
            return false;
        };
        let found = session
            .pending
            .iter()
            .position(|t| bool::from(t.as_bytes().ct_eq(presented.as_bytes())));
        match found {
            Some(i) => session.pending.remove(i).is_some(),
            None => false,
        }
    }

    /// Ends the session `id` (sign-out): its cookie opens nothing from now on.
    pub fn end(&self, id: &str) {
        self.lock().remove(id);
    }

    /// Sessions kept now (expired ones included until the next sign-in sweeps them).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether none is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        // A panic while holding the lock leaves a map that is still consistent (every
        // operation is a single insert or remove): go on with it.
        self.by_id
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// 32 random bytes, hex: a session id or a CSRF token.
fn random_token() -> String {
    let bytes: [u8; 32] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Counts sign-in attempts per client address.
#[derive(Debug, Default)]
pub struct SignInLimiter {
    windows: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

impl SignInLimiter {
    /// Counts an attempt from `addr`; false when it is over [`MAX_ATTEMPTS`] in the current
    /// window (the attempt is then refused without looking at the token).
    pub fn attempt(&self, addr: IpAddr, now: Instant) -> bool {
        let mut map = self
            .windows
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !map.contains_key(&addr) && map.len() >= MAX_TRACKED_ADDRESSES {
            map.retain(|_, (start, _)| now.duration_since(*start) < ATTEMPT_WINDOW);
            if map.len() >= MAX_TRACKED_ADDRESSES {
                if let Some(oldest) = map.iter().min_by_key(|(_, (start, _))| *start) {
                    let oldest = *oldest.0;
                    map.remove(&oldest);
                }
            }
        }
        let entry = map.entry(addr).or_insert((now, 0));
        if now.duration_since(entry.0) >= ATTEMPT_WINDOW {
            *entry = (now, 0);
        }
        entry.1 = entry.1.saturating_add(1);
        entry.1 <= MAX_ATTEMPTS
    }

    /// Addresses counted now.
    pub fn tracked(&self) -> usize {
        self.windows
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn a_session_lasts_its_ttl_and_ends_on_sign_out() {
        let sessions = Sessions::new(Duration::from_secs(60));
        let t0 = Instant::now();
        let s = sessions.start(t0);
        assert_eq!(s.id.len(), 64);
        assert_ne!(s.id, s.csrf);
        assert_eq!(
            sessions.get(&s.id, t0 + Duration::from_secs(59)),
            Some(s.clone())
        );
        assert_eq!(sessions.get(&s.id, t0 + Duration::from_secs(60)), None);
        let again = sessions.start(t0);
        sessions.end(&again.id);
        assert_eq!(sessions.get(&again.id, t0), None);
        assert_eq!(sessions.get("not-a-session", t0), None);
    }

    #[test]
    fn a_confirmation_is_spent_once_and_a_session_holds_few() {
        let sessions = Sessions::new(Duration::from_secs(60));
        let s = sessions.start(Instant::now());
        let token = sessions.confirmation(&s.id);
        assert!(!sessions.spend(&s.id, "forged"));
        assert!(sessions.spend(&s.id, &token));
        assert!(!sessions.spend(&s.id, &token), "spent once");
        let first = sessions.confirmation(&s.id);
        for _ in 0..10 * MAX_PENDING_CONFIRMATIONS {
            sessions.confirmation(&s.id);
        }
        assert!(!sessions.spend(&s.id, &first), "the oldest is forgotten");
        assert_eq!(sessions.confirmation("no-such-session"), "");
        assert!(!sessions.spend("no-such-session", ""));
    }

    #[test]
    fn csrf_tokens_must_match_exactly() {
        let s = Sessions::new(Duration::from_secs(60)).start(Instant::now());
        assert!(s.csrf_matches(&s.csrf.clone()));
        assert!(!s.csrf_matches(""));
        assert!(!s.csrf_matches(&s.csrf[..63]));
        assert!(!s.csrf_matches(&format!("{}0", s.csrf)));
    }

    #[test]
    fn sessions_stay_bounded_however_many_sign_ins() {
        let sessions = Sessions::new(Duration::from_secs(3600));
        let t0 = Instant::now();
        let first = sessions.start(t0);
        for i in 0..(MAX_SESSIONS * 10) {
            sessions.start(t0 + Duration::from_millis(i as u64 + 1));
        }
        assert_eq!(sessions.len(), MAX_SESSIONS);
        // The session closest to expiring made room first.
        assert_eq!(sessions.get(&first.id, t0), None);
    }

    #[test]
    fn sign_in_attempts_are_limited_per_address_and_the_counters_are_bounded() {
        let limiter = SignInLimiter::default();
        let t0 = Instant::now();
        let one: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..MAX_ATTEMPTS {
            assert!(limiter.attempt(one, t0));
        }
        assert!(!limiter.attempt(one, t0));
        assert!(!limiter.attempt(one, t0 + ATTEMPT_WINDOW / 2));
        assert!(limiter.attempt(one, t0 + ATTEMPT_WINDOW), "a new window");
        for i in 0..(MAX_TRACKED_ADDRESSES as u32 * 4) {
            let addr = IpAddr::from(std::net::Ipv6Addr::from(u128::from(i) + 1));
            limiter.attempt(addr, t0 + ATTEMPT_WINDOW);
        }
        assert!(limiter.tracked() <= MAX_TRACKED_ADDRESSES);
    }
}
