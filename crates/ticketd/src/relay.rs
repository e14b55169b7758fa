//! The change events' relay to NATS JetStream (`ticketd serve --events-nats URL`).
//!
//! Every event of the feed (`GET /admin/events`) is published to the stream `--events-stream`
//! (created if missing, subjects `ticketd.events.>`) under `ticketd.events.<type without the
//! ticketd. prefix>`, its body the event's JSON exactly as the feed gives it, with the header
//! `Nats-Msg-Id` = the event's `id`, so that JetStream drops a copy sent twice.
//!
//! - **Where it stands is in the ledger** (`ledger_event_relay.position`, the last `seq`
//!   JetStream acknowledged), moved only after JetStream confirmed every event up to it: a page
//!   of events goes out as a chain that JetStream stores only in order, and the last event's
//!   acknowledgement confirms the page (see `publish_chained`). A relay that dies re-sends at
//!   most what it had not recorded, which JetStream drops.
//! - **One relay per ledger**: a process relays only while it holds the relay's lease in the
//!   ledger ([`LEASE`], renewed a third of the way into it); when it dies another process takes
//!   over once the lease expires.
//! - **NATS down or slow never blocks a verify**: events wait in the ledger; the relay retries
//!   every [`RETRY`] and catches up in order. Its lag (events and seconds) is on `/metrics`.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use ticket_ledger::{Event, EventPage, LedgerStore};
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
    /// Pages published one event at a time because their chain broke (see
    /// `publish_chained`); growing steadily, it means another publisher writes to the stream.
    pub unchained: AtomicI64,
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
    let mut nats: Option<Nats> = None;
    let mut lease = Lease::default();
    while !*stopping.borrow() {
        let pause = match round(
            &*store, &*clock, &target, &holder, &status, &mut nats, &mut lease,
        )
        .await
        {
            Ok(Some(pause)) => pause,
            Ok(None) => continue,
            Err(e) => {
                tracing::warn!(error = %e, "relaying events to NATS failed; retrying");
                nats = None;
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
    nats: &mut Option<Nats>,
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
    let nats = match nats {
        Some(nats) => nats.clone(),
        None => {
            let connected = connect(target).await?;
            *nats = Some(connected.clone());
            connected
        }
    };
    // A page of one event is a chain too: its expected last id is what tells the relay that
    // another publisher wrote to the stream since, whatever the size of the page.
    let (confirmed, failed) = if publish_chained(&nats, &page, position).await? {
        (last, Ok(()))
    } else {
        status.unchained.fetch_add(1, Ordering::Relaxed);
        publish_one_by_one(&nats, &page, position).await
    };
    if confirmed > position {
        if !store.advance_relay(holder, position, confirmed).await? {
            // Another process took the lease meanwhile: it goes on from where it stands.
            lease.held = None;
            status.leading.store(false, Ordering::Relaxed);
            return Ok(Some(RETRY));
        }
        if let Some((held, _)) = &mut lease.held {
            *held = confirmed;
        }
        // seqs are consecutive: the events confirmed are the seqs after `position`.
        status
            .published
            .fetch_add(confirmed - position, Ordering::Relaxed);
        status.lag_events.store(
            page.last_seq.saturating_sub(confirmed).max(0),
            Ordering::Relaxed,
        );
    }
    // What JetStream refused stops the relay before that event, which waits in the ledger.
    failed?;
    Ok(None)
}

/// The relay's connection: the client for the page's unacknowledged publishes and its
/// JetStream context for the acknowledged ones.
#[derive(Clone)]
struct Nats {
    client: async_nats::Client,
    js: jetstream::Context,
}

/// Connects and makes sure the stream exists.
async fn connect(target: &RelayTarget) -> anyhow::Result<Nats> {
    let client = async_nats::ConnectOptions::new()
        .connection_timeout(Duration::from_secs(5))
        .connect(target.url.as_str())
        .await?;
    let js = jetstream::new(client.clone());
    js.get_or_create_stream(jetstream::stream::Config {
        name: target.stream.clone(),
        subjects: vec![SUBJECTS.to_owned()],
        ..Default::default()
    })
    .await?;
    Ok(Nats { client, js })
}

/// The JetStream message id of the event `seq` of the ledger `ledger_id` (the event's `id`).
fn message_id(ledger_id: &str, seq: i64) -> String {
    format!("{ledger_id}-{seq}")
}

/// The event's body and headers: its JSON as the feed gives it, and its message id.
fn message(ledger_id: &str, event: &Event) -> (async_nats::HeaderMap, Vec<u8>) {
    let body = event.to_json(ledger_id).into_bytes();
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(
        async_nats::header::NATS_MESSAGE_ID,
        message_id(ledger_id, event.seq).as_str(),
    );
    (headers, body)
}

/// Publishes a page as one chain and waits for one acknowledgement, the last event's.
///
/// Every event but the last goes out without asking for an answer (JetStream's answer to each
/// costs the server a third of its work per message), each with `Nats-Expected-Last-Msg-Id` =
/// the event before it: JetStream stores it only if that event is the last message it stored,
/// and otherwise drops it, which breaks the chain from there on. So the last event's
/// acknowledgement proves that the event before it was stored, which was itself stored only
/// after the one before it, and so on back to `after`: the whole page is in the stream.
/// Duplicates do not weaken this, because events are stored only in `seq` order (here, and one
/// by one in [`publish_one_by_one`]): an event stored by an earlier run had all the events
/// before it stored too.
///
/// `Ok(false)`: the chain broke — a duplicate (an earlier run published part of the page), a
/// message of another publisher on the stream, NATS restarted and forgot its last message id —
/// and the page must be published one by one.
async fn publish_chained(nats: &Nats, page: &EventPage, after: i64) -> anyhow::Result<bool> {
    let mut previous = (after > 0).then(|| message_id(&page.ledger_id, after));
    let mut last_ack = None;
    let count = page.events.len();
    for (index, event) in page.events.iter().enumerate() {
        let (mut headers, body) = message(&page.ledger_id, event);
        if let Some(previous) = &previous {
            headers.insert(
                async_nats::header::NATS_EXPECTED_LAST_MESSAGE_ID,
                previous.as_str(),
            );
        }
        previous = Some(message_id(&page.ledger_id, event.seq));
        let subject = subject(&event.kind);
        if index + 1 == count {
            last_ack = Some(
                nats.js
                    .publish_with_headers(subject, headers, body.into())
                    .await?,
            );
        } else {
            nats.client
                .publish_with_headers(subject, headers, body.into())
                .await?;
        }
    }
    let Some(ack) = last_ack else {
        return Ok(false);
    };
    match ack.await {
        Ok(ack) => Ok(!ack.duplicate),
        Err(e) if e.kind() == jetstream::context::PublishErrorKind::WrongLastMessageId => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Publishes a page one event at a time, each after the one before it was acknowledged (a
/// duplicate's acknowledgement included: that event is in the stream already). Slower than
/// [`publish_chained`] by a round trip per event; it repairs a broken chain and keeps the
/// stream's events in `seq` order, which the chain's proof relies on.
///
/// Answers the last `seq` acknowledged (`after` if none) and why it stopped before the page's
/// end, if it did: an event JetStream refuses (larger than the stream allows, say) holds the
/// relay there, and the events before it are not sent again.
async fn publish_one_by_one(
    nats: &Nats,
    page: &EventPage,
    after: i64,
) -> (i64, anyhow::Result<()>) {
    let mut confirmed = after;
    for event in &page.events {
        let published = async {
            let (headers, body) = message(&page.ledger_id, event);
            nats.js
                .publish_with_headers(subject(&event.kind), headers, body.into())
                .await?
                .await?;
            anyhow::Ok(())
        };
        if let Err(e) = published.await {
            return (confirmed, Err(e.context(format!("event {}", event.seq))));
        }
        confirmed = event.seq;
    }
    (confirmed, Ok(()))
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
