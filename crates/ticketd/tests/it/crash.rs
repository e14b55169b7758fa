//! Crash consistency, proven (issue 7, item 1): sustained verify load through the real HTTP
//! path, SIGKILL at random moments, restart on the same data directory, and after every cycle a
//! full audit of the ledger against what the clients were told.
//!
//! Each cycle starts the real `ticketd` binary, lets four concurrent clients send signed
//! verifies — fresh uses (every entry with its own gate time, so each use is identifiable),
//! retries of earlier ones, and requests that must be refused (an unknown code, a gate time in
//! the future, a use beyond a small order's capacity) — kills the process with SIGKILL after a
//! random delay, restarts it, and checks:
//!
//! 1. every verify acknowledged `is_success` is in the ledger: an accepted audit entry with the
//!    acknowledged `request_id`, its uses in `voucher_uses`, its fingerprints remembered;
//! 2. no voucher is used beyond its capacity;
//! 3. no extra use exists: each voucher's count equals the uses of the acknowledged requests
//!    plus those of requests whose answer was lost in the kill and that the ledger holds —
//!    each of those all or nothing (its audit entry's changes, its `voucher_uses` rows and its
//!    request's entries agree exactly), and no use is counted twice;
//! 4. the accepted verify entries of the audit trail rebuild every counter exactly, and so do
//!    the `voucher_uses` rows (read from the file, beside the server).
//!
//! A request whose answer was lost is resolved by that check (applied or not) and may be
//! retried by a client in a later cycle, as a vendor would. One lost or extra use fails the
//! test, which prints the seed: `TICKETD_CRASH_SEED=<seed>` replays the same choices (the
//! moments of the kills still depend on timing), `TICKETD_CRASH_CYCLES` sets the number of
//! cycles (default 25).

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use top_protocol::timestamp::{format_beijing, parse_beijing};

use crate::helpers::{request_id_of, success_json, TopCall, TopReply, VERIFY};

const TOKEN: &str = "crash-admin-token";
const KEY: &str = "crash-vendor";
const SECRET: &str = "crash-secret-0123456789";
const CLIENTS: usize = 4;
/// Capacity of the codes that never run out.
const LARGE: i64 = 1_000_000;

/// The orders: (order id, [(code, capacity)]). Codes end in distinct 4-character tails, because
/// the audit trail shows only the last four (of these 12-character codes). 8103 runs out early,
/// so later uses of it must be refused whole.
const ORDERS: &[(i64, &[(&str, i64)])] = &[
    (8101, &[("CRASH-A-0001", LARGE), ("CRASH-B-0002", LARGE)]),
    (8102, &[("CRASH-C-0003", LARGE)]),
    (8103, &[("CRASH-D-0004", 6), ("CRASH-E-0005", 4)]),
    (
        8104,
        &[
            ("CRASH-F-0006", LARGE),
            ("CRASH-G-0007", LARGE),
            ("CRASH-H-0008", LARGE),
        ],
    ),
];
const SMALL_ORDER: i64 = 8103;
const UNKNOWN_CODE: &str = "CRASH-X-0099";

fn masked(code: &str) -> String {
    ticket_ledger::mask_code(code)
}

// ---------------------------------------------------------------------------------------------
// The clients' model: every use ever sent and what its sender knows about it.
// ---------------------------------------------------------------------------------------------

/// What a use's request must get.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// Applied, or refused `isv.verify-num-exceed` on the small order once it ran out.
    Valid,
    /// Refused whole: one entry names a code the order does not have.
    UnknownCode,
    /// Refused whole: one entry's gate time lies hours in the future.
    FutureDate,
}

/// What the clients know about a use.
#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// Never sent.
    New,
    /// Applied by the request with this id (acknowledged, or found by a check after its answer
    /// was lost).
    Applied(String),
    /// Known not applied: refused, or its answer was lost and the check found nothing.
    Absent,
    /// The last attempt's answer was lost in a kill: applied or not, to be resolved.
    Lost,
}

#[derive(Debug, Clone)]
struct Entry {
    code: &'static str,
    quantity: i64,
    used_date: String,
}

#[derive(Debug)]
struct Use {
    order: i64,
    entries: Vec<Entry>,
    expect: Expect,
    state: State,
    /// A client is sending it now (a use is never in flight twice, so an answer tells exactly
    /// which request applied it).
    in_flight: bool,
}

#[derive(Debug, Default)]
struct Tally {
    sent: u64,
    acked: u64,
    replays: u64,
    refused: u64,
    lost: u64,
    lost_applied: u64,
    lost_absent: u64,
}

#[derive(Debug)]
struct Model {
    uses: Vec<Use>,
    /// Gate time → the use it belongs to (every entry's gate time is unique).
    by_date: HashMap<String, usize>,
    /// Seconds handed out for gate times, past and future.
    next_second: i64,
    past_base: chrono::DateTime<Utc>,
    future_base: chrono::DateTime<Utc>,
    tally: Tally,
    /// Wrong answers seen by the clients (the test fails on the first).
    failures: Vec<String>,
}

impl Model {
    fn new() -> Self {
        let now = Utc::now();
        Model {
            uses: Vec::new(),
            by_date: HashMap::new(),
            next_second: 0,
            past_base: now - chrono::Duration::hours(20),
            future_base: now + chrono::Duration::hours(3),
            tally: Tally::default(),
            failures: Vec::new(),
        }
    }

    fn date(&mut self, future: bool) -> String {
        self.next_second += 1;
        let base = if future {
            self.future_base
        } else {
            self.past_base
        };
        format_beijing(base + chrono::Duration::seconds(self.next_second))
    }

    /// Picks the next request: a new use or a retry of a settled one. Marks it in flight.
    fn next(&mut self, rng: &mut StdRng) -> usize {
        let roll = rng.random_range(0..100);
        if roll < 22 {
            let settled: Vec<usize> = (0..self.uses.len())
                .filter(|&i| {
                    let u = &self.uses[i];
                    !u.in_flight && matches!(u.state, State::Applied(_) | State::Absent)
                })
                .collect();
            if !settled.is_empty() {
                let i = settled[rng.random_range(0..settled.len())];
                self.uses[i].in_flight = true;
                return i;
            }
        }
        let expect = match roll {
            22..=33 => Expect::UnknownCode,
            34..=44 => Expect::FutureDate,
            _ => Expect::Valid,
        };
        // Refusals go to orders that never run out, so they have one possible answer.
        let (order, codes) = loop {
            let (order, codes) = ORDERS[rng.random_range(0..ORDERS.len())];
            // The small order takes few fresh uses: once it has run out, they only add
            // refusals.
            let small = order == SMALL_ORDER;
            if !small || (expect == Expect::Valid && rng.random_bool(0.4)) {
                break (order, codes);
            }
        };
        let count = rng.random_range(1..=codes.len().min(3));
        let mut picked: Vec<&'static str> = codes.iter().map(|(c, _)| *c).collect();
        for i in (1..picked.len()).rev() {
            picked.swap(i, rng.random_range(0..=i));
        }
        picked.truncate(count);
        let max_quantity = if order == SMALL_ORDER { 2 } else { 3 };
        let mut entries: Vec<Entry> = picked
            .into_iter()
            .map(|code| Entry {
                code,
                quantity: rng.random_range(1..=max_quantity),
                used_date: String::new(),
            })
            .collect();
        match expect {
            Expect::Valid => {}
            Expect::UnknownCode => {
                let at = rng.random_range(0..=entries.len());
                entries.insert(
                    at,
                    Entry {
                        code: UNKNOWN_CODE,
                        quantity: 1,
                        used_date: String::new(),
                    },
                );
            }
            Expect::FutureDate => {}
        }
        let future_at = rng.random_range(0..entries.len());
        for (i, e) in entries.iter_mut().enumerate() {
            e.used_date = self.date(expect == Expect::FutureDate && i == future_at);
        }
        let index = self.uses.len();
        for e in &entries {
            self.by_date.insert(e.used_date.clone(), index);
        }
        self.uses.push(Use {
            order,
            entries,
            expect,
            state: State::New,
            in_flight: true,
        });
        index
    }

    /// Records what one attempt at use `i` got.
    fn answered(&mut self, i: usize, outcome: Result<Answer, String>) {
        self.tally.sent += 1;
        let u = &mut self.uses[i];
        u.in_flight = false;
        let what = format!(
            "use #{i} {:?} on order {}, {:?}",
            u.expect, u.order, u.state
        );
        match outcome {
            Err(_) => {
                self.tally.lost += 1;
                if matches!(u.state, State::New | State::Absent) {
                    u.state = State::Lost;
                }
            }
            Ok(Answer::Success(id)) => match (&u.state, u.expect) {
                (_, Expect::UnknownCode | Expect::FutureDate) => {
                    self.failures
                        .push(format!("{what}: acknowledged, must be refused"));
                }
                (State::Applied(_), Expect::Valid) => self.tally.replays += 1,
                (_, Expect::Valid) => {
                    self.tally.acked += 1;
                    u.state = State::Applied(id);
                }
            },
            Ok(Answer::Refused(code, sub)) => {
                self.tally.refused += 1;
                let expected = match u.expect {
                    Expect::UnknownCode => "isv.voucher-not-exist",
                    Expect::FutureDate => "isv.used-date-invalid",
                    Expect::Valid => "isv.verify-num-exceed",
                };
                let allowed = code == 50
                    && sub == expected
                    && (u.expect != Expect::Valid || u.order == SMALL_ORDER)
                    && !matches!(u.state, State::Applied(_));
                if allowed {
                    u.state = State::Absent;
                } else {
                    self.failures.push(format!(
                        "{what}: refused ({code}, {sub}), expected {expected}"
                    ));
                }
            }
        }
    }
}

/// A verify's answer, as a client reads it.
#[derive(Debug)]
enum Answer {
    /// `is_success`, with the request id.
    Success(String),
    /// An `error_response`: code and sub-code.
    Refused(i64, String),
}

// ---------------------------------------------------------------------------------------------
// The server process.
// ---------------------------------------------------------------------------------------------

struct Server {
    child: Child,
    addr: SocketAddr,
    http: reqwest::Client,
    log: Arc<Mutex<Vec<String>>>,
}

impl Server {
    async fn start(data_dir: &Path) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ticketd"))
            .args(["serve", "--listen", "127.0.0.1:0", "--admin-token", TOKEN])
            .arg("--data-dir")
            .arg(data_dir)
            .env("TICKETD_LOG", "warn")
            .env_remove("TICKETD_DATABASE_URL")
            .env_remove("TICKETD_LISTEN")
            .env_remove("TICKETD_ADMIN_LISTEN")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn ticketd");
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let log = Arc::new(Mutex::new(Vec::new()));
        let found = tokio::time::timeout(Duration::from_secs(30), async {
            while let Ok(Some(line)) = lines.next_line().await {
                log.lock().unwrap().push(line.clone());
                if let Some(rest) = line.split("listening on http://").nth(1) {
                    return rest.split('/').next().unwrap().parse::<SocketAddr>().ok();
                }
            }
            None
        })
        .await;
        let Ok(Some(addr)) = found else {
            panic!("ticketd did not start: {:?}", log.lock().unwrap());
        };
        let sink = log.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                sink.lock().unwrap().push(line);
            }
        });
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .unwrap();
        Server {
            child,
            addr,
            http,
            log,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    async fn admin_post(&self, path: &str, body: Value) {
        let r = self
            .http
            .post(self.url(path))
            .bearer_auth(TOKEN)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 201, "{path}: {:?}", r.text().await);
    }

    async fn order(&self, id: i64) -> Value {
        let r = self
            .http
            .get(self.url(&format!("/admin/orders/{id}")))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
        r.json().await.unwrap()
    }

    /// The order's whole history: `/admin/orders/{id}/events` followed to its end (the view
    /// shows only the latest events, and the orders here outgrow it).
    async fn events(&self, id: i64) -> Vec<Value> {
        let mut all = Vec::new();
        let mut after = 0;
        loop {
            let r = self
                .http
                .get(self.url(&format!(
                    "/admin/orders/{id}/events?after={after}&limit=1000"
                )))
                .bearer_auth(TOKEN)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status().as_u16(), 200);
            let page: Value = r.json().await.unwrap();
            all.extend(page["events"].as_array().unwrap().iter().cloned());
            match page["next"].as_i64() {
                Some(next) => after = next,
                None => return all,
            }
        }
    }

    /// SIGKILL: no shutdown, no flush. Asserts the process died of it.
    async fn kill9(mut self) {
        self.child.start_kill().unwrap();
        let status = self.child.wait().await.unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(
            status.signal(),
            Some(9),
            "ticketd did not die of SIGKILL: {status:?}; log {:?}",
            self.log.lock().unwrap()
        );
    }
}

/// Sends use `u` once. `Err` when no answer came (the process died under it).
async fn send(http: &reqwest::Client, gateway: &str, u: &Use) -> Result<Answer, String> {
    let list: Vec<Value> = u
        .entries
        .iter()
        .map(|e| json!({"confirm_code": e.code, "used_quantity": e.quantity, "used_date": e.used_date}))
        .collect();
    let call = TopCall::verify(KEY, SECRET)
        .set("order_id", u.order)
        .set("voucher_infos", serde_json::to_string(&list).unwrap());
    let r = http
        .post(gateway)
        .header(
            "content-type",
            "application/x-www-form-urlencoded;charset=UTF-8",
        )
        .body(call.signed().to_form_urlencoded())
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = r.status().as_u16();
    let content_type = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap_or_default().to_owned())
        .unwrap_or_default();
    let body = r.bytes().await.map_err(|e| e.to_string())?.to_vec();
    let reply = TopReply {
        status,
        content_type,
        body,
    };
    if status != 200 {
        return Ok(Answer::Refused(-i64::from(status), reply.text()));
    }
    let v = reply.json();
    if v.get("error_response").is_some() {
        let (code, sub) = reply.error();
        return Ok(Answer::Refused(code, sub));
    }
    let id = request_id_of(&reply);
    if reply.text() != success_json(&id) {
        return Ok(Answer::Refused(-1, reply.text()));
    }
    Ok(Answer::Success(id))
}

/// One client: sends until told to stop or until the server stops answering.
async fn client(
    model: Arc<Mutex<Model>>,
    http: reqwest::Client,
    gateway: String,
    mut rng: StdRng,
    stop: Arc<AtomicBool>,
) {
    while !stop.load(Ordering::Relaxed) {
        let (i, snapshot) = {
            let mut m = model.lock().unwrap();
            if !m.failures.is_empty() {
                return;
            }
            let i = m.next(&mut rng);
            let u = &m.uses[i];
            let copy = Use {
                order: u.order,
                entries: u.entries.clone(),
                expect: u.expect,
                state: u.state.clone(),
                in_flight: true,
            };
            (i, copy)
        };
        let outcome = send(&http, &gateway, &snapshot).await;
        let dead = outcome.is_err();
        model.lock().unwrap().answered(i, outcome);
        if dead {
            return;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The check after every restart.
// ---------------------------------------------------------------------------------------------

/// One accepted verify as the ledger holds it.
#[derive(Debug)]
struct Applied {
    request_id: String,
    /// (masked code, delta) from the audit entry's `changes`.
    changes: Vec<(String, i64)>,
    /// (masked code, quantity, gate time) from the audit entry's request.
    request: Vec<(String, i64, String)>,
}

/// Checks the whole ledger against the model and resolves the lost answers. Returns a
/// description of the first discrepancy.
async fn check(server: &Server, db: &Path, m: &mut Model) -> Result<(), String> {
    // What the server says: counters and the accepted verify entries, per order.
    let mut counters: BTreeMap<&'static str, (i64, i64)> = BTreeMap::new(); // code → (used, capacity)
    let mut applied: Vec<Applied> = Vec::new();
    for (order_id, codes) in ORDERS {
        let order = server.order(*order_id).await;
        for v in order["vouchers"].as_array().unwrap() {
            let code = codes
                .iter()
                .map(|(c, _)| *c)
                .find(|c| v["confirm_code"] == *c)
                .ok_or_else(|| format!("unexpected voucher {v}"))?;
            counters.insert(
                code,
                (v["used"].as_i64().unwrap(), v["capacity"].as_i64().unwrap()),
            );
        }
        for e in &server.events(*order_id).await {
            if e["action"] != VERIFY || e["outcome"] != "accepted" {
                continue;
            }
            let detail = &e["detail"];
            let changes = detail["changes"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| {
                    (
                        c["confirm_code"].as_str().unwrap().to_owned(),
                        c["delta"].as_i64().unwrap(),
                    )
                })
                .collect();
            let request = detail["request"]["voucher_infos"]
                .as_array()
                .ok_or_else(|| format!("no voucher_infos in {e}"))?
                .iter()
                .map(|v| {
                    (
                        v["confirm_code"].as_str().unwrap().to_owned(),
                        v["used_quantity"].as_i64().unwrap(),
                        v["used_date"].as_str().unwrap().to_owned(),
                    )
                })
                .collect();
            applied.push(Applied {
                request_id: e["request_id"].as_str().unwrap().to_owned(),
                changes,
                request,
            });
        }
    }

    // What the file holds beside the audit trail: the uses and the fingerprints.
    let conn = rusqlite::Connection::open_with_flags(
        db,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| format!("opening the ledger file: {e}"))?;
    let read = |sql: &str| -> Vec<(String, i64, i64, String)> {
        let mut stmt = conn.prepare(sql).unwrap();
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    // (code, quantity, gate ms, request id)
    let use_rows = read(
        "SELECT confirm_code, quantity - reversed, used_at_ms, request_id FROM voucher_uses \
         ORDER BY id",
    );
    let fingerprints =
        read("SELECT confirm_code, quantity, used_at_ms, request_id FROM verify_fingerprints");
    drop(conn);

    // 1. Each accepted entry is one use of the model, whole, applied once.
    let mut applied_by_use: HashMap<usize, String> = HashMap::new();
    let mut rows_by_request: HashMap<&str, Vec<(String, i64, i64)>> = HashMap::new();
    for (code, quantity, at, id) in &use_rows {
        rows_by_request
            .entry(id.as_str())
            .or_default()
            .push((code.clone(), *quantity, *at));
    }
    let mut fingerprint_of: HashMap<(String, i64, i64), String> = HashMap::new();
    for (code, quantity, at, id) in &fingerprints {
        fingerprint_of.insert((code.clone(), *quantity, *at), id.clone());
    }
    let mut rebuilt_from_audit: HashMap<String, i64> = HashMap::new();
    for a in &applied {
        let date = &a
            .request
            .first()
            .ok_or_else(|| format!("{}: an accepted verify without entries", a.request_id))?
            .2;
        let Some(&i) = m.by_date.get(date) else {
            return Err(format!(
                "{}: an accepted verify no client sent (gate time {date})",
                a.request_id
            ));
        };
        let u = &m.uses[i];
        let want: Vec<(String, i64, String)> = u
            .entries
            .iter()
            .map(|e| (masked(e.code), e.quantity, e.used_date.clone()))
            .collect();
        if a.request != want {
            return Err(format!(
                "{}: the audit's request {:?} is not use #{i} {want:?}",
                a.request_id, a.request
            ));
        }
        if u.expect != Expect::Valid {
            return Err(format!(
                "{}: use #{i} ({:?}) was applied though it must be refused",
                a.request_id, u.expect
            ));
        }
        let mut changes = a.changes.clone();
        changes.sort();
        let mut expected: Vec<(String, i64)> =
            want.iter().map(|(c, q, _)| (c.clone(), *q)).collect();
        expected.sort();
        if changes != expected {
            return Err(format!(
                "{}: use #{i} applied in part: changes {changes:?}, request {expected:?}",
                a.request_id
            ));
        }
        let mut rows = rows_by_request
            .remove(a.request_id.as_str())
            .unwrap_or_default();
        rows.sort();
        let mut expected_rows: Vec<(String, i64, i64)> = u
            .entries
            .iter()
            .map(|e| {
                let at = parse_beijing(&e.used_date).unwrap().timestamp_millis();
                (e.code.to_owned(), e.quantity, at)
            })
            .collect();
        expected_rows.sort();
        if rows != expected_rows {
            return Err(format!(
                "{}: use #{i} has voucher_uses {rows:?}, expected {expected_rows:?}",
                a.request_id
            ));
        }
        for (code, quantity, at) in &expected_rows {
            match fingerprint_of.get(&(code.clone(), *quantity, *at)) {
                Some(id) if *id == a.request_id => {}
                other => {
                    return Err(format!(
                        "{}: use #{i}'s fingerprint {code}@{at} is {other:?}",
                        a.request_id
                    ))
                }
            }
        }
        if let Some(first) = applied_by_use.insert(i, a.request_id.clone()) {
            return Err(format!(
                "use #{i} applied twice: by {first} and by {}",
                a.request_id
            ));
        }
        for (code, delta) in &a.changes {
            *rebuilt_from_audit.entry(code.clone()).or_default() += delta;
        }
    }
    if let Some((id, rows)) = rows_by_request.into_iter().next() {
        return Err(format!(
            "voucher_uses rows {rows:?} of request {id}, which has no accepted verify"
        ));
    }
    let applied_entries: usize = applied_by_use
        .keys()
        .map(|&i| m.uses[i].entries.len())
        .sum();
    if fingerprints.len() != applied_entries {
        return Err(format!(
            "{} fingerprints remembered for {applied_entries} applied entries",
            fingerprints.len()
        ));
    }

    // 2-4. Counters: within capacity, equal to the audit's sum, to the uses' sum and to the
    // model's applied uses.
    let mut from_model: HashMap<&str, i64> = HashMap::new();
    for &i in applied_by_use.keys() {
        for e in &m.uses[i].entries {
            *from_model.entry(e.code).or_default() += e.quantity;
        }
    }
    let mut from_rows: HashMap<&str, i64> = HashMap::new();
    for (code, quantity, _, _) in &use_rows {
        let code = ORDERS
            .iter()
            .flat_map(|(_, codes)| codes.iter())
            .map(|(c, _)| *c)
            .find(|c| c == code)
            .ok_or_else(|| format!("a use of an unknown code {code}"))?;
        *from_rows.entry(code).or_default() += quantity;
    }
    for (code, (used, capacity)) in &counters {
        if used > capacity {
            return Err(format!("{code}: used {used} beyond capacity {capacity}"));
        }
        let audit = rebuilt_from_audit.get(&masked(code)).copied().unwrap_or(0);
        let rows = from_rows.get(code).copied().unwrap_or(0);
        let model = from_model.get(code).copied().unwrap_or(0);
        if (audit, rows, model) != (*used, *used, *used) {
            return Err(format!(
                "{code}: counter {used}, audit trail {audit}, voucher_uses {rows}, \
                 applied uses {model}"
            ));
        }
    }

    // 5. What the clients were told, against the ledger; then resolve the lost answers.
    for (i, u) in m.uses.iter_mut().enumerate() {
        let found = applied_by_use.get(&i);
        match (&u.state, found) {
            (State::Applied(id), Some(by)) if id == by => {}
            (State::Applied(id), other) => {
                return Err(format!(
                    "use #{i} acknowledged as {id} is {}",
                    match other {
                        Some(by) => format!("applied by {by} instead"),
                        None => "not in the ledger: an acknowledged use was lost".to_owned(),
                    }
                ))
            }
            (State::Absent | State::New, Some(by)) => {
                return Err(format!(
                    "use #{i} ({:?}, {:?}) was refused or never sent, yet applied by {by}",
                    u.expect, u.state
                ))
            }
            (State::Absent | State::New, None) => {}
            (State::Lost, Some(by)) => {
                m.tally.lost_applied += 1;
                u.state = State::Applied(by.clone());
            }
            (State::Lost, None) => {
                m.tally.lost_absent += 1;
                u.state = State::Absent;
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The test.
// ---------------------------------------------------------------------------------------------

fn env_number(name: &str) -> Option<u64> {
    let text = std::env::var(name).ok()?;
    Some(
        text.parse()
            .unwrap_or_else(|_| panic!("{name}={text:?} is not a number")),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_under_load_loses_no_acknowledged_use_and_adds_none() {
    let seed = env_number("TICKETD_CRASH_SEED").unwrap_or_else(rand::random);
    let cycles = env_number("TICKETD_CRASH_CYCLES").unwrap_or(25);
    eprintln!("crash harness: seed {seed} (TICKETD_CRASH_SEED), {cycles} cycles");
    let mut rng = StdRng::seed_from_u64(seed);
    let started = Instant::now();

    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ticketd.db");
    let mut server = Server::start(dir.path()).await;
    server
        .admin_post("/admin/apps", json!({"app_key": KEY, "app_secret": SECRET}))
        .await;
    let paid = format_beijing(Utc::now() - chrono::Duration::days(2));
    for (order_id, codes) in ORDERS {
        // One ticket per use, up to the most tickets an order may have; past that the tickets
        // share the uses (the codes are multi-use). Nothing here refunds, so only the status
        // depends on it.
        let uses: i64 = codes.iter().map(|(_, q)| q).sum();
        let quantity = uses.min(ticket_ledger::limits::MAX_TICKETS);
        server
            .admin_post(
                "/admin/orders",
                json!({"order_id": order_id, "app_key": KEY, "quantity": quantity,
                       "created_at": paid,
                       "vouchers": codes.iter().map(|(c, q)| json!({"confirm_code": c, "quantity": q}))
                           .collect::<Vec<_>>()}),
            )
            .await;
    }

    let model = Arc::new(Mutex::new(Model::new()));
    for cycle in 1..=cycles {
        // Load: CLIENTS concurrent clients, then SIGKILL after a random delay (sometimes at
        // once, sometimes well into the load).
        let stop = Arc::new(AtomicBool::new(false));
        let gateway = server.url("/router/rest");
        let clients: Vec<_> = (0..CLIENTS)
            .map(|_| {
                tokio::spawn(client(
                    model.clone(),
                    server.http.clone(),
                    gateway.clone(),
                    StdRng::seed_from_u64(rng.random()),
                    stop.clone(),
                ))
            })
            .collect();
        let delay = Duration::from_millis(rng.random_range(0..400));
        tokio::time::sleep(delay).await;
        let log = server.log.clone();
        server.kill9().await;
        stop.store(true, Ordering::Relaxed);
        for c in clients {
            tokio::time::timeout(Duration::from_secs(30), c)
                .await
                .expect("a client did not notice the kill within 30 s")
                .unwrap();
        }
        {
            let m = model.lock().unwrap();
            assert!(
                m.failures.is_empty(),
                "seed {seed}, cycle {cycle}: wrong answers {:?}; server log {:?}",
                m.failures,
                log.lock().unwrap()
            );
        }

        // Restart on the same data directory and audit everything.
        server = Server::start(dir.path()).await;
        // The clients are done: take the model out, so no lock is held across the awaits.
        let mut taken = std::mem::replace(&mut *model.lock().unwrap(), Model::new());
        let result = check(&server, &db, &mut taken).await;
        *model.lock().unwrap() = taken;
        if let Err(why) = result {
            panic!(
                "seed {seed}, cycle {cycle} (killed {delay:?} into the load): {why}; \
                 server log {:?}",
                server.log.lock().unwrap()
            );
        }
    }
    server.kill9().await;

    let m = model.lock().unwrap();
    let t = &m.tally;
    eprintln!(
        "crash harness: {cycles} SIGKILL cycles in {:.1?}: {} requests for {} uses; {} acknowledged, \
         {} replays, {} refused as they must be, {} answers lost in kills ({} of them found \
         applied, {} not)",
        started.elapsed(),
        t.sent,
        m.uses.len(),
        t.acked,
        t.replays,
        t.refused,
        t.lost,
        t.lost_applied,
        t.lost_absent,
    );
    assert!(t.acked > 0 && t.lost > 0, "the harness exercised nothing");
}
