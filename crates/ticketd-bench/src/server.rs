//! What the bench needs from the server it starts in its own process (`--spawn` in-process):
//! a [`Server`] the caller passes in. The bench cannot name ticketd itself — ticketd depends on
//! this crate, since `ticketd bench` is one of its subcommands — so ticketd's command line
//! passes its implementation (ticketd's `bench` module).

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;

/// A future the server's own runtime drives. Not `Send`: that runtime's thread runs it with
/// `block_on`, so a server need not make its start-up or serving futures `Send`.
pub type LocalFuture<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

/// The shutdown signal a started server is given: it resolves when the server should stop.
pub type Stop = Pin<Box<dyn Future<Output = ()> + Send>>;

/// How the bench wants its server started, from its own flags.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// The ledger's directory (`--data-dir`, or a temporary directory of the run).
    pub data_dir: PathBuf,
    /// `--database-url`; `None`: the server's default in `data_dir`.
    pub database_url: Option<String>,
    /// The admin API token the bench generated and will use to prepare and check the ledger.
    pub admin_token: String,
}

/// A server that is built and listening, not yet serving.
pub struct Started {
    /// Where it listens: the gateway (`/router/rest`) and the admin API (`/admin`) on one
    /// address.
    pub addr: SocketAddr,
    /// Serves until the [`Stop`] it is given resolves, then stops gracefully (a ledger that
    /// batches its writes flushes them) and says whether it failed.
    pub serve: Box<dyn FnOnce(Stop) -> LocalFuture<'static, anyhow::Result<()>>>,
}

impl fmt::Debug for Started {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Started")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

/// The server `--spawn` starts: ticketd, as its command line passes it.
pub trait Server: Send + Sync {
    /// The database URL a server started with `options` uses: `options.database_url`, or its
    /// default in `options.data_dir`. The report names it, and `--spawn process` passes it to
    /// the child `ticketd serve`.
    fn database_url(&self, options: &ServerOptions) -> String;

    /// Builds a server for `options`, listening on a port of its own on 127.0.0.1, on the
    /// runtime the bench gave it (one of its own, apart from the load generator's). `Err`: it
    /// could not start, and why.
    fn start(&self, options: ServerOptions) -> LocalFuture<'_, anyhow::Result<Started>>;
}
