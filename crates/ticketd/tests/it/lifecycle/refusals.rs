//! The documented refusals (`REFUSALS`), walked row by row: each answers as documented,
//! changes nothing and stores its anomaly (or none).

use super::*;

/// What a refusal row's attempt sends.
enum Attempt {
    Top(TopCall),
    Admin(String, Value),
}

/// Every row of `REFUSALS`: build the situation `when` describes, send the refused call, and
/// check the documented answer, that the ledger did not change, and the anomaly stored (or
/// that none was).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_refusal_answers_changes_nothing_and_records_its_anomaly() {
    let life = Life::new().await;
    assert!(REFUSALS.len() >= 14, "the refusal table shrank");
    let mut cases = 0;
    for (i, r) in REFUSALS.iter().enumerate() {
        cases += walk_refusal(&life, 72_000 + 10 * i as i64, r).await;
    }
    assert!(cases >= 2 * REFUSALS.len(), "only {cases} cases");
}

/// Runs the cases of one row; returns how many.
async fn walk_refusal(life: &Life, base: i64, r: &Refusal) -> usize {
    let mut n = 0;
    // Each attempt is checked right away: later setup steps must not change what it meets.
    macro_rules! refuse {
        ($o:expr, $attempt:expr $(,)?) => {{
            let (o, attempt) = ($o, $attempt);
            check_refusal(life, r, o, attempt).await;
            n += 1;
        }};
    }
    match r.case {
        Refused::VerifyNotIssued => {
            life.awaiting(base, 1).await;
            refuse!(
                base,
                Attempt::Top(life.verify_call(base, &[("X", 1, life.gate())]))
            );
            life.awaiting(base + 1, 1).await;
            let call = life.fail_call(base + 1, &format!("OUT-F-{base}"), "库存不足");
            assert_success_for(&life.send(call).await, ISSUE);
            refuse!(
                base + 1,
                Attempt::Top(
                    life.call(VERIFY)
                        .set("order_id", base + 1)
                        .set("check_num", 1),
                ),
            );
        }
        Refused::VerifyUnknownCode => {
            life.issued(base, 2, &[("V-A", 2)]).await;
            refuse!(
                base,
                Attempt::Top(
                    life.verify_call(base, &[("V-A", 1, life.gate()), ("V-NOPE", 1, life.gate())])
                ),
            );
            refuse!(
                base,
                Attempt::Top(
                    life.call(VERIFY)
                        .set("order_id", base)
                        .set("confirm_code", "V-NOPE")
                        .set("check_num", 1),
                ),
            );
        }
        Refused::VerifyTooMany => {
            life.issued(base, 2, &[("V-A", 1), ("V-B", 1)]).await;
            life.verify_ok(base, "V-A", 1).await;
            // The code…
            refuse!(
                base,
                Attempt::Top(life.verify_call(base, &[("V-A", 1, life.gate())]))
            );
            // …and the order (legacy check_num without a code).
            refuse!(
                base,
                Attempt::Top(life.call(VERIFY).set("order_id", base).set("check_num", 2)),
            );
        }
        Refused::VerifyRefunded => {
            // Every ticket refunded.
            life.issued(base, 2, &[("V-A", 2)]).await;
            life.request_ok(base, 2).await;
            life.notify_ok(base, &[("refund_status", "1"), ("refund_batch_no", "RB-1")])
                .await;
            assert_eq!(life.status(base).await, "refunded");
            refuse!(
                base,
                Attempt::Top(life.verify_call(base, &[("V-A", 1, life.gate())]))
            );
            // One of two refunded: the code still has 2 uses, the order only 1.
            life.issued(base + 1, 2, &[("V-A", 2)]).await;
            life.request_ok(base + 1, 1).await;
            life.notify_ok(
                base + 1,
                &[("refund_status", "1"), ("refund_batch_no", "RB-1")],
            )
            .await;
            refuse!(
                base + 1,
                Attempt::Top(life.verify_call(base + 1, &[("V-A", 2, life.gate())])),
            );
            // One code per ticket: each code fits, the order does not.
            life.issued(base + 2, 2, &[("V-A", 1), ("V-B", 1)]).await;
            life.request_ok(base + 2, 1).await;
            life.notify_ok(
                base + 2,
                &[("refund_status", "1"), ("refund_batch_no", "RB-1")],
            )
            .await;
            refuse!(
                base + 2,
                Attempt::Top(life.verify_call(
                    base + 2,
                    &[("V-A", 1, life.gate()), ("V-B", 1, life.gate())]
                )),
            );
        }
        Refused::VerifyHeldByRefund => {
            life.issued(base, 2, &[("V-A", 2)]).await;
            life.request_ok(base, 1).await;
            let after = life.now() + Duration::minutes(2);
            // Dated after the request, with no used_date (the receive time, which is the
            // request's own instant: "at or after"), and with an order-level legacy report.
            refuse!(
                base,
                Attempt::Top(life.verify_call(base, &[("V-A", 2, Some(after))]))
            );
            refuse!(
                base,
                Attempt::Top(life.verify_call(base, &[("V-A", 2, None)]))
            );
            refuse!(
                base,
                Attempt::Top(life.call(VERIFY).set("order_id", base).set("check_num", 2)),
            );
        }
        Refused::IssueConflict => {
            life.awaiting(base, 2).await;
            life.issue_ok(base, &[("I-A", 1), ("I-B", 1)]).await;
            let out = format!("OUT-{base}");
            for vouchers in [
                json!([{"confirm_code": "I-A", "quantity": 1}, {"confirm_code": "I-B", "quantity": 2}]),
                json!([{"confirm_code": "I-A", "quantity": 1}]),
                json!([{"confirm_code": "I-A", "quantity": 1}, {"confirm_code": "I-C", "quantity": 1}]),
                json!([{"confirm_code": "I-A", "quantity": 1}, {"confirm_code": "I-B", "quantity": 1}, {"confirm_code": "I-C", "quantity": 1}]),
            ] {
                refuse!(base, Attempt::Top(life.issue_call(base, &out, &vouchers)));
            }
            refuse!(base, Attempt::Top(life.fail_call(base, &out, "库存不足")));
            // Created issued by the operator: the vendor's report must match it too.
            life.issued(base + 1, 1, &[("I-ADMIN", 1)]).await;
            refuse!(
                base + 1,
                Attempt::Top(life.issue_call(
                    base + 1,
                    "OUT-X",
                    &json!([{"confirm_code": "I-OTHER", "quantity": 1}]),
                )),
            );
        }
        Refused::IssueOutOrderIdMismatch => {
            // Given at creation…
            create_order_with(
                &life.app,
                base,
                KEY,
                &[],
                json!({"quantity": 1, "out_order_id": "OUT-A"}),
            )
            .await;
            refuse!(
                base,
                Attempt::Top(life.issue_call(
                    base,
                    "OUT-B",
                    &json!([{"confirm_code": "O-A", "quantity": 1}])
                )),
            );
            // …or set by the first issuance report.
            life.awaiting(base + 1, 1).await;
            life.issue_ok(base + 1, &[("O-B", 1)]).await;
            refuse!(
                base + 1,
                Attempt::Top(life.issue_call(
                    base + 1,
                    "OUT-OTHER",
                    &json!([{"confirm_code": "O-B", "type": 1, "quantity": 1}])
                )),
            );
            refuse!(
                base + 1,
                Attempt::Top(life.fail_call(base + 1, "OUT-OTHER", "x"))
            );
        }
        Refused::RequestTooMany => {
            life.issued(base, 3, &[("Q-A", 1), ("Q-B", 1), ("Q-C", 1)])
                .await;
            let path = format!("/admin/orders/{base}/refunds");
            refuse!(base, Attempt::Admin(path.clone(), json!({"quantity": 4})));
            life.verify_ok(base, "Q-A", 1).await;
            refuse!(base, Attempt::Admin(path.clone(), json!({"quantity": 3})));
            life.request_ok(base, 1).await;
            refuse!(base, Attempt::Admin(path.clone(), json!({"quantity": 2})));
            life.notify_ok(base, &[("refund_status", "1"), ("refund_batch_no", "RB-1")])
                .await;
            life.request_ok(base, 1).await;
            refuse!(base, Attempt::Admin(path, json!({"quantity": 1})));
        }
        Refused::RequestNotIssued => {
            life.awaiting(base, 2).await;
            refuse!(
                base,
                Attempt::Admin(
                    format!("/admin/orders/{base}/refunds"),
                    json!({"quantity": 1})
                ),
            );
            life.awaiting(base + 1, 2).await;
            let call = life.fail_call(base + 1, &format!("OUT-F-{base}"), "库存不足");
            assert_success_for(&life.send(call).await, ISSUE);
            refuse!(
                base + 1,
                Attempt::Admin(
                    format!("/admin/orders/{}/refunds", base + 1),
                    json!({"quantity": 1})
                ),
            );
        }
        Refused::RefundNotRequested => {
            life.issued(base, 2, &[("N-A", 2)]).await;
            refuse!(
                base,
                Attempt::Top(
                    life.notify_call(base, &[("refund_status", "1"), ("refund_batch_no", "RB-1")])
                ),
            );
            life.request_ok(base, 1).await;
            refuse!(
                base,
                Attempt::Top(life.notify_call(
                    base,
                    &[
                        ("refund_status", "1"),
                        ("fliggy_refund_flow_id", "RF-NOT-MINE")
                    ],
                )),
            );
            life.notify_ok(base, &[("refund_status", "1"), ("refund_batch_no", "RB-1")])
                .await;
            refuse!(
                base,
                Attempt::Top(
                    life.notify_call(base, &[("refund_status", "1"), ("refund_batch_no", "RB-2")])
                ),
            );
        }
        Refused::RefundConflict => {
            life.issued(base, 2, &[("C-A", 2)]).await;
            let flow = life.request_ok(base, 1).await;
            life.notify_ok(
                base,
                &[
                    ("refund_status", "1"),
                    ("refund_batch_no", "RB-1"),
                    ("fliggy_refund_flow_id", &flow),
                ],
            )
            .await;
            for fields in [
                vec![("refund_status", "2"), ("refund_batch_no", "RB-1")],
                vec![
                    ("refund_status", "2"),
                    ("fliggy_refund_flow_id", flow.as_str()),
                ],
                vec![
                    ("refund_status", "1"),
                    ("refund_num", "2"),
                    ("fliggy_refund_flow_id", flow.as_str()),
                ],
                vec![
                    ("refund_status", "1"),
                    ("refund_num", "2"),
                    ("refund_batch_no", "RB-1"),
                ],
            ] {
                refuse!(base, Attempt::Top(life.notify_call(base, &fields)));
            }
        }
        Refused::RefundNumExceedsRequest => {
            life.issued(base, 3, &[("E-A", 3)]).await;
            let flow = life.request_ok(base, 1).await;
            refuse!(
                base,
                Attempt::Top(
                    life.notify_call(base, &[("refund_status", "1"), ("refund_num", "2")])
                ),
            );
            refuse!(
                base,
                Attempt::Top(life.notify_call(
                    base,
                    &[
                        ("refund_status", "1"),
                        ("refund_num", "2"),
                        ("fliggy_refund_flow_id", &flow),
                        ("refund_type", "3")
                    ],
                )),
            );
        }
        Refused::RefundNumExceedsUnused => {
            // R9: a use dated before the request takes a ticket the request holds.
            life.issued(base, 2, &[("M-A", 2)]).await;
            let flow = life.request_ok(base, 2).await;
            life.verify_ok(base, "M-A", 1).await;
            refuse!(
                base,
                Attempt::Top(
                    life.notify_call(base, &[("refund_status", "1"), ("refund_batch_no", "RB-1")])
                ),
            );
            refuse!(
                base,
                Attempt::Top(life.notify_call(
                    base,
                    &[
                        ("refund_status", "1"),
                        ("refund_num", "2"),
                        ("fliggy_refund_flow_id", &flow)
                    ],
                )),
            );
        }
        Refused::ReverseBeyondWindow => {
            life.issued(base, 3, &[("R-A", 2), ("R-B", 1)]).await;
            life.verify_ok(base, "R-A", 1).await;
            let path = format!("/admin/orders/{base}/reversals");
            let body =
                |code: &str, n: i64| json!({"confirm_code": code, "quantity": n, "reason": "test"});
            refuse!(base, Attempt::Admin(path.clone(), body("R-A", 2)));
            refuse!(base, Attempt::Admin(path.clone(), body("R-B", 1)));
            life.reverse_ok(base, "R-A", 1).await;
            refuse!(base, Attempt::Admin(path, body("R-A", 1)));
        }
    }
    n
}

/// Sends one refused attempt and checks the row's answer, the unchanged ledger and the anomaly.
async fn check_refusal(life: &Life, r: &Refusal, o: i64, attempt: Attempt) {
    let ctx = format!(
        "{} refused when {} (order {o})",
        r.case.call().name(),
        r.when
    );
    let before = ledger_snapshot(&life.app, o).await;
    let known: Vec<i64> = life
        .anomalies("limit=1000")
        .await
        .iter()
        .map(|a| a.id)
        .collect();
    let rid = match attempt {
        Attempt::Top(call) => {
            let method = call.params.get("method").unwrap().to_owned();
            let Answer::Top { sub_code } = r.answer else {
                panic!("{ctx}: a TOP call answered {:?}", r.answer)
            };
            let reply = life.send(call).await;
            let (rid, sub_msg) = refused_with(&reply, sub_code);
            // The refusal is in the audit trail, under its request_id.
            let rejected = audit_entries(
                &life.app,
                &format!("order_id={o}&outcome=rejected&limit=1000"),
            )
            .await;
            let e = crate::helpers::entry_for(&rejected, &rid);
            assert_eq!(
                (
                    e.action.as_str(),
                    e.reason.as_str(),
                    e.detail["sub_msg"].as_str()
                ),
                (method.as_str(), sub_code, Some(sub_msg.as_str())),
                "{ctx}: {e:?}"
            );
            Some((rid, method))
        }
        Attempt::Admin(path, body) => {
            let Answer::Admin { status, error } = r.answer else {
                panic!("{ctx}: an admin call answered {:?}", r.answer)
            };
            let (got, resp) = life.app.admin_post(&path, body.clone()).await;
            let refused = refusal(&resp);
            assert_eq!(
                (got, refused.error.as_str()),
                (status, error),
                "{ctx}: {body} answered {resp}"
            );
            assert!(!refused.message.is_empty(), "{ctx}: {resp}");
            None
        }
    };
    assert_eq!(
        ledger_snapshot(&life.app, o).await,
        before,
        "{ctx}: a refused call changed the order"
    );
    let new: Vec<AnomalyAnswer> = life
        .anomalies("limit=1000")
        .await
        .into_iter()
        .filter(|a| !known.contains(&a.id))
        .collect();
    match r.anomaly {
        None => assert!(new.is_empty(), "{ctx}: unexpected anomalies {new:#?}"),
        Some(kind) => {
            let kind = kind.as_str();
            assert_eq!(
                new.len(),
                1,
                "{ctx}: expected one {kind} anomaly, got {new:#?}"
            );
            let a = &new[0];
            let (rid, method) = rid.expect("anomalies come from TOP calls");
            assert_eq!(
                (a.kind.as_str(), a.order_id, a.status.as_str()),
                (kind, Some(o), "open"),
                "{ctx}: {a:?}"
            );
            assert_eq!(a.request_id, rid.as_str(), "{ctx}: {a:?}");
            assert_eq!(a.app_key.as_deref(), Some(KEY), "{ctx}: {a:?}");
            assert_eq!(a.resolution, None, "{ctx}: {a:?}");
            // The raw request, sanitized: no signature.
            assert_eq!(a.request["method"], method.as_str(), "{ctx}: {a:?}");
            assert_eq!(a.request["order_id"], o.to_string(), "{ctx}: {a:?}");
            assert!(a.request.get("sign").is_none(), "{ctx}: {a:?}");
        }
    }
}
