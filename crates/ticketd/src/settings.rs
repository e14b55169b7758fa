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
    /// the working directory) or `sqlite:///absolute/path.db`. Default: `sqlite://<data-dir>/ticketd.db`.
    #[arg(long, env = "TICKETD_DATABASE_URL")]
    pub database_url: Option<String>,

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

    /// Accept uses dated before an order's `valid_from` (DOMAIN.md R25 refuses them by default).
    #[arg(long, env = "TICKETD_ALLOW_EARLY_USE")]
    pub allow_early_use: bool,

    /// Largest request body accepted, in bytes (999 vouchers take about 100 KB).
    #[arg(long, env = "TICKETD_MAX_BODY_BYTES", default_value_t = 1024 * 1024)]
    pub max_body_bytes: usize,

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
            data_dir,
            admin_token: None,
            timestamp_window: 600,
            allow_early_use: false,
            max_body_bytes: 1024 * 1024,
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
