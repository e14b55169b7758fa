//! Structured logging. Lines carry `request_id` for every TOP call; secrets, `sign` and whole
//! confirm codes are never logged (handlers log masked codes only).
//!
//! The gateway runs each call inside a `top_call` span carrying its `request_id`; the text
//! format prints span fields before the message, and the JSON format ([`FlatJson`]) writes
//! them into each line as top-level keys, so every line a call causes, whichever module logs
//! it, can be found with one `request_id` filter.

use std::fmt;
use std::io::IsTerminal;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields, MakeWriter};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

use crate::settings::LogFormat;

/// Installs the global subscriber. The filter comes from `TICKETD_LOG` (e.g. `debug`,
/// `ticketd=debug,info`), defaulting to `info`. Safe to call more than once: later calls are
/// ignored, which keeps tests that build several servers quiet and panic-free.
///
/// The text format is coloured only when stderr is a terminal: escape codes are noise in a
/// file, a pipe or the journal, and drawing them was 37 % of the instructions of the line
/// every call logs (420 against 266 million for 20,000 calls; docs/PERFORMANCE.md, "Tenth
/// session").
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_env("TICKETD_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let colour = std::io::stderr().is_terminal();
    // `try_init` also routes the `log` records of dependencies (rustls, hyper) through it.
    let _ = build(format, filter, std::io::stderr, colour).try_init();
}

/// The subscriber [`init`] installs, writing to `writer` (tests capture lines with it), without
/// colours.
pub fn subscriber<W>(
    format: LogFormat,
    filter: EnvFilter,
    writer: W,
) -> Box<dyn Subscriber + Send + Sync>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    build(format, filter, writer, false)
}

fn build<W>(
    format: LogFormat,
    filter: EnvFilter,
    writer: W,
    colour: bool,
) -> Box<dyn Subscriber + Send + Sync>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        .with_writer(writer);
    match format {
        LogFormat::Json => Box::new(
            builder
                .fmt_fields(JsonFields::new())
                .event_format(FlatJson)
                .finish(),
        ),
        LogFormat::Text => Box::new(builder.finish()),
    }
}

/// One JSON object per line: `timestamp` (RFC 3339, UTC), `level`, `target`, `message`, then
/// the fields of every enclosing span and of the event itself, in name order. When a span and
/// the event (or an inner span) name the same field, the innermost wins.
#[derive(Debug, Clone, Copy, Default)]
pub struct FlatJson;

impl<S, N> FormatEvent<S, N> for FlatJson
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let mut line = Map::new();
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                let extensions = span.extensions();
                // Recorded by `JsonFields` (set in `subscriber`): a JSON object's text.
                let Some(fields) = extensions.get::<FormattedFields<N>>() else {
                    continue;
                };
                if let Ok(Value::Object(fields)) = serde_json::from_str::<Value>(fields) {
                    line.extend(fields);
                }
            }
        }
        event.record(&mut JsonVisitor(&mut line));
        // The fixed keys lead, so a line reads well even unparsed; the fields follow by name.
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        let message = line.remove("message").unwrap_or_default();
        write!(
            writer,
            "{{\"timestamp\":{},\"level\":{},\"target\":{},\"message\":{}",
            Value::from(now),
            Value::from(meta.level().as_str()),
            Value::from(meta.target()),
            message
        )?;
        for (key, value) in line {
            if !matches!(key.as_str(), "timestamp" | "level" | "target") {
                write!(writer, ",{}:{value}", Value::from(key))?;
            }
        }
        writeln!(writer, "}}")
    }
}

/// Collects an event's fields as JSON values.
struct JsonVisitor<'a>(&'a mut Map<String, Value>);

impl Visit for JsonVisitor<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().to_owned(), Value::from(format!("{value:?}")));
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::{Arc, Mutex};

    use super::*;

    /// A writer into a shared buffer.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .map_err(|_| std::io::ErrorKind::Other)?
                .extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'w> MakeWriter<'w> for Captured {
        type Writer = Captured;

        fn make_writer(&'w self) -> Self::Writer {
            self.clone()
        }
    }

    #[test]
    fn text_lines_written_to_a_file_carry_no_colour_codes() {
        let out = Captured::default();
        let sub = subscriber(LogFormat::Text, EnvFilter::new("info"), out.clone());
        tracing::subscriber::with_default(sub, || {
            let call = tracing::info_span!("top_call", request_id = "abc123");
            let _call = call.enter();
            tracing::info!(
                method = "taobao.travel.ticket.order.verify",
                "top call answered"
            );
            tracing::warn!("ledger database busy");
        });
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count(), 2, "{text}");
        assert!(!text.contains('\x1b'), "{text:?}");
        assert!(
            text.contains(
                " INFO top_call{request_id=\"abc123\"}: ticketd::telemetry::tests: top call \
                 answered method=\"taobao.travel.ticket.order.verify\""
            ),
            "{text}"
        );
        assert!(
            text.contains(" WARN top_call{request_id=\"abc123\"}: "),
            "{text}"
        );
    }

    #[test]
    fn json_lines_carry_the_fields_of_enclosing_spans() {
        let out = Captured::default();
        let sub = subscriber(LogFormat::Json, EnvFilter::new("debug"), out.clone());
        tracing::subscriber::with_default(sub, || {
            let call = tracing::info_span!("top_call", request_id = "abc123");
            let _call = call.enter();
            let inner = tracing::debug_span!("store", batch = 3_u64);
            let _inner = inner.enter();
            tracing::info!(code = 43, sub_code = "isv.x", "top call refused");
        });
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 1, "{text}");
        let line: Value = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(line["request_id"], "abc123", "{line}");
        assert_eq!(line["batch"], 3, "{line}");
        assert_eq!(line["code"], 43, "{line}");
        assert_eq!(line["sub_code"], "isv.x", "{line}");
        assert_eq!(line["message"], "top call refused", "{line}");
        assert_eq!(line["level"], "INFO", "{line}");
        assert!(line["timestamp"].as_str().unwrap().ends_with('Z'), "{line}");
    }
}
