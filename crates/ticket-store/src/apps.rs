//! [`AppCache`]: the apps every store keeps in memory.
//!
//! The gateway looks an app up on every request, and apps are only ever added (never changed
//! or removed), so each store keeps them in memory and saves a database read per request. A miss
//! still reads the database (and fills the cache), so an app registered by another process on the
//! same database is found too; the cache only ever holds committed apps.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{PoisonError, RwLock};

use ticket_ledger::{App, AppKey, LedgerError};

/// Apps by key. A `std` lock because it is held only to copy a value in or out, never across an
/// `.await`.
#[derive(Debug, Default)]
pub(crate) struct AppCache {
    apps: RwLock<HashMap<AppKey, App>>,
}

impl AppCache {
    /// A cache holding `apps` (read when the store opens).
    pub(crate) fn new(apps: impl IntoIterator<Item = App>) -> Self {
        Self {
            apps: RwLock::new(
                apps.into_iter()
                    .map(|app| (app.app_key.clone(), app))
                    .collect(),
            ),
        }
    }

    /// Remembers a committed app.
    pub(crate) fn insert(&self, app: &App) {
        // A poisoned lock only means a panic elsewhere between two map operations; each entry
        // is still a complete, committed app.
        let mut apps = self.apps.write().unwrap_or_else(PoisonError::into_inner);
        apps.insert(app.app_key.clone(), app.clone());
    }

    /// The cached app, or the one `load` reads from the database (then cached).
    pub(crate) async fn get_or_load<F, Fut>(
        &self,
        key: &AppKey,
        load: F,
    ) -> Result<Option<App>, LedgerError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<App>, LedgerError>>,
    {
        let cached = {
            let apps = self.apps.read().unwrap_or_else(PoisonError::into_inner);
            apps.get(key).cloned()
        };
        if cached.is_some() {
            return Ok(cached);
        }
        let found = load().await?;
        if let Some(app) = &found {
            self.insert(app);
        }
        Ok(found)
    }
}
