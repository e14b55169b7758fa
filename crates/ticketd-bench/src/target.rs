//! What the bench talks to: an external ticketd, one it starts (in this process on a runtime of
//! its own, or as a child process), and the baseline responder. Also the `/proc` readings
//! (RSS, CPU, load average) the report carries.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::ValueEnum;
use serde::Serialize;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::oneshot;

use super::load::Gateway;
use super::BenchArgs;
use crate::random_token;
use crate::server::{Server, ServerOptions};

/// How `--spawn` starts the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SpawnMode {
    /// In this process, on a runtime of its own (its threads are separate from the load's).
    InProcess,
    /// A child `ticketd serve` process.
    Process,
}

/// Where to send requests, once the target is up.
#[derive(Debug, Clone)]
pub(crate) struct Endpoint {
    /// `http://host:port` (no trailing slash).
    pub(crate) base_url: String,
    pub(crate) admin_token: String,
    /// The gateway the load goes to: one, or with several `--url`s one per server, the load's
    /// connections spread over them in turn.
    pub(crate) gateways: Vec<Gateway>,
    /// How the target was reached or started, for the report.
    pub(crate) description: String,
    /// The spawned server's database URL (not known for an external target).
    pub(crate) database_url: Option<String>,
    /// From start to ready, for a spawned server.
    pub(crate) startup: Option<Duration>,
}

/// A running target.
#[derive(Debug)]
pub(crate) struct Target {
    endpoint: Endpoint,
    kind: Running,
    /// A temporary data directory, removed when the target is dropped.
    _temp: Option<tempfile::TempDir>,
}

#[derive(Debug)]
enum Running {
    External { pid: Option<u32> },
    InProcess(Background),
    Child(tokio::process::Child),
}

impl Target {
    /// Reaches or starts the target `args` describe (`server` is what `--spawn` starts in this
    /// process), and waits until it is ready.
    pub(crate) async fn start(args: &BenchArgs, server: Arc<dyn Server>) -> anyhow::Result<Self> {
        let Some(mode) = args.spawn else {
            // Several servers on one ledger (`--url a,b,c`): the load spreads over them; the
            // admin API of the first prepares the workload and reads the ledger back.
            let urls: Vec<String> = args
                .url
                .split(',')
                .map(|u| u.trim().trim_end_matches('/').to_owned())
                .collect();
            let mut gateways = Vec::with_capacity(urls.len());
            for url in &urls {
                gateways.push(gateway_of(url).await?);
            }
            let base_url = urls.first().cloned().unwrap_or_default();
            return Ok(Self {
                endpoint: Endpoint {
                    gateways,
                    base_url: base_url.clone(),
                    admin_token: args.admin_token.clone().unwrap_or_default(),
                    description: match urls.len() {
                        1 => format!("external ticketd at {base_url}"),
                        n => format!(
                            "{n} external ticketd servers on one ledger: {}",
                            urls.join(", ")
                        ),
                    },
                    database_url: None,
                    startup: None,
                },
                kind: Running::External {
                    pid: args.server_pid,
                },
                _temp: None,
            });
        };
        let (data_dir, temp) = match &args.data_dir {
            Some(d) => (d.clone(), None),
            None => {
                let t = tempfile::Builder::new()
                    .prefix("ticketd-bench-")
                    .tempdir()
                    .context("creating a temporary data directory")?;
                (t.path().to_path_buf(), Some(t))
            }
        };
        let token = random_token();
        let options = ServerOptions {
            data_dir: data_dir.clone(),
            database_url: args.database_url.clone(),
            admin_token: token.clone(),
        };
        let database_url = server.database_url(&options);
        let started = Instant::now();
        let (addr, kind, what) = match mode {
            SpawnMode::InProcess => {
                let server = Background::start("ticketd-server", move |ready, stop| async move {
                    let started = match server.start(options).await {
                        Ok(started) => started,
                        Err(e) => {
                            let _ = ready.send(Err(e));
                            return Ok(());
                        }
                    };
                    let _ = ready.send(Ok(started.addr));
                    (started.serve)(Box::pin(async {
                        let _ = stop.await;
                    }))
                    .await
                })
                .await?;
                (
                    server.addr,
                    Running::InProcess(server),
                    "in-process ticketd",
                )
            }
            SpawnMode::Process => {
                let exe = match &args.server_exe {
                    Some(p) => p.clone(),
                    None => std::env::current_exe().context("finding this executable")?,
                };
                let (addr, child) =
                    start_child(&exe, &data_dir, &token, args, &database_url).await?;
                (addr, Running::Child(child), "child ticketd process")
            }
        };
        let base_url = format!("http://{addr}");
        let target = Self {
            endpoint: Endpoint {
                gateways: vec![Gateway {
                    addr,
                    host: addr.to_string(),
                    path: "/router/rest".to_owned(),
                }],
                base_url: base_url.clone(),
                admin_token: token,
                description: format!("{what} at {base_url}"),
                database_url: Some(redact(&database_url)),
                startup: None,
            },
            kind,
            _temp: temp,
        };
        let admin = super::admin::Admin::new(&base_url, &target.endpoint.admin_token)?;
        let mut target = target;
        admin.ready().await?;
        target.endpoint.startup = Some(started.elapsed());
        Ok(target)
    }

    pub(crate) fn endpoint(&self) -> Endpoint {
        self.endpoint.clone()
    }

    /// The server process to observe, when there is one.
    pub(crate) fn probe(&self) -> Option<Probe> {
        match &self.kind {
            Running::External { pid: Some(pid) } => Some(Probe {
                pid: Some(*pid),
                scope: "server process (--server-pid)",
            }),
            Running::External { pid: None } => None,
            Running::InProcess(_) => Some(Probe {
                pid: None,
                scope: "bench process (in-process server + load generator)",
            }),
            Running::Child(child) => child.id().map(|pid| Probe {
                pid: Some(pid),
                scope: "server process",
            }),
        }
    }

    /// Stops a spawned server gracefully (it flushes its ledger) and waits for it.
    pub(crate) async fn stop(self) -> anyhow::Result<()> {
        match self.kind {
            Running::External { .. } => Ok(()),
            Running::InProcess(server) => server.stop().await,
            Running::Child(mut child) => {
                if let Some(pid) = child.id() {
                    // SIGTERM is ticketd's graceful stop; `kill` avoids unsafe libc calls.
                    let _ = std::process::Command::new("kill")
                        .args(["-TERM", &pid.to_string()])
                        .status();
                }
                match tokio::time::timeout(Duration::from_secs(60), child.wait()).await {
                    Ok(status) => {
                        let status = status.context("waiting for the server")?;
                        if !status.success() {
                            bail!("the spawned server exited with {status}");
                        }
                        Ok(())
                    }
                    Err(_) => {
                        child.start_kill().context("killing the server")?;
                        bail!("the spawned server did not stop within 60 s of SIGTERM; killed")
                    }
                }
            }
        }
    }
}

/// Starts `exe serve` on port 0 and reads its address from the line it prints on stderr.
async fn start_child(
    exe: &std::path::Path,
    data_dir: &std::path::Path,
    token: &str,
    args: &BenchArgs,
    database_url: &str,
) -> anyhow::Result<(SocketAddr, tokio::process::Child)> {
    let mut cmd = tokio::process::Command::new(exe);
    cmd.arg("serve")
        .arg("--listen")
        .arg("127.0.0.1:0")
        .arg("--data-dir")
        .arg(data_dir)
        .arg("--database-url")
        .arg(database_url)
        // The token goes in the environment, not on the command line `ps` shows.
        .env("TICKETD_ADMIN_TOKEN", token)
        .env("TICKETD_LOG", &args.server_log)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd
        .spawn()
        .with_context(|| format!("starting {} serve", exe.display()))?;
    let stderr = child.stderr.take().context("the child's stderr")?;
    let mut lines = BufReader::new(stderr).lines();
    let mut seen = Vec::new();
    let read_addr = async {
        while let Some(line) = lines.next_line().await? {
            if let Some(rest) = line.split("listening on http://").nth(1) {
                let addr = rest.split('/').next().unwrap_or_default();
                return Ok::<_, anyhow::Error>(Some(addr.parse::<SocketAddr>()?));
            }
            seen.push(line);
        }
        Ok(None)
    };
    let addr = match tokio::time::timeout(Duration::from_secs(120), read_addr).await {
        Ok(Ok(Some(addr))) => addr,
        Ok(Ok(None)) => bail!("the server exited before listening:\n{}", seen.join("\n")),
        Ok(Err(e)) => return Err(e.context("reading the server's address")),
        Err(_) => bail!("the server did not start listening within 120 s"),
    };
    // Keep draining its stderr (a full pipe would block it), passing its lines on.
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            eprintln!("server: {line}");
        }
    });
    Ok((addr, child))
}

/// Hides a password in a database URL.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(start), Some(at)) if at > start => format!("{}://***{}", &url[..start], &url[at..]),
        _ => url.to_owned(),
    }
}

/// The gateway of an external target's base URL.
async fn gateway_of(base_url: &str) -> anyhow::Result<Gateway> {
    let url = reqwest::Url::parse(base_url).with_context(|| format!("--url {base_url:?}"))?;
    if url.scheme() != "http" {
        bail!("--url must be http:// (the load generator speaks plain HTTP/1.1)");
    }
    let host = url.host_str().context("--url has no host")?.to_owned();
    let port = url.port_or_known_default().unwrap_or(80);
    let addr = tokio::net::lookup_host((host.as_str(), port))
        .await
        .with_context(|| format!("resolving {host}"))?
        .next()
        .with_context(|| format!("{host} has no address"))?;
    let host_header = match url.port() {
        Some(p) => format!("{host}:{p}"),
        None => host,
    };
    Ok(Gateway {
        addr,
        host: host_header,
        path: format!("{}/router/rest", url.path().trim_end_matches('/')),
    })
}

/// A server running on a runtime of its own, in its own threads, so the load generator's
/// tasks and the server's do not share a scheduler (as with two processes).
#[derive(Debug)]
pub(crate) struct Background {
    pub(crate) addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    done: oneshot::Receiver<anyhow::Result<()>>,
}

impl Background {
    /// Starts `body` on a new multi-threaded runtime (one worker per core). `body` reports its
    /// bound address (or why it could not start) on `ready` and serves until `stop` fires.
    pub(crate) async fn start<F, Fut>(name: &str, body: F) -> anyhow::Result<Self>
    where
        F: FnOnce(oneshot::Sender<anyhow::Result<SocketAddr>>, oneshot::Receiver<()>) -> Fut
            + Send
            + 'static,
        Fut: Future<Output = anyhow::Result<()>>,
    {
        let (ready_tx, ready) = oneshot::channel();
        let (stop, stop_rx) = oneshot::channel();
        let (done_tx, done) = oneshot::channel();
        let thread_name = name.to_owned();
        std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                let result = tokio::runtime::Builder::new_multi_thread()
                    .thread_name(thread_name)
                    .enable_all()
                    .build()
                    .context("building a runtime")
                    .and_then(|rt| rt.block_on(body(ready_tx, stop_rx)));
                let _ = done_tx.send(result);
            })
            .context("starting a server thread")?;
        let addr = match ready.await {
            Ok(addr) => addr?,
            Err(_) => {
                let why = match done.await {
                    Ok(Err(e)) => format!("{e:#}"),
                    _ => "it stopped without saying why".to_owned(),
                };
                bail!("the {name} did not start: {why}");
            }
        };
        Ok(Self {
            addr,
            stop: Some(stop),
            done,
        })
    }

    /// Asks the server to stop and waits until it has.
    pub(crate) async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match (&mut self.done).await {
            Ok(result) => result,
            Err(_) => bail!("the server thread ended without an answer"),
        }
    }
}

/// The body every baseline answer carries: the size and shape of a real verify success.
const BASELINE_BODY: &[u8] =
    br#"{"travel_ticket_order_verify_response":{"is_success":true,"request_id":"0000000000000"}}"#;

/// The baseline: a minimal HTTP server that reads each request whole and answers a fixed
/// body, on the same HTTP stack (hyper through axum) and runtime setup as ticketd. What it
/// sustains is this machine's ceiling for the load shape, with no protocol or ledger work.
#[derive(Debug)]
pub(crate) struct Responder {
    server: Background,
}

impl Responder {
    pub(crate) async fn start() -> anyhow::Result<Self> {
        let server = Background::start("baseline-responder", |ready, stop| async move {
            use axum::routing::any;
            let listener = match tokio::net::TcpListener::bind("127.0.0.1:0").await {
                Ok(l) => l,
                Err(e) => {
                    let _ = ready.send(Err(e.into()));
                    return Ok(());
                }
            };
            let _ = ready.send(listener.local_addr().map_err(Into::into));
            let app = axum::Router::new().route(
                "/router/rest",
                any(|_body: axum::body::Bytes| async {
                    (
                        [(
                            axum::http::header::CONTENT_TYPE,
                            "text/javascript;charset=UTF-8",
                        )],
                        BASELINE_BODY,
                    )
                }),
            );
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stop.await;
                })
                .await
                .context("the baseline responder failed")
        })
        .await?;
        Ok(Self { server })
    }

    pub(crate) fn gateway(&self) -> Gateway {
        Gateway {
            addr: self.server.addr,
            host: self.server.addr.to_string(),
            path: "/router/rest".to_owned(),
        }
    }

    pub(crate) async fn stop(self) -> anyhow::Result<()> {
        self.server.stop().await
    }
}

/// A process whose memory and CPU the report includes.
#[derive(Debug, Clone)]
pub(crate) struct Probe {
    /// `None`: this process.
    pub(crate) pid: Option<u32>,
    pub(crate) scope: &'static str,
}

/// One reading of a process.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sample {
    pub(crate) rss_kb: u64,
    pub(crate) hwm_kb: u64,
    pub(crate) cpu_seconds: f64,
    /// Bytes the process has caused to be sent to storage (`/proc/<pid>/io` `write_bytes`:
    /// its WAL and database writes, checkpoints included, once the kernel writes them back);
    /// `None` where the kernel does not show it.
    pub(crate) write_bytes: Option<u64>,
}

impl Probe {
    pub(crate) fn sample(&self) -> Option<Sample> {
        let status = std::fs::read_to_string(proc_path(self.pid, "status")).ok()?;
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        };
        Some(Sample {
            rss_kb: field("VmRSS:")?,
            hwm_kb: field("VmHWM:")?,
            cpu_seconds: cpu_seconds(self.pid)?,
            write_bytes: write_bytes(self.pid),
        })
    }
}

/// The observed process's memory and CPU over the measured phase.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Resources {
    /// Which process the figures are of.
    pub(crate) scope: &'static str,
    pub(crate) rss_start_kb: u64,
    pub(crate) rss_end_kb: u64,
    /// Largest RSS sampled (once a second) during the measured phase.
    pub(crate) rss_max_kb: u64,
    /// The kernel's high-water mark (`VmHWM`) since the process started.
    pub(crate) hwm_kb: u64,
    /// User + system CPU used during the measured phase.
    pub(crate) cpu_seconds: f64,
    /// Bytes sent to storage during the measured phase, when the kernel shows them.
    pub(crate) write_bytes: Option<u64>,
    /// Requests answered `is_success` between the two readings the figures above are the
    /// difference of (not the measured requests: a warm-up request still in flight when the
    /// first reading is taken costs the server its work after it, and is counted here).
    pub(crate) acknowledged_verifies: u64,
}

fn proc_path(pid: Option<u32>, file: &str) -> PathBuf {
    match pid {
        Some(pid) => PathBuf::from(format!("/proc/{pid}/{file}")),
        None => PathBuf::from(format!("/proc/self/{file}")),
    }
}

/// User + system CPU seconds of a process (`/proc/<pid>/stat`, fields 14 and 15, in the
/// kernel's USER_HZ ticks, which are 100 per second on Linux's supported architectures).
pub(crate) fn cpu_seconds(pid: Option<u32>) -> Option<f64> {
    let stat = std::fs::read_to_string(proc_path(pid, "stat")).ok()?;
    // The command name (field 2) may contain spaces; the fields after it do not.
    let after = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 / 100.0)
}

/// `write_bytes` of `/proc/<pid>/io`: what the process made the kernel send to storage. The
/// write path's real cost on disk, which a request count cannot show (a verify that dirties
/// four random pages writes them twice: to the WAL, then at the checkpoint).
pub(crate) fn write_bytes(pid: Option<u32>) -> Option<u64> {
    let io = std::fs::read_to_string(proc_path(pid, "io")).ok()?;
    io.lines()
        .find_map(|l| l.strip_prefix("write_bytes:"))
        .and_then(|v| v.trim().parse().ok())
}

/// The 1, 5 and 15-minute load averages, as the kernel prints them.
pub(crate) fn loadavg() -> Option<String> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    Some(
        text.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_can_be_observed() {
        let s = Probe {
            pid: None,
            scope: "self",
        }
        .sample()
        .expect("/proc/self is readable on Linux");
        assert!(s.rss_kb > 0 && s.hwm_kb >= s.rss_kb);
        // A process may always read its own `io` file on Linux.
        assert!(s.write_bytes.is_some(), "/proc/self/io unreadable");
        assert!(loadavg().is_some_and(|l| l.split(' ').count() == 3));
    }

    #[test]
    fn passwords_are_hidden() {
        assert_eq!(redact("postgres://u:pw@h/db"), "postgres://***@h/db");
    }
}
