//! docs/DOMAIN.md R28: concurrent notifications for one order. Racing gates never use a voucher
//! beyond its capacity, each refusal is precise, the audit trail has one entry per attempt,
//! and concurrent retries of one report count once.

use std::collections::HashSet;

use chrono::{Duration, Utc};
use serde_json::json;
use top_protocol::timestamp::format_beijing;

use crate::helpers::{
    assert_top_envelope, audit_entries, error_json, spawn_app, success_json, TopCall,
};

const KEY: &str = "race-vendor";
const SECRET: &str = "race-secret-0123456789";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixty_four_gates_race_for_ten_uses() {
    const ORDER: i64 = 8001;
    const CODE: &str = "RACE-CODE-10";
    let app = spawn_app().await;
    app.create_app(KEY, SECRET).await;
    app.create_order(ORDER, KEY, &[(CODE, 10)]).await;

    // Distinct gate times, so no request is a replay of another.
    let start = Utc::now() - Duration::minutes(30);
    let tasks: Vec<_> = (0..64)
        .map(|i| {
            let call = TopCall::verify(KEY, SECRET).set("order_id", ORDER).set(
                "voucher_infos",
                json!([{"confirm_code": CODE, "used_quantity": 1, "used_date": format_beijing(start + Duration::seconds(i))}]),
            );
            let http = app.http.clone();
            let url = app.gateway();
            tokio::spawn(async move {
                let body = call.signed().to_form_urlencoded();
                let r = http
                    .post(url)
                    .header("content-type", "application/x-www-form-urlencoded;charset=UTF-8")
                    .body(body)
                    .send()
                    .await
                    .unwrap();
                let status = r.status().as_u16();
                let content_type = r.headers()["content-type"].to_str().unwrap().to_owned();
                (status, content_type, r.bytes().await.unwrap().to_vec())
            })
        })
        .collect();

    let mut accepted = HashSet::new();
    let mut rejected = HashSet::new();
    let mut other = Vec::new();
    for t in tasks {
        let (status, content_type, body) = t.await.unwrap();
        let reply = crate::helpers::TopReply {
            status,
            content_type,
            body,
        };
        let id = assert_top_envelope(&reply);
        let text = reply.text();
        if text == success_json(&id) {
            accepted.insert(id);
        } else if text
            == error_json(
                50,
                "Remote service error",
                Some((
                    "isv.verify-num-exceed",
                    "核销数量超过可用数量: 核销码****E-10本次核销1次, 剩余可核销0次",
                )),
                &id,
            )
        {
            rejected.insert(id);
        } else {
            other.push(text);
        }
    }
    assert!(other.is_empty(), "imprecise answers: {other:#?}");
    assert_eq!(accepted.len(), 10, "exactly the capacity is accepted");
    assert_eq!(rejected.len(), 54);
    assert_eq!(app.used(ORDER, CODE).await, 10);
    assert_eq!(app.order(ORDER).await["status"], "used");

    // One audit entry per attempt, matching what each caller was told.
    // Plus the two status transitions: issued → partly_used by the request that recorded the
    // first use, partly_used → used by the one that recorded the tenth.
    let entries = audit_entries(&app, &format!("order_id={ORDER}&limit=1000")).await;
    assert_eq!(entries.len(), 1 + 64 + 2, "{entries:#?}");
    assert_eq!(entries[0]["action"], "admin.create_order");
    let verify: Vec<_> = entries
        .iter()
        .filter(|e| e["action"] == "taobao.travel.ticket.order.verify")
        .collect();
    assert_eq!(verify.len(), 64);
    let ids = |outcome: &str| -> HashSet<String> {
        verify
            .iter()
            .filter(|e| e["outcome"] == outcome)
            .map(|e| e["request_id"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(ids("accepted"), accepted);
    assert_eq!(ids("rejected"), rejected);
    for e in verify.iter().filter(|e| e["outcome"] == "rejected") {
        assert_eq!(e["reason"], "isv.verify-num-exceed", "{e}");
    }
    // The accepted entries account for every use, one each, ending at 10.
    let mut counts: Vec<i64> = verify
        .iter()
        .filter(|e| e["outcome"] == "accepted")
        .map(|e| e["detail"]["changes"][0]["used"].as_i64().unwrap())
        .collect();
    counts.sort_unstable();
    assert_eq!(counts, (1..=10).collect::<Vec<_>>());
    let causing = |used: i64| -> String {
        verify
            .iter()
            .find(|e| e["outcome"] == "accepted" && e["detail"]["changes"][0]["used"] == used)
            .unwrap()["request_id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let transitions: Vec<_> = entries
        .iter()
        .filter(|e| e["action"] == "order.status")
        .map(|e| {
            (
                e["request_id"].as_str().unwrap().to_owned(),
                e["detail"]["from"].as_str().unwrap().to_owned(),
                e["detail"]["to"].as_str().unwrap().to_owned(),
                e["reason"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        transitions,
        [
            (
                causing(1),
                "issued".into(),
                "partly_used".into(),
                "partly_used".into()
            ),
            (
                causing(10),
                "partly_used".into(),
                "used".into(),
                "used".into()
            ),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thirty_two_concurrent_retries_count_once() {
    const ORDER: i64 = 8002;
    let app = spawn_app().await;
    app.create_app(KEY, SECRET).await;
    app.create_order(ORDER, KEY, &[("RETRY-CODE-1", 5), ("RETRY-CODE-2", 5)])
        .await;
    let date = format_beijing(Utc::now() - Duration::minutes(3));
    let list = json!([
        {"confirm_code": "RETRY-CODE-1", "used_quantity": 2, "used_date": date},
        {"confirm_code": "RETRY-CODE-2", "used_quantity": 1, "used_date": date},
    ]);
    let tasks: Vec<_> = (0..32)
        .map(|_| {
            // The same report, re-signed as a retrying SDK would (fresh timestamp).
            let call = TopCall::verify(KEY, SECRET)
                .set("order_id", ORDER)
                .set("voucher_infos", &list);
            let http = app.http.clone();
            let url = app.gateway();
            tokio::spawn(async move {
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
                let status = r.status().as_u16();
                let content_type = r.headers()["content-type"].to_str().unwrap().to_owned();
                (status, content_type, r.bytes().await.unwrap().to_vec())
            })
        })
        .collect();
    let mut ids = HashSet::new();
    for t in tasks {
        let (status, content_type, body) = t.await.unwrap();
        let reply = crate::helpers::TopReply {
            status,
            content_type,
            body,
        };
        let id = assert_top_envelope(&reply);
        assert_eq!(reply.text(), success_json(&id));
        ids.insert(id);
    }
    assert_eq!(ids.len(), 32);
    assert_eq!(app.used(ORDER, "RETRY-CODE-1").await, 2);
    assert_eq!(app.used(ORDER, "RETRY-CODE-2").await, 1);
    let entries = audit_entries(&app, &format!("order_id={ORDER}&limit=1000")).await;
    let verify: Vec<_> = entries
        .iter()
        .filter(|e| e["action"] == "taobao.travel.ticket.order.verify")
        .collect();
    assert_eq!(verify.len(), 32);
    assert_eq!(
        verify.iter().filter(|e| e["outcome"] == "accepted").count(),
        1,
        "{verify:#?}"
    );
    assert_eq!(
        verify.iter().filter(|e| e["outcome"] == "replayed").count(),
        31,
        "{verify:#?}"
    );
    let answered: HashSet<String> = verify
        .iter()
        .map(|e| e["request_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(answered, ids);
}
