//! What the load sends: the prepared orders, the numbering of their uses into units of work,
//! and the signed request bytes of each unit.
//!
//! A *unit* is one fresh request: `batch` codes of one order, each used once. Units are
//! numbered so that consecutive ones touch different orders (`unit % orders` is the order),
//! and a code's k-th use is "round" k. Each round has its own `used_date` (one second after
//! the previous), so every use of a code has a distinct fingerprint (order, code, `used_date`,
//! `used_quantity`) and the ledger counts it as new, never as a retry.

use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use clap::ValueEnum;
use serde::Serialize;
use top_protocol::sign::sign;
use top_protocol::timestamp::format_beijing;
use top_protocol::{EmptyValues, Params, SignMethod};

/// The verify method every request calls.
pub(crate) const VERIFY: &str = "taobao.travel.ticket.order.verify";

/// Which generation of the verify parameters the requests use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Form {
    /// `voucher_infos` (JSON list) with a `used_date` per entry: retries are recognisable.
    Vouchers,
    /// `confirm_code` + `check_num`: one code per request, no gate time.
    Legacy,
}

/// What kind of request a worker sends next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A new, legitimate use: must be acknowledged and counted.
    Fresh,
    /// An acknowledged request sent again: must be acknowledged and not counted.
    Replay,
    /// More uses than the code allows: must be refused and change nothing.
    Reject,
}

/// One fresh request's place in the prepared ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Unit {
    /// Index into [`Workload::order_ids`].
    pub(crate) order: usize,
    /// First voucher index of the request's `batch` codes.
    pub(crate) first_voucher: usize,
    /// Which use of these codes this is (0-based).
    pub(crate) round: usize,
}

/// Everything shared by the workers: immutable once prepared.
#[derive(Debug)]
pub(crate) struct Workload {
    /// The vendor app the bench registered.
    pub(crate) app_key: String,
    /// Its secret (generated for the run; never printed).
    pub(crate) secret: String,
    pub(crate) sign_method: SignMethod,
    pub(crate) form: Form,
    /// Vouchers per request.
    pub(crate) batch: usize,
    /// Uses each code allows.
    pub(crate) capacity: u64,
    /// The prepared orders.
    pub(crate) order_ids: Vec<i64>,
    /// Confirm code of voucher index `i` (the same in every order: codes are per order).
    pub(crate) codes: Vec<String>,
    /// `used_date` of round `k`.
    pub(crate) used_dates: Vec<String>,
    /// Batches per order (`vouchers_per_order / batch`).
    pub(crate) groups: usize,
    pub(crate) replay_ratio: f64,
    pub(crate) reject_ratio: f64,
}

impl Workload {
    /// How many fresh requests the prepared orders allow.
    pub(crate) fn units(&self) -> u64 {
        self.order_ids.len() as u64 * self.groups as u64 * self.capacity
    }

    /// Unit number `n` (< [`Workload::units`]).
    pub(crate) fn unit(&self, n: u64) -> Unit {
        let orders = self.order_ids.len() as u64;
        let per_round = orders * self.groups as u64;
        let round = n / per_round;
        let rest = n % per_round;
        Unit {
            order: (rest % orders) as usize,
            first_voucher: (rest / orders) as usize * self.batch,
            round: round as usize,
        }
    }

    /// How many tally slots the workload has: one per batch of codes of each order (see
    /// [`Workload::slot`]).
    pub(crate) fn slots(&self) -> usize {
        self.order_ids.len() * self.groups
    }

    /// The tally slot of a fresh unit: its order's `batch` codes starting at `first_voucher`.
    /// Fresh requests always use a whole batch, so every code of a slot has had exactly the
    /// slot's uses: one counter per slot gives every voucher's count without a counter (or a
    /// map lookup) per code on the hot path. Codes past the last whole batch of an order
    /// (`vouchers_per_order % batch` of them) are never used.
    pub(crate) fn slot(&self, unit: Unit) -> usize {
        unit.order * self.groups + unit.first_voucher / self.batch
    }

    /// The same workload for the baseline responder, which keeps no ledger: the request
    /// bytes are the same kind, and units wrap around instead of running out.
    pub(crate) fn for_baseline(&self) -> Self {
        Self {
            app_key: self.app_key.clone(),
            secret: self.secret.clone(),
            sign_method: self.sign_method,
            form: self.form,
            batch: self.batch,
            capacity: self.capacity,
            order_ids: self.order_ids.clone(),
            codes: self.codes.clone(),
            used_dates: self.used_dates.clone(),
            groups: self.groups,
            replay_ratio: self.replay_ratio,
            reject_ratio: self.reject_ratio,
        }
    }
}

/// The confirm code of voucher index `i` in every prepared order.
pub(crate) fn code(i: usize) -> String {
    format!("BENCH{i:04}")
}

/// Builds signed request bytes, reusing its buffers: one per connection.
///
/// The parameter set is kept between requests and only the changing values are replaced, the
/// signature is streamed from it (no canonical string is built), and the form body and the
/// HTTP head are written into reused buffers, so a request costs a signature and a few small
/// copies.
#[derive(Debug)]
pub(crate) struct RequestBuilder {
    params: Params,
    /// `POST … Content-Length: ` up to the length.
    head: String,
    body: Vec<u8>,
    json: String,
    out: Vec<u8>,
    /// The Unix second `timestamp` was last rendered for, and its text.
    second: u64,
}

impl RequestBuilder {
    /// A builder for `path` on `host` (the `Host` header).
    pub(crate) fn new(w: &Workload, host: &str, path: &str) -> Self {
        let mut params = Params::new();
        params.insert("method", VERIFY);
        params.insert("app_key", w.app_key.as_str());
        params.insert("sign_method", w.sign_method.as_str());
        params.insert("v", "2.0");
        params.insert("format", "json");
        Self {
            params,
            head: format!(
                "POST {path} HTTP/1.1\r\nHost: {host}\r\n\
                 Content-Type: application/x-www-form-urlencoded;charset=UTF-8\r\n\
                 Content-Length: "
            ),
            body: Vec::with_capacity(1024),
            json: String::new(),
            out: Vec::with_capacity(1024),
            second: 0,
        }
    }

    /// The request for `unit` as `kind`: a fresh or replayed use of its codes, or (reject) a
    /// request for one more use than its first code allows in all.
    pub(crate) fn build(&mut self, w: &Workload, kind: Kind, unit: Unit) -> &[u8] {
        self.refresh_timestamp();
        let mut id = String::with_capacity(20);
        let _ = write!(id, "{}", w.order_ids[unit.order]);
        self.params.insert("order_id", id);
        let quantity = match kind {
            Kind::Fresh | Kind::Replay => 1,
            Kind::Reject => w.capacity + 1,
        };
        let codes = match kind {
            Kind::Fresh | Kind::Replay => unit.first_voucher..unit.first_voucher + w.batch,
            Kind::Reject => unit.first_voucher..unit.first_voucher + 1,
        };
        match w.form {
            Form::Legacy => {
                self.params
                    .insert("confirm_code", w.codes[unit.first_voucher].as_str());
                self.params.insert("check_num", quantity.to_string());
            }
            Form::Vouchers => {
                self.json.clear();
                self.json.push('[');
                for (n, i) in codes.enumerate() {
                    if n > 0 {
                        self.json.push(',');
                    }
                    let _ = write!(
                        self.json,
                        "{{\"confirm_code\":\"{}\",\"used_quantity\":{quantity},\"used_date\":\"{}\"}}",
                        w.codes[i], w.used_dates[unit.round]
                    );
                }
                self.json.push(']');
                match self.params.remove("voucher_infos") {
                    // Reuse the previous value's allocation.
                    Some(mut old) => {
                        old.clear();
                        old.push_str(&self.json);
                        self.params.insert("voucher_infos", old);
                    }
                    None => {
                        self.params.insert("voucher_infos", self.json.as_str());
                    }
                }
            }
        }
        let signature = sign(
            w.sign_method,
            w.secret.as_bytes(),
            &self.params,
            EmptyValues::Skip,
        );
        self.body.clear();
        for (k, v) in self.params.iter() {
            self.body.extend_from_slice(k.as_bytes());
            self.body.push(b'=');
            for piece in form_urlencoded::byte_serialize(v.as_bytes()) {
                self.body.extend_from_slice(piece.as_bytes());
            }
            self.body.push(b'&');
        }
        self.body.extend_from_slice(b"sign=");
        self.body.extend_from_slice(signature.as_bytes());

        self.out.clear();
        self.out.extend_from_slice(self.head.as_bytes());
        let _ =
            std::io::Write::write_fmt(&mut self.out, format_args!("{}\r\n\r\n", self.body.len()));
        self.out.extend_from_slice(&self.body);
        &self.out
    }

    /// Re-renders `timestamp` only when the second has changed.
    fn refresh_timestamp(&mut self) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if now != self.second {
            self.second = now;
            self.params
                .insert("timestamp", format_beijing(chrono::Utc::now()));
        }
    }
}

/// A small, fast, seedable generator for the request mix (xorshift64*): the mix needs no
/// cryptographic quality, only independence between workers.
#[derive(Debug, Clone)]
pub(crate) struct Mix(u64);

impl Mix {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed | 1)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in [0, 1).
    pub(crate) fn unit_interval(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in [0, n).
    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use top_protocol::params::parse_urlencoded;

    fn workload(form: Form, batch: usize) -> Workload {
        Workload {
            app_key: "bench-app".into(),
            secret: "s3cret".into(),
            sign_method: SignMethod::Md5,
            form,
            batch,
            capacity: 3,
            order_ids: vec![101, 102],
            codes: (0..4).map(code).collect(),
            used_dates: vec![
                "2026-01-01 10:00:00".into(),
                "2026-01-01 10:00:01".into(),
                "2026-01-01 10:00:02".into(),
            ],
            groups: 4 / batch,
            replay_ratio: 0.0,
            reject_ratio: 0.0,
        }
    }

    #[test]
    fn units_cover_every_use_once_and_alternate_orders() {
        let w = workload(Form::Vouchers, 2);
        assert_eq!(w.units(), 2 * 2 * 3);
        let mut seen = std::collections::HashSet::new();
        for n in 0..w.units() {
            let u = w.unit(n);
            assert!(seen.insert((u.order, u.first_voucher, u.round)));
            assert!(u.round < 3 && matches!(u.first_voucher, 0 | 2));
        }
        assert_ne!(w.unit(0).order, w.unit(1).order);
    }

    #[test]
    fn each_order_and_batch_of_codes_has_a_slot_of_its_own() {
        let w = workload(Form::Vouchers, 2);
        assert_eq!(w.slots(), 2 * 2);
        let mut slots = std::collections::HashMap::new();
        for n in 0..w.units() {
            let u = w.unit(n);
            let slot = w.slot(u);
            assert!(slot < w.slots());
            // Every round of one (order, batch) lands in the same slot, and no other does.
            assert_eq!(
                *slots.entry(slot).or_insert((u.order, u.first_voucher)),
                (u.order, u.first_voucher)
            );
        }
        assert_eq!(slots.len(), w.slots());
    }

    #[test]
    fn built_requests_verify_with_the_apps_secret() {
        for form in [Form::Vouchers, Form::Legacy] {
            let w = workload(form, 1);
            let mut b = RequestBuilder::new(&w, "127.0.0.1:1", "/router/rest");
            for kind in [Kind::Fresh, Kind::Reject] {
                let bytes = b.build(&w, kind, w.unit(1)).to_vec();
                let text = String::from_utf8(bytes).unwrap();
                let (head, body) = text.split_once("\r\n\r\n").unwrap();
                assert!(head.ends_with(&format!("Content-Length: {}", body.len())));
                let params =
                    Params::from_pairs(parse_urlencoded(body.as_bytes()).unwrap()).unwrap();
                let sig = params.get("sign").unwrap().to_owned();
                assert!(top_protocol::sign::verify(
                    SignMethod::Md5,
                    b"s3cret",
                    &params,
                    &sig
                ));
                assert_eq!(params.get("order_id"), Some("102"));
                match (form, kind) {
                    (Form::Legacy, Kind::Fresh) => assert_eq!(params.get("check_num"), Some("1")),
                    (Form::Legacy, _) => assert_eq!(params.get("check_num"), Some("4")),
                    (Form::Vouchers, Kind::Fresh) => assert_eq!(
                        params.get("voucher_infos"),
                        Some(
                            r#"[{"confirm_code":"BENCH0000","used_quantity":1,"used_date":"2026-01-01 10:00:00"}]"#
                        )
                    ),
                    (Form::Vouchers, _) => assert!(params
                        .get("voucher_infos")
                        .unwrap()
                        .contains("\"used_quantity\":4")),
                }
            }
        }
    }
}
