//! Storage faults, injected for real (issue 7, item 2): the SQLite file locked by another
//! process, the SQLite disk full, the PostgreSQL server cut off. For each: a verify answers the
//! retryable `isp.service-busy` (code 50) within a bounded time — never an HTTP 500, never a
//! success that was not written — the ledger is unchanged, `/readyz` answers 503, and once the
//! fault clears ticketd recovers by itself: `/readyz` is 200 again and the same request (a
//! vendor's retry) succeeds, without a restart.
//!
//! Why the refusal leaves no audit entry either: the gateway records refusals through the same
//! store, and that write meets the same fault (it is logged, not answered).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use ticketd::clock::SystemClock;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::helpers::{
    audit_entries, error_json, ledger_snapshot, minutes_ago, request_id_of, spawn_in, success_json,
    voucher_infos, TestApp, TopCall, TopReply,
};

const KEY: &str = "fault-vendor";
const SECRET: &str = "fault-secret-0123456789";
const ORDER: i64 = 4242;
const CODE: &str = "FAULT-CODE-0001";

/// How long a faulty write may keep a vendor waiting before it is answered.
const ANSWER_BOUND: Duration = Duration::from_secs(10);

/// The exact retryable answer every storage fault gets.
fn service_busy(request_id: &str) -> String {
    error_json(
        50,
        "Remote service error",
        Some(("isp.service-busy", "服务繁忙，请稍后重试")),
        request_id,
    )
}

/// The use every test reports: one entry, its own gate time.
fn the_use() -> TopCall {
    TopCall::verify(KEY, SECRET).set("order_id", ORDER).set(
        "voucher_infos",
        voucher_infos(&[(CODE, 1, &minutes_ago(30))]),
    )
}

/// Sends the use (signed now: a retry is a new HTTP request with the same business content)
/// and returns the answer and how long it took.
async fn send(app: &TestApp) -> (TopReply, Duration) {
    let started = Instant::now();
    let reply = tokio::time::timeout(ANSWER_BOUND, app.call(&the_use().set("timestamp", now())))
        .await
        .expect("the verify was not answered within the bound");
    (reply, started.elapsed())
}

fn now() -> String {
    top_protocol::timestamp::format_beijing(chrono::Utc::now())
}

async fn readyz(app: &TestApp) -> (u16, Value) {
    let r = tokio::time::timeout(ANSWER_BOUND, app.http.get(app.url("/readyz")).send())
        .await
        .expect("/readyz was not answered within the bound")
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn setup(app: &TestApp) {
    app.create_app(KEY, SECRET).await;
    app.create_order(ORDER, KEY, &[(CODE, 5)]).await;
    assert_eq!(readyz(app).await, (200, json!({"status": "ready"})));
}

/// Asserts the fault's answer, unreadiness and an unchanged ledger; returns the request id.
async fn assert_refused_and_unready(app: &TestApp, fault: &str) -> String {
    let (reply, took) = send(app).await;
    let id = request_id_of(&reply);
    assert_eq!(reply.status, 200, "{fault}: TOP answers are HTTP 200");
    assert_eq!(reply.text(), service_busy(&id), "{fault}");
    let (status, body) = readyz(app).await;
    assert_eq!(status, 503, "{fault}: /readyz {body}");
    assert_eq!(body["status"], "unready", "{fault}: {body}");
    eprintln!("{fault}: answered isp.service-busy in {took:?}; /readyz: {body}");
    id
}

/// Asserts nothing of the refused request reached the ledger.
async fn assert_unchanged(app: &TestApp, before: &Value, refused: &str, fault: &str) {
    assert_eq!(
        &ledger_snapshot(app, ORDER).await,
        before,
        "{fault}: the ledger changed"
    );
    let entries = audit_entries(app, &format!("order_id={ORDER}&limit=1000")).await;
    assert!(
        entries.iter().all(|e| e["request_id"] != refused),
        "{fault}: the refused request left an audit entry: {entries:?}"
    );
}

/// Asserts recovery without a restart: ready again, and the retry is applied exactly once.
async fn assert_recovered(app: &TestApp, fault: &str) {
    let (status, body) = readyz(app).await;
    assert_eq!(
        status, 200,
        "{fault}: still unready after the fault cleared: {body}"
    );
    let (reply, _) = send(app).await;
    let id = request_id_of(&reply);
    assert_eq!(reply.text(), success_json(&id), "{fault}: the retry");
    assert_eq!(
        app.used(ORDER, CODE).await,
        1,
        "{fault}: the retry counts once"
    );
    let accepted = audit_entries(
        app,
        &format!("order_id={ORDER}&outcome=accepted&limit=1000"),
    )
    .await
    .into_iter()
    .filter(|e| e["action"] == crate::helpers::VERIFY)
    .map(|e| e["request_id"].as_str().unwrap().to_owned())
    .collect::<Vec<_>>();
    assert_eq!(
        accepted,
        vec![id],
        "{fault}: one accepted verify, the retry's"
    );
}

// ---------------------------------------------------------------------------------------------
// (a) SQLite: another process holds the write lock.
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_sqlite_ledger_answers_service_busy_and_recovers_when_released() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ticketd.db");
    // A short busy timeout (the store's setting, via the URL) keeps the test fast; the
    // behaviour is the same with the 5 s default.
    let url = format!("sqlite://{}?busy_timeout=300", db.display());
    let app = spawn_in(dir, |s| s.database_url = Some(url), Arc::new(SystemClock)).await;
    setup(&app).await;
    let before = ledger_snapshot(&app, ORDER).await;

    // Another connection, as an operator's `sqlite3` shell would, takes the write lock.
    let holder = rusqlite::Connection::open(&db).unwrap();
    holder.execute_batch("BEGIN EXCLUSIVE").unwrap();

    let fault = "SQLite locked";
    let refused = assert_refused_and_unready(&app, fault).await;
    // Reads still work while locked (WAL), so the ledger can be checked now.
    assert_unchanged(&app, &before, &refused, fault).await;

    holder.execute_batch("ROLLBACK").unwrap();
    drop(holder);
    assert_recovered(&app, fault).await;
}

// ---------------------------------------------------------------------------------------------
// (b) SQLite: the disk is full.
// ---------------------------------------------------------------------------------------------

/// A small tmpfs mounted for one test, unmounted when dropped.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (e.g. `8m`), or `None` when this process may not mount
    /// (not root, no CAP_SYS_ADMIN); CI runs as root and mounts.
    fn mount(size: &str) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().unwrap();
        let status = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir.path())
            .stderr(std::process::Stdio::null())
            .status();
        match status {
            Ok(s) if s.success() => Some(Tmpfs { dir }),
            _ => None,
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy: a file still open (the server is dropped after this guard in a panic) must not
        // keep the mount around.
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// Writes a file until the file system refuses with ENOSPC; returns its path.
fn fill(dir: &Path) -> PathBuf {
    use std::io::Write;
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).unwrap();
    let chunk = vec![0xA5u8; 64 * 1024];
    loop {
        match f.write(&chunk) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(28) => break, // ENOSPC
            Err(e) => panic!("filling the tmpfs: {e}"),
        }
    }
    // The last partial chunk: byte by byte until ENOSPC, so no free block is left.
    while f.write(&[0]).is_ok_and(|n| n == 1) {}
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_answers_service_busy_and_recovers_when_space_is_freed() {
    let Some(tmpfs) = Tmpfs::mount("8m") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must be able to mount a tmpfs (it runs as root)"
        );
        eprintln!("skipped: cannot mount a tmpfs here (run as root to test a full disk)");
        return;
    };
    let data_dir = tempfile::tempdir_in(tmpfs.path()).unwrap();
    let app = spawn_in(data_dir, |_| {}, Arc::new(SystemClock)).await;
    setup(&app).await;
    let before = ledger_snapshot(&app, ORDER).await;

    let filler = fill(tmpfs.path());
    let fault = "disk full";
    let refused = assert_refused_and_unready(&app, fault).await;
    assert_unchanged(&app, &before, &refused, fault).await;
    // Still unready while nothing changed: readiness is probed, not remembered.
    assert_eq!(
        readyz(&app).await.0,
        503,
        "{fault}: ready again while still full"
    );

    std::fs::remove_file(&filler).unwrap();
    assert_recovered(&app, fault).await;
    app.stop().await;
    drop(tmpfs);
}

// ---------------------------------------------------------------------------------------------
// (c) PostgreSQL: the server becomes unreachable.
// ---------------------------------------------------------------------------------------------

/// A TCP proxy the test controls: while up it relays to `upstream`; cutting it closes every
/// relayed connection at once and refuses new ones (accepts and drops them), as a network
/// partition or a dead server looks to the client.
struct Proxy {
    addr: SocketAddr,
    up: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (up, state) = watch::channel(true);
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    continue;
                };
                if !*state.borrow() {
                    drop(client);
                    continue;
                }
                let mut state = state.clone();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = state.wait_for(|up| !*up) => {}
                    }
                    // Both sockets close here.
                });
            }
        });
        Proxy { addr, up, task }
    }

    fn cut(&self) {
        self.up.send_replace(false);
    }

    fn restore(&self) {
        self.up.send_replace(true);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// `url` with its `host:port` replaced by `addr`, and the upstream address it named.
fn through(url: &str, addr: SocketAddr) -> (String, SocketAddr) {
    let (scheme, rest) = url.split_once("://").unwrap();
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => (format!("{u}@"), h),
        None => (String::new(), authority),
    };
    let hostport = if hostport.contains(':') {
        hostport.to_owned()
    } else {
        format!("{hostport}:5432")
    };
    let upstream = std::net::ToSocketAddrs::to_socket_addrs(&hostport)
        .unwrap()
        .next()
        .unwrap();
    (format!("{scheme}://{userinfo}{addr}{path}"), upstream)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_postgres_answers_service_busy_and_recovers_when_it_returns() {
    use ticket_store::scratch::ScratchDatabase;
    let Some(db) = ScratchDatabase::fresh(ticket_store::Engine::Postgres) else {
        return;
    };
    let (_, upstream) = through(db.url(), "127.0.0.1:1".parse().unwrap());
    let proxy = Proxy::start(upstream).await;
    let (url, _) = through(db.url(), proxy.addr);
    let app = spawn_in(
        tempfile::tempdir().unwrap(),
        |s| {
            s.database_url = Some(url);
            // Bounded waits for a connection, so the answer comes within a second or two.
            s.db_pool.db_acquire_timeout = chrono::Duration::seconds(1);
            s.db_pool.db_max_connections = 4;
        },
        Arc::new(SystemClock),
    )
    .await;
    setup(&app).await;
    let before = ledger_snapshot(&app, ORDER).await;

    proxy.cut();
    let fault = "PostgreSQL unreachable";
    let refused = assert_refused_and_unready(&app, fault).await;

    proxy.restore();
    // The ledger can only be read back once the server is reachable again.
    assert_unchanged(&app, &before, &refused, fault).await;
    assert_recovered(&app, fault).await;
}
