//! The hot path's HTTP/1.1 client: one keep-alive connection, one request in flight.
//!
//! Why not `reqwest`: the load generator shares the machine's cores with the server it
//! measures, so every microsecond it spends is taken from the server and from the baseline.
//! A connection here writes prepared bytes with one `write_all` and reads the answer into a
//! reused buffer; headers are parsed by `httparse` without allocating. Only what ticketd's
//! gateway (and the baseline responder) send is supported: a `Content-Length` body. Plain
//! `http://` only.

use std::io;
use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Most header lines read in an answer.
const MAX_HEADERS: usize = 32;
/// Largest answer accepted (ticketd's answers are a few hundred bytes).
const MAX_RESPONSE: usize = 1 << 20;

/// One answer: its status and body, borrowed from the connection's buffer.
#[derive(Debug)]
pub(crate) struct Reply<'a> {
    pub(crate) status: u16,
    pub(crate) body: &'a [u8],
}

/// A keep-alive connection.
#[derive(Debug)]
pub(crate) struct Connection {
    stream: TcpStream,
    buf: Vec<u8>,
    /// The server said `Connection: close`: the next request needs a new connection.
    closing: bool,
}

impl Connection {
    /// Connects, with Nagle off: requests are written whole, and waiting to coalesce them
    /// would only add latency.
    pub(crate) async fn open(addr: SocketAddr) -> io::Result<Self> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Self {
            stream,
            buf: Vec::with_capacity(4096),
            closing: false,
        })
    }

    /// Whether the server asked to close after the last answer.
    pub(crate) fn is_closing(&self) -> bool {
        self.closing
    }

    /// Sends one complete request and reads its answer.
    pub(crate) async fn exchange(&mut self, request: &[u8]) -> io::Result<Reply<'_>> {
        self.stream.write_all(request).await?;
        self.buf.clear();
        let (head_len, status, body_len) = loop {
            self.fill().await?;
            if let Some(head) = parse_head(&self.buf)? {
                break head;
            }
            if self.buf.len() > MAX_RESPONSE {
                return Err(invalid("response head too large"));
            }
        };
        let (status, closing) = status;
        self.closing = closing;
        let end = head_len + body_len;
        if end > MAX_RESPONSE {
            return Err(invalid("response body too large"));
        }
        while self.buf.len() < end {
            self.fill().await?;
        }
        Ok(Reply {
            status,
            body: &self.buf[head_len..end],
        })
    }

    /// Reads what is available (at least one byte) into the buffer.
    async fn fill(&mut self) -> io::Result<()> {
        if self.buf.capacity() - self.buf.len() < 1024 {
            self.buf.reserve(4096);
        }
        let n = self.stream.read_buf(&mut self.buf).await?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the server closed the connection",
            ));
        }
        Ok(())
    }
}

/// (head length, (status, close), body length) once the head is complete.
type Head = (usize, (u16, bool), usize);

fn parse_head(buf: &[u8]) -> io::Result<Option<Head>> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    let head_len = match response.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(invalid(&format!("unreadable response head: {e}"))),
    };
    let status = response.code.unwrap_or(0);
    let mut body_len = None;
    let mut closing = false;
    for h in response.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            body_len = std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse::<usize>().ok());
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(invalid("chunked responses are not supported"));
        } else if h.name.eq_ignore_ascii_case("connection") {
            closing = h.value.eq_ignore_ascii_case(b"close");
        }
    }
    let body_len = body_len.ok_or_else(|| invalid("response without Content-Length"))?;
    Ok(Some((head_len, (status, closing), body_len)))
}

fn invalid(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_owned())
}

/// How a TOP answer reads, as far as the bench cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Answer {
    /// `is_success` true.
    Success,
    /// An `error_response`.
    Refused { code: u32, sub_code: Option<String> },
    /// Neither (a non-200 status, an unreadable body).
    Unreadable { status: u16 },
}

/// Reads a JSON TOP answer. Success is recognised by a byte search (the hot case); only
/// refusals are parsed.
pub(crate) fn classify(reply: &Reply<'_>) -> Answer {
    if reply.status != 200 {
        return Answer::Unreadable {
            status: reply.status,
        };
    }
    let body = reply.body;
    if !body.starts_with(b"{\"error_response\"") && contains(body, b"\"is_success\":true") {
        return Answer::Success;
    }
    #[derive(serde::Deserialize)]
    struct Envelope {
        error_response: Body,
    }
    #[derive(serde::Deserialize)]
    struct Body {
        code: u32,
        sub_code: Option<String>,
    }
    match serde_json::from_slice::<Envelope>(body) {
        Ok(e) => Answer::Refused {
            code: e.error_response.code,
            sub_code: e.error_response.sub_code,
        },
        Err(_) => Answer::Unreadable { status: 200 },
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn heads_are_read_once_complete() {
        let full = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nconnection: close\r\n\r\nhello";
        assert_eq!(parse_head(&full[..20]).unwrap(), None);
        let (n, (status, close), len) = parse_head(full).unwrap().unwrap();
        assert_eq!((status, close, len), (200, true, 5));
        assert_eq!(&full[n..n + len], b"hello");
        assert!(parse_head(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n").is_err());
    }

    #[test]
    fn answers_are_classified() {
        let ok = br#"{"travel_ticket_order_verify_response":{"is_success":true,"request_id":"x"}}"#;
        assert_eq!(
            classify(&Reply {
                status: 200,
                body: ok
            }),
            Answer::Success
        );
        let refused = br#"{"error_response":{"code":15,"msg":"Remote service error","sub_code":"isv.verify-num-exceed","sub_msg":"x","request_id":"y"}}"#;
        assert_eq!(
            classify(&Reply {
                status: 200,
                body: refused
            }),
            Answer::Refused {
                code: 15,
                sub_code: Some("isv.verify-num-exceed".into())
            }
        );
        assert_eq!(
            classify(&Reply {
                status: 502,
                body: b""
            }),
            Answer::Unreadable { status: 502 }
        );
    }
}
