//! Settings of `ticketd serve`. Each field's doc comment is its `--help` text; each flag has a
//! `TICKETD_` environment twin so containers and service units need no command line.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, ValueEnum};

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// Everything `ticketd serve` can be told.
#[derive(Debug, Clone, Args)]
pub struct Settings {
    /// Address the gateway and admin API listen on. Port 0 picks a free port.
    #[arg(long, env = "TICKETD_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Where the ledger lives. The scheme picks the store: `sqlite://path/to.db` (relative to
    /// the working directory) or `sqlite:///absolute/path.db`; `postgres://user:pass@host/db`
    /// (or `postgresql://`); `mysql://user:pass@host/db` (or `mariadb://`) for MySQL 8.0+ and
    /// MariaDB 10.6+. Default: `sqlite://<data-dir>/ticketd.db`.
    #[arg(long, env = "TICKETD_DATABASE_URL")]
    pub database_url: Option<String>,

    /// Connection pool of a PostgreSQL or MySQL/MariaDB ledger.
    #[command(flatten)]
    pub db_pool: PoolArgs,

    /// Directory for the default SQLite file and the generated admin token.
    #[arg(long, env = "TICKETD_DATA_DIR", default_value = "data")]
    pub data_dir: PathBuf,

    /// Bearer token for the admin API. When unset, one is generated on first start and kept in
    /// `<data-dir>/admin-token` (owner-only permissions); its location is printed.
    #[arg(long, env = "TICKETD_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,

    /// Largest accepted difference, in seconds, between a request's `timestamp` and the
    /// server's clock (TOP's rule is 10 minutes). The same tolerance bounds how far in the
    /// future a `used_date` may lie.
    #[arg(long, env = "TICKETD_TIMESTAMP_WINDOW", default_value_t = 600)]
    pub timestamp_window: u32,

    /// Accept uses dated before an order's `valid_from` (docs/DOMAIN.md R25 refuses them by
    /// default).
    #[arg(long, env = "TICKETD_ALLOW_EARLY_USE")]
    pub allow_early_use: bool,

    /// How long after a use an operator may reverse it (`POST /admin/orders/{id}/reversals`):
    /// a number with a unit, `s`, `m`, `h` or `d` (e.g. `90m`, `24h`).
    #[arg(long, env = "TICKETD_REVERSAL_WINDOW", default_value = "24h", value_parser = parse_duration)]
    pub reversal_window: chrono::Duration,

    /// Largest request body accepted, in bytes (999 vouchers take about 100 KB), by the gateway
    /// (code 43 `isv.request-too-large`) and the admin API (HTTP 413) alike.
    #[arg(long, env = "TICKETD_MAX_BODY_BYTES", default_value_t = 1024 * 1024)]
    pub max_body_bytes: usize,

    /// How many calls refused before authentication (bad signature, unknown app key, malformed
    /// request) are kept for `GET /admin/rejected-calls`; older ones are dropped. They never
    /// enter the audit trail, which anyone could otherwise fill. `0` keeps none.
    #[arg(long, env = "TICKETD_REJECTED_CALLS_KEEP", default_value_t = 100_000)]
    pub rejected_calls_keep: u64,

    /// Rate limit of apps that set none of their own (`PATCH /admin/apps/{app_key}`): `50/s`,
    /// `600/m` or `10000/h` (bursts of one period's calls), or `0` for none. Over it a call is
    /// refused with TOP code 7. Each process counts on its own: N processes on one database
    /// let an app make up to N times the rate.
    #[arg(long, env = "TICKETD_DEFAULT_RATE_LIMIT", default_value = "0",
          value_parser = |s: &str| ticket_ledger::RateLimit::parse(s, None))]
    pub default_rate_limit: ticket_ledger::RateLimit,

    /// Serve the admin API and `/healthz`, `/readyz`, `/metrics` on this address only, and
    /// nothing but `/router/rest` on `--listen`. Unset: `--listen` serves both.
    #[arg(long, env = "TICKETD_ADMIN_LISTEN")]
    pub admin_listen: Option<SocketAddr>,

    /// PEM certificate chain (leaf first) to serve HTTPS with, on `--listen` and on
    /// `--admin-listen` alike. Needs `--tls-key`. Read once at start.
    #[arg(long, env = "TICKETD_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key of `--tls-cert` (PKCS#8, PKCS#1 or SEC1).
    #[arg(long, env = "TICKETD_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Connection timeouts and caps (slow and greedy clients).
    #[command(flatten)]
    pub connections: ConnectionArgs,

    /// Publish every change event to NATS JetStream at this URL (`nats://host:4222`): see
    /// docs/EVENTS.md. NATS being down never blocks a verify; events wait in the ledger.
    #[arg(long, env = "TICKETD_EVENTS_NATS")]
    pub events_nats: Option<String>,

    /// The JetStream stream the events go to (created if missing, subjects `ticketd.events.>`).
    #[arg(long, env = "TICKETD_EVENTS_STREAM", default_value = "TICKETD_EVENTS",
          value_parser = stream_name)]
    pub events_stream: String,

    /// How long an operator stays signed in to the console (`/console/`) after signing in.
    #[arg(long, env = "TICKETD_CONSOLE_SESSION_TTL", default_value = "8h",
          value_parser = parse_std_duration)]
    pub console_session_ttl: std::time::Duration,

    /// Seed a demo vendor app and a few issued orders, and print a ready-to-paste `curl`.
    #[arg(long)]
    pub demo: bool,

    /// Log line format.
    #[arg(long, env = "TICKETD_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

impl Settings {
    /// Settings for tests and embedding: port 0 on loopback, the given data directory.
    pub fn for_data_dir(data_dir: PathBuf) -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            database_url: None,
            db_pool: PoolArgs::default(),
            data_dir,
            admin_token: None,
            timestamp_window: 600,
            allow_early_use: false,
            reversal_window: chrono::Duration::hours(24),
            max_body_bytes: 1024 * 1024,
            rejected_calls_keep: 100_000,
            default_rate_limit: ticket_ledger::RateLimit::Unlimited,
            admin_listen: None,
            tls_cert: None,
            tls_key: None,
            connections: ConnectionArgs::default(),
            events_nats: None,
            events_stream: "TICKETD_EVENTS".to_owned(),
            console_session_ttl: std::time::Duration::from_secs(8 * 3600),
            demo: false,
            log_format: LogFormat::Text,
        }
    }

    /// The database URL in force.
    pub fn database_url(&self) -> String {
        match &self.database_url {
            Some(url) => url.clone(),
            None => format!("sqlite://{}", self.data_dir.join("ticketd.db").display()),
        }
    }
}

/// The connection pool of a PostgreSQL or MySQL/MariaDB ledger (SQLite ignores it: it has one
/// writer and its own readers). See docs/OPERATIONS.md for sizing.
#[derive(Debug, Clone, Args)]
pub struct PoolArgs {
    /// Most database connections this process opens (PostgreSQL, MySQL/MariaDB). Each serves
    /// one transaction at a time; all processes together must stay below the server's
    /// `max_connections`.
    #[arg(long, env = "TICKETD_DB_MAX_CONNECTIONS", default_value_t = 16)]
    pub db_max_connections: u32,

    /// Database connections kept open while idle.
    #[arg(long, env = "TICKETD_DB_MIN_CONNECTIONS", default_value_t = 0)]
    pub db_min_connections: u32,

    /// How long a request waits for a free database connection before it is answered with the
    /// retryable `isp.service-busy` (e.g. `5s`).
    #[arg(long, env = "TICKETD_DB_ACQUIRE_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub db_acquire_timeout: chrono::Duration,

    /// How long a statement waits for a row lock another transaction holds before the
    /// transaction is retried (at most 5 attempts, then `isp.service-busy`). MySQL/MariaDB
    /// count whole seconds.
    #[arg(long, env = "TICKETD_DB_LOCK_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub db_lock_timeout: chrono::Duration,

    /// Batches of verifies applied at once, each on its own connection (PostgreSQL,
    /// MySQL/MariaDB): verifies queued together share one transaction and one commit. More
    /// overlap the database's round trips; fewer make bigger batches. Every batch that writes
    /// events holds the event counter through its commit, so commits go one at a time: two
    /// workers (one committing, one gathering and planning) are the pipeline that fits.
    #[arg(long, env = "TICKETD_DB_BATCH_WORKERS", default_value_t = 2)]
    pub db_batch_workers: usize,
}

impl Default for PoolArgs {
    fn default() -> Self {
        let defaults = ticket_store::PoolSettings::default();
        let secs = |d: std::time::Duration| {
            chrono::Duration::from_std(d).unwrap_or(chrono::Duration::seconds(5))
        };
        Self {
            db_max_connections: defaults.max_connections,
            db_min_connections: defaults.min_connections,
            db_acquire_timeout: secs(defaults.acquire_timeout),
            db_lock_timeout: secs(defaults.lock_timeout),
            db_batch_workers: defaults.batch_workers,
        }
    }
}

impl PoolArgs {
    /// The store's pool settings.
    pub fn pool_settings(&self) -> ticket_store::PoolSettings {
        let std = |d: chrono::Duration| d.to_std().unwrap_or_default();
        ticket_store::PoolSettings {
            max_connections: self.db_max_connections,
            min_connections: self.db_min_connections,
            acquire_timeout: std(self.db_acquire_timeout),
            lock_timeout: std(self.db_lock_timeout),
            batch_workers: self.db_batch_workers,
            ..ticket_store::PoolSettings::default()
        }
    }
}

/// How the server treats connections: how long a client may take, how many it may hold.
/// One set for each listener; see `server.rs` for how they are enforced.
#[derive(Debug, Clone, Args)]
pub struct ConnectionArgs {
    /// How long a client may take to send a request's line and headers, counted from when it
    /// connected or got its previous answer (so also how long an idle keep-alive connection
    /// stays open) and bounding the TLS handshake. Past it the connection is closed unanswered.
    #[arg(long, env = "TICKETD_HEADER_TIMEOUT", default_value = "10s", value_parser = parse_std_duration)]
    pub header_timeout: std::time::Duration,

    /// How long a request's whole body may take to arrive once its headers did. Past it a
    /// gateway call is answered with code 43 and `isv.request-timeout`, an admin request with
    /// HTTP 408, and nothing is applied.
    #[arg(long, env = "TICKETD_BODY_TIMEOUT", default_value = "30s", value_parser = parse_std_duration)]
    pub body_timeout: std::time::Duration,

    /// Most connections open at once on each listener. Further clients are not refused: they
    /// wait in the kernel's accept queue until a connection closes.
    #[arg(long, env = "TICKETD_MAX_CONNECTIONS", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,

    /// On SIGTERM or Ctrl-C, how long requests in flight may take to finish before their
    /// connections are cut; the last batch is flushed to the ledger either way.
    #[arg(long, env = "TICKETD_SHUTDOWN_TIMEOUT", default_value = "30s", value_parser = parse_std_duration)]
    pub shutdown_timeout: std::time::Duration,
}

impl Default for ConnectionArgs {
    fn default() -> Self {
        Self {
            header_timeout: std::time::Duration::from_secs(10),
            body_timeout: std::time::Duration::from_secs(30),
            max_connections: 1024,
            shutdown_timeout: std::time::Duration::from_secs(30),
        }
    }
}

/// [`parse_duration`] for timeouts: also `ms`, and never negative.
pub fn parse_std_duration(text: &str) -> Result<std::time::Duration, String> {
    parse_duration(text)?
        .to_std()
        .map_err(|_| format!("{text:?}: must not be negative"))
}

/// Parses `250ms`, `90s`, `15m`, `24h`, `2d` (a bare number means seconds).
pub fn parse_duration(text: &str) -> Result<chrono::Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let n: i64 = number.parse().map_err(|_| bad(text))?;
    let seconds = match unit {
        "ms" => return chrono::Duration::try_milliseconds(n).ok_or_else(|| bad(text)),
        "s" => Some(n),
        "m" => n.checked_mul(60),
        "h" => n.checked_mul(3600),
        "d" => n.checked_mul(86_400),
        _ => None,
    };
    seconds
        .and_then(chrono::Duration::try_seconds)
        .ok_or_else(|| bad(text))
}

fn bad(text: &str) -> String {
    format!("{text:?}: expected a number with ms, s, m, h or d")
}

/// A JetStream stream name: 1 to 255 characters, none of them whitespace, `.`, `*`, `>`, `/`
/// or `\\` (NATS refuses those).
fn stream_name(s: &str) -> Result<String, String> {
    let bad = |c: char| c.is_whitespace() || matches!(c, '.' | '*' | '>' | '/' | '\\');
    if s.is_empty() || s.len() > 255 || s.chars().any(bad) {
        return Err(format!(
            "{s:?} is not a JetStream stream name (1 to 255 characters, no spaces, '.', '*', \
             '>', '/' or '\\')"
        ));
    }
    Ok(s.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_operators_write_them() {
        assert_eq!(parse_duration("24h"), Ok(chrono::Duration::hours(24)));
        assert_eq!(parse_duration("90m"), Ok(chrono::Duration::minutes(90)));
        assert_eq!(parse_duration("3600"), Ok(chrono::Duration::hours(1)));
        assert_eq!(parse_duration("2d"), Ok(chrono::Duration::days(2)));
        assert!(parse_duration("1w").is_err());
        assert!(parse_duration("h").is_err());
        assert_eq!(
            parse_std_duration("250ms"),
            Ok(std::time::Duration::from_millis(250))
        );
        assert!(parse_std_duration("-1s").is_err());
    }

    #[test]
    fn stream_names_nats_refuses_are_refused() {
        assert_eq!(
            super::stream_name("TICKETD_EVENTS").as_deref(),
            Ok("TICKETD_EVENTS")
        );
        for bad in [
            "",
            "a.b",
            "a b",
            "a*",
            "a>",
            "a/b",
            "a\\b",
            &"x".repeat(256),
        ] {
            assert!(super::stream_name(bad).is_err(), "{bad:?}");
        }
    }
}
