//! The closed-loop workers, the warm-up, the progress bar, and what they measured.
//!
//! Each worker owns one connection and keeps exactly one request in flight, so
//! `--concurrency` is both the number of connections and the number of requests the server
//! has at once. Workers share only atomics: the next unit of work, the phase flags, the
//! request budget, the count of acknowledged verifies and the per-voucher tallies the
//! verification pass compares with the ledger.
//! Latencies go into a per-worker HDR histogram (no shared lock on the hot path), merged at
//! the end.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::http::{classify, Answer, Connection};
use super::target::{Probe, Resources};
use super::workload::{Form, Kind, Mix, RequestBuilder, Unit, Workload};

/// Highest latency the histograms hold (60 s, in microseconds); slower answers are clamped.
const MAX_LATENCY_US: u64 = 60_000_000;
/// Consecutive connection failures after which a worker gives up (the target is gone).
const MAX_CONSECUTIVE_FAILURES: u32 = 50;
/// Most lines `--timeline` writes (16 bytes each in memory until the run ends).
const TIMELINE_LINES: usize = 4_000_000;

/// One measured request, for `--timeline`.
#[derive(Debug, Clone, Copy)]
struct Sample {
    /// Scheduled send time, from [`Shared::origin`].
    at_us: u64,
    latency_us: u32,
    late_us: u32,
}

/// When the measured phase ends.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Stop {
    Duration(Duration),
    Requests(u64),
}

/// The load shape: the same for the target and the baseline.
#[derive(Debug, Clone)]
pub(crate) struct Shape {
    pub(crate) concurrency: usize,
    pub(crate) warmup: Duration,
    pub(crate) stop: Stop,
    /// Reuse units when they run out (the baseline keeps no ledger).
    pub(crate) wrap_units: bool,
    /// Pace the requests to this many per second in all (see `--rate`).
    pub(crate) rate: Option<f64>,
    /// Write each measured request's schedule and latency here (see `--timeline`).
    pub(crate) timeline: Option<std::path::PathBuf>,
    /// Draw a progress bar on stderr.
    pub(crate) progress: bool,
}

/// Where the gateway is: the socket address to connect to, and the `Host` header and path
/// to send.
#[derive(Debug, Clone)]
pub(crate) struct Gateway {
    pub(crate) addr: SocketAddr,
    pub(crate) host: String,
    pub(crate) path: String,
}

/// What the ledger must show afterwards for every voucher of the prepared orders (all phases,
/// warm-up included), one counter pair per [`Workload::slot`]: a fresh request uses each code
/// of its slot once, so a slot's count is each of its codes' count, and an order's is the sum
/// of its slots × `batch`.
///
/// Preallocated and indexed by the unit the workers already hold, so the hot path pays one
/// relaxed `fetch_add` per fresh answer, as it did when only orders were counted (no map, no
/// counter per code). `u32`: a slot
/// counts at most `--capacity` (≤ 100,000) uses, and half the width halves the memory of a
/// run over millions of codes.
#[derive(Debug)]
pub(crate) struct Tally {
    /// Uses of each code of the slot by fresh requests answered `is_success`.
    pub(crate) acknowledged: Vec<AtomicU32>,
    /// Uses of each code of the slot by fresh requests whose answer was lost (a connection failure after
    /// sending, or an unreadable answer): each may or may not have been applied.
    pub(crate) unknown: Vec<AtomicU32>,
}

impl Tally {
    pub(crate) fn new(slots: usize) -> Self {
        Self {
            acknowledged: (0..slots).map(|_| AtomicU32::new(0)).collect(),
            unknown: (0..slots).map(|_| AtomicU32::new(0)).collect(),
        }
    }
}

/// Requests sent, by kind (measured phase).
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub(crate) struct Kinds {
    pub(crate) fresh: u64,
    pub(crate) replay: u64,
    pub(crate) reject: u64,
}

/// A distinct answer, for the tally by code/sub_code.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum AnswerKey {
    Success,
    Refused { code: u32, sub_code: Option<String> },
    Unreadable { status: u16 },
}

/// Everything one run (target or baseline) measured.
#[derive(Debug)]
pub(crate) struct RunResult {
    /// From the end of the warm-up to the last measured answer.
    pub(crate) elapsed: Duration,
    /// Measured requests that got an answer.
    pub(crate) requests: u64,
    /// Latency of those, in microseconds.
    pub(crate) latency: Histogram<u64>,
    /// With `--rate`: how long after its slot each measured request was sent, in
    /// microseconds (part of `latency`).
    pub(crate) send_lateness: Option<Histogram<u64>>,
    pub(crate) answers: BTreeMap<AnswerKey, u64>,
    pub(crate) kinds: Kinds,
    /// Vouchers in measured fresh requests answered `is_success`.
    pub(crate) vouchers: u64,
    /// Measured answers other than the kind's expected one.
    pub(crate) unexpected: u64,
    /// Warm-up answers other than the kind's expected one (not in `unexpected`, which is of
    /// the measured phase, but just as wrong).
    pub(crate) warmup_unexpected: u64,
    /// Failed connections and lost answers (all phases).
    pub(crate) transport_errors: u64,
    /// The last transport error, for the report.
    pub(crate) last_error: Option<String>,
    /// Requests answered during the warm-up.
    pub(crate) warmup_requests: u64,
    /// The prepared uses ran out before the planned end.
    pub(crate) exhausted: bool,
    pub(crate) ledger: Tally,
    /// The server's RSS and CPU over the measured phase, when it can be observed.
    pub(crate) server: Option<Resources>,
    /// This process's CPU over the measured phase (the load generator, and the server too
    /// when it runs in-process).
    pub(crate) bench_cpu_seconds: Option<f64>,
}

/// What the workers share.
#[derive(Debug)]
struct Shared {
    next_unit: AtomicU64,
    units: u64,
    wrap: bool,
    /// Set once the warm-up is over.
    measuring: AtomicBool,
    /// Set when the run is over: workers stop before their next request.
    stop: AtomicBool,
    /// Measured requests still to start (`i64::MAX` for a timed run).
    budget: AtomicI64,
    /// Measured answers so far (progress).
    done: AtomicU64,
    /// Requests answered `is_success` so far, in every phase: read when the server process is
    /// sampled, so its CPU and bytes written are divided by what was acknowledged between the
    /// same two readings (a warm-up request answered after the first reading counts, as its
    /// work does).
    acknowledged_verifies: AtomicU64,
    exhausted: AtomicBool,
    tally: Tally,
    /// With `--rate`: when the run began, and the next send slot to hand out.
    pace: Option<Pace>,
    /// What `--timeline`'s times count from, and the same instant as wall-clock time.
    origin: (Instant, std::time::SystemTime),
    /// Lines of `--timeline` each worker keeps (0 without it).
    timeline_per_worker: usize,
}

/// Open-loop pacing: slot `k` is due at `start + k / rate`.
///
/// Each worker sleeps until its slot on tokio's timer, which has a millisecond's granularity
/// and rounds up, so sends wake up to about a millisecond late, and latency (measured from the
/// slot) counts that; the report shows how late they were (`send_lateness_ms`). A thread
/// handing out each slot when due instead was measured (2026-12-05, 10,000/s against the same
/// server, alternating): sends 0.10 ms late at the median instead of about 0.8, but the load
/// generator's CPU went from 11 to 19–21 s a minute, the server's from 108–114 to 116–118 µs
/// per verify, and the p99 from 8.4 / 10.4 to 22.3 / 14.5 ms: ten thousand wake-ups a second
/// on two cores cost the server more than the timer's slop.
#[derive(Debug)]
struct Pace {
    start: Instant,
    interval: Duration,
    next: AtomicU64,
}

impl Pace {
    /// The next slot's due time.
    fn next_due(&self) -> Instant {
        let k = self.next.fetch_add(1, Ordering::Relaxed);
        self.start + self.interval.mul_f64(k as f64)
    }
}

impl Shared {
    fn take_unit(&self, w: &Workload) -> Option<Unit> {
        let n = self.next_unit.fetch_add(1, Ordering::Relaxed);
        if n < self.units {
            Some(w.unit(n))
        } else if self.wrap && self.units > 0 {
            Some(w.unit(n % self.units))
        } else {
            None
        }
    }
}

/// One worker's statistics.
#[derive(Debug)]
struct WorkerStats {
    latency: Histogram<u64>,
    /// With `--rate`: how long after its slot each measured request was sent.
    send_lateness: Histogram<u64>,
    /// With `--timeline`: the first measured requests.
    timeline: Vec<Sample>,
    requests: u64,
    success: u64,
    refused: BTreeMap<(u32, Option<String>), u64>,
    unreadable: BTreeMap<u16, u64>,
    kinds: Kinds,
    vouchers: u64,
    unexpected: u64,
    warmup_unexpected: u64,
    transport_errors: u64,
    last_error: Option<String>,
    warmup_requests: u64,
    last_answer: Option<Instant>,
}

impl WorkerStats {
    fn new() -> anyhow::Result<Self> {
        Ok(Self {
            latency: histogram()?,
            send_lateness: histogram()?,
            timeline: Vec::new(),
            requests: 0,
            success: 0,
            refused: BTreeMap::new(),
            unreadable: BTreeMap::new(),
            kinds: Kinds::default(),
            vouchers: 0,
            unexpected: 0,
            warmup_unexpected: 0,
            transport_errors: 0,
            last_error: None,
            warmup_requests: 0,
            last_answer: None,
        })
    }
}

fn histogram() -> anyhow::Result<Histogram<u64>> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).context("creating a latency histogram")
}

/// Runs the load shape against `gateways` (connection `i` to gateway `i mod n`) and returns
/// what it measured. `probe` names the server process whose RSS and CPU to record, when it
/// can be observed.
pub(crate) async fn run(
    gateways: Vec<Gateway>,
    label: &'static str,
    workload: &Arc<Workload>,
    shape: &Shape,
    probe: Option<Probe>,
) -> anyhow::Result<RunResult> {
    let shared = Arc::new(Shared {
        next_unit: AtomicU64::new(0),
        units: workload.units(),
        wrap: shape.wrap_units,
        measuring: AtomicBool::new(shape.warmup.is_zero()),
        stop: AtomicBool::new(false),
        budget: AtomicI64::new(match shape.stop {
            Stop::Requests(n) => i64::try_from(n).unwrap_or(i64::MAX),
            Stop::Duration(_) => i64::MAX,
        }),
        done: AtomicU64::new(0),
        acknowledged_verifies: AtomicU64::new(0),
        exhausted: AtomicBool::new(false),
        tally: Tally::new(workload.slots()),
        pace: shape.rate.map(|rate| Pace {
            start: Instant::now(),
            interval: Duration::from_secs_f64(1.0 / rate),
            next: AtomicU64::new(0),
        }),
        origin: (Instant::now(), std::time::SystemTime::now()),
        timeline_per_worker: match shape.timeline {
            Some(_) => TIMELINE_LINES / shape.concurrency.max(1),
            None => 0,
        },
    });
    anyhow::ensure!(!gateways.is_empty(), "no gateway to send the load to");
    let gateways: Vec<Arc<Gateway>> = gateways.into_iter().map(Arc::new).collect();
    let seed: u64 = rand::random();
    let mut workers = Vec::with_capacity(shape.concurrency);
    for (i, gateway) in (0..shape.concurrency).zip(gateways.iter().cycle()) {
        let (g, w, s) = (
            Arc::clone(gateway),
            Arc::clone(workload),
            Arc::clone(&shared),
        );
        let worker_seed = seed ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        workers.push(tokio::spawn(async move {
            worker(&g, &w, &s, worker_seed).await
        }));
    }

    let bar = progress_bar(shape, label);
    if !shape.warmup.is_zero() {
        bar.set_message(format!("{label}: warm-up"));
        let until = Instant::now() + shape.warmup;
        while Instant::now() < until && !shared.stop.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_millis(50).min(until - Instant::now())).await;
            bar.tick();
        }
    }
    let before = probe.as_ref().and_then(Probe::sample);
    let acknowledged_before = shared.acknowledged_verifies.load(Ordering::Relaxed);
    let bench_before = super::target::cpu_seconds(None);
    let started = Instant::now();
    shared.measuring.store(true, Ordering::Relaxed);
    bar.set_message(label.to_owned());
    let mut rss_max = before.map_or(0, |s| s.rss_kb);
    let mut next_sample = Instant::now() + Duration::from_secs(1);
    loop {
        if shared.stop.load(Ordering::Relaxed) || workers.iter().all(|w| w.is_finished()) {
            break;
        }
        if let Stop::Duration(d) = shape.stop {
            if started.elapsed() >= d {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let done = shared.done.load(Ordering::Relaxed);
        match shape.stop {
            Stop::Duration(_) => bar.set_position(started.elapsed().as_millis() as u64),
            Stop::Requests(_) => bar.set_position(done),
        }
        let secs = started.elapsed().as_secs_f64().max(1e-3);
        bar.set_message(format!("{label}: {:.0} req/s", done as f64 / secs));
        if Instant::now() >= next_sample {
            next_sample += Duration::from_secs(1);
            if let Some(s) = probe.as_ref().and_then(Probe::sample) {
                rss_max = rss_max.max(s.rss_kb);
            }
        }
    }
    shared.stop.store(true, Ordering::Relaxed);
    let mut stats = Vec::with_capacity(workers.len());
    for w in workers {
        stats.push(w.await.context("a load worker panicked")??);
    }
    bar.finish_and_clear();
    let after = probe.as_ref().and_then(Probe::sample);
    // Every worker has ended: nothing is in flight, so this is exact.
    let acknowledged_after = shared.acknowledged_verifies.load(Ordering::Relaxed);
    let bench_after = super::target::cpu_seconds(None);

    let last = stats.iter().filter_map(|s| s.last_answer).max();
    let elapsed = last.map_or_else(
        || started.elapsed(),
        |t| t.saturating_duration_since(started),
    );
    let mut result = RunResult {
        elapsed,
        requests: 0,
        latency: histogram()?,
        send_lateness: match shared.pace {
            Some(_) => Some(histogram()?),
            None => None,
        },
        answers: BTreeMap::new(),
        kinds: Kinds::default(),
        vouchers: 0,
        unexpected: 0,
        warmup_unexpected: 0,
        transport_errors: 0,
        last_error: None,
        warmup_requests: 0,
        exhausted: shared.exhausted.load(Ordering::Relaxed),
        ledger: Tally::new(0),
        server: None,
        bench_cpu_seconds: match (bench_before, bench_after) {
            (Some(b), Some(a)) => Some(a - b),
            _ => None,
        },
    };
    let mut timeline: Vec<Sample> = Vec::new();
    for mut s in stats {
        timeline.append(&mut s.timeline);
        result
            .latency
            .add(&s.latency)
            .context("merging latency histograms")?;
        if let Some(h) = result.send_lateness.as_mut() {
            h.add(&s.send_lateness)
                .context("merging send-lateness histograms")?;
        }
        result.requests += s.requests;
        if s.success > 0 {
            *result.answers.entry(AnswerKey::Success).or_default() += s.success;
        }
        for ((code, sub_code), n) in s.refused {
            *result
                .answers
                .entry(AnswerKey::Refused { code, sub_code })
                .or_default() += n;
        }
        for (status, n) in s.unreadable {
            *result
                .answers
                .entry(AnswerKey::Unreadable { status })
                .or_default() += n;
        }
        result.kinds.fresh += s.kinds.fresh;
        result.kinds.replay += s.kinds.replay;
        result.kinds.reject += s.kinds.reject;
        result.vouchers += s.vouchers;
        result.unexpected += s.unexpected;
        result.warmup_unexpected += s.warmup_unexpected;
        result.transport_errors += s.transport_errors;
        result.warmup_requests += s.warmup_requests;
        if s.last_error.is_some() {
            result.last_error = s.last_error;
        }
    }
    if let (Some(b), Some(a), Some(p)) = (before, after, probe.as_ref()) {
        result.server = Some(Resources {
            scope: p.scope,
            rss_start_kb: b.rss_kb,
            rss_end_kb: a.rss_kb,
            rss_max_kb: rss_max.max(a.rss_kb),
            hwm_kb: a.hwm_kb,
            cpu_seconds: a.cpu_seconds - b.cpu_seconds,
            write_bytes: a
                .write_bytes
                .zip(b.write_bytes)
                .map(|(a, b)| a.saturating_sub(b)),
            acknowledged_verifies: acknowledged_after.saturating_sub(acknowledged_before),
        });
    }
    if let Some(path) = shape.timeline.clone() {
        let origin = shared.origin.1;
        tokio::task::spawn_blocking(move || {
            write_timeline(&path, origin, timeline)
                .with_context(|| format!("writing --timeline {}", path.display()))
        })
        .await
        .context("the thread writing --timeline panicked")??;
    }
    let shared = Arc::into_inner(shared)
        .context("a load worker still holds the shared state after joining")?;
    result.ledger = shared.tally;
    if result.requests == 0 {
        anyhow::bail!(
            "{label}: no request was answered in the measured phase{}",
            match (&result.last_error, result.exhausted) {
                (_, true) =>
                    " (the prepared uses ran out during the warm-up: raise --orders or --capacity)"
                        .to_owned(),
                (Some(e), _) => format!(" (last error: {e})"),
                (None, _) => String::new(),
            }
        );
    }
    Ok(result)
}

/// A duration in whole microseconds (latencies, lateness, the timeline's times).
fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// Writes `--timeline`: a header, then one line per request in scheduled order.
fn write_timeline(
    path: &std::path::Path,
    origin: std::time::SystemTime,
    mut samples: Vec<Sample>,
) -> anyhow::Result<()> {
    use std::io::Write as _;
    let origin_us = origin
        .duration_since(std::time::UNIX_EPOCH)
        .context("the clock is before 1970")?
        .as_micros();
    samples.sort_unstable_by_key(|s| s.at_us);
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    writeln!(out, "scheduled_unix_us,latency_us,sent_late_us")?;
    for s in samples {
        writeln!(
            out,
            "{},{},{}",
            origin_us + u128::from(s.at_us),
            s.latency_us,
            s.late_us
        )?;
    }
    out.flush()?;
    Ok(())
}

fn progress_bar(shape: &Shape, label: &str) -> ProgressBar {
    if !shape.progress {
        return ProgressBar::hidden();
    }
    let (len, template) = match shape.stop {
        Stop::Duration(d) => (
            d.as_millis() as u64,
            "{spinner} {msg:24} [{bar:40}] {elapsed_precise}",
        ),
        Stop::Requests(n) => (n, "{spinner} {msg:24} [{bar:40}] {pos}/{len}"),
    };
    let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(label.to_owned());
    bar
}

/// One connection's closed loop.
async fn worker(
    gateway: &Gateway,
    w: &Workload,
    shared: &Shared,
    seed: u64,
) -> anyhow::Result<WorkerStats> {
    let mut stats = WorkerStats::new()?;
    let mut mix = Mix::new(seed);
    let mut builder = RequestBuilder::new(w, &gateway.host, &gateway.path);
    let mut conn: Option<Connection> = None;
    let mut last_fresh: Option<Unit> = None;
    let mut failures = 0u32;
    let batch = w.batch as u64;
    loop {
        if shared.stop.load(Ordering::Relaxed) {
            break;
        }
        let measuring = shared.measuring.load(Ordering::Relaxed);
        if measuring && shared.budget.fetch_sub(1, Ordering::Relaxed) <= 0 {
            shared.stop.store(true, Ordering::Relaxed);
            break;
        }
        let r = mix.unit_interval();
        let kind = if r < w.reject_ratio {
            Kind::Reject
        } else if r < w.reject_ratio + w.replay_ratio && last_fresh.is_some() {
            Kind::Replay
        } else {
            Kind::Fresh
        };
        let unit = match (kind, last_fresh) {
            (Kind::Fresh, _) => match shared.take_unit(w) {
                Some(u) => u,
                None => {
                    shared.exhausted.store(true, Ordering::Relaxed);
                    shared.stop.store(true, Ordering::Relaxed);
                    break;
                }
            },
            (Kind::Replay, Some(u)) => u,
            _ => Unit {
                order: mix.below(w.order_ids.len()),
                first_voucher: mix.below(w.codes.len()),
                round: 0,
            },
        };
        let request = builder.build(w, kind, unit);

        let connection = match &mut conn {
            Some(c) => c,
            None => match Connection::open(gateway.addr).await {
                Ok(c) => conn.insert(c),
                Err(e) => {
                    // Nothing was sent: the unit is simply never used.
                    stats.transport_errors += 1;
                    stats.last_error = Some(format!("connecting to {}: {e}", gateway.addr));
                    failures += 1;
                    if failures >= MAX_CONSECUTIVE_FAILURES {
                        shared.stop.store(true, Ordering::Relaxed);
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
        };
        // Paced: wait for this request's slot, and measure from the slot rather than from the
        // actual send, so time spent queued behind a slow server counts (no coordinated
        // omission).
        let (started, late) = match &shared.pace {
            Some(pace) => {
                let due = pace.next_due();
                tokio::time::sleep_until(due.into()).await;
                let late = micros(due.elapsed());
                if measuring {
                    stats
                        .send_lateness
                        .saturating_record(late.clamp(1, MAX_LATENCY_US));
                }
                (due, late)
            }
            None => (Instant::now(), 0),
        };
        let answer = match connection.exchange(request).await {
            Ok(reply) => classify(&reply),
            Err(e) => {
                conn = None;
                stats.transport_errors += 1;
                stats.last_error = Some(e.to_string());
                if kind == Kind::Fresh {
                    shared.tally.unknown[w.slot(unit)].fetch_add(1, Ordering::Relaxed);
                }
                failures += 1;
                if failures >= MAX_CONSECUTIVE_FAILURES {
                    shared.stop.store(true, Ordering::Relaxed);
                    break;
                }
                continue;
            }
        };
        let now = Instant::now();
        failures = 0;
        if conn.as_ref().is_some_and(Connection::is_closing) {
            conn = None;
        }

        if matches!(answer, Answer::Success) {
            shared.acknowledged_verifies.fetch_add(1, Ordering::Relaxed);
        }
        let expected = match (&answer, kind) {
            (Answer::Success, Kind::Fresh) => {
                shared.tally.acknowledged[w.slot(unit)].fetch_add(1, Ordering::Relaxed);
                if w.form == Form::Vouchers {
                    last_fresh = Some(unit);
                }
                if measuring {
                    stats.vouchers += batch;
                }
                true
            }
            (Answer::Unreadable { .. }, Kind::Fresh) => {
                shared.tally.unknown[w.slot(unit)].fetch_add(1, Ordering::Relaxed);
                false
            }
            (Answer::Success, Kind::Replay) | (Answer::Refused { .. }, Kind::Reject) => true,
            _ => false,
        };
        if !measuring {
            stats.warmup_requests += 1;
            if !expected {
                stats.warmup_unexpected += 1;
            }
            continue;
        }
        stats.requests += 1;
        stats.last_answer = Some(now);
        let latency_us = micros(now - started);
        stats
            .latency
            .saturating_record(latency_us.clamp(1, MAX_LATENCY_US));
        if stats.timeline.len() < shared.timeline_per_worker {
            let since = started.saturating_duration_since(shared.origin.0);
            stats.timeline.push(Sample {
                at_us: micros(since),
                latency_us: u32::try_from(latency_us).unwrap_or(u32::MAX),
                late_us: u32::try_from(late).unwrap_or(u32::MAX),
            });
        }
        match kind {
            Kind::Fresh => stats.kinds.fresh += 1,
            Kind::Replay => stats.kinds.replay += 1,
            Kind::Reject => stats.kinds.reject += 1,
        }
        if !expected {
            stats.unexpected += 1;
        }
        match answer {
            Answer::Success => stats.success += 1,
            Answer::Refused { code, sub_code } => {
                *stats.refused.entry((code, sub_code)).or_default() += 1;
            }
            Answer::Unreadable { status } => *stats.unreadable.entry(status).or_default() += 1,
        }
        shared.done.fetch_add(1, Ordering::Relaxed);
    }
    Ok(stats)
}
