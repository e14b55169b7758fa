//! Building and running the server: open the store chosen by the database URL, settle the
//! admin token, bind, serve until the shutdown future completes, then drain.
//!
//! The accept loop is ours rather than `axum::serve`'s, because a server on the internet needs
//! what that one does not offer (README.md, "Running it", lists the flags):
//!
//! - **TLS** (`--tls-cert`, `--tls-key`): rustls with the ring provider, handshaken inside each
//!   connection's task (so a slow handshake never holds up `accept`) within `--header-timeout`.
//! - **Slow clients**: hyper closes a connection that has not sent a whole request head within
//!   `--header-timeout` of connecting or of its previous answer (so the same bound is the
//!   keep-alive idle timeout); the gateway answers a body that has not arrived within
//!   `--body-timeout` with code 43 `isv.request-timeout` ([`read_body_in_time`]), the admin API
//!   with HTTP 408, and a body over `--max-body-bytes` with 413 ([`admin_body_limits`]).
//! - **A connection cap** (`--max-connections`, per listener): the loop takes a permit before it
//!   accepts, so past the cap clients wait in the kernel's backlog until a connection closes.
//! - **Two listeners** when `--admin-listen` is set: the gateway alone on `--listen`, the admin
//!   API and the health endpoints alone on the admin address.
//! - **Graceful shutdown**: on the shutdown future, stop accepting, let every connection answer
//!   the request it is in (closing it afterwards), wait at most `--shutdown-timeout` for them,
//!   then close the store, which commits its last batch.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use http_body_util::BodyExt;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use ticket_ledger::{LedgerStore, VerifyPolicy};
use ticket_store::{Engine, PoolSettings, SqlStore, SqliteStore, Transfer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use top_protocol::{PlatformCode, TopError};
use tower::ServiceExt;

use crate::clock::{Clock, SystemClock};
use crate::settings::{ConnectionArgs, Settings};

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
    /// How long a request's body may take to arrive ([`read_body_in_time`],
    /// [`admin_body_limits`]).
    pub body_timeout: Duration,
    /// How long after a use it may be reversed.
    pub reversal_window: chrono::Duration,
    /// How many refused anonymous calls the ledger keeps (`--rejected-calls-keep`).
    pub rejected_calls_keep: u64,
    /// Counters and histograms for `/metrics`.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Per-app token buckets (in this process's memory) and the default rate limit.
    pub rate_limiter: Arc<crate::gateway::access::RateLimiter>,
    /// The change events' relay to NATS, for `/metrics` (disabled unless `--events-nats`).
    pub relay: Arc<crate::relay::RelayStatus>,
    /// Permits for `GET /admin/events` requests held waiting (`admin::MAX_WAITING`), per
    /// server.
    pub feed_waiting: Arc<tokio::sync::Semaphore>,
    /// The operator console's sessions and sign-in limits.
    pub console: Arc<crate::console::ConsoleState>,
}

/// A built, bound, not yet running server.
pub struct Application {
    /// The gateway's listener, and the admin API's too unless `admin` is set.
    gateway: TcpListener,
    /// The admin API's own listener (`--admin-listen`).
    admin: Option<TcpListener>,
    /// HTTPS on every listener when set (`--tls-cert`, `--tls-key`).
    tls: Option<TlsAcceptor>,
    /// Timeouts and the connection cap.
    connections: ConnectionArgs,
    /// Where the change events are relayed (`--events-nats`), if anywhere.
    relay: Option<crate::relay::RelayTarget>,
    state: AppState,
}

impl std::fmt::Debug for Application {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Application")
            .field("gateway", &self.gateway)
            .field("admin", &self.admin)
            .field("tls", &self.tls.is_some())
            .field("connections", &self.connections)
            .field("state", &self.state)
            .finish()
    }
}

impl Application {
    /// Opens the store, resolves the admin token, loads the TLS certificate and binds the
    /// listeners.
    pub async fn build(settings: &Settings) -> anyhow::Result<Self> {
        Self::build_with_clock(settings, Arc::new(SystemClock)).await
    }

    /// [`Application::build`] with an injected clock (tests).
    pub async fn build_with_clock(
        settings: &Settings,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<Self> {
        // The certificate first: a typo in its path should not cost a migration.
        let tls = match (&settings.tls_cert, &settings.tls_key) {
            (Some(cert), Some(key)) => Some(tls_acceptor(cert, key)?),
            (None, None) => None,
            _ => anyhow::bail!("--tls-cert and --tls-key go together"),
        };
        let url = settings.database_url();
        let store = open_store(&url, &settings.db_pool.pool_settings())
            .await?
            .ledger;
        let admin_token = resolve_admin_token(settings)?;
        let gateway = bind(settings.listen).await?;
        let admin = match settings.admin_listen {
            Some(addr) => Some(bind(addr).await?),
            None => None,
        };
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
            body_timeout: settings.connections.body_timeout,
            reversal_window: settings.reversal_window,
            rejected_calls_keep: settings.rejected_calls_keep,
            metrics: Arc::default(),
            rate_limiter: Arc::new(crate::gateway::access::RateLimiter::new(
                settings.default_rate_limit,
            )),
            relay: Arc::default(),
            feed_waiting: Arc::new(tokio::sync::Semaphore::new(crate::admin::MAX_WAITING)),
            console: Arc::new(crate::console::ConsoleState::new(
                settings.console_session_ttl,
                tls.is_some(),
            )),
        };
        Ok(Self {
            gateway,
            admin,
            tls,
            connections: settings.connections.clone(),
            relay: settings
                .events_nats
                .clone()
                .map(|url| crate::relay::RelayTarget {
                    url,
                    stream: settings.events_stream.clone(),
                }),
            state,
        })
    }

    /// The gateway's address actually bound (useful with port 0).
    pub fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        Ok(self.gateway.local_addr()?)
    }

    /// Where the admin API and the health endpoints are served: the `--admin-listen` address
    /// actually bound, or the gateway's when they share it.
    pub fn admin_addr(&self) -> anyhow::Result<SocketAddr> {
        Ok(self.admin.as_ref().unwrap_or(&self.gateway).local_addr()?)
    }

    /// Whether the admin API has a listener of its own (`--admin-listen`).
    pub fn has_admin_listener(&self) -> bool {
        self.admin.is_some()
    }

    /// Whether the listeners speak HTTPS.
    pub fn uses_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// The shared state (tests and the demo seed use its store directly).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` completes, then stops accepting, finishes in-flight requests
    /// (for at most `--shutdown-timeout`) and waits for the store to flush its last batch.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let Self {
            gateway,
            admin,
            tls,
            connections,
            relay,
            state,
        } = self;
        let served = match admin {
            None => vec![(gateway, router(state.clone()))],
            Some(admin) => vec![
                (gateway, gateway_router(state.clone())),
                (admin, admin_router(state.clone())),
            ],
        };
        // `true` once shutdown began; every accept loop and connection watches it.
        let (stop, stopping) = watch::channel(false);
        let mut listeners = JoinSet::new();
        for (listener, app) in served {
            listeners.spawn(serve(
                listener,
                app,
                tls.clone(),
                connections.clone(),
                stopping.clone(),
            ));
        }
        let relay = relay.map(|target| {
            tokio::spawn(crate::relay::run(
                state.store.clone(),
                state.clock.clone(),
                target,
                state.relay.clone(),
                stopping.clone(),
            ))
        });
        tokio::select! {
            () = shutdown => {}
            // The loops end only when told to, so this is a panic: stop the others too.
            Some(ended) = listeners.join_next() => {
                tracing::error!(?ended, "a listener stopped unexpectedly; shutting down");
            }
        }
        let _ = stop.send(true);
        let mut failure = None;
        while let Some(ended) = listeners.join_next().await {
            if let Err(e) = ended {
                failure = Some(e);
            }
        }
        if let Some(relay) = relay {
            // It stops at its next pause; what it had not recorded is sent again next time.
            if let Err(e) = relay.await {
                tracing::error!(error = %e, "the event relay stopped unexpectedly");
            }
        }
        // After the last answer, so every acknowledged write is in the batch it flushes.
        state.store.close().await;
        match failure {
            Some(e) => Err(anyhow::Error::new(e).context("server failed")),
            None => Ok(()),
        }
    }
}

async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))
}

/// The whole HTTP surface on one listener: the TOP gateway and the admin API.
pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(crate::gateway::router())
        .merge(crate::admin::router(state.clone()))
        .with_state(state)
}

/// The gateway's listener when the admin API has its own: `/router/rest`, 404 elsewhere.
pub fn gateway_router(state: AppState) -> Router {
    crate::gateway::router().with_state(state)
}

/// The `--admin-listen` listener: the admin API and `/healthz`, `/readyz`, `/metrics`.
pub fn admin_router(state: AppState) -> Router {
    crate::admin::router(state.clone()).with_state(state)
}

/// The acceptor for `--tls-cert` and `--tls-key`: TLS 1.2 and 1.3 with rustls's safe defaults
/// on the ring provider (named here, not installed process-wide, so no other crate's choice of
/// provider can change it), HTTP/1.1 by ALPN.
fn tls_acceptor(cert: &Path, key: &Path) -> anyhow::Result<TlsAcceptor> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};

    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("cannot read PEM certificates from {}", cert.display()))?;
    if chain.is_empty() {
        anyhow::bail!("no certificate in {}", cert.display());
    }
    let private_key = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("cannot read a PEM private key from {}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS set-up")?
        .with_no_client_auth()
        .with_single_cert(chain, private_key)
        .with_context(|| {
            format!(
                "the certificate in {} and the key in {} cannot serve TLS together",
                cert.display(),
                key.display()
            )
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Accepts connections on `listener` until shutdown begins, at most `max_connections` open at
/// once; then waits up to `shutdown_timeout` for those open to finish their requests.
async fn serve(
    listener: TcpListener,
    app: Router,
    tls: Option<TlsAcceptor>,
    limits: ConnectionArgs,
    mut stop: watch::Receiver<bool>,
) {
    // One permit per open connection, taken *before* accepting: at the cap the loop stops
    // calling accept, so further clients queue in the kernel's backlog (it refuses them only
    // when that fills) and are served in turn, instead of being accepted and dropped.
    let permits = Arc::new(Semaphore::new(limits.max_connections as usize));
    // Every connection's task, so shutdown can wait for them (and cut them at the deadline).
    let mut connections = JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        let permit = tokio::select! {
            biased;
            () = stopped(&mut stop) => break,
            permit = permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break, // never closed
            },
        };
        let (stream, peer) = tokio::select! {
            biased;
            () = stopped(&mut stop) => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    accept_failed(error, &mut stop).await;
                    continue;
                }
            },
        };
        connections.spawn(connection(
            stream,
            peer,
            app.clone(),
            tls.clone(),
            limits.clone(),
            stop.clone(),
            permit,
        ));
    }
    drop(listener);
    let drained = tokio::time::timeout(limits.shutdown_timeout, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            open = connections.len(),
            "shutdown timeout reached: closing connections with requests still in flight"
        );
        connections.shutdown().await;
    }
}

/// Completes once shutdown began (or once nothing can announce it any more).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stopping| *stopping).await;
}

/// A client that gave up before it was accepted is skipped; anything else (out of file
/// descriptors, say) is logged and retried after a pause, so the loop does not spin.
async fn accept_failed(error: std::io::Error, stop: &mut watch::Receiver<bool>) {
    use std::io::ErrorKind;
    if matches!(
        error.kind(),
        ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset | ErrorKind::ConnectionRefused
    ) {
        return;
    }
    tracing::error!(%error, "accepting a connection failed; retrying in 1 s");
    tokio::select! {
        () = tokio::time::sleep(Duration::from_secs(1)) => {}
        () = stopped(stop) => {}
    }
}

/// One connection, holding one permit of the cap until it closes.
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    app: Router,
    tls: Option<TlsAcceptor>,
    limits: ConnectionArgs,
    stop: watch::Receiver<bool>,
    _permit: OwnedSemaphorePermit,
) {
    // Answers are small and written whole: no reason to let Nagle hold them back.
    let _ = stream.set_nodelay(true);
    let Some(tls) = tls else {
        return http(TokioIo::new(stream), peer, app, &limits, stop).await;
    };
    match tokio::time::timeout(limits.header_timeout, tls.accept(stream)).await {
        Ok(Ok(stream)) => http(TokioIo::new(stream), peer, app, &limits, stop).await,
        Ok(Err(error)) => tracing::debug!(%peer, %error, "TLS handshake failed"),
        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
    }
}

/// Serves HTTP/1.1 requests on one connection until either side closes it, or, once shutdown
/// began, until the request in flight is answered.
async fn http<I>(
    io: I,
    peer: SocketAddr,
    app: Router,
    limits: &ConnectionArgs,
    mut stop: watch::Receiver<bool>,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |request: hyper::Request<_>| {
        let mut request = request.map(Body::new);
        // What axum's `into_make_service_with_connect_info` adds: handlers find the peer with
        // the `ConnectInfo<SocketAddr>` extractor or in the request's extensions.
        request.extensions_mut().insert(ConnectInfo(peer));
        app.clone().oneshot(request)
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    let conn = builder.serve_connection(io, service);
    tokio::pin!(conn);
    let ended = tokio::select! {
        ended = conn.as_mut() => ended,
        () = stopped(&mut stop) => {
            // Closes an idle connection now, a busy one once its answer is written.
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(error) = ended {
        // Header timeouts, resets, malformed requests: the client's doing, not ours.
        tracing::debug!(%peer, %error, "connection ended with an error");
    }
}

/// A gateway request whose body had not arrived by `--body-timeout`.
#[derive(Debug)]
pub struct BodyTimedOut {
    /// The request's head: its query may still say which format to answer in.
    pub parts: axum::http::request::Parts,
}

impl BodyTimedOut {
    /// Code 43 with `isv.request-timeout`: nothing was read or applied, the call may be sent
    /// again.
    pub fn to_top_error(&self) -> TopError {
        TopError::platform(PlatformCode::ParameterError).with_sub(
            top_protocol::error::sub_code::REQUEST_TIMEOUT,
            "请求体接收超时",
        )
    }
}

/// Reads a gateway request's body into memory within `--body-timeout` of its headers, so a
/// client that stalls mid-body, or trickles it, holds a connection for a bounded time.
///
/// Reads at most `max_body_bytes + 1` bytes and leaves a body declared larger unread: either
/// way the gateway's own read then refuses it as too large, exactly as before.
pub async fn read_body_in_time(
    request: Request,
    state: &AppState,
) -> Result<Request, BodyTimedOut> {
    let (parts, body) = request.into_parts();
    match read_within_limits(&parts.headers, body, state).await {
        Ok(bytes) => Ok(Request::from_parts(parts, Body::from(bytes))),
        Err(BodyRefusal::TimedOut) => Err(BodyTimedOut { parts }),
        // Over the limit (declared or sent), or the connection failed: hand the gateway a
        // body that fails, so it answers as it always has (a declared size over the limit is
        // refused from the header, before the body is looked at).
        Err(BodyRefusal::TooLarge | BodyRefusal::Broken(_)) => {
            let failing = futures::stream::once(async {
                Err::<bytes::Bytes, _>(std::io::Error::other("request body not read"))
            });
            Ok(Request::from_parts(parts, Body::from_stream(failing)))
        }
    }
}

/// Why a body was not read whole ([`read_within_limits`]).
#[derive(Debug)]
enum BodyRefusal {
    /// Declared or sent larger than `--max-body-bytes`.
    TooLarge,
    /// Not all there within `--body-timeout`.
    TimedOut,
    /// The connection failed while the body was being sent.
    Broken(axum::Error),
}

/// The whole body, if it is at most `--max-body-bytes` and arrives within `--body-timeout`.
/// A body declared larger is refused without reading a byte of it; one that turns out larger
/// is refused at the first byte over, so memory stays bounded either way.
async fn read_within_limits(
    headers: &header::HeaderMap,
    body: Body,
    state: &AppState,
) -> Result<bytes::Bytes, BodyRefusal> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > state.max_body_bytes) {
        return Err(BodyRefusal::TooLarge);
    }
    let limited = http_body_util::Limited::new(body, state.max_body_bytes);
    match tokio::time::timeout(state.body_timeout, limited.collect()).await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(error)) if error.is::<http_body_util::LengthLimitError>() => {
            Err(BodyRefusal::TooLarge)
        }
        Ok(Err(error)) => Err(BodyRefusal::Broken(axum::Error::new(error))),
        Err(_) => Err(BodyRefusal::TimedOut),
    }
}

/// Holds the admin API to the gateway's limits: a body over `--max-body-bytes` is refused with
/// HTTP 413 and one that has not arrived within `--body-timeout` with 408, both as the admin
/// API's JSON errors (`{"error": …, "message": …}`). The admin router runs it after the token
/// check (`admin::router`), so only an operator's body is ever read.
///
/// Why the admin API needs it: its handlers read bodies with axum's extractors, which cap them
/// at axum's own 2 MiB default and wait for them without a deadline — so a client that
/// stalled mid-body held a connection (and its `--max-connections` slot) until it gave up,
/// the same slow-loris the gateway is protected from. One layer for every admin route keeps the
/// limits in one place rather than in each handler.
pub async fn admin_body_limits(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let (parts, body) = request.into_parts();
    let (status, error, message) = match read_within_limits(&parts.headers, body, &state).await {
        Ok(bytes) => {
            return next
                .run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
        Err(BodyRefusal::TooLarge) => (
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!(
                "the request body is larger than {} bytes (--max-body-bytes)",
                state.max_body_bytes
            ),
        ),
        Err(BodyRefusal::TimedOut) => {
            tracing::info!(path = %parts.uri.path(), "admin request body not received in time");
            (
                StatusCode::REQUEST_TIMEOUT,
                "body_timeout",
                format!(
                    "the request body did not arrive within {:?} (--body-timeout)",
                    state.body_timeout
                ),
            )
        }
        Err(BodyRefusal::Broken(e)) => (
            StatusCode::BAD_REQUEST,
            "invalid_request",
            format!("the request body could not be read: {e}"),
        ),
    };
    let body = serde_json::json!({"error": error, "message": message});
    (status, Json(body)).into_response()
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

/// Opens the store the URL's scheme picks (one binary, several backends, like
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
