//! Storage faults, injected for real (issue 7, item 2): the SQLite file locked by another
//! process, the SQLite disk full, the PostgreSQL server cut off. For each: a verify answers the
//! retryable `isp.service-busy` (code 50) within a bounded time — never an HTTP 500, never a
//! success that was not written — the ledger is unchanged, `/readyz` answers 503, and once the
//! fault clears ticketd recovers by itself: `/readyz` is 200 again and the same request (a
//! vendor's retry) succeeds, without a restart.
//!
//! Why the refusal leaves no audit entry either: the gateway records refusals through the same
//! store, and that write meets the same fault (it is logged, not answered).
//!
//! Section (d) (issue 12, item 5) cuts the PostgreSQL or MariaDB connection exactly between
//! `COMMIT` and its answer, with the same proxy taught to recognise a `COMMIT` on the wire:
//! the store must look the request up and answer what the ledger shows — the success, the
//! retryable refusal, or, when it cannot tell in time, `isv.commit-outcome-unknown` with an
//! anomaly — and never count a use twice.

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
    voucher_infos, LedgerSnapshot, TestApp, TopCall, TopReply,
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
async fn assert_unchanged(app: &TestApp, before: &LedgerSnapshot, refused: &str, fault: &str) {
    assert_eq!(
        &ledger_snapshot(app, ORDER).await,
        before,
        "{fault}: the ledger changed"
    );
    let entries = audit_entries(app, &format!("order_id={ORDER}&limit=1000")).await;
    assert!(
        entries.iter().all(|e| e.request_id != refused),
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
    .filter(|e| e.action == crate::helpers::VERIFY)
    .map(|e| e.request_id.as_str().to_owned())
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
/// partition or a dead server looks to the client. Armed with [`OnCommit`], it also cuts one
/// connection exactly around its next `COMMIT` (section (d)).
struct Proxy {
    addr: SocketAddr,
    up: watch::Sender<bool>,
    on_commit: Arc<std::sync::Mutex<OnCommit>>,
    /// Tells the test the armed cut happened.
    fired: Arc<tokio::sync::Notify>,
    task: tokio::task::JoinHandle<()>,
}

/// What the proxy does with the next `COMMIT` a client sends (then it disarms).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OnCommit {
    /// Relay it like anything else.
    Relay,
    /// Relay it, wait for the server's answer, drop the answer and close the connection: the
    /// commit happened and the client never hears of it.
    CutAnswer,
    /// The same, then go down (as [`Proxy::cut`]) until restored.
    CutAnswerAndGoDown,
    /// Drop it and close the connection: the server never commits (it rolls back when it sees
    /// the connection close).
    CutBefore,
    /// Relay it and close the connection at once: the client's lookup races the server's
    /// commit, which the lookup must wait for.
    CutAfterSending,
}

impl Proxy {
    async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (up, state) = watch::channel(true);
        let on_commit = Arc::new(std::sync::Mutex::new(OnCommit::Relay));
        let fired = Arc::new(tokio::sync::Notify::new());
        let (armed, notify, going_down) = (on_commit.clone(), fired.clone(), up.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                if !*state.borrow() {
                    drop(client);
                    continue;
                }
                let mut state = state.clone();
                let (armed, notify, going_down) =
                    (armed.clone(), notify.clone(), going_down.clone());
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = relay(client, server, &armed, &notify, &going_down) => {}
                        _ = state.wait_for(|up| !*up) => {}
                    }
                    // Both sockets close here.
                });
            }
        });
        Proxy {
            addr,
            up,
            on_commit,
            fired,
            task,
        }
    }

    fn cut(&self) {
        self.up.send_replace(false);
    }

    fn restore(&self) {
        self.up.send_replace(true);
    }

    /// Arms the cut for the next `COMMIT` through the proxy.
    fn on_next_commit(&self, what: OnCommit) {
        *self.on_commit.lock().unwrap() = what;
    }
}

/// Relays one connection both ways until either side closes, or until the armed cut.
async fn relay(
    client: TcpStream,
    server: TcpStream,
    armed: &std::sync::Mutex<OnCommit>,
    fired: &tokio::sync::Notify,
    going_down: &watch::Sender<bool>,
) {
    use std::sync::atomic::{AtomicBool, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mut from_client, mut to_client) = client.into_split();
    let (mut from_server, mut to_server) = server.into_split();
    // Set before a COMMIT is relayed for a cut: whatever the server sends after it is the
    // COMMIT's answer, and never reaches the client. (Both directions run in this one task,
    // so the flag is always set before the server can answer.)
    let swallow = AtomicBool::new(false);
    let mut go_down = false;
    let upstream = async {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match from_client.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let bytes = &buf[..n];
            let what = if is_commit(bytes) {
                std::mem::replace(&mut *armed.lock().unwrap(), OnCommit::Relay)
            } else {
                OnCommit::Relay
            };
            match what {
                OnCommit::Relay => {}
                OnCommit::CutBefore => {
                    fired.notify_one();
                    return;
                }
                OnCommit::CutAnswer | OnCommit::CutAnswerAndGoDown => {
                    go_down = what == OnCommit::CutAnswerAndGoDown;
                    swallow.store(true, Ordering::SeqCst);
                }
                OnCommit::CutAfterSending => {
                    let _ = to_server.write_all(bytes).await;
                    fired.notify_one();
                    return;
                }
            }
            if to_server.write_all(bytes).await.is_err() {
                return;
            }
        }
    };
    let downstream = async {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match from_server.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            if swallow.load(Ordering::SeqCst) {
                // The server answered the COMMIT: it is committed. Drop the answer, close.
                return;
            }
            if to_client.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    };
    tokio::select! {
        _ = upstream => {}
        _ = downstream => {}
    }
    if swallow.load(Ordering::SeqCst) {
        if go_down {
            going_down.send_replace(false);
        }
        fired.notify_one();
    }
}

/// Whether `bytes` hold a `COMMIT` as the drivers send it (seen on the wire): a PostgreSQL
/// simple query message (`'Q'`, its length, the text, `\0`) whose text ends with `COMMIT` —
/// `COMMIT` alone, or a batch's write and events then `COMMIT`
/// (`bulk::commit_statement`) — or MySQL's `COM_QUERY` packet (length 7, sequence 0,
/// command 3, `COMMIT`). A driver writes a message in one piece, and waits for the answer to
/// the previous one first, so one read of the tests' small batches holds it whole.
fn is_commit(bytes: &[u8]) -> bool {
    const MYSQL: &[u8] = b"\x07\0\0\0\x03COMMIT";
    let postgres = bytes.first() == Some(&b'Q')
        && bytes
            .get(1..5)
            .map(|len| u32::from_be_bytes([len[0], len[1], len[2], len[3]]))
            == Some(u32::try_from(bytes.len() - 1).unwrap_or(u32::MAX))
        && (bytes.ends_with(b"\0\0\0\x0bCOMMIT\0") || bytes.ends_with(b";\nCOMMIT\0"));
    postgres || bytes.windows(MYSQL.len()).any(|w| w == MYSQL)
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
    } else if scheme.starts_with("postgres") {
        format!("{hostport}:5432")
    } else {
        format!("{hostport}:3306")
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

// ---------------------------------------------------------------------------------------------
// (d) PostgreSQL and MariaDB: the connection drops between COMMIT and its answer (issue 12,
//     item 5). The store looks the request up instead of guessing.
// ---------------------------------------------------------------------------------------------

/// The engines the commit cases run on (each skipped, as elsewhere, without its server).
const SERVERS: [ticket_store::Engine; 2] =
    [ticket_store::Engine::Postgres, ticket_store::Engine::MySql];

/// An order named only by its `out_order_id` in one case: its verify runs alone, in a
/// transaction of its own, rather than in a batch.
const OUT_ORDER: i64 = 4343;
const OUT: &str = "OUT-FAULT-4343";

/// A legacy report (`confirm_code` + `check_num`): no gate time, so a resent one is a new use.
/// This is the report an unknown outcome must never get resent.
fn legacy_use(order: Option<i64>) -> TopCall {
    let call = TopCall::verify(KEY, SECRET)
        .set("confirm_code", CODE)
        .set("check_num", 1)
        .set("timestamp", now());
    match order {
        Some(id) => call.set("order_id", id),
        None => call.set("out_order_id", OUT),
    }
}

/// `url` with TLS turned off, so that the proxy sees the protocol's bytes (the local
/// PostgreSQL offers TLS, which sqlx would otherwise take).
fn plaintext(url: &str, engine: ticket_store::Engine) -> String {
    let join = if url.contains('?') { '&' } else { '?' };
    match engine {
        ticket_store::Engine::Postgres => format!("{url}{join}sslmode=disable"),
        ticket_store::Engine::MySql => format!("{url}{join}ssl-mode=disabled"),
    }
}

/// ticketd on a fresh database of `engine` behind a proxy, with the fault vendor, its order
/// and one named by `out_order_id`. `None`: no such server here (see `ScratchDatabase`).
async fn behind_proxy(
    engine: ticket_store::Engine,
) -> Option<(ticket_store::scratch::ScratchDatabase, Proxy, TestApp)> {
    let db = ticket_store::scratch::ScratchDatabase::fresh(engine)?;
    let (_, upstream) = through(db.url(), "127.0.0.1:1".parse().unwrap());
    let proxy = Proxy::start(upstream).await;
    let (url, _) = through(&plaintext(db.url(), engine), proxy.addr);
    let app = spawn_in(
        tempfile::tempdir().unwrap(),
        |s| {
            s.database_url = Some(url);
            s.db_pool.db_acquire_timeout = chrono::Duration::seconds(1);
            s.db_pool.db_max_connections = 4;
        },
        Arc::new(SystemClock),
    )
    .await;
    setup(&app).await;
    crate::helpers::create_order_with(
        &app,
        OUT_ORDER,
        KEY,
        &[(CODE, 5)],
        json!({"out_order_id": OUT}),
    )
    .await;
    Some((db, proxy, app))
}

/// Sends `call` with the proxy armed for its COMMIT, and checks the cut happened.
async fn send_cut(app: &TestApp, proxy: &Proxy, call: &TopCall, cut: OnCommit) -> TopReply {
    proxy.on_next_commit(cut);
    let fired = proxy.fired.notified();
    let reply = tokio::time::timeout(ANSWER_BOUND, app.call(call))
        .await
        .expect("the verify was not answered within the bound");
    tokio::time::timeout(Duration::from_secs(1), fired)
        .await
        .expect("the proxy never saw the COMMIT it was armed for");
    reply
}

/// The request ids of the accepted verifies of `order`.
async fn accepted_verifies(app: &TestApp, order: i64) -> Vec<String> {
    audit_entries(
        app,
        &format!("order_id={order}&outcome=accepted&limit=1000"),
    )
    .await
    .into_iter()
    .filter(|e| e.action == crate::helpers::VERIFY)
    .map(|e| e.request_id.as_str().to_owned())
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_that_landed_but_lost_its_answer_is_answered_as_the_success() {
    for engine in SERVERS {
        let Some((_db, proxy, app)) = behind_proxy(engine).await else {
            continue;
        };
        // A verify by `order_id` is committed by a batch; one by `out_order_id` alone by a
        // transaction of its own: both are looked up.
        for (order, named) in [(ORDER, Some(ORDER)), (OUT_ORDER, None)] {
            let case = format!("{} {order}", engine.name());
            let reply = send_cut(&app, &proxy, &legacy_use(named), OnCommit::CutAnswer).await;
            let id = request_id_of(&reply);
            // The caller has its success, so it has no reason to send the report again.
            assert_eq!(reply.text(), success_json(&id), "{case}");
            assert_eq!(app.used(order, CODE).await, 1, "{case}: counted once");
            assert_eq!(accepted_verifies(&app, order).await, vec![id], "{case}");
            let unknown = crate::helpers::anomalies(&app, "kind=commit_outcome_unknown").await;
            assert!(unknown.is_empty(), "{case}: {unknown:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_that_never_reached_the_server_is_answered_as_a_failed_write() {
    for engine in SERVERS {
        let Some((_db, proxy, app)) = behind_proxy(engine).await else {
            continue;
        };
        for (order, named) in [(ORDER, Some(ORDER)), (OUT_ORDER, None)] {
            let case = format!("{} {order}", engine.name());
            let reply = send_cut(&app, &proxy, &legacy_use(named), OnCommit::CutBefore).await;
            let refused = request_id_of(&reply);
            // Nothing was written, and it is known: the retryable answer is the truth.
            assert_eq!(reply.text(), service_busy(&refused), "{case}");
            assert_eq!(app.used(order, CODE).await, 0, "{case}: nothing counted");
            // The SDK's own retry then counts the use, once.
            let retry = app.call(&legacy_use(named)).await;
            let id = request_id_of(&retry);
            assert_eq!(retry.text(), success_json(&id), "{case}: the retry");
            assert_eq!(app.used(order, CODE).await, 1, "{case}: counted once");
            assert_eq!(accepted_verifies(&app, order).await, vec![id], "{case}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_outcome_still_unknown_after_the_bound_is_answered_unretried_with_an_anomaly() {
    for engine in SERVERS {
        let Some((_db, proxy, app)) = behind_proxy(engine).await else {
            continue;
        };
        let case = engine.name();
        // The server commits, the answer is lost, and the database stays away: no lookup can
        // tell within the bound.
        let started = Instant::now();
        let reply = send_cut(
            &app,
            &proxy,
            &legacy_use(Some(ORDER)),
            OnCommit::CutAnswerAndGoDown,
        )
        .await;
        let id = request_id_of(&reply);
        assert_eq!(
            reply.text(),
            error_json(
                50,
                "Remote service error",
                Some((
                    "isv.commit-outcome-unknown",
                    "处理结果未知，请勿自动重试，请联系平台核对"
                )),
                &id
            ),
            "{case}"
        );
        assert!(
            started.elapsed() >= Duration::from_secs(3),
            "{case}: answered before the bound: {:?}",
            started.elapsed()
        );
        // Not `isp.*`: neither top-client nor taobaopy resends it by itself.
        assert!(!top_protocol::TopError::business("isv.commit-outcome-unknown", "").is_retryable());

        // The ledger comes back: the anomaly naming the request is recorded, with what the
        // store then found — the commit had landed.
        proxy.restore();
        let anomaly = {
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                let found = crate::helpers::anomalies(&app, "kind=commit_outcome_unknown").await;
                if let Some(a) = found.into_iter().next() {
                    break a;
                }
                assert!(
                    Instant::now() < deadline,
                    "{case}: no commit_outcome_unknown anomaly once the database was back"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        };
        assert_eq!(anomaly.request_id, id.as_str(), "{case}: {anomaly:?}");
        assert_eq!(anomaly.order_id, Some(ORDER), "{case}: {anomaly:?}");
        assert_eq!(anomaly.app_key.as_deref(), Some(KEY), "{case}: {anomaly:?}");
        assert_eq!(anomaly.status, "open", "{case}: {anomaly:?}");
        assert_eq!(anomaly.detail["landed"], true, "{case}: {anomaly:?}");
        // Counted once, and only once: the one accepted verify is the unknown one.
        assert_eq!(app.used(ORDER, CODE).await, 1, "{case}");
        assert_eq!(
            accepted_verifies(&app, ORDER).await,
            vec![id.clone()],
            "{case}"
        );
        assert_eq!(
            crate::helpers::anomalies(&app, "kind=commit_outcome_unknown")
                .await
                .len(),
            1,
            "{case}: one anomaly"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_cut_the_moment_it_is_sent_is_answered_as_the_ledger_then_shows() {
    for engine in SERVERS {
        let Some((_db, proxy, app)) = behind_proxy(engine).await else {
            continue;
        };
        // Whether the server still commits is a race; the answer must agree with the ledger
        // whichever way it goes, because the lookup first waits for the write's locks. (With
        // that wait removed, the lookup often runs before the server has committed, and this
        // test catches a success answered as `isp.service-busy`.)
        let mut used = 0;
        for round in 0..5 {
            let case = format!("{} round {round}", engine.name());
            let reply = send_cut(
                &app,
                &proxy,
                &legacy_use(Some(ORDER)),
                OnCommit::CutAfterSending,
            )
            .await;
            let id = request_id_of(&reply);
            let now_used = app.used(ORDER, CODE).await;
            if reply.text() == success_json(&id) {
                assert_eq!(
                    now_used,
                    used + 1,
                    "{case}: answered success, so counted once"
                );
            } else {
                assert_eq!(reply.text(), service_busy(&id), "{case}");
                assert_eq!(now_used, used, "{case}: answered busy, so not counted");
            }
            used = now_used;
        }
        assert_eq!(accepted_verifies(&app, ORDER).await.len() as i64, used);
    }
}
