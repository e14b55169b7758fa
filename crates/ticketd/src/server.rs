//! Building and running the server: open the store chosen by the database URL, settle the
//! admin token, bind, serve until the shutdown future completes, then drain.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use ticket_ledger::{LedgerStore, VerifyPolicy};
use ticket_store::{Engine, PoolSettings, SqlStore, SqliteStore, Transfer};
use tokio::net::TcpListener;

use crate::clock::{Clock, SystemClock};
use crate::settings::Settings;

/// What every handler shares. Cheap to clone (all `Arc`s).
#[derive(Debug, Clone)]
pub struct AppState {
    /// The ledger. `dyn` so the backend is chosen at run time by URL scheme.
    pub store: Arc<dyn LedgerStore>,
    /// "Now" for timestamps and audit records.
    pub clock: Arc<dyn Clock>,
    /// The admin API's bearer token.
    pub admin_token: Arc<str>,
    /// TOP `timestamp` tolerance.
    pub timestamp_window: chrono::Duration,
    /// Date rules handed to every verify.
    pub verify_policy: VerifyPolicy,
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// How long after a use it may be reversed.
    pub reversal_window: chrono::Duration,
    /// Counters and histograms for `/metrics`.
    pub metrics: Arc<crate::metrics::Metrics>,
}

/// A built, bound, not yet running server.
#[derive(Debug)]
pub struct Application {
    listener: TcpListener,
    state: AppState,
}

impl Application {
    /// Opens the store, resolves the admin token and binds the listener.
    pub async fn build(settings: &Settings) -> anyhow::Result<Self> {
        Self::build_with_clock(settings, Arc::new(SystemClock)).await
    }

    /// [`Application::build`] with an injected clock (tests).
    pub async fn build_with_clock(
        settings: &Settings,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<Self> {
        let url = settings.database_url();
        let store = open_store(&url, &settings.db_pool.pool_settings())
            .await?
            .ledger;
        let admin_token = resolve_admin_token(settings)?;
        let listener = TcpListener::bind(settings.listen)
            .await
            .with_context(|| format!("cannot listen on {}", settings.listen))?;
        let window = chrono::Duration::seconds(i64::from(settings.timestamp_window));
        let state = AppState {
            store,
            clock,
            admin_token: admin_token.into(),
            timestamp_window: window,
            verify_policy: VerifyPolicy {
                future_tolerance: window,
                allow_before_valid_from: settings.allow_early_use,
            },
            max_body_bytes: settings.max_body_bytes,
            reversal_window: settings.reversal_window,
            metrics: Arc::default(),
        };
        Ok(Self { listener, state })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        Ok(self.listener.local_addr()?)
    }

    /// The shared state (tests and the demo seed use its store directly).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` completes, then stops accepting, finishes in-flight requests and
    /// waits for the store to flush its last batch.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let app = router(self.state.clone());
        axum::serve(
            self.listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(shutdown)
        .await
        .context("server failed")?;
        self.state.store.close().await;
        Ok(())
    }
}

/// The whole HTTP surface: the TOP gateway and the admin API.
pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(crate::gateway::router())
        .merge(crate::admin::router(state.clone()))
        .with_state(state)
}

/// The ledger behind a database URL: as the domain uses it, and as `ticketd export`/`import`
/// copy it (the same store, two views).
#[derive(Debug, Clone)]
pub struct OpenedStore {
    /// The ledger.
    pub ledger: Arc<dyn LedgerStore>,
    /// Bulk export and import of the same store.
    pub transfer: Arc<dyn Transfer>,
    /// The schema version the database is at.
    pub schema_version: i64,
}

/// Opens the store the URL's scheme picks (STYLE.md §1: one binary, several backends, like
/// vaultwarden's `DbConnType::from_url`): `sqlite:`, `postgres://` / `postgresql://`,
/// `mysql://` / `mariadb://`. Opening applies the embedded migrations; `pool` sizes the
/// PostgreSQL and MySQL/MariaDB connection pools.
pub async fn open_store(url: &str, pool: &PoolSettings) -> anyhow::Result<OpenedStore> {
    let scheme = url
        .split_once(':')
        .map(|(s, _)| s.to_ascii_lowercase())
        .unwrap_or_default();
    if scheme == "sqlite" {
        let store = Arc::new(
            SqliteStore::open_url(url)
                .with_context(|| format!("cannot open the SQLite ledger at {url}"))?,
        );
        return Ok(OpenedStore {
            schema_version: store.schema_version(),
            ledger: store.clone(),
            transfer: store,
        });
    }
    let Some(engine) = Engine::from_url(url) else {
        anyhow::bail!(
            "unsupported database URL scheme {scheme:?}: use sqlite://, postgres://, \
             postgresql://, mysql:// or mariadb://"
        );
    };
    let store = Arc::new(
        SqlStore::connect(url, pool)
            .await
            .with_context(|| format!("cannot open the {} ledger", engine.name()))?,
    );
    Ok(OpenedStore {
        schema_version: store.schema_version(),
        ledger: store.clone(),
        transfer: store,
    })
}

/// The token from the settings, or the one kept in the data directory, or a new one written
/// there with owner-only permissions.
fn resolve_admin_token(settings: &Settings) -> anyhow::Result<String> {
    if let Some(token) = settings.admin_token.as_deref().filter(|t| !t.is_empty()) {
        return Ok(token.to_owned());
    }
    let path = settings.data_dir.join("admin-token");
    if let Ok(existing) = std::fs::read_to_string(&path) {
        let token = existing.trim().to_owned();
        if !token.is_empty() {
            tracing::info!(path = %path.display(), "admin token loaded");
            return Ok(token);
        }
    }
    let token = random_token();
    write_private(&path, &token)
        .with_context(|| format!("cannot write the admin token to {}", path.display()))?;
    eprintln!("ticketd: generated an admin token in {}", path.display());
    Ok(token)
}

/// 32 random hex characters (128 bits).
pub fn random_token() -> String {
    let bytes: [u8; 16] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes a file readable by its owner only (the directory too, when created).
fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    #[cfg(unix)]
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)?;
        f.write_all(contents.as_bytes())?;
        f.sync_all()
    }
    #[cfg(not(unix))]
    {
        std::fs::write(path, contents)
    }
}
