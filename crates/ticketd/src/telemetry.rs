//! Structured logging. Lines carry `request_id` for every TOP call; secrets, `sign` and whole
//! confirm codes are never logged (handlers log masked codes only).

use tracing_subscriber::EnvFilter;

use crate::settings::LogFormat;

/// Installs the global subscriber. The filter comes from `TICKETD_LOG` (e.g. `debug`,
/// `ticketd=debug,info`), defaulting to `info`. Safe to call more than once: later calls are
/// ignored, which keeps tests that build several servers quiet and panic-free.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_env("TICKETD_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}
