//! [`AppCache`]: the apps every store keeps in memory.
//!
//! The gateway looks an app up on every request, so each store keeps apps in memory and saves a
//! database read per request. Apps do change — an operator sets a rate limit or an allow-list,
//! or rotates the secret — and the store that makes a change puts the committed app in the
//! cache at once. Another process on the same database learns of it when its cached copy is
//! older than [`MAX_AGE`] and is read again, so every process applies a change within a few
//! seconds without a database read per request. A miss reads the database (and fills the
//! cache), so an app registered by another process is found at once; the cache only ever holds
//! committed apps.
//!
//! A stale entry is read again by one caller at a time: the others keep answering from the
//! stale copy meanwhile, so the refresh every [`MAX_AGE`] costs one read, not one per request
//! in flight (under load that was dozens of reads on freshly spawned blocking threads).

use std::collections::HashMap;
use std::future::Future;
use std::sync::{PoisonError, RwLock};
use std::time::{Duration, Instant};

use ticket_ledger::{App, AppKey, LedgerError};

/// How long a cached app is used before it is read again: how late a change made by another
/// process may take effect here.
pub(crate) const MAX_AGE: Duration = Duration::from_secs(2);

/// One cached app.
#[derive(Debug, Clone)]
struct Entry {
    app: App,
    /// When it was read (or written through this store).
    read_at: Instant,
    /// Set while one caller reads it again; the others answer from `app` meanwhile.
    refreshing: bool,
}

/// Apps by key. A `std` lock because it is held only to copy a value in or out, never across
/// an `.await`.
#[derive(Debug)]
pub(crate) struct AppCache {
    apps: RwLock<HashMap<AppKey, Entry>>,
    max_age: Duration,
}

impl AppCache {
    /// A cache holding `apps` (read when the store opens).
    pub(crate) fn new(apps: impl IntoIterator<Item = App>) -> Self {
        Self::with_max_age(apps, MAX_AGE)
    }

    fn with_max_age(apps: impl IntoIterator<Item = App>, max_age: Duration) -> Self {
        let now = Instant::now();
        Self {
            apps: RwLock::new(
                apps.into_iter()
                    .map(|app| {
                        let entry = Entry {
                            app: app.clone(),
                            read_at: now,
                            refreshing: false,
                        };
                        (app.app_key, entry)
                    })
                    .collect(),
            ),
            max_age,
        }
    }

    /// Remembers a committed app (new or changed).
    pub(crate) fn insert(&self, app: &App) {
        // A poisoned lock only means a panic elsewhere between two map operations; each entry
        // is still a complete, committed app.
        let mut apps = self.apps.write().unwrap_or_else(PoisonError::into_inner);
        let entry = Entry {
            app: app.clone(),
            read_at: Instant::now(),
            refreshing: false,
        };
        apps.insert(app.app_key.clone(), entry);
    }

    /// The cached app while it is fresh, or the one `load` reads from the database (then
    /// cached). When reading an app already cached fails, the cached copy is answered: the
    /// database being briefly unreachable should not turn away callers it already knew
    /// (every write they cause still needs the database and fails on its own).
    pub(crate) async fn get_or_load<F, Fut>(
        &self,
        key: &AppKey,
        load: F,
    ) -> Result<Option<App>, LedgerError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<App>, LedgerError>>,
    {
        let fresh = {
            let apps = self.apps.read().unwrap_or_else(PoisonError::into_inner);
            match apps.get(key) {
                Some(e) if e.read_at.elapsed() < self.max_age => Some(e.app.clone()),
                _ => None,
            }
        };
        if fresh.is_some() {
            return Ok(fresh);
        }
        // Stale or missing: claim the refresh, or answer the stale copy if another caller is
        // already reading it again.
        let stale = {
            let mut apps = self.apps.write().unwrap_or_else(PoisonError::into_inner);
            match apps.get_mut(key) {
                Some(e) if e.read_at.elapsed() < self.max_age => return Ok(Some(e.app.clone())),
                Some(e) if e.refreshing => return Ok(Some(e.app.clone())),
                Some(e) => {
                    e.refreshing = true;
                    Some(e.app.clone())
                }
                None => None,
            }
        };
        // Released however the read ends — also when this caller's future is dropped midway —
        // so that a later caller can claim the next refresh.
        let _claim = stale.is_some().then_some(RefreshClaim { cache: self, key });
        match (load().await, stale) {
            (Ok(Some(app)), _) => {
                self.insert(&app);
                Ok(Some(app))
            }
            // Apps are never removed, so a cached app that reads as missing can only be a
            // database that was replaced underneath; believe the database.
            (Ok(None), _) => {
                let mut apps = self.apps.write().unwrap_or_else(PoisonError::into_inner);
                apps.remove(key);
                Ok(None)
            }
            (Err(e), Some(app)) => {
                tracing::debug!(error = %e, "re-reading a cached app failed; using the cached copy");
                Ok(Some(app))
            }
            (Err(e), None) => Err(e),
        }
    }
}

/// The refresh of one stale entry, claimed by one caller; dropping it lets the next one claim.
struct RefreshClaim<'a> {
    cache: &'a AppCache,
    key: &'a AppKey,
}

impl Drop for RefreshClaim<'_> {
    fn drop(&mut self) {
        let mut apps = self
            .cache
            .apps
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(e) = apps.get_mut(self.key) {
            e.refreshing = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use chrono::DateTime;

    use super::*;

    fn app(secret: &str) -> App {
        App::new(
            AppKey::parse("k").expect("key"),
            "n".into(),
            secret.into(),
            DateTime::UNIX_EPOCH,
        )
    }

    #[tokio::test]
    async fn fresh_entries_are_answered_from_memory_and_stale_ones_read_again() {
        let key = AppKey::parse("k").expect("key");
        let loads = AtomicUsize::new(0);
        let load = |secret: &'static str| {
            let loads = &loads;
            move || async move {
                loads.fetch_add(1, Ordering::SeqCst);
                Ok(Some(app(secret)))
            }
        };

        let fresh = AppCache::with_max_age([app("one")], Duration::from_secs(3600));
        let got = fresh.get_or_load(&key, load("two")).await.expect("ok");
        assert_eq!(got.map(|a| a.secret), Some("one".to_owned()));
        assert_eq!(loads.load(Ordering::SeqCst), 0, "a fresh entry is not read");

        let stale = AppCache::with_max_age([app("one")], Duration::ZERO);
        let got = stale.get_or_load(&key, load("two")).await.expect("ok");
        assert_eq!(
            got.map(|a| a.secret),
            Some("two".to_owned()),
            "a stale entry is read again (a change made by another process)"
        );
        assert_eq!(loads.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_failed_re_read_answers_the_cached_copy_and_a_miss_the_error() {
        let key = AppKey::parse("k").expect("key");
        let failing = || async { Err(LedgerError::Unavailable("down".into())) };
        let stale = AppCache::with_max_age([app("one")], Duration::ZERO);
        let got = stale.get_or_load(&key, failing).await.expect("cached copy");
        assert_eq!(got.map(|a| a.secret), Some("one".to_owned()));

        let empty = AppCache::with_max_age([], Duration::ZERO);
        let err = empty
            .get_or_load(&key, failing)
            .await
            .expect_err("nothing cached");
        assert_eq!(err, LedgerError::Unavailable("down".into()));
    }

    #[tokio::test]
    async fn a_stale_entry_is_read_again_by_one_caller_while_the_others_answer_the_stale_copy() {
        let key = AppKey::parse("k").expect("key");
        let cache = AppCache::with_max_age([app("one")], Duration::ZERO);
        let (release, released) = tokio::sync::oneshot::channel::<()>();
        let loads = AtomicUsize::new(0);
        let slow_load = || async {
            loads.fetch_add(1, Ordering::SeqCst);
            let _ = released.await;
            Ok(Some(app("two")))
        };
        let refreshing = cache.get_or_load(&key, slow_load);
        tokio::pin!(refreshing);
        // Drive the first caller into its (held) read.
        assert!(futures::poll!(refreshing.as_mut()).is_pending());
        assert_eq!(loads.load(Ordering::SeqCst), 1);

        // Meanwhile every other caller answers the stale copy without a read of its own.
        for _ in 0..10 {
            let got = cache
                .get_or_load(&key, || async {
                    panic!("a second read while one is running")
                })
                .await
                .expect("ok");
            assert_eq!(got.map(|a| a.secret), Some("one".to_owned()));
        }
        release.send(()).expect("release");
        let got = refreshing.await.expect("ok");
        assert_eq!(got.map(|a| a.secret), Some("two".to_owned()));
    }

    #[tokio::test]
    async fn an_abandoned_refresh_lets_the_next_caller_read_again() {
        let key = AppKey::parse("k").expect("key");
        let cache = AppCache::with_max_age([app("one")], Duration::ZERO);
        {
            let abandoned = cache.get_or_load(&key, std::future::pending);
            tokio::pin!(abandoned);
            assert!(futures::poll!(abandoned.as_mut()).is_pending());
        } // dropped mid-read, as when a request is cancelled
        let got = cache
            .get_or_load(&key, || async { Ok(Some(app("two"))) })
            .await
            .expect("ok");
        assert_eq!(got.map(|a| a.secret), Some("two".to_owned()));
    }
}
