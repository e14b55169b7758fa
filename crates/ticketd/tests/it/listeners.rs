//! Where ticketd listens and how: the admin API on its own listener (`--admin-listen`), HTTPS
//! (`--tls-cert`, `--tls-key`), and what the real binary prints and logs while serving so
//! (startup lines, JSON logs tagged with `request_id`, no secret in any line).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use serde_json::{json, Value};
use ticketd::server::Application;
use ticketd::settings::Settings;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::oneshot;
use top_client::{TopClient, VerifyParams, VoucherInfo};
use top_protocol::timestamp::format_beijing;

use crate::helpers::{
    assert_success_body, minutes_ago, request_id_of, serve_child_logging, voucher_infos, TopCall,
    TopReply, ADMIN_TOKEN,
};

const KEY: &str = "listener-vendor";
const SECRET: &str = "listener-secret-7f3a9c1e5b";
const ORDER: i64 = 7101;
const CODE: &str = "LISTENER-CODE-884411";

/// A server started from settings the test adjusts, with both of its addresses.
pub struct Server {
    /// Where `/router/rest` is served.
    pub gateway: SocketAddr,
    /// Where the admin API is served (the gateway's address unless `--admin-listen`).
    pub admin: SocketAddr,
    pub data_dir: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
    handle: tokio::task::JoinHandle<()>,
}

impl Server {
    /// Starts the real server on port 0 with a fresh SQLite ledger and the test admin token.
    pub async fn start(adjust: impl FnOnce(&mut Settings)) -> Server {
        let data_dir = tempfile::tempdir().unwrap();
        let mut settings = Settings::for_data_dir(data_dir.path().to_path_buf());
        settings.admin_token = Some(ADMIN_TOKEN.to_owned());
        adjust(&mut settings);
        let app = Application::build(&settings).await.unwrap();
        let gateway = app.local_addr().unwrap();
        let admin = app.admin_addr().unwrap();
        assert_eq!(app.has_admin_listener(), settings.admin_listen.is_some());
        assert_eq!(app.uses_tls(), settings.tls_cert.is_some());
        let (tx, rx) = oneshot::channel::<()>();
        let handle = tokio::spawn(async move {
            app.run_until_stopped(async {
                let _ = rx.await;
            })
            .await
            .unwrap();
        });
        Server {
            gateway,
            admin,
            data_dir,
            stop: Some(tx),
            handle,
        }
    }

    /// Stops the server gracefully and waits for it.
    pub async fn stop(mut self) -> tempfile::TempDir {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        (&mut self.handle).await.unwrap();
        std::mem::replace(&mut self.data_dir, tempfile::tempdir().unwrap())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

/// An operator's client for one admin base URL.
pub struct Admin {
    pub http: reqwest::Client,
    pub base: String,
    pub token: String,
}

impl Admin {
    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    /// Registers the vendor app and an issued order with one code of capacity 5.
    pub async fn seed(&self) {
        let (status, body) = self
            .post("/admin/apps", json!({"app_key": KEY, "app_secret": SECRET}))
            .await;
        assert_eq!(status, 201, "{body}");
        let (status, body) = self
            .post(
                "/admin/orders",
                json!({
                    "order_id": ORDER, "app_key": KEY, "quantity": 5,
                    "created_at": format_beijing(Utc::now() - chrono::Duration::days(1)),
                    "vouchers": [{"confirm_code": CODE, "quantity": 5}],
                }),
            )
            .await;
        assert_eq!(status, 201, "{body}");
    }

    /// Uses recorded on the seeded code.
    pub async fn used(&self) -> i64 {
        let (status, order) = self.get(&format!("/admin/orders/{ORDER}")).await;
        assert_eq!(status, 200, "{order}");
        order["vouchers"][0]["used"].as_i64().unwrap()
    }
}

/// A signed verify of one use of the seeded code.
fn one_use() -> TopCall {
    TopCall::verify(KEY, SECRET).set("order_id", ORDER).set(
        "voucher_infos",
        voucher_infos(&[(CODE, 1, &minutes_ago(1))]),
    )
}

/// Posts a TOP call's signed form to `url` with `http`.
async fn post_call(http: &reqwest::Client, url: &str, call: &TopCall) -> TopReply {
    let r = http
        .post(url)
        .header(
            "content-type",
            "application/x-www-form-urlencoded;charset=UTF-8",
        )
        .body(call.signed().to_form_urlencoded())
        .send()
        .await
        .unwrap();
    TopReply {
        status: r.status().as_u16(),
        content_type: r
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default(),
        body: r.bytes().await.unwrap().to_vec(),
    }
}

/// A self-signed certificate for `localhost` and 127.0.0.1, written as PEM files in `dir`.
/// Returns (certificate path, key path, certificate PEM).
pub fn self_signed(dir: &Path) -> (PathBuf, PathBuf, String) {
    let made =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .unwrap();
    let cert_pem = made.cert.pem();
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    std::fs::write(&cert, &cert_pem).unwrap();
    std::fs::write(&key, made.signing_key.serialize_pem()).unwrap();
    (cert, key, cert_pem)
}

/// A reqwest client that trusts only `cert_pem`.
pub fn trusting(cert_pem: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(cert_pem.as_bytes()).unwrap())
        .build()
        .unwrap()
}

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

#[tokio::test]
async fn one_listener_serves_the_gateway_and_the_admin_api_by_default() {
    let server = Server::start(|_| {}).await;
    assert_eq!(server.gateway, server.admin);
    let admin = Admin {
        http: reqwest::Client::new(),
        base: format!("http://{}", server.admin),
        token: ADMIN_TOKEN.to_owned(),
    };
    admin.seed().await;
    for path in ["/healthz", "/readyz", "/metrics"] {
        assert_eq!(admin.get(path).await.0, 200, "{path}");
    }
    let reply = post_call(
        &admin.http,
        &format!("http://{}/router/rest", server.gateway),
        &one_use(),
    )
    .await;
    assert_success_body(&reply);
    assert_eq!(admin.used().await, 1);
}

#[tokio::test]
async fn admin_listen_moves_the_admin_api_and_health_endpoints_off_the_gateway() {
    let server = Server::start(|s| s.admin_listen = Some(loopback())).await;
    assert_ne!(server.gateway, server.admin);
    let http = reqwest::Client::new();
    let on_gateway = Admin {
        http: http.clone(),
        base: format!("http://{}", server.gateway),
        token: ADMIN_TOKEN.to_owned(),
    };
    let admin = Admin {
        http: http.clone(),
        base: format!("http://{}", server.admin),
        token: ADMIN_TOKEN.to_owned(),
    };

    // The gateway's port knows nothing but /router/rest, even with the right token.
    for path in [
        "/admin/apps/listener-vendor",
        "/admin/audit",
        "/healthz",
        "/readyz",
        "/metrics",
    ] {
        assert_eq!(on_gateway.get(path).await.0, 404, "{path}");
    }
    let (status, _) = on_gateway
        .post("/admin/apps", json!({"app_key": KEY, "app_secret": SECRET}))
        .await;
    assert_eq!(status, 404);

    // The admin port serves the admin API and the health endpoints...
    admin.seed().await;
    for path in ["/healthz", "/readyz", "/metrics"] {
        assert_eq!(admin.get(path).await.0, 200, "{path}");
    }
    // ...and not the gateway.
    let on_admin = post_call(
        &http,
        &format!("http://{}/router/rest", server.admin),
        &one_use(),
    )
    .await;
    assert_eq!(on_admin.status, 404);
    assert_eq!(admin.used().await, 0);

    // Vendors call the gateway's port; the operator sees the use on the admin port.
    let reply = post_call(
        &http,
        &format!("http://{}/router/rest", server.gateway),
        &one_use(),
    )
    .await;
    assert_success_body(&reply);
    assert_eq!(admin.used().await, 1);
    server.stop().await;
}

#[tokio::test]
async fn verify_travels_over_https_and_plain_http_to_a_tls_port_gets_no_answer() {
    let certs = tempfile::tempdir().unwrap();
    let (cert, key, cert_pem) = self_signed(certs.path());
    let server = Server::start(|s| {
        s.tls_cert = Some(cert);
        s.tls_key = Some(key);
        s.admin_listen = Some(loopback());
    })
    .await;
    let https = trusting(&cert_pem);
    // The admin listener speaks TLS too.
    let admin = Admin {
        http: https.clone(),
        base: format!("https://{}", server.admin),
        token: ADMIN_TOKEN.to_owned(),
    };
    admin.seed().await;
    let gateway = format!("https://{}/router/rest", server.gateway);

    // Through the SDK, with the caller's HTTPS client.
    let client = TopClient::builder(&gateway, KEY, SECRET)
        .http_client(https.clone())
        .build()
        .unwrap();
    let answer = client
        .verify(&VerifyParams {
            order_id: Some(ORDER),
            voucher_infos: vec![VoucherInfo {
                confirm_code: CODE.to_owned(),
                used_quantity: 2,
                used_date: Some(minutes_ago(2)),
            }],
            ..VerifyParams::default()
        })
        .await
        .unwrap();
    assert!(answer.is_success);
    // And as a raw form POST.
    assert_success_body(&post_call(&https, &gateway, &one_use()).await);
    assert_eq!(admin.used().await, 3);

    // Plain HTTP to either TLS port is not served, nor is a client that does not trust the
    // certificate.
    let plain = reqwest::Client::new();
    let to_gateway = plain
        .post(format!("http://{}/router/rest", server.gateway))
        .body(one_use().signed().to_form_urlencoded())
        .send()
        .await;
    assert!(to_gateway.is_err(), "{to_gateway:?}");
    let to_admin = plain
        .get(format!("http://{}/healthz", server.admin))
        .send()
        .await;
    assert!(to_admin.is_err(), "{to_admin:?}");
    let untrusting = reqwest::Client::builder()
        .use_rustls_tls()
        .build()
        .unwrap()
        .get(format!("https://{}/healthz", server.admin))
        .send()
        .await;
    assert!(untrusting.is_err(), "{untrusting:?}");
    assert_eq!(admin.used().await, 3);
    server.stop().await;
}

#[tokio::test]
async fn a_key_that_does_not_match_the_certificate_stops_the_start() {
    let certs = tempfile::tempdir().unwrap();
    let (cert, _, _) = self_signed(certs.path());
    let other = tempfile::tempdir().unwrap();
    let (_, other_key, _) = self_signed(other.path());
    let data_dir = tempfile::tempdir().unwrap();
    let mut settings = Settings::for_data_dir(data_dir.path().to_path_buf());
    settings.tls_cert = Some(cert);
    settings.tls_key = Some(other_key);
    let error = Application::build(&settings).await.unwrap_err();
    assert!(
        format!("{error:#}").contains("cannot serve TLS together"),
        "{error:#}"
    );
    settings.tls_key = Some(certs.path().join("missing.pem"));
    let error = Application::build(&settings).await.unwrap_err();
    assert!(format!("{error:#}").contains("missing.pem"), "{error:#}");
}

/// The binary's default text log, written to a pipe (as to a file or the journal): plain
/// lines, no colour escape codes (`telemetry::init` colours only a terminal).
#[tokio::test]
async fn text_logs_written_to_a_pipe_carry_no_colour_codes() {
    let data_dir = tempfile::tempdir().unwrap();
    let (_child, _, log) =
        serve_child_logging(&["--log-format", "text"], data_dir.path(), "info").await;
    // The ledger's start-up lines (its migrations) came through the text formatter.
    let migrations: Vec<&String> = log
        .iter()
        .filter(|l| l.contains("ticket_store::sqlite::migrate"))
        .collect();
    assert!(migrations.len() >= 2, "{log:?}");
    assert!(log.iter().all(|l| !l.contains('\x1b')), "{log:?}");
    assert!(
        migrations
            .iter()
            .all(|l| l.contains(" INFO ticket_store::sqlite::migrate: applying ledger migration")),
        "{log:?}"
    );
}

/// The binary with `--admin-listen`, TLS and `--log-format json` at the most verbose level:
/// the startup lines name both HTTPS addresses; every line the gateway logs during a call
/// carries that call's `request_id`; neither the app secret, nor the confirm code, nor the
/// `sign` appears in any line, for an accepted call or a refused one.
#[tokio::test]
async fn json_logs_tag_the_calls_lines_with_request_id_and_never_hold_a_secret() {
    const TOKEN: &str = "log-test-admin-token-5d1e";
    let data_dir = tempfile::tempdir().unwrap();
    let (cert, key, cert_pem) = self_signed(data_dir.path());
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_ticketd"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ])
        .arg("--data-dir")
        .arg(data_dir.path())
        .arg("--tls-cert")
        .arg(&cert)
        .arg("--tls-key")
        .arg(&key)
        .args(["--admin-token", TOKEN, "--log-format", "json"])
        .env("TICKETD_LOG", "trace")
        .env_remove("TICKETD_DATABASE_URL")
        .env_remove("TICKETD_LISTEN")
        .env_remove("TICKETD_ADMIN_LISTEN")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let log = Arc::new(Mutex::new(Vec::<String>::new()));
    let (gateway, admin) = tokio::time::timeout(Duration::from_secs(60), async {
        let (mut gateway, mut admin) = (None, None);
        while let Some(line) = lines.next_line().await.unwrap() {
            log.lock().unwrap().push(line.clone());
            if let Some(rest) = line.strip_prefix("ticketd: listening on https://") {
                assert!(rest.ends_with("/router/rest"), "{line}");
                gateway = Some(rest.trim_end_matches("/router/rest").to_owned());
            }
            if let Some(rest) = line.strip_prefix("ticketd: admin API on https://") {
                assert!(rest.ends_with("/admin"), "{line}");
                admin = Some(rest.trim_end_matches("/admin").to_owned());
            }
            if let (Some(g), Some(a)) = (&gateway, &admin) {
                return (g.clone(), a.clone());
            }
        }
        panic!("ticketd exited before listening: {:?}", log.lock().unwrap());
    })
    .await
    .expect("ticketd reports its listeners within 60 s");
    let sink = log.clone();
    let drain = tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            sink.lock().unwrap().push(line);
        }
    });

    let https = trusting(&cert_pem);
    let operator = Admin {
        http: https.clone(),
        base: format!("https://{admin}"),
        token: TOKEN.to_owned(),
    };
    operator.seed().await;
    let url = format!("https://{gateway}/router/rest");
    let accepted = one_use();
    let reply = post_call(&https, &url, &accepted).await;
    let accepted_id = assert_success_body(&reply);
    let refused = one_use().set("sign", "0123456789ABCDEF0123456789ABCDEF");
    let reply = post_call(&https, &url, &refused).await;
    assert_eq!(reply.error().0, 25, "{}", reply.text());
    let refused_id = request_id_of(&reply);
    let signs = [
        accepted.signed().get("sign").unwrap().to_owned(),
        "0123456789ABCDEF0123456789ABCDEF".to_owned(),
    ];

    // A graceful stop, as a service manager asks for one.
    let pid = child.id().unwrap().to_string();
    let killed = tokio::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .unwrap();
    assert!(killed.success());
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("ticketd stops within 30 s of SIGTERM")
        .unwrap();
    drain.await.unwrap();
    let log = log.lock().unwrap().clone();
    assert!(status.success(), "{status}: {log:#?}");

    for line in &log {
        for secret in [SECRET, CODE, TOKEN, &signs[0], &signs[1]] {
            assert!(!line.contains(secret), "{secret:?} logged: {line}");
        }
    }
    let json: Vec<Value> = log
        .iter()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    for id in [&accepted_id, &refused_id] {
        let tagged = json.iter().filter(|l| l["request_id"] == **id).count();
        assert!(tagged >= 1, "no line for {id}: {log:#?}");
    }
    let gateway_lines: Vec<&Value> = json
        .iter()
        .filter(|l| {
            l["target"]
                .as_str()
                .is_some_and(|t| t.starts_with("ticketd::gateway"))
        })
        .collect();
    assert!(gateway_lines.len() >= 2, "{log:#?}");
    for line in gateway_lines {
        let id = line["request_id"].as_str().unwrap_or_default();
        assert!(
            id == accepted_id || id == refused_id,
            "a gateway line without its call's request_id: {line}"
        );
    }
    let answered = json
        .iter()
        .find(|l| l["message"] == "top call answered is_success")
        .unwrap_or_else(|| panic!("{log:#?}"));
    assert_eq!(answered["request_id"], accepted_id.as_str());
    assert_eq!(answered["level"], "INFO");
    assert!(
        json.iter().any(|l| l["message"] == "ticketd stopped"),
        "{log:#?}"
    );
}
