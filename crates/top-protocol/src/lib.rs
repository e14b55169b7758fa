//! The Taobao Open Platform (TOP) `router/rest` wire protocol, sans-IO.
//!
//! **What it is for.** Everything a TOP *server* (ticketd's gateway) and a TOP *client* (our SDK)
//! must agree on byte for byte, as specified in `docs/PROTOCOL.md` (§1–§5): how request
//! parameters are decoded and merged, how they are signed, how `timestamp` is read, what the
//! success and `error_response` bodies look like, and the order in which the platform checks
//! refuse a request. All of it is plain functions from bytes and [`Params`] to values and back,
//! so it is tested and fuzzed without a socket.
//!
//! **What it is not for.** No HTTP types, no async runtime, no storage: the server decides how to
//! read a body, which apps exist and what their secrets are; the business methods (verify, refund,
//! …) and their parameters live in `ticket-api`.
//!
//! # Modules
//!
//! | module | docs/PROTOCOL.md | what |
//! |---|---|---|
//! | [`params`] | §1.2, §1.3 | form-urlencoded and multipart decoding, query ∪ body merge, repeated keys refused |
//! | [`sign`] | §3 | canonical string, `md5` / `hmac` / `hmac-sha256`, constant-time verify of both empty-value forms |
//! | [`timestamp`] | §2.1 | `yyyy-MM-dd HH:mm:ss` at UTC+8 and epoch milliseconds ↔ `DateTime<Utc>`, the skew window |
//! | [`envelope`] | §4.2, §5.3 | success and `error_response` bodies in XML, JSON and simplified JSON; request ids |
//! | [`check`] | §5.1 | the platform checks (9 → 21/22 → 23 → 28 → 24 → 25 → 30/31 → 32/34), split around the app lookup |
//! | [`error`] | §5 | the platform code table ([`PlatformCode`]), the platform `sub_code`s, [`TopError`], and [`clip`](error::clip) for echoed caller text |
//!
//! # Signing, worked (golden vector GV1)
//!
//! The signed string is every parameter except `sign`, sorted by name, as `name value name value`
//! with no separators; `md5` hashes `secret + string + secret` and sends upper-case hex.
//!
//! ```
//! use top_protocol::sign::{canonical_string, sign, verify};
//! use top_protocol::{EmptyValues, Params, SignMethod};
//!
//! let params: Params = [
//!     ("method", "taobao.travel.ticket.order.verify"),
//!     ("app_key", "12345678"),
//!     ("sign_method", "md5"),
//!     ("timestamp", "2024-05-01 12:00:00"),
//!     ("v", "2.0"),
//!     ("format", "json"),
//!     ("order_id", "2983749123412345"),
//!     ("confirm_code", "A1B2C3D4"),
//!     ("check_num", "1"),
//! ]
//! .into_iter()
//! .map(|(k, v)| (k.to_owned(), v.to_owned()))
//! .collect();
//!
//! let mut s = Vec::new();
//! canonical_string(&params, EmptyValues::Skip, &mut s);
//! assert_eq!(
//!     String::from_utf8(s).unwrap(),
//!     "app_key12345678check_num1confirm_codeA1B2C3D4formatjson\
//!      methodtaobao.travel.ticket.order.verifyorder_id2983749123412345\
//!      sign_methodmd5timestamp2024-05-01 12:00:00v2.0"
//! );
//!
//! let signature = sign(SignMethod::Md5, b"test_secret", &params, EmptyValues::Skip);
//! assert_eq!(signature, "BD4A9820B81BCD27A62DE2B7B674A582");
//! // Servers compare case-insensitively and in constant time.
//! assert!(verify(SignMethod::Md5, b"test_secret", &params, &signature.to_lowercase()));
//! ```

pub mod check;
pub mod envelope;
pub mod error;
pub mod params;
pub mod sign;
pub mod timestamp;

pub use envelope::{Field, Format};
pub use error::{PlatformCode, TopError};
pub use params::Params;
pub use sign::{EmptyValues, SignMethod};
