//! Hostile and careless clients on a real socket: slow-loris headers and bodies, more
//! connections than the cap, oversized and malformed input, header bombs, and a shutdown in
//! the middle of a request. Each has a bounded wait, never a fixed sleep longer than the
//! timeout under test, and each TOP refusal is checked to the byte with the ledger unchanged.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::Method;
use ticketd::clock::SystemClock;
use ticketd::settings::Settings;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{
    assert_error_body, kept_refusal, ledger_snapshot, minutes_ago, spawn_app_with, spawn_in,
    voucher_infos, KeptRefusal, TestApp, TopCall, TopReply,
};

const KEY: &str = "hostile-vendor";
const SECRET: &str = "hostile-secret";
const ORDER: i64 = 7201;
const CODE: &str = "HOSTILE-1";
const FORM: &str = "application/x-www-form-urlencoded;charset=UTF-8";
/// The longest any test waits for something that must happen.
const BOUND: Duration = Duration::from_secs(10);
/// The timeouts under test: short, so the tests are quick.
const SHORT: Duration = Duration::from_millis(300);

async fn spawn(adjust: impl FnOnce(&mut Settings)) -> TestApp {
    let app = spawn_app_with(adjust, Arc::new(SystemClock)).await;
    app.create_app(KEY, SECRET).await;
    app.create_order(ORDER, KEY, &[(CODE, 2)]).await;
    app
}

/// A signed verify of one use, as a form body.
fn one_use_body() -> String {
    TopCall::verify(KEY, SECRET)
        .set("order_id", ORDER)
        .set(
            "voucher_infos",
            voucher_infos(&[(CODE, 1, &minutes_ago(1))]),
        )
        .signed()
        .to_form_urlencoded()
}

/// A POST head for `/router/rest{path_rest}` with these extra header lines.
fn post_head(addr: SocketAddr, path_rest: &str, content_length: usize, extra: &str) -> String {
    format!(
        "POST /router/rest{path_rest} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: {FORM}\r\n\
         Content-Length: {content_length}\r\n{extra}\r\n"
    )
}

/// Reads until the server closes the connection (a reset ends it too), within [`BOUND`].
/// Returns what was read and how long it took.
async fn read_until_closed(stream: &mut TcpStream) -> (Vec<u8>, Duration) {
    let started = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0_u8; 8192];
    tokio::time::timeout(BOUND, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .expect("the server closes the connection in time");
    (got, started.elapsed())
}

/// Reads one response (head and a `Content-Length` body) from a connection that stays open.
async fn read_response(stream: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let mut buf = [0_u8; 8192];
    tokio::time::timeout(BOUND, async {
        loop {
            let text = String::from_utf8_lossy(&got).into_owned();
            if let Some(end) = text.find("\r\n\r\n") {
                let length: usize = text[..end]
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().parse().unwrap())
                    })
                    .unwrap_or(0);
                if got.len() >= end + 4 + length {
                    return text;
                }
            }
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed mid-response: {text}");
            got.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .expect("a response in time")
}

/// A raw HTTP/1.1 response as the helpers' [`TopReply`].
fn top_reply(raw: &[u8]) -> TopReply {
    let text = String::from_utf8(raw.to_vec()).unwrap();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("{text:?}"));
    let status = head[9..12].parse().unwrap();
    let content_type = head
        .lines()
        .find_map(|l| l.strip_prefix("content-type: "))
        .unwrap_or_default()
        .to_owned();
    TopReply {
        status,
        content_type,
        body: body.as_bytes().to_vec(),
    }
}

async fn healthz(app: &TestApp) -> u16 {
    app.http
        .get(app.url("/healthz"))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn headers_that_stall_are_cut_off_unanswered_after_the_header_timeout() {
    let app = spawn(|s| s.connections.header_timeout = SHORT).await;

    let started = Instant::now();
    // Half a request head, then nothing.
    let mut half = TcpStream::connect(app.addr).await.unwrap();
    half.write_all(b"POST /router/rest HTTP/1.1\r\nHost: ticketd\r\nContent-Ty")
        .await
        .unwrap();
    // Not a byte.
    let mut silent = TcpStream::connect(app.addr).await.unwrap();

    for stream in [&mut half, &mut silent] {
        let (got, _) = read_until_closed(stream).await;
        assert!(got.is_empty(), "{}", String::from_utf8_lossy(&got));
    }
    let waited = started.elapsed();
    assert!(waited >= SHORT - Duration::from_millis(50), "{waited:?}");
    assert_eq!(healthz(&app).await, 200);
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_header_timeout() {
    let app = spawn(|s| s.connections.header_timeout = SHORT).await;
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    stream
        .write_all(format!("GET /healthz HTTP/1.1\r\nHost: {}\r\n\r\n", app.addr).as_bytes())
        .await
        .unwrap();
    let first = read_response(&mut stream).await;
    assert!(first.starts_with("HTTP/1.1 200 "), "{first}");
    let (got, waited) = read_until_closed(&mut stream).await;
    assert!(got.is_empty());
    assert!(waited >= SHORT - Duration::from_millis(50), "{waited:?}");
}

#[tokio::test]
async fn a_body_that_stalls_is_answered_with_a_request_timeout_and_nothing_applied() {
    let app = spawn(|s| s.connections.body_timeout = SHORT).await;
    let before = ledger_snapshot(&app, ORDER).await;
    let body = one_use_body();

    // Half the declared body, then nothing.
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    let head = post_head(
        app.addr,
        "?format=json",
        body.len(),
        "Connection: close\r\n",
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream
        .write_all(&body.as_bytes()[..body.len() / 2])
        .await
        .unwrap();
    let (raw, waited) = read_until_closed(&mut stream).await;
    assert!(waited >= SHORT - Duration::from_millis(50), "{waited:?}");
    let reply = top_reply(&raw);
    let id = assert_error_body(
        &reply,
        43,
        "Parameter error",
        Some(("isv.request-timeout", "请求体接收超时")),
    );
    assert_eq!(ledger_snapshot(&app, ORDER).await, before);
    let kept = kept_refusal(&app, &id).await;
    assert!(matches!(kept, KeptRefusal::Anonymous(_)), "{kept:?}");
    assert_eq!(kept.code(), (43, Some("isv.request-timeout".into())));

    // Trickled a byte at a time, faster than any per-read timeout would notice: the deadline
    // is for the whole body, so the answer is the same.
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    let mut answer = Vec::new();
    for byte in body.as_bytes() {
        if stream.write_all(&[*byte]).await.is_err() {
            break;
        }
        let mut buf = [0_u8; 4096];
        if let Ok(Ok(n @ 1..)) =
            tokio::time::timeout(Duration::from_millis(20), stream.read(&mut buf)).await
        {
            answer.extend_from_slice(&buf[..n]);
            break;
        }
        assert!(started.elapsed() < BOUND, "no answer to a trickled body");
    }
    let (rest, _) = read_until_closed(&mut stream).await;
    answer.extend(rest);
    let reply = top_reply(&answer);
    assert_eq!(reply.error(), (43, "isv.request-timeout".to_owned()));
    assert_eq!(ledger_snapshot(&app, ORDER).await, before);

    // A body that arrives in time is served as usual.
    let reply = app
        .raw(Method::POST, "", Some(FORM), body.into_bytes())
        .await;
    crate::helpers::assert_success_body(&reply);
    assert_eq!(app.used(ORDER, CODE).await, 1);
}

#[tokio::test]
async fn connections_beyond_the_cap_wait_until_one_closes() {
    // Not `spawn`: its set-up calls would leave a pooled keep-alive connection in the slot.
    let app = spawn_app_with(|s| s.connections.max_connections = 1, Arc::new(SystemClock)).await;
    let get = format!("GET /healthz HTTP/1.1\r\nHost: {}\r\n\r\n", app.addr);

    // One keep-alive connection, served, then idle: it holds the only slot.
    let mut holder = TcpStream::connect(app.addr).await.unwrap();
    holder.write_all(get.as_bytes()).await.unwrap();
    assert!(read_response(&mut holder)
        .await
        .starts_with("HTTP/1.1 200 "));

    // The next client connects (the kernel queues it) but is not served...
    let mut waiting = TcpStream::connect(app.addr).await.unwrap();
    let close = format!(
        "GET /healthz HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        app.addr
    );
    waiting.write_all(close.as_bytes()).await.unwrap();
    let mut buf = [0_u8; 64];
    let early = tokio::time::timeout(SHORT, waiting.read(&mut buf)).await;
    assert!(early.is_err(), "served beyond the cap: {early:?}");

    // ...until the slot frees.
    drop(holder);
    let (got, _) = read_until_closed(&mut waiting).await;
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 200 "), "{text}");
}

#[tokio::test]
async fn graceful_shutdown_answers_the_request_in_flight_and_keeps_its_use() {
    let app = spawn(|_| {}).await;
    let addr = app.addr;
    let body = one_use_body();

    // The head, and proof the handler is reading the body (hyper sends 100 Continue when it
    // first asks for it): the request is in flight.
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let head = post_head(addr, "", body.len(), "Expect: 100-continue\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut buf = [0_u8; 256];
    let n = tokio::time::timeout(BOUND, stream.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert!(
        buf[..n].starts_with(b"HTTP/1.1 100 Continue"),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );

    // Shutdown begins: the listener closes...
    let stopping = tokio::spawn(app.stop());
    let refused = tokio::time::timeout(BOUND, async {
        while TcpStream::connect(addr).await.is_ok() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(refused.is_ok(), "still accepting after shutdown began");

    // ...yet the request in flight is answered, and the server then stops.
    stream.write_all(body.as_bytes()).await.unwrap();
    let (raw, _) = read_until_closed(&mut stream).await;
    crate::helpers::assert_success_body(&top_reply(&raw));
    let data_dir = tokio::time::timeout(BOUND, stopping)
        .await
        .expect("stops once the request is answered")
        .unwrap();

    // The use is in the ledger the next start opens.
    let app = spawn_in(data_dir, |_| {}, Arc::new(SystemClock)).await;
    assert_eq!(app.used(ORDER, CODE).await, 1);
}

#[tokio::test]
async fn a_body_declared_over_the_limit_is_refused_before_it_is_sent() {
    let app = spawn(|_| {}).await;
    let before = ledger_snapshot(&app, ORDER).await;
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    // 100 MiB declared, 10 bytes sent: the answer cannot have waited for the rest.
    let head = post_head(app.addr, "?format=json", 100 << 20, "Connection: close\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(b"method=tao").await.unwrap();
    let (raw, _) = read_until_closed(&mut stream).await;
    assert_error_body(
        &top_reply(&raw),
        43,
        "Parameter error",
        Some(("isv.request-too-large", "请求体超过1048576字节上限")),
    );
    assert_eq!(ledger_snapshot(&app, ORDER).await, before);
}

#[tokio::test]
async fn more_than_a_thousand_parameters_are_refused_with_43() {
    let app = spawn(|_| {}).await;
    let before = ledger_snapshot(&app, ORDER).await;
    let mut body = one_use_body();
    for i in 0..1000 {
        body.push_str(&format!("&p{i}=x"));
    }
    let reply = app
        .raw(Method::POST, "format=json", Some(FORM), body.into_bytes())
        .await;
    assert_error_body(&reply, 43, "Parameter error", None);
    assert_eq!(ledger_snapshot(&app, ORDER).await, before);
}

#[tokio::test]
async fn bytes_that_are_not_utf8_are_refused_with_47() {
    let app = spawn(|_| {}).await;
    let before = ledger_snapshot(&app, ORDER).await;
    // Percent-encoded, and raw.
    let encoded = format!("{}&note=%FF%FE", one_use_body()).into_bytes();
    let mut raw = one_use_body().into_bytes();
    raw.extend_from_slice(b"&note=\xff\xfe");
    for body in [encoded, raw] {
        let reply = app.raw(Method::POST, "format=json", Some(FORM), body).await;
        assert_error_body(&reply, 47, "Invalid encoding", None);
    }
    assert_eq!(ledger_snapshot(&app, ORDER).await, before);
}

#[tokio::test]
async fn header_bombs_are_refused_without_a_server_error() {
    let app = spawn(|_| {}).await;

    // Thousands of small headers: refused with 431 as soon as the head is read.
    let mut many = format!("GET /router/rest HTTP/1.1\r\nHost: {}\r\n", app.addr);
    for i in 0..2000 {
        many.push_str(&format!("X-Bomb-{i}: x\r\n"));
    }
    many.push_str("\r\n");
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    stream.write_all(many.as_bytes()).await.unwrap();
    let (got, _) = read_until_closed(&mut stream).await;
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 431 "), "{text}");

    // One header of 4 MiB: refused once the read buffer is full (431, or the connection is
    // reset while the client is still writing), never a 500 and never read whole.
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    let (mut reader, mut writer) = stream.split();
    let huge = format!(
        "GET /router/rest HTTP/1.1\r\nHost: {}\r\nX-Bomb: {}\r\n\r\n",
        app.addr,
        "x".repeat(4 << 20)
    );
    let write = async {
        let _ = tokio::time::timeout(BOUND, writer.write_all(huge.as_bytes())).await;
    };
    let read = async {
        let mut got = Vec::new();
        let _ = tokio::time::timeout(BOUND, reader.read_to_end(&mut got)).await;
        got
    };
    let ((), got) = tokio::join!(write, read);
    let text = String::from_utf8_lossy(&got);
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 431 "),
        "{text}"
    );
    assert!(!text.contains(" 500 "), "{text}");

    // The server is unharmed.
    assert_eq!(healthz(&app).await, 200);
}

/// Issue #12: the admin API is held to the gateway's limits. A body over `--max-body-bytes`
/// (declared, or sent without a length) is refused with 413 and one that stalls with 408 after
/// `--body-timeout`, both as the admin API's JSON errors; the token is checked first, so a
/// stranger's body is never read.
#[tokio::test]
async fn admin_bodies_get_the_gateway_size_limit_and_body_timeout() {
    const LIMIT: usize = 16 * 1024;
    let app = spawn(|s| {
        s.connections.body_timeout = SHORT;
        s.max_body_bytes = LIMIT;
    })
    .await;
    let head = |length: &str, token: bool| {
        let auth = if token {
            format!("Authorization: Bearer {}\r\n", crate::helpers::ADMIN_TOKEN)
        } else {
            String::new()
        };
        format!(
            "POST /admin/apps HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
             {length}\r\n{auth}Connection: close\r\n\r\n",
            app.addr
        )
    };
    let refusal = |raw: &[u8], status: u16, error: &str| {
        let reply = top_reply(raw);
        assert_eq!(reply.status, status, "{}", reply.text());
        assert!(
            reply.content_type.starts_with("application/json"),
            "{}",
            reply.content_type
        );
        let body = reply.json();
        assert_eq!(body["error"], error, "{body}");
        assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
    };

    // Declared over the limit: refused before the rest is sent.
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    let declared = head(&format!("Content-Length: {}", 100 << 20), true);
    stream.write_all(declared.as_bytes()).await.unwrap();
    stream.write_all(b"{\"app_key\"").await.unwrap();
    let (raw, _) = read_until_closed(&mut stream).await;
    refusal(&raw, 413, "body_too_large");

    // Sent over the limit without a declared length (chunked): refused at the limit.
    let padding = "x".repeat(LIMIT);
    let json = format!(r#"{{"app_key":"big-body","name":"{padding}"}}"#);
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    let chunked = head("Transfer-Encoding: chunked", true);
    stream.write_all(chunked.as_bytes()).await.unwrap();
    let chunk = format!("{:x}\r\n{json}\r\n0\r\n\r\n", json.len());
    let _ = stream.write_all(chunk.as_bytes()).await;
    let (raw, _) = read_until_closed(&mut stream).await;
    refusal(&raw, 413, "body_too_large");

    // Half a body, then nothing: 408 once --body-timeout has passed, not a held connection.
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    stream
        .write_all(head("Content-Length: 100", true).as_bytes())
        .await
        .unwrap();
    stream.write_all(b"{\"app_key\":").await.unwrap();
    let (raw, waited) = read_until_closed(&mut stream).await;
    assert!(waited >= SHORT - Duration::from_millis(50), "{waited:?}");
    refusal(&raw, 408, "body_timeout");

    // Without the token, nothing is read: 401, whatever the body.
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    stream
        .write_all(declared.replace("Authorization", "X-Not-Auth").as_bytes())
        .await
        .unwrap();
    let (raw, _) = read_until_closed(&mut stream).await;
    refusal(&raw, 401, "unauthorized");

    // Nothing above created an app; a body in time and within the limit is served as usual.
    let (status, body) = app.admin_get("/admin/apps/big-body").await;
    assert_eq!(status, 404, "{body}");
    app.create_app("within-limits", "s").await;
}
