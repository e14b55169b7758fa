//! `ticketd bench`: the load generator itself is the `ticketd-bench` crate; this module gives it
//! ticketd as the server `--spawn` starts in this process ([`Ticketd`]), since that crate must
//! not depend on this one.
//!
//! `--spawn process` needs nothing from here: the bench starts this same executable as
//! `ticketd serve`.

use std::sync::Arc;

use ticketd_bench::server::{LocalFuture, Server, ServerOptions, Started};
pub use ticketd_bench::{report, BenchArgs, BenchSignMethod, Form, SpawnMode};

use crate::server::Application;
use crate::settings::Settings;

/// ticketd as the bench's in-process server: the settings of `ticketd serve --data-dir …` with
/// the bench's admin token and database URL, listening on a port of its own on 127.0.0.1.
#[derive(Debug, Clone, Copy, Default)]
pub struct Ticketd;

impl Ticketd {
    fn settings(options: &ServerOptions) -> Settings {
        let mut settings = Settings::for_data_dir(options.data_dir.clone());
        settings.admin_token = Some(options.admin_token.clone());
        settings.database_url = options.database_url.clone();
        settings
    }
}

impl Server for Ticketd {
    fn database_url(&self, options: &ServerOptions) -> String {
        Self::settings(options).database_url()
    }

    fn start(&self, options: ServerOptions) -> LocalFuture<'_, anyhow::Result<Started>> {
        Box::pin(async move {
            let app = Application::build(&Self::settings(&options)).await?;
            Ok(Started {
                addr: app.local_addr()?,
                serve: Box::new(move |stop| Box::pin(app.run_until_stopped(stop))),
            })
        })
    }
}

/// Runs `ticketd bench` and prints its report; see [`ticketd_bench::run`].
pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    ticketd_bench::run(args, Arc::new(Ticketd)).await
}

/// Runs `ticketd bench` and returns its report; see [`ticketd_bench::execute`].
pub async fn execute(args: BenchArgs) -> anyhow::Result<report::Report> {
    ticketd_bench::execute(args, Arc::new(Ticketd)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bench_server_uses_sqlite_in_the_data_dir_unless_told_otherwise() {
        let mut options = ServerOptions {
            data_dir: "/tmp/bench-data".into(),
            database_url: None,
            admin_token: "token".to_owned(),
        };
        assert_eq!(
            Ticketd.database_url(&options),
            "sqlite:///tmp/bench-data/ticketd.db"
        );
        options.database_url = Some("postgres://h/db".to_owned());
        assert_eq!(Ticketd.database_url(&options), "postgres://h/db");
    }
}
