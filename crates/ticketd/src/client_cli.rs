//! `ticketd verify`, `ticketd refund` and `ticketd issue`: one TOP call through `top-client`, for
//! vendors and operators testing an integration against ticketd (or the real platform).
//!
//! Each subcommand takes the connection (`--url`, `--app-key`, `--app-secret`, `--sign-method`,
//! `--format`, …) and one kebab-case flag per business parameter; list parameters are repeatable
//! `--voucher` flags. It prints the response object as JSON on stdout, or fails with the
//! `error_response`, its meaning from the error catalogue and whether a retry can help (the
//! binary then exits 1).
//!
//! # Where the connection comes from
//!
//! For each setting, the first of: the flag, its environment variable (`TICKETD_URL`,
//! `TICKETD_APP_KEY`, `TICKETD_APP_SECRET`, `TICKETD_PROFILE`), the profile file, the default.
//! A profile file (`--profile FILE`) is TOML: top-level keys, strings in quotes.
//!
//! ```text
//! # West Lake gates, staging
//! url = "http://127.0.0.1:8080/router/rest"
//! app_key = "12345678"
//! app_secret = "test_secret"
//! sign_method = "hmac-sha256"   # md5, hmac or hmac-sha256
//! format = "json"               # json or xml
//! simplify = false
//! ```
//!
//! Every key is optional; `app-key` style spellings are accepted too. A key or a `[section]`
//! not listed here, a value of the wrong type and anything that is not TOML (`url = http://…`
//! without quotes) is an error naming its line, so a typo never silently falls back to a
//! default — such as signing with another method, or calling another server.
//!
//! Keep the secret in the environment or in a file readable only by you: a command line is
//! visible to every user of the machine.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, Context};
use clap::{Args, ValueEnum};
use serde::Deserialize;
use serde_json::Value;
use ticket_api::issue::{IssueParams, IssueVoucher};
use ticket_api::refund::RefundParams;
use ticket_api::verify::{VerifyParams, VoucherInfo};
use top_client::{Call, ClientError, Format, RetryPolicy, SignMethod, TopClient};
use top_protocol::timestamp::{format_beijing, parse_beijing};

/// The gateway a local `ticketd serve` listens on by default.
const DEFAULT_URL: &str = "http://127.0.0.1:8080/router/rest";

/// `--sign-method` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SignMethodArg {
    /// MD5(secret + params + secret), the legacy default of most SDKs.
    Md5,
    /// HMAC-MD5.
    Hmac,
    /// HMAC-SHA256 (the default).
    HmacSha256,
}

impl From<SignMethodArg> for SignMethod {
    fn from(m: SignMethodArg) -> Self {
        match m {
            SignMethodArg::Md5 => SignMethod::Md5,
            SignMethodArg::Hmac => SignMethod::HmacMd5,
            SignMethodArg::HmacSha256 => SignMethod::HmacSha256,
        }
    }
}

/// `--format` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FormatArg {
    /// JSON (the default).
    Json,
    /// XML.
    Xml,
}

impl From<FormatArg> for Format {
    fn from(f: FormatArg) -> Self {
        match f {
            FormatArg::Json => Format::Json,
            FormatArg::Xml => Format::Xml,
        }
    }
}

/// Where and as whom to call.
#[derive(Debug, Clone, Args)]
pub struct ConnectArgs {
    /// Gateway URL; a URL without a path gets `/router/rest`. Default: the profile's, else
    /// http://127.0.0.1:8080/router/rest.
    #[arg(long, env = "TICKETD_URL")]
    pub url: Option<String>,

    /// The vendor app's key.
    #[arg(long, env = "TICKETD_APP_KEY")]
    pub app_key: Option<String>,

    /// The vendor app's secret (prefer the environment or a profile: a command line is visible
    /// to other users).
    #[arg(long, env = "TICKETD_APP_SECRET", hide_env_values = true)]
    pub app_secret: Option<String>,

    /// A TOML file (`url = "…"`, app_key, app_secret, sign_method, format, simplify) filling in
    /// what the flags and environment do not give.
    #[arg(long, env = "TICKETD_PROFILE", value_name = "FILE")]
    pub profile: Option<PathBuf>,

    /// Signature method. Default: the profile's, else hmac-sha256.
    #[arg(long, value_enum)]
    pub sign_method: Option<SignMethodArg>,

    /// Response format to ask for. Default: the profile's, else json.
    #[arg(long, value_enum)]
    pub format: Option<FormatArg>,

    /// Ask for simplified (flat) JSON.
    #[arg(long)]
    pub simplify: bool,

    /// Seconds allowed for one attempt.
    #[arg(long, default_value_t = 30, value_name = "SECONDS")]
    pub timeout: u64,

    /// Never retry, even a call that is safe to send twice.
    #[arg(long)]
    pub no_retry: bool,
}

/// `ticketd verify`: report a redemption (`taobao.travel.ticket.order.verify`, 核销).
#[derive(Debug, Clone, Args)]
#[command(after_help = "Examples:\n  \
    ticketd verify --order-id 2983749123412345 --voucher GROUP-01:2@'2026-11-26 10:00:00'\n  \
    ticketd verify --order-id 2983749123412345 --confirm-code A1B2C3D4 --check-num 1")]
pub struct VerifyArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,

    /// Platform (Fliggy) order id.
    #[arg(long)]
    pub order_id: Option<i64>,

    /// Vendor's order id.
    #[arg(long)]
    pub out_order_id: Option<String>,

    /// Legacy form: the code used (with --check-num).
    #[arg(long)]
    pub confirm_code: Option<String>,

    /// Legacy form: uses this time (or so far, with --write-off-type 1).
    #[arg(long)]
    pub check_num: Option<i64>,

    /// Legacy form: total uses allowed, as the vendor knows it.
    #[arg(long)]
    pub total_num: Option<i64>,

    /// Legacy form: tickets cancelled, as the vendor knows it.
    #[arg(long)]
    pub return_num: Option<i64>,

    /// 0: quantities are this time's uses; 1: quantities are cumulative totals.
    #[arg(long, default_value_t = 0)]
    pub write_off_type: i64,

    /// One `voucher_infos` entry; repeat for several codes. The gate time (Beijing, or `now`)
    /// makes the report safe to retry.
    #[arg(
        long = "voucher",
        value_name = "CODE:QUANTITY[@yyyy-MM-dd HH:mm:ss]",
        value_parser = parse_verify_voucher
    )]
    pub vouchers: Vec<VoucherInfo>,
}

/// `ticketd refund`: report a refund's result (`taobao.travel.ticket.order.refund`, 退票).
#[derive(Debug, Clone, Args)]
#[command(after_help = "Example:\n  \
    ticketd refund --order-id 2983749123412345 --refund-status 1 --refund-num 1 --refund-batch-no RB-01")]
pub struct RefundArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,

    /// Platform (Fliggy) order id.
    #[arg(long)]
    pub order_id: i64,

    /// 1: refunded; 2: not refunded.
    #[arg(long)]
    pub refund_status: i64,

    /// Tickets refunded.
    #[arg(long)]
    pub refund_num: Option<i64>,

    /// The vendor's batch number: makes the notification safe to retry.
    #[arg(long)]
    pub refund_batch_no: Option<String>,

    /// Why the refund failed.
    #[arg(long)]
    pub refund_failure_reason: Option<String>,

    /// 1: full refund; 3: partial (needs --fliggy-refund-flow-id).
    #[arg(long, default_value_t = 1)]
    pub refund_type: i64,

    /// The platform's refund request id being settled.
    #[arg(long)]
    pub fliggy_refund_flow_id: Option<String>,
}

/// `ticketd issue`: report issued codes (`alitrip.travel.ticket.order.create`, 发码).
#[derive(Debug, Clone, Args)]
#[command(after_help = "Example:\n  \
    ticketd issue --order-id 2983749123412345 --out-order-id OUT-1 --voucher A1B2C3D4:1 --voucher GROUP-01:3:2")]
pub struct IssueArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,

    /// Platform (Fliggy) order id.
    #[arg(long)]
    pub order_id: i64,

    /// Vendor's order id.
    #[arg(long)]
    pub out_order_id: String,

    /// 1: codes issued; 2: issuing failed (give --describe).
    #[arg(long, default_value_t = 1)]
    pub issue_type: i64,

    /// Why issuing failed.
    #[arg(long)]
    pub describe: Option<String>,

    /// One issued code with its uses and optional type (1: one code per ticket, 2: one code for
    /// many); repeat for several codes.
    #[arg(
        long = "voucher",
        value_name = "CODE:QUANTITY[:TYPE]",
        value_parser = parse_issue_voucher
    )]
    pub vouchers: Vec<IssueVoucher>,

    /// Extension fields, as a JSON object.
    #[arg(long, value_name = "JSON")]
    pub attribute_map: Option<String>,
}

/// Runs `ticketd verify`.
pub async fn verify(args: VerifyArgs) -> anyhow::Result<()> {
    let client = connect(&args.connect)?;
    let params = VerifyParams {
        order_id: args.order_id,
        out_order_id: args.out_order_id,
        confirm_code: args.confirm_code,
        check_num: args.check_num,
        total_num: args.total_num,
        return_num: args.return_num,
        voucher_infos: args.vouchers,
        write_off_type: args.write_off_type,
    };
    call(&client, &args.connect, Call::verify(&params)).await
}

/// Runs `ticketd refund`.
pub async fn refund(args: RefundArgs) -> anyhow::Result<()> {
    let client = connect(&args.connect)?;
    let params = RefundParams {
        order_id: args.order_id,
        refund_status: args.refund_status,
        refund_num: args.refund_num,
        refund_batch_no: args.refund_batch_no,
        refund_failure_reason: args.refund_failure_reason,
        refund_type: args.refund_type,
        fliggy_refund_flow_id: args.fliggy_refund_flow_id,
    };
    call(&client, &args.connect, Call::refund(&params)).await
}

/// Runs `ticketd issue`.
pub async fn issue(args: IssueArgs) -> anyhow::Result<()> {
    let client = connect(&args.connect)?;
    let params = IssueParams {
        order_id: args.order_id,
        out_order_id: args.out_order_id,
        issue_type: args.issue_type,
        describe: args.describe,
        voucher_infos: args.vouchers,
        attribute_map: args.attribute_map,
    };
    call(&client, &args.connect, Call::issue(&params)).await
}

/// Sends the call and prints the response object, or turns the failure into an error that
/// carries the catalogue's meaning.
async fn call(client: &TopClient, connect: &ConnectArgs, call: Call) -> anyhow::Result<()> {
    let call = if connect.no_retry {
        call.idempotent(false)
    } else {
        call
    };
    match client.send(&call).await {
        Ok(response) => {
            println!("{}", render_response(&response));
            Ok(())
        }
        Err(e) => Err(describe_failure(e)),
    }
}

/// The error a failed call ends the command with: the `error_response` on one line, then its
/// meaning and whether sending it again can help.
fn describe_failure(e: ClientError) -> anyhow::Error {
    let Some(api) = e.api() else {
        return anyhow::Error::new(e).context("the call failed");
    };
    let mut text = api.to_string();
    if let Some(meaning) = api.explain() {
        text.push_str("\n  meaning: ");
        text.push_str(&meaning);
    }
    text.push_str(if api.is_retryable() {
        "\n  retry: yes, the same request may be sent again after a pause"
    } else {
        "\n  retry: no, sending the same request again gives the same answer"
    });
    anyhow!(text)
}

/// Settings read from a profile file (TOML); every key optional, no other key allowed.
#[derive(Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
struct Profile {
    url: Option<String>,
    #[serde(alias = "app-key")]
    app_key: Option<String>,
    #[serde(alias = "app-secret")]
    app_secret: Option<String>,
    #[serde(alias = "sign-method", default, deserialize_with = "sign_method_named")]
    sign_method: Option<SignMethod>,
    #[serde(default, deserialize_with = "format_named")]
    format: Option<Format>,
    simplify: Option<bool>,
}

/// `sign_method = "md5" | "hmac" | "hmac-sha256"`; an error here is reported at its line.
fn sign_method_named<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<SignMethod>, D::Error> {
    let name = String::deserialize(deserializer)?;
    SignMethod::parse(&name)
        .map(Some)
        .ok_or_else(|| serde::de::Error::custom("sign_method must be md5, hmac or hmac-sha256"))
}

/// `format = "json" | "xml"`.
fn format_named<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Format>, D::Error> {
    let name = String::deserialize(deserializer)?;
    Format::parse(&name)
        .map(Some)
        .ok_or_else(|| serde::de::Error::custom("format must be json or xml"))
}

/// Builds the client: flag or environment, then profile, then default, for each setting.
fn connect(args: &ConnectArgs) -> anyhow::Result<TopClient> {
    let profile = match &args.profile {
        Some(path) => read_profile(path)?,
        None => Profile::default(),
    };
    let url = args
        .url
        .clone()
        .or(profile.url)
        .unwrap_or_else(|| DEFAULT_URL.to_owned());
    let app_key = args.app_key.clone().or(profile.app_key).ok_or_else(|| {
        anyhow!("no app key: give --app-key, set TICKETD_APP_KEY, or use a --profile with app_key")
    })?;
    let secret = args.app_secret.clone().or(profile.app_secret).ok_or_else(|| {
        anyhow!(
            "no app secret: set TICKETD_APP_SECRET, give --app-secret, or use a --profile with app_secret"
        )
    })?;
    let sign_method = args
        .sign_method
        .map(SignMethod::from)
        .or(profile.sign_method)
        .unwrap_or(SignMethod::HmacSha256);
    let format = args
        .format
        .map(Format::from)
        .or(profile.format)
        .unwrap_or_default();
    let simplify = args.simplify || profile.simplify.unwrap_or(false);
    let retry = if args.no_retry {
        RetryPolicy::never()
    } else {
        RetryPolicy::default()
    };
    TopClient::builder(gateway_url(&url), app_key, secret)
        .sign_method(sign_method)
        .format(format)
        .simplify(simplify)
        .timeout(Duration::from_secs(args.timeout.max(1)))
        .retry_policy(retry)
        .build()
        .context("cannot set up the TOP client")
}

/// `http://host:port` and `http://host:port/` mean the gateway's `/router/rest`.
fn gateway_url(url: &str) -> String {
    let trimmed = url.trim_end_matches('/');
    match trimmed.split_once("://") {
        Some((_, rest)) if !rest.contains('/') => format!("{trimmed}/router/rest"),
        _ => url.to_owned(),
    }
}

fn read_profile(path: &Path) -> anyhow::Result<Profile> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the profile {}", path.display()))?;
    parse_profile(&text).with_context(|| format!("in the profile {}", path.display()))
}

/// Parses a profile as TOML. The `toml` crate's errors name the line and column and quote the
/// line, for syntax and for keys `Profile` refuses alike.
fn parse_profile(text: &str) -> anyhow::Result<Profile> {
    toml::from_str(text).map_err(|e| anyhow!("{}", e.to_string().trim_end()))
}

/// `CODE:QUANTITY[@yyyy-MM-dd HH:mm:ss]` (or `@now`) → a `voucher_infos` entry. The code may
/// itself contain `:`; the quantity is after the last one.
fn parse_verify_voucher(s: &str) -> Result<VoucherInfo, String> {
    let (head, used_date) = match s.rsplit_once('@') {
        Some((head, "now")) => (head, Some(format_beijing(chrono::Utc::now()))),
        Some((head, date)) => {
            if parse_beijing(date).is_none() {
                return Err(format!(
                    "used date {date:?} must be `yyyy-MM-dd HH:mm:ss` (Beijing time) or `now`"
                ));
            }
            (head, Some(date.to_owned()))
        }
        None => (s, None),
    };
    let (code, quantity) = head
        .rsplit_once(':')
        .ok_or_else(|| format!("{s:?} must be CODE:QUANTITY[@yyyy-MM-dd HH:mm:ss]"))?;
    if code.is_empty() {
        return Err(format!("{s:?} has an empty code"));
    }
    let used_quantity = quantity
        .parse::<i64>()
        .map_err(|_| format!("quantity {quantity:?} is not an integer"))?;
    Ok(VoucherInfo {
        confirm_code: code.to_owned(),
        used_quantity,
        used_date,
    })
}

/// `CODE:QUANTITY[:TYPE]` → an issued code. A code containing `:` is read as the longest
/// prefix that leaves one or two integers after it.
fn parse_issue_voucher(s: &str) -> Result<IssueVoucher, String> {
    let int = |t: &str| t.parse::<i64>().ok();
    let parts: Vec<&str> = s.rsplitn(3, ':').collect();
    let (code, quantity, voucher_type) = match parts.as_slice() {
        [t, q, code] if int(q).is_some() && int(t).is_some() => (code.to_string(), int(q), int(t)),
        _ => {
            let (code, q) = s
                .rsplit_once(':')
                .ok_or_else(|| format!("{s:?} must be CODE:QUANTITY[:TYPE]"))?;
            (code.to_owned(), int(q), None)
        }
    };
    if code.is_empty() {
        return Err(format!("{s:?} has an empty code"));
    }
    let quantity = quantity.ok_or_else(|| format!("{s:?}: the quantity is not an integer"))?;
    Ok(IssueVoucher {
        confirm_code: code,
        voucher_type,
        quantity,
        extras: None,
    })
}

/// The response object printed on success (kept separate for tests).
pub fn render_response(response: &Value) -> String {
    serde_json::to_string_pretty(response).unwrap_or_else(|_| response.to_string())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn verify_vouchers_take_an_optional_gate_time() {
        assert_eq!(
            parse_verify_voucher("GROUP-01:2@2026-11-26 10:00:00").unwrap(),
            VoucherInfo {
                confirm_code: "GROUP-01".into(),
                used_quantity: 2,
                used_date: Some("2026-11-26 10:00:00".into()),
            }
        );
        let v = parse_verify_voucher("A:B:1").unwrap();
        assert_eq!((v.confirm_code.as_str(), v.used_quantity), ("A:B", 1));
        assert_eq!(v.used_date, None);
        assert!(parse_verify_voucher("A:1@now").unwrap().used_date.is_some());
        for bad in ["A", ":1", "A:x", "A:1@2026-11-26", "A:1@tomorrow"] {
            assert!(parse_verify_voucher(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn issue_vouchers_take_an_optional_type() {
        let v = parse_issue_voucher("GROUP-01:3:2").unwrap();
        assert_eq!(
            (v.confirm_code.as_str(), v.quantity, v.voucher_type),
            ("GROUP-01", 3, Some(2))
        );
        let v = parse_issue_voucher("A1B2C3D4:1").unwrap();
        assert_eq!(
            (v.confirm_code.as_str(), v.quantity, v.voucher_type),
            ("A1B2C3D4", 1, None)
        );
        let v = parse_issue_voucher("A:B:1").unwrap();
        assert_eq!(
            (v.confirm_code.as_str(), v.quantity, v.voucher_type),
            ("A:B", 1, None)
        );
        for bad in ["A", ":1", "A:x", ":1:2"] {
            assert!(parse_issue_voucher(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn profiles_are_toml() {
        let p = parse_profile(
            "# staging\nurl = \"http://h:1/router/rest\" # local\napp-key = 'k'\n\
             app_secret = \"s#1\"\nsign_method = \"md5\"\nformat = \"xml\"\nsimplify = true\n",
        )
        .unwrap();
        assert_eq!(
            p,
            Profile {
                url: Some("http://h:1/router/rest".into()),
                app_key: Some("k".into()),
                app_secret: Some("s#1".into()),
                sign_method: Some(SignMethod::Md5),
                format: Some(Format::Xml),
                simplify: Some(true),
            }
        );
        assert_eq!(parse_profile("").unwrap(), Profile::default());
    }

    #[test]
    fn profile_errors_name_the_line() {
        for (text, line, what) in [
            // Unknown keys and sections: a typo must not fall back to a default silently.
            ("url = \"u\"\nsecret = \"x\"\n", 2, "unknown field `secret`"),
            (
                "url = \"u\"\n\n[gate]\napp_key = \"k\"\n",
                3,
                "unknown field `gate`",
            ),
            // Not TOML: the old unquoted `key = value` lines.
            ("# old style\napp_key = k\n", 2, ""),
            ("url = \"u\"\njust words\n", 2, ""),
            // Values of the wrong kind.
            (
                "sign_method = \"sha1\"\n",
                1,
                "sign_method must be md5, hmac or hmac-sha256",
            ),
            ("format = \"yaml\"\n", 1, "format must be json or xml"),
            ("\nsimplify = \"yes\"\n", 2, ""),
            ("url = \"a\"\nurl = \"b\"\n", 2, ""),
        ] {
            let e = format!("{:#}", parse_profile(text).unwrap_err());
            assert!(e.contains(&format!("line {line}")), "{text:?}: {e}");
            assert!(e.contains(what), "{text:?}: {e}");
        }
    }

    #[test]
    fn a_bare_host_means_its_router_rest() {
        assert_eq!(gateway_url("http://h:8080"), "http://h:8080/router/rest");
        assert_eq!(gateway_url("http://h:8080/"), "http://h:8080/router/rest");
        assert_eq!(gateway_url("http://h/router/rest"), "http://h/router/rest");
        assert_eq!(gateway_url("http://h/custom"), "http://h/custom");
    }
}
