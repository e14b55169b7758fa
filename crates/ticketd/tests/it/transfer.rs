//! Moving a busy ledger from SQLite to PostgreSQL (and to MariaDB/MySQL) with the real
//! `ticketd export` and `ticketd import`, then comparing field by field: every order as the
//! operator sees it (with its events and refunds), every anomaly, the whole audit trail, and
//! every row of every table (a second export from the new database equals the first).
//!
//! The ledger is made through the real server, as vendors and operators make one: issued and
//! awaiting orders, issuance reports (applied and failed), verifies applied, replayed and
//! refused, rejected requests, a refund settled and replayed, a reversal, anomalies open and
//! resolved.

use std::process::{Command, Stdio};

use chrono::Utc;
use serde_json::{json, Value};
use ticket_store::scratch::ScratchDatabase;
use ticket_store::Engine;
use top_protocol::timestamp::format_beijing;

use crate::helpers::{
    create_order_with, spawn_app, spawn_app_with, TestApp, TopCall, ISSUE, REFUND, VERIFY,
};

const KEY: &str = "move-vendor";
const SECRET: &str = "move-secret-0123456789";

fn verify_call(order_id: i64, uses: &[(&str, i64, i64)]) -> TopCall {
    let gate = Utc::now() - chrono::Duration::minutes(30);
    let list: Vec<Value> = uses
        .iter()
        .map(|(code, n, second)| {
            json!({"confirm_code": code, "used_quantity": n,
                   "used_date": format_beijing(gate + chrono::Duration::seconds(*second))})
        })
        .collect();
    TopCall::method(VERIFY, KEY, SECRET)
        .set("order_id", order_id)
        .set("voucher_infos", Value::from(list))
}

/// Fills the server's ledger with some of everything (see the module docs).
async fn busy(app: &TestApp) {
    app.create_app(KEY, SECRET).await;
    app.create_app("move-other", "other-secret-0123456789")
        .await;
    create_order_with(app, 9001, KEY, &[("T1-A", 2), ("T1-B", 3)], json!({})).await;
    create_order_with(app, 9002, KEY, &[], json!({"quantity": 2})).await;
    create_order_with(app, 9003, KEY, &[], json!({"quantity": 1})).await;
    create_order_with(
        app,
        9004,
        KEY,
        &[("T4-A", 4)],
        json!({"out_order_id": "OUT-9004"}),
    )
    .await;
    create_order_with(app, 9005, KEY, &[("T5-A", 2)], json!({})).await;

    // Issuance: applied with type and extras, and failed.
    let issued = TopCall::method(ISSUE, KEY, SECRET)
        .set("order_id", 9002)
        .set("out_order_id", "OUT-9002")
        .set("issue_type", 1)
        .set(
            "voucher_infos",
            json!([{"confirm_code": "T2-A", "type": 1, "quantity": 1, "url": "https://t.example/a"},
                   {"confirm_code": "T2-B", "type": 1, "quantity": 1}]),
        );
    assert!(app.call(&issued).await.text().contains("is_success"));
    let failed = TopCall::method(ISSUE, KEY, SECRET)
        .set("order_id", 9003)
        .set("out_order_id", "OUT-9003")
        .set("issue_type", 2)
        .set("describe", "库存不足");
    assert!(app.call(&failed).await.text().contains("is_success"));

    // Verifies: applied, replayed, over capacity, unknown code, bad signature, and one with a
    // legacy total_num that raises an anomaly.
    let first = verify_call(9001, &[("T1-A", 1, 1), ("T1-B", 2, 2)]);
    app.call(&first).await.assert_success();
    app.call(&first).await.assert_success();
    app.call(&verify_call(9001, &[("T1-A", 5, 3)]))
        .await
        .error();
    app.call(&verify_call(9001, &[("NOPE", 1, 4)]))
        .await
        .error();
    let mut forged = verify_call(9001, &[("T1-A", 1, 5)]);
    forged.secret = "wrong-secret".into();
    app.call(&forged).await.error();
    app.call(&verify_call(9002, &[("T2-A", 1, 6)]).set("total_num", 1))
        .await
        .assert_success();

    // Refunds: requested, settled, the settlement replayed; a verify of the refunded uses is
    // refused (an anomaly); a notification with nothing pending (another anomaly).
    let (status, body) = app
        .admin_post("/admin/orders/9004/refunds", json!({"quantity": 2}))
        .await;
    assert_eq!(status, 201, "{body}");
    let settle = TopCall::method(REFUND, KEY, SECRET)
        .set("order_id", 9004)
        .set("refund_status", 1)
        .set("refund_num", 2)
        .set("refund_batch_no", "RB-9004");
    assert!(app.call(&settle).await.text().contains("is_success"));
    assert!(app.call(&settle).await.text().contains("is_success"));
    app.call(&verify_call(9004, &[("T4-A", 3, 7)]))
        .await
        .error();
    let stray = TopCall::method(REFUND, KEY, SECRET)
        .set("order_id", 9005)
        .set("refund_status", 1)
        .set("refund_batch_no", "RB-9005");
    app.call(&stray).await.error();

    // A reversal, and one anomaly resolved.
    app.call(&verify_call(9005, &[("T5-A", 2, 8)]))
        .await
        .assert_success();
    let (status, body) = app
        .admin_post(
            "/admin/orders/9005/reversals",
            json!({"confirm_code": "T5-A", "quantity": 1, "reason": "scanned twice"}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let (_, list) = app.admin_get("/admin/anomalies?limit=1000").await;
    let anomalies = list["anomalies"].as_array().unwrap();
    assert!(anomalies.len() >= 3, "{list}");
    let id = anomalies[0]["id"].as_i64().unwrap();
    let (status, body) = app
        .admin_post(
            &format!("/admin/anomalies/{id}/resolve"),
            json!({"resolution": "dismissed", "note": "checked with the vendor"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
}

/// Everything the operator can see: every order, every anomaly, the whole audit trail.
async fn operator_view(app: &TestApp) -> Value {
    let mut orders = Vec::new();
    for id in 9001..=9005 {
        orders.push(app.order(id).await);
    }
    let (_, anomalies) = app.admin_get("/admin/anomalies?limit=1000").await;
    let mut audit = Vec::new();
    let mut after = 0;
    loop {
        let (_, page) = app
            .admin_get(&format!("/admin/audit?after={after}&limit=1000"))
            .await;
        let entries = page["entries"].as_array().unwrap().clone();
        let Some(last) = entries.last() else { break };
        after = last["seq"].as_i64().unwrap();
        audit.extend(entries);
    }
    // The change feed, without each event's `id` and `source` (they name the store's own
    // ledger id; the `seq` carries over).
    let mut events = Vec::new();
    let mut after = 0;
    loop {
        let (_, page) = app
            .admin_get(&format!("/admin/events?after={after}&limit=1000"))
            .await;
        let page_events = page["events"].as_array().unwrap().clone();
        if page_events.is_empty() {
            break;
        }
        after = page["next"].as_i64().unwrap();
        events.extend(page_events.into_iter().map(|mut e| {
            let object = e.as_object_mut().unwrap();
            object.remove("id");
            object.remove("source");
            e
        }));
    }
    json!({"orders": orders, "anomalies": anomalies, "audit": audit, "events": events})
}

/// Runs `ticketd <args>` with `stdin`; returns stdout, panicking with stderr on failure.
fn ticketd(args: &[&str], stdin: Stdio) -> Vec<u8> {
    let out = Command::new(env!("CARGO_BIN_EXE_ticketd"))
        .args(args)
        .env("TICKETD_LOG", "warn")
        .stdin(stdin)
        .output()
        .expect("run ticketd");
    assert!(
        out.status.success(),
        "ticketd {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// The export's lines without the header (which names the source backend).
fn rows(export: &[u8]) -> Vec<String> {
    String::from_utf8(export.to_vec())
        .unwrap()
        .lines()
        .skip(1)
        .map(str::to_owned)
        .collect()
}

async fn a_busy_sqlite_ledger_moves_without_losing_an_event(engine: Engine) {
    let Some(db) = ScratchDatabase::fresh(engine) else {
        return;
    };
    let source = spawn_app().await;
    busy(&source).await;
    let before = operator_view(&source).await;
    let dir = source.stop().await;
    let sqlite = format!("sqlite://{}", dir.path().join("ticketd.db").display());

    let export = ticketd(&["export", "--database-url", &sqlite], Stdio::null());
    let file = dir.path().join("ledger.jsonl");
    std::fs::write(&file, &export).unwrap();
    let migrated = ticketd(&["migrate", "--database-url", db.url()], Stdio::null());
    assert_eq!(
        String::from_utf8_lossy(&migrated).trim(),
        "schema version 9"
    );
    ticketd(
        &["import", "--database-url", db.url()],
        Stdio::from(std::fs::File::open(&file).unwrap()),
    );
    // A second import is refused: the target is no longer empty.
    let again = Command::new(env!("CARGO_BIN_EXE_ticketd"))
        .args(["import", "--database-url", db.url()])
        .stdin(Stdio::from(std::fs::File::open(&file).unwrap()))
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("not empty"));

    let url = db.url().to_owned();
    let target = spawn_app_with(
        move |s| s.database_url = Some(url),
        std::sync::Arc::new(ticketd::clock::SystemClock),
    )
    .await;
    let after = operator_view(&target).await;
    for (what, key) in [
        ("orders", "orders"),
        ("anomalies", "anomalies"),
        ("audit", "audit"),
        ("events", "events"),
    ] {
        assert_eq!(
            after[key],
            before[key],
            "{what} differ after the move to {}",
            engine.name()
        );
    }
    assert!(before["audit"].as_array().unwrap().len() > 20, "{before}");
    target.stop().await;

    // Row by row, every column (voucher extras, the use log, fingerprints, who settled what).
    let exported_again = ticketd(&["export", "--database-url", db.url()], Stdio::null());
    assert_eq!(rows(&exported_again), rows(&export));

    // The feed goes on where the source's ended.
    let last = before["events"].as_array().unwrap().len();
    assert!(last > 10, "{before}");
    let url = db.url().to_owned();
    let target = spawn_app_with(
        move |s| s.database_url = Some(url),
        std::sync::Arc::new(ticketd::clock::SystemClock),
    )
    .await;
    target.create_order(9100, KEY, &[("T9-A", 1)]).await;
    let (_, page) = target
        .admin_get(&format!("/admin/events?after={last}"))
        .await;
    assert_eq!(page["events"][0]["seq"], last + 1, "{page}");
    assert_eq!(page["events"][0]["type"], "ticketd.order.created");
    target.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_sqlite_ledger_moves_to_postgres_without_losing_an_event() {
    a_busy_sqlite_ledger_moves_without_losing_an_event(Engine::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_sqlite_ledger_moves_to_mariadb_without_losing_an_event() {
    a_busy_sqlite_ledger_moves_without_losing_an_event(Engine::MySql).await;
}
