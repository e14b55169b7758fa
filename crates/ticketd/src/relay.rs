//! The change events' relay to NATS JetStream (`ticketd serve --events-nats URL`).
//!
//! Every event of the feed (`GET /admin/events`) is published to the stream `--events-stream`
//! (created if missing, subjects `ticketd.events.>`) under `ticketd.events.<type without the
//! ticketd. prefix>`, its body the event's JSON exactly as the feed gives it, with the header
//! `Nats-Msg-Id` = the event's `id`, so that JetStream drops a copy sent twice.
//!
//! - **Where it stands is in the ledger** (`ledger_event_relay.position`, the last `seq`
//!   JetStream acknowledged), moved only after JetStream acknowledged every event up to it. A
//!   relay that dies re-sends at most what it had not recorded, which JetStream drops.
//! - **One relay per ledger**: a process relays only while it holds the relay's lease in the
//!   ledger ([`LEASE`], renewed every round); when it dies another process takes over once the
//!   lease expires.
//! - **NATS down or slow never blocks a verify**: events wait in the ledger; the relay retries
//!   every [`RETRY`] and catches up in order. Its lag (events and seconds) is on `/metrics`.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use ticket_ledger::{EventPage, LedgerStore};
use tokio::sync::watch;

use crate::clock::Clock;

/// How long a lease lasts without renewal: a relay that stops renewing (killed) is replaced
/// within this.
pub const LEASE: Duration = Duration::from_secs(10);

/// Pause before trying again after NATS or the ledger failed, or while another process holds
/// the lease.
pub const RETRY: Duration = Duration::from_secs(1);

/// Pause between two reads of the ledger when everything is relayed.
pub const IDLE: Duration = Duration::from_millis(50);

/// Events read and published per round.
pub const PAGE: u32 = 500;

/// The subjects of the stream; each event goes to `ticketd.events.<type suffix>`.
pub const SUBJECTS: &str = "ticketd.events.>";

/// Where to relay.
#[derive(Debug, Clone)]
pub struct RelayTarget {
    /// `nats://host:port`.
    pub url: String,
    /// The JetStream stream.
    pub stream: String,
}

/// The relay's state, for `/metrics`.
#[derive(Debug, Default)]
pub struct RelayStatus {
    /// Whether this process runs a relay at all.
    pub enabled: AtomicBool,
    /// Whether it holds the lease now.
    pub leading: AtomicBool,
    /// Events written but not yet acknowledged by JetStream (as last seen).
    pub lag_events: AtomicI64,
    /// Milliseconds since the oldest event not yet acknowledged was made (0 when none).
    pub lag_ms: AtomicI64,
    /// Events JetStream acknowledged since this process started.
    pub published: AtomicI64,
}

/// The subject of an event of type `kind`.
pub fn subject(kind: &str) -> String {
    format!(
        "ticketd.events.{}",
        kind.strip_prefix("ticketd.").unwrap_or(kind)
    )
}

/// Runs the relay until `stopping` turns true.
pub async fn run(
    store: Arc<dyn LedgerStore>,
    clock: Arc<dyn Clock>,
    target: RelayTarget,
    status: Arc<RelayStatus>,
    mut stopping: watch::Receiver<bool>,
) {
    status.enabled.store(true, Ordering::Relaxed);
    // A holder name of its own: this process, this run.
    let holder = format!("{}-{:016x}", std::process::id(), rand::random::<u64>());
    let mut stream: Option<jetstream::Context> = None;
    let mut lease = Lease::default();
    while !*stopping.borrow() {
        let pause = match round(
            &*store,
            &*clock,
            &target,
            &holder,
            &status,
            &mut stream,
            &mut lease,
        )
        .await
        {
            Ok(Some(pause)) => pause,
            Ok(None) => continue,
            Err(e) => {
                tracing::warn!(error = %e, "relaying events to NATS failed; retrying");
                stream = None;
                lease = Lease::default();
                RETRY
            }
        };
        tokio::select! {
            _ = stopping.changed() => {}
            () = tokio::time::sleep(pause) => {}
        }
    }
}

/// What this process knows of its lease: the position it last read or moved, and when to
/// renew. Renewing is a write to the ledger, so it is done a third of the way into the lease,
/// not every round (an idle relay polls every [`IDLE`]).
#[derive(Debug, Default)]
struct Lease {
    held: Option<(i64, tokio::time::Instant)>,
}

/// One round: claim the lease (when due), read what is not relayed, publish it, wait for
/// every ack, move the position. `Ok(None)`: go on at once; `Ok(Some(pause))`: wait that long
/// first.
async fn round(
    store: &dyn LedgerStore,
    clock: &dyn Clock,
    target: &RelayTarget,
    holder: &str,
    status: &RelayStatus,
    stream: &mut Option<jetstream::Context>,
    lease: &mut Lease,
) -> anyhow::Result<Option<Duration>> {
    let now = clock.now();
    let position = match lease.held {
        Some((position, renew_at)) if tokio::time::Instant::now() < renew_at => position,
        _ => {
            let Some(position) = store
                .claim_relay(holder, now, chrono::Duration::from_std(LEASE)?)
                .await?
            else {
                lease.held = None;
                status.leading.store(false, Ordering::Relaxed);
                return Ok(Some(RETRY));
            };
            lease.held = Some((position, tokio::time::Instant::now() + LEASE / 3));
            position
        }
    };
    status.leading.store(true, Ordering::Relaxed);
    let page = store.events(position, PAGE).await?;
    record_lag(status, &page, position, now);
    let Some(last) = page.events.last().map(|e| e.seq) else {
        return Ok(Some(IDLE));
    };
    let js = match stream {
        Some(js) => js.clone(),
        None => {
            let js = connect(target).await?;
            *stream = Some(js.clone());
            js
        }
    };
    let mut acks = Vec::with_capacity(page.events.len());
    for event in &page.events {
        let body = serde_json::to_vec(&event.cloud_event(&page.ledger_id))?;
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(
            async_nats::header::NATS_MESSAGE_ID,
            format!("{}-{}", page.ledger_id, event.seq).as_str(),
        );
        acks.push(
            js.publish_with_headers(subject(&event.kind), headers, body.into())
                .await?,
        );
    }
    for ack in acks {
        ack.await?;
    }
    if !store.advance_relay(holder, position, last).await? {
        // Another process took the lease meanwhile: it goes on from where it stands.
        lease.held = None;
        status.leading.store(false, Ordering::Relaxed);
        return Ok(Some(RETRY));
    }
    if let Some((held, _)) = &mut lease.held {
        *held = last;
    }
    let sent = i64::try_from(page.events.len()).unwrap_or(i64::MAX);
    status.published.fetch_add(sent, Ordering::Relaxed);
    status
        .lag_events
        .store(page.last_seq.saturating_sub(last).max(0), Ordering::Relaxed);
    Ok(None)
}

/// Connects and makes sure the stream exists.
async fn connect(target: &RelayTarget) -> anyhow::Result<jetstream::Context> {
    let client = async_nats::ConnectOptions::new()
        .connection_timeout(Duration::from_secs(5))
        .connect(target.url.as_str())
        .await?;
    let js = jetstream::new(client);
    js.get_or_create_stream(jetstream::stream::Config {
        name: target.stream.clone(),
        subjects: vec![SUBJECTS.to_owned()],
        ..Default::default()
    })
    .await?;
    Ok(js)
}

/// The lag as this round saw it: events not relayed, and the age of the oldest of them.
fn record_lag(
    status: &RelayStatus,
    page: &EventPage,
    position: i64,
    now: chrono::DateTime<chrono::Utc>,
) {
    status.lag_events.store(
        page.last_seq.saturating_sub(position).max(0),
        Ordering::Relaxed,
    );
    let age = page
        .events
        .first()
        .map_or(0, |e| (now - e.at).num_milliseconds().max(0));
    status.lag_ms.store(age, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_drop_the_prefix() {
        assert_eq!(
            subject("ticketd.voucher.used"),
            "ticketd.events.voucher.used"
        );
        assert_eq!(subject("odd"), "ticketd.events.odd");
    }
}
