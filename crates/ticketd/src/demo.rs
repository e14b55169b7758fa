//! `ticketd serve --demo`: a vendor app and a few issued orders to try the API on, and a
//! ready-to-paste signed `curl`.
//!
//! Seeding is idempotent: a second `--demo` start finds the app and orders and only prints a
//! fresh `curl` (its `timestamp` is only valid for the timestamp window, 10 minutes by default).

use ticket_ledger::{
    plan_order_creation, App, AppKey, ConfirmCode, LedgerError, NewOrder, NewVoucher, OrderId,
    OrderOrigin, RequestMeta,
};
use top_protocol::envelope::new_request_id;
use top_protocol::sign::sign;
use top_protocol::timestamp::format_beijing;
use top_protocol::{EmptyValues, Params, SignMethod};

use crate::server::{random_token, AppState};

/// The demo vendor's app key.
pub const DEMO_APP_KEY: &str = "demo-vendor";

/// Demo orders: id, and the codes with their uses.
const DEMO_ORDERS: &[(i64, &[(&str, i64)])] = &[
    (9001, &[("DEMO-A-0001", 1), ("DEMO-A-0002", 1)]),
    (9002, &[("DEMO-B-0001", 3)]),
    (9003, &[("DEMO-C-0001", 2), ("DEMO-C-0002", 2)]),
];

/// Creates what is missing of the demo data and prints how to call it.
pub async fn seed(
    state: &AppState,
    gateway_url: &str,
    admin_url: &str,
    token_hint: &str,
) -> anyhow::Result<()> {
    let key = AppKey::parse(DEMO_APP_KEY).ok_or_else(|| anyhow::anyhow!("bad demo key"))?;
    let now = state.clock.now();
    let app = match state.store.app(&key).await? {
        Some(app) => app,
        None => {
            state
                .store
                .create_app(App::new(
                    key.clone(),
                    "Demo scenic-area vendor".to_owned(),
                    random_token(),
                    now,
                ))
                .await?
        }
    };
    for (id, codes) in DEMO_ORDERS {
        let order_id = OrderId::new(*id).ok_or_else(|| anyhow::anyhow!("bad demo order"))?;
        let vouchers = codes
            .iter()
            .map(|(c, n)| {
                Ok(NewVoucher {
                    code: ConfirmCode::parse(c).ok_or_else(|| anyhow::anyhow!("bad demo code"))?,
                    capacity: *n,
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let order = NewOrder {
            order_id,
            app_key: key.clone(),
            quantity: codes.iter().map(|(_, n)| n).sum(),
            out_order_id: Some(
                ticket_ledger::OutOrderId::parse(&format!("DEMO-OUT-{id}"))
                    .ok_or_else(|| anyhow::anyhow!("bad demo out id"))?,
            ),
            valid_from: None,
            valid_until: None,
            vouchers,
            created_at: now - chrono::Duration::hours(1),
        };
        let meta = RequestMeta {
            request_id: new_request_id(),
            received_at: now,
            client_ip: None,
            summary: serde_json::Value::Null.into(),
        };
        let audit = plan_order_creation(&order, OrderOrigin::DemoSeed, &meta)?.audit;
        match state.store.create_order(order, audit).await {
            Ok(_) | Err(LedgerError::OrderExists) => {}
            Err(e) => return Err(e.into()),
        }
    }
    eprintln!(
        "{}",
        instructions(&app, gateway_url, admin_url, state.clock.now(), token_hint)
    );
    Ok(())
}

/// The text printed after seeding: credentials, a signed curl, and how to read the order back.
fn instructions(
    app: &App,
    gateway_url: &str,
    admin_url: &str,
    now: chrono::DateTime<chrono::Utc>,
    token_hint: &str,
) -> String {
    let used_date = format_beijing(now);
    let voucher_infos = format!(
        r#"[{{"confirm_code":"DEMO-B-0001","used_quantity":1,"used_date":"{used_date}"}}]"#
    );
    let mut params = Params::new();
    for (k, v) in [
        ("method", "taobao.travel.ticket.order.verify"),
        ("app_key", app.app_key.as_str()),
        ("sign_method", "md5"),
        ("timestamp", &format_beijing(now)),
        ("v", "2.0"),
        ("format", "json"),
        ("order_id", "9002"),
        ("voucher_infos", &voucher_infos),
    ] {
        params.insert(k, v);
    }
    let signature = sign(
        SignMethod::Md5,
        app.secret.as_bytes(),
        &params,
        EmptyValues::Skip,
    );
    let mut curl = format!("curl -s {gateway_url}");
    for (k, v) in params.iter() {
        curl.push_str(&format!(" \\\n  --data-urlencode '{k}={v}'"));
    }
    curl.push_str(&format!(" \\\n  --data-urlencode 'sign={signature}'"));
    format!(
        "\nDemo vendor app: app_key={key} app_secret={secret}\n\
         Demo orders 9001, 9002, 9003 are issued. Verify one use of order 9002 \
         (the timestamp is valid for 10 minutes; sending it twice is answered as a replay):\n\n\
         {curl}\n\n\
         Then read the order back:\n\n\
         TOKEN={token_hint}\n\
         curl -s -H \"Authorization: Bearer $TOKEN\" {admin_url}/admin/orders/9002\n",
        key = app.app_key.as_str(),
        secret = app.secret,
    )
}
