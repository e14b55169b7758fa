//! The `ticketd` command line. Each subcommand is a thin shell over the library: `serve` over
//! [`crate::server`], `verify` / `refund` / `issue` over [`crate::client_cli`] (the `top-client`
//! SDK), `migrate` / `export` / `import` over [`crate::transfer`].

use clap::{Parser, Subcommand};

use crate::client_cli::{IssueArgs, RefundArgs, VerifyArgs};
use crate::server::Application;
use crate::settings::Settings;
use crate::transfer::DatabaseArgs;

/// ticketd: the platform side of Fliggy's ticket redemption API (门票核销).
#[derive(Debug, Parser)]
#[command(name = "ticketd", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway (`/router/rest`) and the admin API.
    Serve(Box<Settings>),
    /// Report a redemption (taobao.travel.ticket.order.verify, 核销) as a vendor would.
    Verify(Box<VerifyArgs>),
    /// Report a refund's result (taobao.travel.ticket.order.refund, 退票) as a vendor would.
    Refund(Box<RefundArgs>),
    /// Report issued codes (alitrip.travel.ticket.order.create, 发码) as a vendor would.
    Issue(Box<IssueArgs>),
    /// Apply the database's migrations, print its schema version and exit.
    Migrate(Box<DatabaseArgs>),
    /// Write the whole ledger (apps with secrets, orders, history) as JSON lines to stdout.
    Export(Box<DatabaseArgs>),
    /// Read an export from stdin into an empty ledger (e.g. SQLite → PostgreSQL).
    Import(Box<DatabaseArgs>),
    /// Load-test a server with signed verify traffic and report throughput and latency.
    Bench(Box<crate::bench::BenchArgs>),
}

/// Runs the parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(settings) => serve(*settings).await,
        Command::Verify(args) => crate::client_cli::verify(*args).await,
        Command::Refund(args) => crate::client_cli::refund(*args).await,
        Command::Issue(args) => crate::client_cli::issue(*args).await,
        Command::Migrate(args) => crate::transfer::migrate(*args).await,
        Command::Export(args) => crate::transfer::export(*args).await,
        Command::Import(args) => crate::transfer::import(*args).await,
        Command::Bench(args) => crate::bench::run(*args).await,
    }
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    crate::telemetry::init(settings.log_format);
    let app = Application::build(&settings).await?;
    let addr = app.local_addr()?;
    let scheme = if app.uses_tls() { "https" } else { "http" };
    let database = redact_url(&settings.database_url());
    tracing::info!(%addr, tls = app.uses_tls(), %database, "ticketd listening");
    // Tests and scripts read these lines: keep their form.
    if app.has_admin_listener() {
        let admin = app.admin_addr()?;
        tracing::info!(%admin, "admin API listening");
        eprintln!("ticketd: listening on {scheme}://{addr}/router/rest");
        eprintln!("ticketd: admin API on {scheme}://{admin}/admin");
    } else {
        eprintln!("ticketd: listening on {scheme}://{addr}/router/rest (admin API under /admin)");
    }
    if settings.demo {
        let hint = match settings.admin_token {
            Some(_) => "<the token given with --admin-token>".to_owned(),
            None => format!("$(cat {})", settings.data_dir.join("admin-token").display()),
        };
        let admin_url = format!(
            "{}://{}",
            if app.uses_tls() { "https" } else { "http" },
            app.admin_addr()?
        );
        let gateway_url = format!(
            "{}://{addr}/router/rest",
            if app.uses_tls() { "https" } else { "http" }
        );
        crate::demo::seed(app.state(), &gateway_url, &admin_url, &hint).await?;
    }
    app.run_until_stopped(shutdown_signal()).await?;
    tracing::info!("ticketd stopped");
    Ok(())
}

/// Hides a password in a database URL before it is logged.
fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(start), Some(at)) if at > start => format!("{}://***{}", &url[..start], &url[at..]),
        _ => url.to_owned(),
    }
}

/// Completes on Ctrl-C or SIGTERM, whichever comes first.
async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutdown requested; finishing in-flight requests");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_not_logged() {
        assert_eq!(
            redact_url("postgres://u:secret@db:5432/x"),
            "postgres://***@db:5432/x"
        );
        assert_eq!(redact_url("sqlite://data/t.db"), "sqlite://data/t.db");
    }
}
