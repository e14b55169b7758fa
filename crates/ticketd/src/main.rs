//! The `ticketd` binary: parse the command line and hand over to the library.

use clap::Parser;

/// mimalloc rather than the C library's allocator: the gateway allocates and frees small
/// buffers on every request across threads, which glibc's malloc served slowly (consolidating
/// fastbins, locking arenas) and with memory that crept up over hours. Measured in
/// docs/PERFORMANCE.md.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
