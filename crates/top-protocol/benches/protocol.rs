//! The protocol work of one gateway request, piece by piece: parse a form body, check the
//! envelope and the signature, render the answer. `cargo bench -p top-protocol`.
//!
//! The request is a real single-voucher verify (about 500 bytes of form body), the same shape
//! `ticketd bench` sends.

#![allow(missing_docs, clippy::unwrap_used)]

use std::hint::black_box;

use chrono::{TimeZone, Utc};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use top_protocol::check::{authenticate, check_envelope};
use top_protocol::envelope::{render_error, render_success};
use top_protocol::params::{merge, parse_body};
use top_protocol::sign::{sign, verify};
use top_protocol::{EmptyValues, Field, Format, Params, PlatformCode, SignMethod, TopError};

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
const CONTENT_TYPE: &str = "application/x-www-form-urlencoded;charset=UTF-8";

fn request(method: SignMethod, vouchers: usize) -> (Params, Vec<u8>) {
    let infos: Vec<String> = (0..vouchers)
        .map(|i| {
            format!(
                r#"{{"confirm_code":"BENCH{i:04}","used_quantity":1,"used_date":"2026-01-01 10:00:00"}}"#
            )
        })
        .collect();
    let mut params: Params = [
        ("method", "taobao.travel.ticket.order.verify"),
        ("app_key", "bench-0123456789"),
        ("sign_method", method.as_str()),
        ("timestamp", "2026-01-01 12:00:00"),
        ("v", "2.0"),
        ("format", "json"),
        ("order_id", "2983749123412345"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    params.insert("voucher_infos", format!("[{}]", infos.join(",")));
    let signature = sign(method, SECRET, &params, EmptyValues::Skip);
    params.insert("sign", signature);
    let body = params.to_form_urlencoded().into_bytes();
    (params, body)
}

fn now() -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 4, 0, 30).unwrap()
}

fn parse(c: &mut Criterion) {
    let mut g = c.benchmark_group("parse");
    for vouchers in [1, 999] {
        let (_, body) = request(SignMethod::Md5, vouchers);
        g.throughput(Throughput::Bytes(body.len() as u64));
        g.bench_with_input(BenchmarkId::new("form_body", vouchers), &body, |b, body| {
            b.iter(|| {
                let pairs = parse_body(Some(CONTENT_TYPE), black_box(body)).unwrap();
                merge(Vec::new(), pairs).unwrap()
            })
        });
    }
    g.finish();
}

fn signature(c: &mut Criterion) {
    let mut g = c.benchmark_group("verify_signature");
    for method in [SignMethod::Md5, SignMethod::HmacMd5, SignMethod::HmacSha256] {
        let (params, _) = request(method, 1);
        let provided = params.get("sign").unwrap().to_owned();
        g.bench_function(method.as_str(), |b| {
            b.iter(|| assert!(verify(method, SECRET, black_box(&params), &provided)))
        });
    }
    let (params, _) = request(SignMethod::Md5, 999);
    let provided = params.get("sign").unwrap().to_owned();
    g.bench_function("md5_999_vouchers", |b| {
        b.iter(|| {
            assert!(verify(
                SignMethod::Md5,
                SECRET,
                black_box(&params),
                &provided
            ))
        })
    });
    g.finish();

    let (params, _) = request(SignMethod::Md5, 1);
    c.bench_function("check_envelope+authenticate", |b| {
        b.iter(|| {
            let env =
                check_envelope("POST", black_box(&params), |m| m.starts_with("taobao.")).unwrap();
            authenticate(&params, &[SECRET], now(), chrono::Duration::seconds(600)).unwrap();
            env
        })
    });
}

fn render(c: &mut Criterion) {
    let mut g = c.benchmark_group("render");
    let fields = [("is_success", Field::Bool(true))];
    let method = "taobao.travel.ticket.order.verify";
    for (name, format) in [("json", Format::Json), ("xml", Format::Xml)] {
        g.bench_function(format!("success_{name}"), |b| {
            b.iter(|| render_success(format, black_box(method), &fields, "0123456789abc"))
        });
    }
    let refusal = TopError::platform(PlatformCode::InvalidSignature);
    g.bench_function("error_json", |b| {
        b.iter(|| render_error(Format::Json, black_box(&refusal), "0123456789abc"))
    });
    g.finish();
}

/// The whole protocol part of a request, as the gateway runs it.
fn pipeline(c: &mut Criterion) {
    let (_, body) = request(SignMethod::Md5, 1);
    c.bench_function("parse+verify+render", |b| {
        b.iter(|| {
            let pairs = parse_body(Some(CONTENT_TYPE), black_box(&body)).unwrap();
            let params = merge(Vec::new(), pairs).unwrap();
            let env = check_envelope("POST", &params, |m| m.starts_with("taobao.")).unwrap();
            authenticate(&params, &[SECRET], now(), chrono::Duration::seconds(600)).unwrap();
            render_success(
                env.format,
                &env.method,
                &[("is_success", Field::Bool(true))],
                "0123456789abc",
            )
        })
    });
}

criterion_group!(benches, parse, signature, render, pipeline);
criterion_main!(benches);
