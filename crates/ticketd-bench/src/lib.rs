//! `ticketd bench`: a load generator for real, signed verify traffic, with a report that
//! checks the ledger and compares the throughput with this machine's HTTP ceiling.
//!
//! What one run does, in order:
//!
//! 1. **Target.** An existing server (`--url`, `--admin-token`), or one the bench starts itself
//!    (`--spawn`: in this process on a runtime of its own; `--spawn process`: a child
//!    `ticketd serve`), on a temporary SQLite file unless `--data-dir` or `--database-url` say
//!    where.
//! 2. **Prepare.** Through the admin API only, as an operator would: a fresh vendor app,
//!    `--orders` issued orders of `--vouchers-per-order` codes allowing `--capacity` uses each,
//!    and optionally `--prefill` vouchers in orders the load never touches (a large ledger).
//! 3. **Load.** `--concurrency` keep-alive connections, each a closed loop: send, wait for the
//!    answer, send the next. Every fresh request is a distinct, legitimate use that the ledger
//!    must count (a code's k-th use carries its own `used_date`, so it is never mistaken for a
//!    retry); `--replay-ratio` resends an acknowledged request (answered `is_success`, counted
//!    once) and `--reject-ratio` asks for more uses than a code has (refused, nothing changes).
//!    A warm-up comes first; only what follows it is measured.
//! 4. **Verify.** Every prepared order is read back (`GET /admin/orders/{id}`): its total and
//!    each of its vouchers' uses are compared with what the target acknowledged (uses whose
//!    answer was lost in transit may be counted or not). A mismatch, or any answer during the
//!    load that was not the one expected for its request, fails the run once the report is
//!    printed.
//! 5. **Baseline** (`--baseline`). The same load shape and the same request bytes against a
//!    minimal in-process HTTP responder that answers a fixed body: the machine's HTTP ceiling,
//!    measured in the same run, so the report can state verify throughput as a fraction of it.
//!
//! The load generator's hot path is deliberately cheap — a raw HTTP/1.1 connection
//! ([`http`](self) module), one reused parameter set per connection, signing straight from it
//! — because it shares the machine's cores with the server it measures.
//!
//! # Modules
//! - `http`: the minimal keep-alive HTTP/1.1 client of the hot path.
//! - `workload`: what to send: prepared orders, units of work, signed request bytes.
//! - `load`: the closed-loop workers, warm-up, progress, and their statistics.
//! - `admin`: preparation and the verification pass over the admin API.
//! - `target`: starting ticketd (in-process or as a child), the baseline responder, RSS/CPU.
//! - [`server`]: what the bench needs from the server it starts in this process; the caller
//!   passes it ([`Server`]), since this crate must not depend on ticketd.
//! - [`report`]: the report, as text or JSON.

mod admin;
mod http;
mod load;
pub mod report;
pub mod server;
mod target;
mod workload;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use top_protocol::SignMethod;

use self::load::{Shape, Stop};
use self::report::Report;
pub use self::server::{Server, ServerOptions, Started};
pub use self::target::SpawnMode;
use self::target::Target;
pub use self::workload::Form;

/// Everything `ticketd bench` can be told.
#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// Base URL of a running ticketd (gateway and admin API). Not used with `--spawn`. Several,
    /// comma-separated, for servers sharing one ledger (a database cluster): the load's
    /// connections go to each in turn, and the first prepares the workload and reads the
    /// ledger back.
    #[arg(
        long,
        env = "TICKETD_BENCH_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    pub url: String,

    /// Admin API token of the target. Not needed with `--spawn` (one is generated).
    #[arg(long, env = "TICKETD_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,

    /// Start the target itself instead of using `--url`: `in-process` (the default when the
    /// flag is given bare: the server runs in this process on a runtime of its own) or
    /// `process` (a child `ticketd serve`, so the server's RSS and CPU are its own).
    #[arg(long, value_enum, num_args = 0..=1, default_missing_value = "in-process")]
    pub spawn: Option<SpawnMode>,

    /// With `--spawn`: the ledger's directory. Kept after the run, so a later run finds the
    /// ledger it left (ledger-growth and start-up measurements). Default: a temporary
    /// directory, removed at the end.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,

    /// With `--spawn`: the database URL of the spawned server (default: SQLite in the data
    /// directory).
    #[arg(long, env = "TICKETD_BENCH_DATABASE_URL")]
    pub database_url: Option<String>,

    /// With `--spawn process`: the `ticketd` executable to start (default: this one).
    #[arg(long)]
    pub server_exe: Option<PathBuf>,

    /// With `--spawn process`: the spawned server's log filter (`TICKETD_LOG`). `info` logs one
    /// line per request, which costs throughput; the default keeps only warnings.
    #[arg(long, default_value = "warn")]
    pub server_log: String,

    /// Process id of an external target, so the report can include its RSS and CPU.
    #[arg(long)]
    pub server_pid: Option<u32>,

    /// Orders to prepare for the load.
    #[arg(long, default_value_t = 1000)]
    pub orders: u64,

    /// Confirm codes per prepared order (at most 999, at least `--batch`).
    #[arg(long, default_value_t = 10)]
    pub vouchers_per_order: u64,

    /// Uses each prepared code allows. Orders × vouchers × capacity ÷ batch is how many fresh
    /// requests the run can send.
    #[arg(long, default_value_t = 100)]
    pub capacity: u64,

    /// Extra vouchers to issue before the run in orders the load never touches (999 per
    /// order), to measure a large ledger: e.g. `--prefill 5000000`.
    #[arg(long, default_value_t = 0)]
    pub prefill: u64,

    /// Connections, each with one request in flight.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,

    /// How long to measure (after the warm-up): a number with `s`, `m` or `h`.
    #[arg(long, value_parser = parse_std_duration, conflicts_with = "requests")]
    pub duration: Option<Duration>,

    /// How many requests to measure (after the warm-up), instead of `--duration`.
    #[arg(long)]
    pub requests: Option<u64>,

    /// Offer at most this many requests per second in all (paced, open loop) instead of
    /// sending as fast as answers come back: e.g. half the saturated rate, for latency at
    /// half load. Latency is then measured from each request's scheduled time, so a server
    /// that falls behind is charged for the queueing it causes.
    #[arg(long)]
    pub rate: Option<f64>,

    /// Write one line per measured request of the target run to this file, once the run is
    /// over: when it was scheduled (Unix time, µs; with `--rate` its slot, otherwise when it
    /// was sent), its latency and how late after that it was sent (µs), as CSV. For placing
    /// slow requests against what the server logged at the time (`--server-log`). At most
    /// 4,000,000 lines (the first ones).
    #[arg(long)]
    pub timeline: Option<PathBuf>,

    /// Warm-up before measuring (its requests are real and are verified, but not reported).
    #[arg(long, value_parser = parse_std_duration, default_value = "2s")]
    pub warmup: Duration,

    /// Signature method of every request.
    #[arg(long, value_enum, default_value_t = BenchSignMethod::Md5)]
    pub sign_method: BenchSignMethod,

    /// Request form: `vouchers` (`voucher_infos` with `used_date`) or `legacy`
    /// (`confirm_code` + `check_num`, one voucher per request).
    #[arg(long, value_enum, default_value_t = Form::Vouchers)]
    pub form: Form,

    /// Vouchers per request (`voucher_infos` entries, 1–999).
    #[arg(long, default_value_t = 1)]
    pub batch: u64,

    /// Fraction of requests that resend an acknowledged request (answered `is_success`,
    /// counted once). Needs `--form vouchers`.
    #[arg(long, default_value_t = 0.0)]
    pub replay_ratio: f64,

    /// Fraction of requests that ask for more uses than a code allows (refused with
    /// `isv.verify-num-exceed`; nothing changes).
    #[arg(long, default_value_t = 0.0)]
    pub reject_ratio: f64,

    /// Also run the same load against a minimal in-process HTTP responder and report the
    /// ratio.
    #[arg(long)]
    pub baseline: bool,

    /// Print the report as one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
}

/// `--sign-method` values (the wire spellings).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BenchSignMethod {
    /// `md5`.
    Md5,
    /// `hmac` (HMAC-MD5).
    Hmac,
    /// `hmac-sha256`.
    #[value(name = "hmac-sha256")]
    HmacSha256,
}

impl From<BenchSignMethod> for SignMethod {
    fn from(m: BenchSignMethod) -> Self {
        match m {
            BenchSignMethod::Md5 => SignMethod::Md5,
            BenchSignMethod::Hmac => SignMethod::HmacMd5,
            BenchSignMethod::HmacSha256 => SignMethod::HmacSha256,
        }
    }
}

/// Reads `--duration` and `--warmup` as ticketd reads its duration settings: `250ms`, `90s`,
/// `15m`, `24h`, `2d`, a bare number meaning seconds. The same grammar as ticketd's
/// `settings::parse_duration`, written again here because this crate must not depend on the
/// server's.
fn parse_std_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let bad = || format!("{text:?}: expected a number with ms, s, m, h or d");
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let n: i64 = number.parse().map_err(|_| bad())?;
    let d = match unit {
        "ms" => chrono::Duration::try_milliseconds(n),
        "s" => chrono::Duration::try_seconds(n),
        "m" => n.checked_mul(60).and_then(chrono::Duration::try_seconds),
        "h" => n.checked_mul(3600).and_then(chrono::Duration::try_seconds),
        "d" => n
            .checked_mul(86_400)
            .and_then(chrono::Duration::try_seconds),
        _ => None,
    }
    .ok_or_else(bad)?;
    d.to_std()
        .map_err(|_| format!("{text:?}: must not be negative"))
}

/// 32 random hex characters (128 bits): the spawned server's admin token, and the bench app's
/// key suffix and secret.
fn random_token() -> String {
    let bytes: [u8; 16] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Measured duration when neither `--duration` nor `--requests` is given.
const DEFAULT_DURATION: Duration = Duration::from_secs(10);

impl BenchArgs {
    /// Refuses combinations that could not produce a meaningful run, before anything is sent.
    fn check(&self) -> anyhow::Result<()> {
        if self.concurrency == 0 {
            bail!("--concurrency must be at least 1");
        }
        if !(1..=999).contains(&self.batch) {
            bail!("--batch must be 1 to 999");
        }
        if !(1..=999).contains(&self.vouchers_per_order) {
            bail!("--vouchers-per-order must be 1 to 999");
        }
        if self.vouchers_per_order < self.batch {
            bail!(
                "--vouchers-per-order ({}) must be at least --batch ({}): a request's vouchers belong to one order",
                self.vouchers_per_order,
                self.batch
            );
        }
        if self.orders == 0 || self.capacity == 0 {
            bail!("--orders and --capacity must be at least 1");
        }
        if self.capacity > 100_000 {
            bail!("--capacity is at most 100000 (each use needs its own used_date second)");
        }
        if self.form == Form::Legacy && self.batch != 1 {
            bail!("--form legacy sends one code per request: use --batch 1");
        }
        for (name, r) in [
            ("--replay-ratio", self.replay_ratio),
            ("--reject-ratio", self.reject_ratio),
        ] {
            if !(0.0..=1.0).contains(&r) {
                bail!("{name} must be between 0 and 1");
            }
        }
        if self.replay_ratio + self.reject_ratio >= 1.0 {
            bail!("--replay-ratio + --reject-ratio must stay below 1: some requests must be fresh");
        }
        if self.form == Form::Legacy && self.replay_ratio > 0.0 {
            bail!(
                "--replay-ratio needs --form vouchers: a legacy report carries no used_date, so \
                 its resend is a new use, not a replay"
            );
        }
        if self.rate.is_some_and(|r| !(r > 0.0 && r.is_finite())) {
            bail!("--rate must be a positive number of requests per second");
        }
        if self.requests == Some(0) {
            bail!("--requests must be at least 1");
        }
        if self.spawn.is_none() && self.admin_token.as_deref().is_none_or(str::is_empty) {
            bail!("--admin-token (or TICKETD_ADMIN_TOKEN) is needed without --spawn");
        }
        if self.spawn.is_none() && (self.data_dir.is_some() || self.database_url.is_some()) {
            bail!("--data-dir and --database-url only apply with --spawn");
        }
        if self.spawn != Some(SpawnMode::Process) && self.server_exe.is_some() {
            bail!("--server-exe only applies with --spawn process");
        }
        if let Some(n) = self.requests {
            let fresh_share = 1.0 - self.replay_ratio - self.reject_ratio;
            let available = self.orders * (self.vouchers_per_order / self.batch) * self.capacity;
            // Only an estimate (the mix is random), so leave a margin before refusing.
            let needed = (n as f64 * fresh_share * 0.9) as u64;
            if needed > available {
                bail!(
                    "--requests {n} needs about {needed} fresh requests but the prepared orders \
                     allow {available}: raise --orders, --vouchers-per-order or --capacity"
                );
            }
        }
        Ok(())
    }

    fn shape(&self, wrap_units: bool) -> Shape {
        Shape {
            concurrency: self.concurrency,
            warmup: self.warmup,
            stop: match (self.requests, self.duration) {
                (Some(n), _) => Stop::Requests(n),
                (None, Some(d)) => Stop::Duration(d),
                (None, None) => Stop::Duration(DEFAULT_DURATION),
            },
            wrap_units,
            // The baseline measures the ceiling: never paced.
            rate: if wrap_units { None } else { self.rate },
            timeline: if wrap_units {
                None
            } else {
                self.timeline.clone()
            },
            progress: std::io::stderr().is_terminal(),
        }
    }
}

/// Runs the benchmark and prints its report (text, or JSON with `--json`), then fails when
/// the ledger disagrees with what the target acknowledged (an order's total or any voucher's
/// count) or any answer was not the one expected ([`Report::verdict`]).
///
/// `server` is what `--spawn` starts in this process (ticketd passes itself); an external target
/// (`--url`) and `--spawn process` do not use it.
pub async fn run(args: BenchArgs, server: Arc<dyn Server>) -> anyhow::Result<()> {
    let json = args.json;
    let report = execute(args, server).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.to_text());
    }
    report.verdict()
}

/// Runs the benchmark and returns its report without printing it (for tests and embedding);
/// `server` as for [`run`].
pub async fn execute(args: BenchArgs, server: Arc<dyn Server>) -> anyhow::Result<Report> {
    args.check()?;
    let loadavg_before = target::loadavg();
    let target = Target::start(&args, server).await?;
    let outcome = measure(&args, &target).await;
    let stopped = target.stop().await;
    let mut report = outcome?;
    stopped.context("stopping the spawned server")?;
    report.machine.loadavg_before = loadavg_before;
    report.machine.loadavg_after = target::loadavg();
    Ok(report)
}

/// Prepare, load, verify and (optionally) the baseline, against a started target.
async fn measure(args: &BenchArgs, target: &Target) -> anyhow::Result<Report> {
    let endpoint = target.endpoint();
    let admin = admin::Admin::new(&endpoint.base_url, &endpoint.admin_token)?;
    admin.ready().await?;
    let sign_method: SignMethod = args.sign_method.into();

    let prepared_at = Instant::now();
    let prefill = if args.prefill > 0 {
        Some(admin::prefill(&admin, args.prefill).await?)
    } else {
        None
    };
    let prefill_time = prepared_at.elapsed();
    let prepared_at = Instant::now();
    let workload = Arc::new(
        admin::prepare(
            &admin,
            &admin::Prepare {
                orders: args.orders,
                vouchers_per_order: args.vouchers_per_order,
                capacity: args.capacity,
                batch: args.batch,
                form: args.form,
                sign_method,
                replay_ratio: args.replay_ratio,
                reject_ratio: args.reject_ratio,
            },
        )
        .await?,
    );
    let prepare_time = prepared_at.elapsed();

    let shape = args.shape(false);
    let probe = target.probe();
    let run = load::run(
        endpoint.gateways.clone(),
        "target",
        &workload,
        &shape,
        probe,
    )
    .await?;
    let verification = admin::verify(&admin, &workload, &run.ledger).await?;

    let baseline = if args.baseline {
        let responder = target::Responder::start().await?;
        let shape = args.shape(true);
        let baseline_workload = Arc::new(workload.for_baseline());
        let result = load::run(
            vec![responder.gateway()],
            "baseline",
            &baseline_workload,
            &shape,
            None,
        )
        .await;
        responder.stop().await?;
        Some(result?)
    } else {
        None
    };

    Ok(Report::new(
        args,
        &endpoint,
        &workload,
        report::Preparation {
            orders: args.orders,
            vouchers: args.orders * args.vouchers_per_order,
            seconds: prepare_time.as_secs_f64(),
            prefill_vouchers: prefill.map_or(0, |p| p.vouchers),
            prefill_seconds: prefill.map(|_| prefill_time.as_secs_f64()),
        },
        &run,
        verification,
        baseline.as_ref(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        args: BenchArgs,
    }

    fn parse(args: &[&str]) -> BenchArgs {
        let mut all = vec!["bench"];
        all.extend_from_slice(args);
        Cli::try_parse_from(all)
            .map(|c| c.args)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn durations_read_as_ticketd_reads_its_settings() {
        assert_eq!(parse_std_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_std_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_std_duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_std_duration("24h"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_std_duration("2d"), Ok(Duration::from_secs(172_800)));
        assert_eq!(parse_std_duration(" 3600 "), Ok(Duration::from_secs(3600)));
        for bad in ["1w", "h", "-1s", ""] {
            assert!(parse_std_duration(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn bare_spawn_means_in_process_and_defaults_check() {
        let a = parse(&["--spawn"]);
        assert_eq!(a.spawn, Some(SpawnMode::InProcess));
        assert!(a.check().is_ok());
        let a = parse(&["--spawn", "process", "--requests", "10"]);
        assert_eq!(a.spawn, Some(SpawnMode::Process));
        assert!(a.check().is_ok());
    }

    #[test]
    fn impossible_shapes_are_refused_before_sending() {
        for bad in [
            &["--spawn", "--form", "legacy", "--batch", "2"][..],
            &["--spawn", "--form", "legacy", "--replay-ratio", "0.1"],
            &["--spawn", "--batch", "20", "--vouchers-per-order", "10"],
            &["--spawn", "--replay-ratio", "0.6", "--reject-ratio", "0.5"],
            &[
                "--spawn",
                "--orders",
                "1",
                "--vouchers-per-order",
                "1",
                "--capacity",
                "1",
                "--requests",
                "100",
            ],
            &["--admin-token", ""],
        ] {
            assert!(parse(bad).check().is_err(), "{bad:?}");
        }
    }
}
