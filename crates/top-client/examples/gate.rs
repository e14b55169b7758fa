//! A gate system reporting a redemption: the visitor at the turnstile used `QUANTITY` entries
//! of `CODE` on order `ORDER_ID`, just now.
//!
//! ```sh
//! TICKETD_URL=http://127.0.0.1:8080/router/rest TICKETD_APP_KEY=12345678 \
//! TICKETD_APP_SECRET=test_secret cargo run -p top-client --example gate -- 2983749123412345 GROUP-01 2
//! ```
//!
//! The report carries the gate's time as `used_date`, so it is idempotent on the server and the
//! client retries it by itself after a network failure or an `isp.*` answer. It exits 0 when
//! the use was recorded, 1 when it was refused (the visitor should not pass), 2 on bad input.

use std::process::ExitCode;

use chrono::Utc;
use top_client::{ClientError, TopClient, VerifyParams, VoucherInfo};
use top_protocol::timestamp::format_beijing;

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [order_id, code, quantity] = args.as_slice() else {
        eprintln!("usage: gate ORDER_ID CODE QUANTITY");
        return ExitCode::from(2);
    };
    let (Ok(order_id), Ok(quantity)) = (order_id.parse::<i64>(), quantity.parse::<i64>()) else {
        eprintln!("ORDER_ID and QUANTITY must be integers");
        return ExitCode::from(2);
    };
    let env = |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.into());
    let client = match TopClient::builder(
        env("TICKETD_URL", "http://127.0.0.1:8080/router/rest"),
        env("TICKETD_APP_KEY", "12345678"),
        env("TICKETD_APP_SECRET", "test_secret"),
    )
    .build()
    {
        Ok(client) => client,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };

    let report = VerifyParams {
        order_id: Some(order_id),
        voucher_infos: vec![VoucherInfo {
            confirm_code: code.clone(),
            used_quantity: quantity,
            // The gate's clock, in Beijing time whatever this host's zone.
            used_date: Some(format_beijing(Utc::now())),
        }],
        ..VerifyParams::default()
    };
    match client.verify(&report).await {
        Ok(answer) if answer.is_success => {
            println!("OPEN: {quantity} use(s) of {code} recorded");
            ExitCode::SUCCESS
        }
        Ok(_) => {
            println!("CLOSED: the platform did not confirm the use");
            ExitCode::FAILURE
        }
        Err(e) => {
            println!("CLOSED: {e}");
            if let Some(meaning) = e.explain() {
                println!("  {meaning}");
            }
            if matches!(e, ClientError::Transport(_)) || e.is_retryable() {
                println!("  (not recorded yet: report it again when the platform is reachable)");
            }
            ExitCode::FAILURE
        }
    }
}
