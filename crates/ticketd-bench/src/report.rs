//! The report of one `ticketd bench` run: a plain struct that serialises to the `--json`
//! object and renders as text.

use std::fmt::Write as _;

use anyhow::bail;
use serde::Serialize;

use super::admin::{Verification, VoucherMismatch};
use super::load::{AnswerKey, Kinds, RunResult};
use super::target::{Endpoint, Resources};
use super::workload::{Form, Workload};
use super::BenchArgs;

/// Everything one run measured. Field names are the `--json` keys.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// What was measured against.
    pub target: TargetInfo,
    /// The load shape.
    pub load: LoadInfo,
    /// How long preparing the ledger took.
    pub prepare: Preparation,
    /// The measured phase against the target.
    pub result: Throughput,
    /// Does the ledger hold exactly what was acknowledged?
    pub verification: VerificationInfo,
    /// The same load against the minimal responder, with `--baseline`.
    pub baseline: Option<Baseline>,
    /// Memory and CPU of the observed server process.
    pub server: Option<ServerResources>,
    /// The machine.
    pub machine: Machine,
}

/// The target.
#[derive(Debug, Clone, Serialize)]
pub struct TargetInfo {
    /// e.g. "in-process ticketd at http://127.0.0.1:40123".
    pub description: String,
    /// The spawned server's database (password hidden).
    pub database_url: Option<String>,
    /// Milliseconds from starting the spawned server to its `/readyz` answering 200.
    pub startup_ms: Option<f64>,
}

/// The load shape.
#[derive(Debug, Clone, Serialize)]
pub struct LoadInfo {
    /// Connections, one request in flight each.
    pub concurrency: usize,
    /// `vouchers` or `legacy`.
    pub form: String,
    /// Vouchers per request.
    pub batch: u64,
    /// `md5`, `hmac` or `hmac-sha256`.
    pub sign_method: String,
    /// Planned measured seconds (timed run).
    pub duration_s: Option<f64>,
    /// Planned measured requests (counted run).
    pub requests: Option<u64>,
    /// Offered rate (`--rate`), requests per second; `null` when unpaced.
    pub rate: Option<f64>,
    /// Warm-up seconds.
    pub warmup_s: f64,
    /// Share of replayed requests asked for.
    pub replay_ratio: f64,
    /// Share of over-capacity requests asked for.
    pub reject_ratio: f64,
    /// Prepared orders.
    pub orders: u64,
    /// Codes per prepared order.
    pub vouchers_per_order: u64,
    /// Uses per code.
    pub capacity: u64,
}

/// Preparation through the admin API.
#[derive(Debug, Clone, Serialize)]
pub struct Preparation {
    /// Orders prepared for the load.
    pub orders: u64,
    /// Their vouchers.
    pub vouchers: u64,
    /// Seconds it took.
    pub seconds: f64,
    /// Vouchers issued by `--prefill` in untouched orders.
    pub prefill_vouchers: u64,
    /// Seconds the prefill took.
    pub prefill_seconds: Option<f64>,
}

/// Latency percentiles, in milliseconds.
#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p99_9: f64,
    /// Slowest answer.
    pub max: f64,
    /// Mean.
    pub mean: f64,
}

impl Latency {
    /// `p50 … ms  p90 … ms  p99 … ms  p99.9 … ms  max … ms`, for the text report.
    fn percentiles(&self) -> String {
        format!(
            "p50 {:.2} ms  p90 {:.2} ms  p99 {:.2} ms  p99.9 {:.2} ms  max {:.2} ms",
            self.p50, self.p90, self.p99, self.p99_9, self.max
        )
    }
}

/// One distinct answer and how often it came.
#[derive(Debug, Clone, Serialize)]
pub struct AnswerCount {
    /// `is_success`, `error_response`, or `unreadable`.
    pub answer: &'static str,
    /// TOP `code` of an `error_response`.
    pub code: Option<u32>,
    /// TOP `sub_code` of an `error_response`.
    pub sub_code: Option<String>,
    /// HTTP status of an unreadable answer.
    pub http_status: Option<u16>,
    /// How many.
    pub count: u64,
}

/// Requests sent, by kind.
#[derive(Debug, Clone, Serialize)]
pub struct KindCounts {
    /// New uses.
    pub fresh: u64,
    /// Resent acknowledged requests.
    pub replay: u64,
    /// Over-capacity requests.
    pub reject: u64,
}

impl From<Kinds> for KindCounts {
    fn from(k: Kinds) -> Self {
        Self {
            fresh: k.fresh,
            replay: k.replay,
            reject: k.reject,
        }
    }
}

/// The measured phase of one run.
#[derive(Debug, Clone, Serialize)]
pub struct Throughput {
    /// Measured requests answered.
    pub requests: u64,
    /// Seconds from the end of the warm-up to the last measured answer.
    pub elapsed_s: f64,
    /// Requests answered per second.
    pub requests_per_s: f64,
    /// Vouchers of acknowledged fresh requests per second (uses applied).
    pub vouchers_per_s: f64,
    /// Latency of every measured request.
    pub latency_ms: Latency,
    /// With `--rate`: how long after its scheduled time each measured request was sent (part
    /// of `latency_ms`). The load generator's own delay, and, when the server falls behind,
    /// the wait for a free connection; `null` when unpaced.
    pub send_lateness_ms: Option<Latency>,
    /// Answers by code/sub_code.
    pub answers: Vec<AnswerCount>,
    /// Requests by kind.
    pub kinds: KindCounts,
    /// Measured answers other than the one expected for the request's kind (a fresh use not
    /// acknowledged, a replay not acknowledged, an over-capacity request not refused). Any
    /// makes the command fail.
    pub unexpected: u64,
    /// The same during the warm-up (not in `unexpected`). Any makes the command fail too.
    pub warmup_unexpected: u64,
    /// Failed connections and answers lost in transit.
    pub transport_errors: u64,
    /// The last transport error.
    pub last_error: Option<String>,
    /// Requests answered during the warm-up (not in the figures above).
    pub warmup_requests: u64,
    /// The prepared uses ran out before the planned end.
    pub exhausted: bool,
    /// CPU seconds this process used during the measured phase.
    pub bench_cpu_s: Option<f64>,
}

/// The verification pass. A count agrees when it lies between the uses acknowledged and
/// those plus the uses whose answer was lost.
#[derive(Debug, Clone, Serialize)]
pub struct VerificationInfo {
    /// Prepared orders read back with `GET /admin/orders/{id}`.
    pub orders: u64,
    /// Their vouchers (codes) in those answers.
    pub vouchers: u64,
    /// Uses acknowledged to fresh requests (warm-up included).
    pub acknowledged_uses: u64,
    /// Uses the ledger shows on those orders.
    pub ledger_uses: u64,
    /// Uses whose answer was lost (may or may not be counted).
    pub unknown_uses: u64,
    /// Orders whose total disagrees.
    pub mismatched_orders: u64,
    /// Vouchers whose count disagrees (or that are missing from their order's answer): a use
    /// recorded on the wrong code of the right order leaves the totals equal but not these.
    pub mismatched_vouchers: u64,
    /// The first few of those vouchers, in prepared order.
    pub voucher_mismatches: Vec<VoucherMismatchInfo>,
    /// Every order and every voucher agrees.
    pub ok: bool,
    /// Seconds the pass took.
    pub seconds: f64,
}

/// One voucher whose count disagrees.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VoucherMismatchInfo {
    /// Its order.
    pub order_id: i64,
    /// Its code, masked as ticketd masks codes (`****0003`; the bench's codes differ only in
    /// their last four characters).
    pub confirm_code: String,
    /// Uses acknowledged to fresh requests.
    pub acknowledged: u64,
    /// Uses whose answer was lost (the ledger may show up to this many more).
    pub unknown: u64,
    /// Uses the ledger shows; `null` when the order's answer does not list the code.
    pub ledger: Option<u64>,
}

impl From<VoucherMismatch> for VoucherMismatchInfo {
    fn from(m: VoucherMismatch) -> Self {
        Self {
            order_id: m.order_id,
            confirm_code: m.confirm_code,
            acknowledged: m.acknowledged,
            unknown: m.unknown,
            ledger: m.ledger,
        }
    }
}

impl VoucherMismatchInfo {
    /// `order 1234, code ****0003: 2 acknowledged (+1 in doubt), 1 in the ledger`.
    fn describe(&self) -> String {
        format!(
            "order {}, code {}: {} acknowledged{}, {}",
            self.order_id,
            self.confirm_code,
            self.acknowledged,
            if self.unknown > 0 {
                format!(" (+{} in doubt)", self.unknown)
            } else {
                String::new()
            },
            match self.ledger {
                Some(n) => format!("{n} in the ledger"),
                None => "missing from the order".to_owned(),
            }
        )
    }
}

impl From<Verification> for VerificationInfo {
    fn from(v: Verification) -> Self {
        Self {
            orders: v.orders,
            vouchers: v.vouchers,
            acknowledged_uses: v.acknowledged_uses,
            ledger_uses: v.ledger_uses,
            unknown_uses: v.unknown_uses,
            mismatched_orders: v.mismatched_orders,
            mismatched_vouchers: v.mismatched_vouchers,
            voucher_mismatches: v.mismatches.into_iter().map(Into::into).collect(),
            ok: v.ok,
            seconds: v.seconds,
        }
    }
}

/// The baseline run and the ratio.
#[derive(Debug, Clone, Serialize)]
pub struct Baseline {
    /// Requests per second the minimal responder sustained.
    pub requests_per_s: f64,
    /// Its latency.
    pub latency_ms: Latency,
    /// Measured requests.
    pub requests: u64,
    /// Target requests/s ÷ baseline requests/s.
    pub ratio: f64,
    /// CPU seconds this process used during the baseline's measured phase.
    pub bench_cpu_s: Option<f64>,
}

/// Memory and CPU of the server process over the measured phase: from a reading taken when
/// the warm-up ends to one taken once every worker has stopped.
#[derive(Debug, Clone, Serialize)]
pub struct ServerResources {
    /// Which process.
    pub scope: &'static str,
    /// RSS when the measured phase began, MB.
    pub rss_start_mb: f64,
    /// RSS at its end, MB.
    pub rss_end_mb: f64,
    /// Largest RSS sampled during it, MB.
    pub rss_max_mb: f64,
    /// Kernel high-water mark since the process started, MB.
    pub hwm_mb: f64,
    /// CPU seconds during the measured phase.
    pub cpu_s: f64,
    /// CPU microseconds per measured request (every kind and answer; kept for comparison
    /// with earlier reports: warm-up requests answered after the first reading add CPU but
    /// not requests).
    pub cpu_us_per_request: f64,
    /// Bytes the server sent to storage during the measured phase (`/proc/<pid>/io`), when
    /// the kernel shows them.
    pub written_bytes: Option<u64>,
    /// `written_bytes` per measured request (as `cpu_us_per_request`).
    pub written_bytes_per_request: Option<f64>,
    /// Requests answered `is_success` (fresh uses and acknowledged replays) between the same
    /// two readings as `cpu_s` and `written_bytes`: the divisor of the two figures below.
    pub acknowledged_verifies: u64,
    /// `cpu_s` per acknowledged verify, in microseconds.
    pub cpu_us_per_acknowledged_verify: Option<f64>,
    /// `written_bytes` per acknowledged verify.
    pub written_bytes_per_acknowledged_verify: Option<f64>,
}

/// The machine the run was on.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Machine {
    /// Logical CPUs.
    pub cpus: usize,
    /// `/proc/loadavg` (1, 5, 15 min) before the run.
    pub loadavg_before: Option<String>,
    /// … and after it.
    pub loadavg_after: Option<String>,
}

fn mb(kb: u64) -> f64 {
    kb as f64 / 1024.0
}

fn latency(h: &hdrhistogram::Histogram<u64>) -> Latency {
    let ms = |us: u64| us as f64 / 1000.0;
    Latency {
        p50: ms(h.value_at_quantile(0.50)),
        p90: ms(h.value_at_quantile(0.90)),
        p99: ms(h.value_at_quantile(0.99)),
        p99_9: ms(h.value_at_quantile(0.999)),
        max: ms(h.max()),
        mean: h.mean() / 1000.0,
    }
}

fn per_second(n: u64, secs: f64) -> f64 {
    if secs > 0.0 {
        n as f64 / secs
    } else {
        0.0
    }
}

impl Report {
    pub(crate) fn new(
        args: &BenchArgs,
        endpoint: &Endpoint,
        w: &Workload,
        prepare: Preparation,
        run: &RunResult,
        verification: Verification,
        baseline: Option<&RunResult>,
    ) -> Self {
        let secs = run.elapsed.as_secs_f64();
        let requests_per_s = per_second(run.requests, secs);
        let shape = args.shape(false);
        Self {
            target: TargetInfo {
                description: endpoint.description.clone(),
                database_url: endpoint.database_url.clone(),
                startup_ms: endpoint.startup.map(|d| d.as_secs_f64() * 1000.0),
            },
            load: LoadInfo {
                concurrency: args.concurrency,
                form: match w.form {
                    Form::Vouchers => "vouchers",
                    Form::Legacy => "legacy",
                }
                .to_owned(),
                batch: args.batch,
                sign_method: w.sign_method.as_str().to_owned(),
                duration_s: match shape.stop {
                    super::load::Stop::Duration(d) => Some(d.as_secs_f64()),
                    super::load::Stop::Requests(_) => None,
                },
                requests: args.requests,
                rate: args.rate,
                warmup_s: args.warmup.as_secs_f64(),
                replay_ratio: args.replay_ratio,
                reject_ratio: args.reject_ratio,
                orders: args.orders,
                vouchers_per_order: args.vouchers_per_order,
                capacity: args.capacity,
            },
            prepare,
            result: Throughput {
                requests: run.requests,
                elapsed_s: secs,
                requests_per_s,
                vouchers_per_s: per_second(run.vouchers, secs),
                latency_ms: latency(&run.latency),
                send_lateness_ms: run.send_lateness.as_ref().map(latency),
                answers: run
                    .answers
                    .iter()
                    .map(|(k, &count)| match k {
                        AnswerKey::Success => AnswerCount {
                            answer: "is_success",
                            code: None,
                            sub_code: None,
                            http_status: None,
                            count,
                        },
                        AnswerKey::Refused { code, sub_code } => AnswerCount {
                            answer: "error_response",
                            code: Some(*code),
                            sub_code: sub_code.clone(),
                            http_status: None,
                            count,
                        },
                        AnswerKey::Unreadable { status } => AnswerCount {
                            answer: "unreadable",
                            code: None,
                            sub_code: None,
                            http_status: Some(*status),
                            count,
                        },
                    })
                    .collect(),
                kinds: run.kinds.into(),
                unexpected: run.unexpected,
                warmup_unexpected: run.warmup_unexpected,
                transport_errors: run.transport_errors,
                last_error: run.last_error.clone(),
                warmup_requests: run.warmup_requests,
                exhausted: run.exhausted,
                bench_cpu_s: run.bench_cpu_seconds,
            },
            verification: verification.into(),
            baseline: baseline.map(|b| {
                let rps = per_second(b.requests, b.elapsed.as_secs_f64());
                Baseline {
                    requests_per_s: rps,
                    latency_ms: latency(&b.latency),
                    requests: b.requests,
                    ratio: if rps > 0.0 { requests_per_s / rps } else { 0.0 },
                    bench_cpu_s: b.bench_cpu_seconds,
                }
            }),
            server: run.server.as_ref().map(|r: &Resources| ServerResources {
                scope: r.scope,
                rss_start_mb: mb(r.rss_start_kb),
                rss_end_mb: mb(r.rss_end_kb),
                rss_max_mb: mb(r.rss_max_kb),
                hwm_mb: mb(r.hwm_kb),
                cpu_s: r.cpu_seconds,
                cpu_us_per_request: if run.requests > 0 {
                    r.cpu_seconds * 1e6 / run.requests as f64
                } else {
                    0.0
                },
                written_bytes: r.write_bytes,
                written_bytes_per_request: r
                    .write_bytes
                    .filter(|_| run.requests > 0)
                    .map(|b| b as f64 / run.requests as f64),
                acknowledged_verifies: r.acknowledged_verifies,
                cpu_us_per_acknowledged_verify: (r.acknowledged_verifies > 0)
                    .then(|| r.cpu_seconds * 1e6 / r.acknowledged_verifies as f64),
                written_bytes_per_acknowledged_verify: r
                    .write_bytes
                    .filter(|_| r.acknowledged_verifies > 0)
                    .map(|b| b as f64 / r.acknowledged_verifies as f64),
            }),
            machine: Machine {
                cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
                loadavg_before: None,
                loadavg_after: None,
            },
        }
    }

    /// Whether the run passed: `Err` naming what failed when the ledger disagrees with what
    /// the target acknowledged (on an order's total or on any voucher), when any answer was
    /// not the one expected for its request, or when no use was acknowledged at all. `ticketd
    /// bench` prints the report first, then fails with this error.
    pub fn verdict(&self) -> anyhow::Result<()> {
        let v = &self.verification;
        let r = &self.result;
        let mut failures = Vec::new();
        if !v.ok {
            let mut why = format!(
                "the ledger does not match what the target acknowledged: {} of {} vouchers and {} of {} orders disagree",
                v.mismatched_vouchers, v.vouchers, v.mismatched_orders, v.orders
            );
            for m in &v.voucher_mismatches {
                let _ = write!(why, "; {}", m.describe());
            }
            failures.push(why);
        }
        if r.unexpected > 0 || r.warmup_unexpected > 0 {
            failures.push(format!(
                "{} measured answers and {} warm-up answers were not the one expected for their request (see the answers above)",
                r.unexpected, r.warmup_unexpected
            ));
        }
        if v.acknowledged_uses == 0 {
            failures
                .push("the target acknowledged no use at all (see the answers above)".to_owned());
        }
        if failures.is_empty() {
            Ok(())
        } else {
            bail!("verification failed: {}", failures.join("; and "))
        }
    }

    /// The human-readable report.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        let l = &self.load;
        let r = &self.result;
        let span = match (l.duration_s, l.requests) {
            (Some(d), _) => format!("{d:.0} s"),
            (None, Some(n)) => format!("{n} requests"),
            (None, None) => String::new(),
        };
        let paced = match l.rate {
            Some(r) => format!(" paced at {r:.0} requests/s,"),
            None => String::new(),
        };
        let _ = writeln!(
            s,
            "ticketd bench: {} connections,{paced} {} form, {} voucher(s)/request, {}, {span} after {:.0} s warm-up",
            l.concurrency, l.form, l.batch, l.sign_method, l.warmup_s
        );
        let _ = write!(s, "target      {}", self.target.description);
        if let Some(db) = &self.target.database_url {
            let _ = write!(s, " ({db})");
        }
        if let Some(ms) = self.target.startup_ms {
            let _ = write!(s, ", ready {ms:.0} ms after start");
        }
        let _ = writeln!(s);
        if self.prepare.prefill_vouchers > 0 {
            let _ = writeln!(
                s,
                "prefill     {} vouchers in untouched orders in {:.1} s",
                self.prepare.prefill_vouchers,
                self.prepare.prefill_seconds.unwrap_or_default()
            );
        }
        let _ = writeln!(
            s,
            "prepared    {} orders × {} codes × {} uses in {:.1} s",
            l.orders, l.vouchers_per_order, l.capacity, self.prepare.seconds
        );
        let _ = writeln!(
            s,
            "throughput  {:.0} requests/s, {:.0} vouchers/s ({} requests in {:.2} s{})",
            r.requests_per_s,
            r.vouchers_per_s,
            r.requests,
            r.elapsed_s,
            if r.exhausted {
                "; the prepared uses ran out early"
            } else {
                ""
            }
        );
        let lat = &r.latency_ms;
        let _ = writeln!(s, "latency     {}", lat.percentiles());
        if let Some(late) = &r.send_lateness_ms {
            let _ = writeln!(
                s,
                "sent late   {} (after the scheduled time; part of the latency)",
                late.percentiles()
            );
        }
        for (i, a) in r.answers.iter().enumerate() {
            let label = match a.answer {
                "is_success" => "is_success".to_owned(),
                "error_response" => format!(
                    "code {} {}",
                    a.code.unwrap_or_default(),
                    a.sub_code.as_deref().unwrap_or("")
                ),
                _ => format!("unreadable (HTTP {})", a.http_status.unwrap_or_default()),
            };
            let _ = writeln!(
                s,
                "{}{label:<40} {}",
                if i == 0 {
                    "answers     "
                } else {
                    "            "
                },
                a.count
            );
        }
        let _ = writeln!(
            s,
            "requests    fresh {}, replay {}, reject {}; unexpected answers {}, transport errors {}",
            r.kinds.fresh, r.kinds.replay, r.kinds.reject, r.unexpected, r.transport_errors
        );
        if r.unexpected > 0 || r.warmup_unexpected > 0 {
            let _ = writeln!(
                s,
                "UNEXPECTED  {} answers (and {} in the warm-up) were not the one expected for their request (see answers): the run fails",
                r.unexpected, r.warmup_unexpected
            );
        }
        if let Some(e) = &r.last_error {
            let _ = writeln!(s, "last error  {e}");
        }
        let v = &self.verification;
        let _ = writeln!(
            s,
            "ledger      {} orders, {} vouchers read back: {} uses acknowledged, {} in the ledger{} — {}",
            v.orders,
            v.vouchers,
            v.acknowledged_uses,
            v.ledger_uses,
            if v.unknown_uses > 0 {
                format!(", {} unknown (answer lost)", v.unknown_uses)
            } else {
                String::new()
            },
            if v.ok {
                "every order and voucher matches".to_owned()
            } else {
                format!(
                    "MISMATCH on {} orders and {} vouchers",
                    v.mismatched_orders, v.mismatched_vouchers
                )
            }
        );
        for m in &v.voucher_mismatches {
            let _ = writeln!(s, "            {}", m.describe());
        }
        if v.mismatched_vouchers > v.voucher_mismatches.len() as u64 {
            let _ = writeln!(
                s,
                "            … and {} more vouchers",
                v.mismatched_vouchers - v.voucher_mismatches.len() as u64
            );
        }
        if let Some(srv) = &self.server {
            let _ = writeln!(
                s,
                "memory      RSS {:.1} MB at start, {:.1} MB at end, {:.1} MB max, high-water {:.1} MB ({})",
                srv.rss_start_mb, srv.rss_end_mb, srv.rss_max_mb, srv.hwm_mb, srv.scope
            );
            let _ = writeln!(
                s,
                "cpu         {:.2} s, {} ({}; {} requests answered is_success while sampled)",
                srv.cpu_s,
                srv.cpu_us_per_acknowledged_verify
                    .map_or("no acknowledged verify".to_owned(), |us| format!(
                        "{us:.0} µs per acknowledged verify"
                    )),
                srv.scope,
                srv.acknowledged_verifies
            );
            if let (Some(total), Some(each)) =
                (srv.written_bytes, srv.written_bytes_per_acknowledged_verify)
            {
                let _ = writeln!(
                    s,
                    "disk        {:.1} MB written, {:.1} KB per acknowledged verify ({})",
                    total as f64 / 1e6,
                    each / 1e3,
                    srv.scope
                );
            }
        }
        if let Some(cpu) = r.bench_cpu_s {
            let _ = writeln!(
                s,
                "bench cpu   {:.2} s, {:.0} µs per request (this process{})",
                cpu,
                if r.requests > 0 {
                    cpu * 1e6 / r.requests as f64
                } else {
                    0.0
                },
                if self.target.description.starts_with("in-process") {
                    ": server and load generator"
                } else {
                    ": the load generator"
                }
            );
        }
        if let Some(b) = &self.baseline {
            let _ = writeln!(
                s,
                "baseline    {:.0} requests/s (p50 {:.2} ms, p99 {:.2} ms): verify = {:.2} × the HTTP ceiling",
                b.requests_per_s, b.latency_ms.p50, b.latency_ms.p99, b.ratio
            );
        }
        let _ = writeln!(
            s,
            "machine     {} CPUs, load average {} before, {} after",
            self.machine.cpus,
            self.machine.loadavg_before.as_deref().unwrap_or("?"),
            self.machine.loadavg_after.as_deref().unwrap_or("?")
        );
        s
    }
}
