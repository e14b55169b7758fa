//! The operator's actions on orders, anomalies and apps, shared by the admin API and the console.
//!
//! Each takes the request's fields as the operator typed them, checks them, builds the ledger
//! command and makes the one store call, so a refund asked for in the console is the refund
//! the JSON API would have made: the same checks, the same ledger call, the same audit entry.
//! The only difference is the entry's `origin` (see [`Origin`]).

use serde_json::{json, Value};
use ticket_ledger::{
    Anomaly, App, AppAccess, AppKey, AuditAction, ConfirmCode, IpRange, LedgerError, OrderId,
    RateLimit, ReconcileCommand, ReconcileOutcome, RefundRequest, RefundRequestCommand,
    RequestMeta, Resolution, ResolveAnomaly, ReversalCommand, SecretRotation,
};
use top_protocol::envelope::new_request_id;
use top_protocol::timestamp::format_beijing;

use crate::gateway::summary::REFUSED_ENTRIES;
use crate::server::{random_token, AppState};

use super::{AdminError, StatusCode};

/// Where an operator's action came from.
///
/// A console action's audit entry (and the anomaly a refused one opens) carries
/// `"origin": "console"` in its detail; entries without `origin` came through the admin API,
/// as every entry did before the console existed, so their bytes are unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// `/admin/...` with the bearer token.
    AdminApi,
    /// A form of the signed-in console.
    Console,
}

impl Origin {
    /// The action's summary, marked with its origin.
    pub(crate) fn mark(self, mut summary: Value) -> Value {
        if let (Origin::Console, Value::Object(map)) = (self, &mut summary) {
            map.insert(RequestMeta::ORIGIN_KEY.to_owned(), Value::from("console"));
        }
        summary
    }
}

/// Asks the vendor to refund `quantity` tickets of an order.
pub(crate) async fn request_refund(
    state: &AppState,
    origin: Origin,
    order_id: OrderId,
    quantity: i64,
) -> Result<RefundRequest, AdminError> {
    if quantity < 1 {
        return Err(AdminError::field("quantity", "at least 1 ticket"));
    }
    Ok(state
        .store
        .request_refund(RefundRequestCommand {
            order_id,
            quantity,
            meta: super::operator_meta(state, origin, json!({"quantity": quantity})),
        })
        .await?)
}

/// A reversal as the operator asked for it, checked.
#[derive(Debug, Clone)]
pub(crate) struct Reversal {
    /// The code whose uses are given back.
    pub code: ConfirmCode,
    /// How many.
    pub quantity: i64,
    /// Why, as the operator wrote it.
    pub reason: String,
}

impl Reversal {
    /// The longest reason kept: it is stored in the audit trail, so it is bounded like every
    /// text a caller sends.
    pub(crate) const MAX_REASON_CHARS: usize = 2_000;

    /// Checks the fields of a reversal request.
    pub(crate) fn parse(
        confirm_code: &str,
        quantity: i64,
        reason: &str,
    ) -> Result<Self, AdminError> {
        let code = ConfirmCode::parse(confirm_code)
            .ok_or_else(|| AdminError::field("confirm_code", "1-128 visible ASCII characters"))?;
        if quantity < 1 {
            return Err(AdminError::field("quantity", "at least 1 use"));
        }
        if reason.trim().is_empty() {
            return Err(AdminError::field(
                "reason",
                "say why the uses are given back",
            ));
        }
        if reason.chars().count() > Self::MAX_REASON_CHARS {
            return Err(AdminError::field(
                "reason",
                format!("at most {} characters", Self::MAX_REASON_CHARS),
            ));
        }
        Ok(Self {
            code,
            quantity,
            reason: reason.to_owned(),
        })
    }
}

/// Gives back uses of a code within the reversal window; the code's uses after it.
pub(crate) async fn reverse(
    state: &AppState,
    origin: Origin,
    order_id: OrderId,
    reversal: &Reversal,
) -> Result<i64, AdminError> {
    let summary = json!({"confirm_code": reversal.code.masked(), "quantity": reversal.quantity,
        "reason": reversal.reason});
    Ok(state
        .store
        .reverse(ReversalCommand {
            order_id,
            code: reversal.code.clone(),
            quantity: reversal.quantity,
            reason: reversal.reason.clone(),
            window: state.reversal_window,
            meta: super::operator_meta(state, origin, summary),
        })
        .await?)
}

/// Compares the vendor's per-code counts (`(confirm_code, used)`, as typed) with the ledger
/// and, with `apply`, records the missing uses as cumulative reports would (never decreasing
/// a count), all of them or none: the ledger plans and applies the whole reconciliation in
/// one store call.
pub(crate) async fn reconcile(
    state: &AppState,
    origin: Origin,
    order_id: OrderId,
    vendor: &[(String, i64)],
    apply: bool,
) -> Result<ReconcileOutcome, AdminError> {
    let counts = vendor
        .iter()
        .enumerate()
        .map(|(i, (code, used))| {
            let code = ConfirmCode::parse(code).ok_or_else(|| {
                AdminError::field(&format!("vouchers[{i}].confirm_code"), "unknown code")
            })?;
            // Each healed code is its own event under its own request id.
            Ok(ticket_ledger::VendorCount {
                code,
                used: *used,
                request_id: new_request_id(),
            })
        })
        .collect::<Result<Vec<_>, AdminError>>()?;
    let summary = reconcile_summary(&counts, apply);
    state
        .store
        .reconcile(ReconcileCommand {
            order_id,
            counts,
            apply,
            policy: state.verify_policy,
            meta: super::operator_meta(state, origin, summary),
        })
        .await
        .map_err(|e| reconcile_refusal(e, origin))
}

/// A refused reconciliation as the operator is answered: the codes named whole to the admin
/// API (the operator owns them), masked on a console page (which shows codes masked), and a
/// missing order as every admin route answers it.
fn reconcile_refusal(e: LedgerError, origin: Origin) -> AdminError {
    let name = |code: &ConfirmCode| match origin {
        Origin::AdminApi => code.as_str().to_owned(),
        Origin::Console => code.masked(),
    };
    match e {
        LedgerError::OrderNotFound => {
            AdminError::new(StatusCode::NOT_FOUND, "not_found", "no such order")
        }
        LedgerError::VoucherNotFound { code } => AdminError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_code",
            format!("voucher {} is not a code of this order", name(&code)),
        ),
        LedgerError::VendorCountExceedsCapacity {
            code,
            capacity,
            reported,
        } => AdminError::new(
            StatusCode::CONFLICT,
            "refused",
            format!(
                "voucher {} allows {capacity} uses; the vendor reports {reported}",
                name(&code)
            ),
        ),
        other => AdminError::from(other),
    }
}

/// What the operator sent, as a refusal's anomaly keeps it: the first entries and how many
/// there were, as for a refused TOP call, so a list as long as the body allows is not kept
/// whole.
fn reconcile_summary(counts: &[ticket_ledger::VendorCount], apply: bool) -> Value {
    json!({
        "vouchers": counts.iter().take(REFUSED_ENTRIES).map(|c| json!({
            "confirm_code": c.code.masked(), "used": c.used})).collect::<Vec<_>>(),
        "vouchers_total": counts.len(),
        "apply": apply,
    })
}

/// Settles an open anomaly with one of the resolutions the ledger knows.
pub(crate) async fn resolve_anomaly(
    state: &AppState,
    origin: Origin,
    id: i64,
    resolution: &str,
    note: String,
) -> Result<Anomaly, AdminError> {
    let parsed = Resolution::parse(resolution).ok_or_else(|| {
        AdminError::field(
            "resolution",
            "one of accepted, reversed, refund_adjusted, dismissed",
        )
    })?;
    let summary = json!({"resolution": resolution, "note": note});
    Ok(state
        .store
        .resolve_anomaly(ResolveAnomaly {
            id,
            resolution: parsed,
            note,
            meta: super::operator_meta(state, origin, summary),
        })
        .await?)
}

/// A new app as the operator describes it; what is not given takes its default (a generated
/// secret, the key as the name, the server's rate limit, any address).
#[derive(Debug, Clone, Default)]
pub(crate) struct NewAppFields {
    /// The key vendors will sign with.
    pub app_key: String,
    /// A display name.
    pub name: Option<String>,
    /// A secret the operator chose.
    pub app_secret: Option<String>,
    /// The app's own rate limit (`20/s`, `unlimited`).
    pub rate_limit: Option<String>,
    /// Its burst.
    pub burst: Option<u32>,
    /// The addresses allowed to call as it.
    pub ip_allowlist: Vec<String>,
}

/// Registers an app; it is answered with its secret, the one time the secret is shown.
pub(crate) async fn create_app(
    state: &AppState,
    origin: Origin,
    fields: NewAppFields,
) -> Result<App, AdminError> {
    let app_key = AppKey::parse(&fields.app_key)
        .ok_or_else(|| AdminError::field("app_key", "1-64 visible ASCII characters"))?;
    // `.` and `..` are path segments every HTTP client resolves away: an app so named could
    // never be addressed as /admin/apps/{app_key} or /console/apps/{app_key}.
    if matches!(app_key.as_str(), "." | "..") {
        return Err(AdminError::field(
            "app_key",
            "not `.` or `..`: they cannot be part of an address",
        ));
    }
    let secret = match fields.app_secret {
        Some(s) => chosen_secret(s)?,
        None => random_token(),
    };
    let access = AppAccess {
        rate_limit: match (fields.rate_limit.as_deref(), fields.burst) {
            (Some(rate), burst) => Some(rate_limit(rate, burst)?),
            (None, Some(_)) => {
                return Err(AdminError::field("burst", "a burst needs a rate_limit"))
            }
            (None, None) => None,
        },
        ip_allowlist: ip_allowlist(&fields.ip_allowlist)?,
    };
    let mut new = App::new(
        app_key.clone(),
        fields.name.unwrap_or_else(|| app_key.as_str().to_owned()),
        secret,
        state.clock.now(),
    );
    new.access = access;
    let app = state.store.create_app(new).await?;
    super::record_admin(
        state,
        origin,
        AuditAction::CreateApp,
        Some(app.app_key.as_str()),
        access_detail(&app),
    )
    .await;
    Ok(app)
}

/// A change of an app's access settings: each field `None` keeps it, `Some(None)` clears it
/// (the server's rate limit, any address), `Some(Some(_))` sets it. A `burst` alone changes
/// the burst of the app's own limited rate.
#[derive(Debug, Clone, Default)]
pub(crate) struct AccessChange {
    /// `"20/s"`, `"0"`/`"unlimited"`; cleared: the server's default.
    pub rate_limit: Option<Option<String>>,
    /// The burst of the rate limit.
    pub burst: Option<u32>,
    /// Addresses and CIDR ranges; cleared or empty: any address.
    pub ip_allowlist: Option<Option<Vec<String>>>,
}

/// Changes an app's rate limit and allow-list, keeping what the change does not name.
pub(crate) async fn set_app_access(
    state: &AppState,
    origin: Origin,
    app_key: &str,
    change: AccessChange,
) -> Result<App, AdminError> {
    let current = find_app(state, app_key).await?;
    let mut access = current.access.clone();
    match (change.rate_limit, change.burst) {
        (Some(Some(rate)), burst) => access.rate_limit = Some(rate_limit(&rate, burst)?),
        (Some(None), None) => access.rate_limit = None,
        (Some(None), Some(_)) => {
            return Err(AdminError::field("burst", "a burst needs a rate_limit"))
        }
        (None, Some(burst)) => match current.access.rate_limit {
            Some(own @ RateLimit::Limited { .. }) => {
                access.rate_limit = Some(rate_limit(&own.rate_text(), Some(burst))?);
            }
            _ => {
                return Err(AdminError::field(
                    "burst",
                    "the app has no limited rate_limit of its own: give rate_limit too",
                ))
            }
        },
        (None, None) => {}
    }
    if let Some(list) = change.ip_allowlist {
        access.ip_allowlist = ip_allowlist(list.as_deref().unwrap_or_default())?;
    }
    let app = state
        .store
        .set_app_access(&current.app_key, access)
        .await
        .map_err(app_change_error)?;
    super::record_admin(
        state,
        origin,
        AuditAction::SetAppAccess,
        Some(app.app_key.as_str()),
        access_detail(&app),
    )
    .await;
    Ok(app)
}

/// The longest overlap a rotation may give the replaced secret.
pub(crate) const MAX_OVERLAP_DAYS: i64 = 30;

/// Gives an app a new secret (generated unless `app_secret`), answered once; the replaced one
/// keeps working for `overlap` (`24h` unless given; `0s` ends it at once, for a leaked
/// secret).
pub(crate) async fn rotate_app_secret(
    state: &AppState,
    origin: Origin,
    app_key: &str,
    overlap: Option<&str>,
    app_secret: Option<String>,
) -> Result<App, AdminError> {
    let overlap = match overlap {
        None => chrono::Duration::hours(24),
        Some(text) => crate::settings::parse_duration(text)
            .ok()
            .filter(|d| *d <= chrono::Duration::days(MAX_OVERLAP_DAYS))
            .ok_or_else(|| {
                AdminError::field(
                    "overlap",
                    format!("a duration such as 24h, 90m or 0s, at most {MAX_OVERLAP_DAYS}d"),
                )
            })?,
    };
    let current = find_app(state, app_key).await?;
    let new_secret = match app_secret {
        Some(s) => chosen_secret(s)?,
        None => random_token(),
    };
    if new_secret == current.secret {
        return Err(AdminError::field(
            "app_secret",
            "must differ from the current secret",
        ));
    }
    let expires_at = state.clock.now() + overlap;
    let app = state
        .store
        .rotate_app_secret(
            &current.app_key,
            SecretRotation {
                new_secret,
                previous_expires_at: expires_at,
            },
        )
        .await
        .map_err(app_change_error)?;
    super::record_admin(
        state,
        origin,
        AuditAction::RotateAppSecret,
        Some(app.app_key.as_str()),
        json!({"previous_secret_expires_at": format_beijing(expires_at)}),
    )
    .await;
    Ok(app)
}

/// The app a path names; 404 when there is none.
pub(crate) async fn find_app(state: &AppState, app_key: &str) -> Result<App, AdminError> {
    let not_found = || AdminError::new(StatusCode::NOT_FOUND, "not_found", "no such app");
    let key = AppKey::parse(app_key).ok_or_else(not_found)?;
    state.store.app(&key).await?.ok_or_else(not_found)
}

/// A store refusal of an app change: the app vanished between the lookup and the write.
fn app_change_error(e: LedgerError) -> AdminError {
    match e {
        LedgerError::UnknownApp => {
            AdminError::new(StatusCode::NOT_FOUND, "not_found", "no such app")
        }
        other => AdminError::from(other),
    }
}

/// A rate limit from the `rate_limit` and `burst` fields, naming the bad one.
fn rate_limit(rate: &str, burst: Option<u32>) -> Result<RateLimit, AdminError> {
    if let Some(b) = burst {
        if !(1..=RateLimit::MAX).contains(&b) {
            return Err(AdminError::field(
                "burst",
                format!("1..={} calls", RateLimit::MAX),
            ));
        }
    }
    match RateLimit::parse(rate, None) {
        Err(why) => Err(AdminError::field("rate_limit", why)),
        Ok(RateLimit::Unlimited) if burst.is_some() => Err(AdminError::field(
            "burst",
            "a burst needs a limited rate_limit",
        )),
        Ok(_) => RateLimit::parse(rate, burst).map_err(|why| AdminError::field("burst", why)),
    }
}

/// An allow-list from `ip_allowlist`, naming the bad entry. Repeated entries are kept once.
fn ip_allowlist(entries: &[String]) -> Result<Vec<IpRange>, AdminError> {
    if entries.len() > AppAccess::MAX_ALLOWLIST {
        return Err(AdminError::field(
            "ip_allowlist",
            format!("at most {} entries", AppAccess::MAX_ALLOWLIST),
        ));
    }
    let mut list: Vec<IpRange> = Vec::with_capacity(entries.len());
    for (i, entry) in entries.iter().enumerate() {
        let range = IpRange::parse(entry)
            .map_err(|why| AdminError::field(&format!("ip_allowlist[{i}]"), why))?;
        if !list.contains(&range) {
            list.push(range);
        }
    }
    Ok(list)
}

/// A secret the operator chose: 1-256 bytes.
fn chosen_secret(secret: String) -> Result<String, AdminError> {
    if secret.is_empty() || secret.len() > 256 {
        return Err(AdminError::field("app_secret", "1-256 bytes"));
    }
    Ok(secret)
}

/// What an audit entry records of an app's access settings (never a secret).
fn access_detail(app: &App) -> Value {
    json!({
        "rate_limit": app.access.rate_limit.map(|r| r.rate_text()),
        "burst": app.access.rate_limit.and_then(|r| r.burst()),
        "ip_allowlist": app.access.ip_allowlist.iter().map(ToString::to_string).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_keeps_the_first_entries_and_the_total() {
        let code = ConfirmCode::parse("REC-0123456789").expect("a valid code");
        let counts: Vec<_> = (0..5_000)
            .map(|i| ticket_ledger::VendorCount {
                code: code.clone(),
                used: i,
                request_id: format!("r{i}"),
            })
            .collect();
        let kept = reconcile_summary(&counts, true);
        assert_eq!(kept["vouchers_total"], 5_000);
        assert_eq!(
            kept["vouchers"].as_array().map(Vec::len),
            Some(REFUSED_ENTRIES)
        );
        assert_eq!(kept["vouchers"][0]["confirm_code"], code.masked());
        assert!(kept.to_string().len() < 2_048, "{kept}");
    }

    #[test]
    fn only_console_actions_name_their_origin() {
        let summary = json!({"quantity": 1});
        assert_eq!(Origin::AdminApi.mark(summary.clone()), summary);
        assert_eq!(
            Origin::Console.mark(summary),
            json!({"quantity": 1, "origin": "console"})
        );
    }
}
