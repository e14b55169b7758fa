//! The `ticketd` binary: parse the command line and hand over to the library.

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = ticketd::cli::Cli::parse();
    match ticketd::cli::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ticketd: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
