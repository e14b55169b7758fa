//! `taobao.travel.ticket.order.verify` (门票核销通知): wire parameters → [`VerifyCommand`] →
//! ledger → `is_success`.

use ticket_api::verify::VerifyParams;
use ticket_ledger::{App, OrderRef, VerifyCommand, VerifyOrigin, VerifyUses, VoucherUse};
use top_protocol::timestamp::parse_beijing;
use top_protocol::{Params, TopError};

use super::{is_success, CallContext};
use crate::server::AppState;

/// Handles one authenticated verify request.
pub async fn handle(
    state: &AppState,
    params: &Params,
    app: &App,
    ctx: &CallContext,
) -> Result<super::Accepted, TopError> {
    let wire = VerifyParams::from_params(params)?;
    let cmd = command(wire, app, state, ctx, params)?;
    is_success(state.store.verify(cmd).await)
}

/// Builds the domain command: identifiers through their `parse`, dates from UTC+8 to UTC.
fn command(
    wire: VerifyParams,
    app: &App,
    state: &AppState,
    ctx: &CallContext,
    params: &Params,
) -> Result<VerifyCommand, TopError> {
    let order_id = wire.order_id.map(super::order_id).transpose()?;
    let out_order_id = wire
        .out_order_id
        .as_deref()
        .map(super::out_order_id)
        .transpose()?;
    let order = match (order_id, out_order_id) {
        (Some(id), Some(out)) => OrderRef::Both(id, out),
        (Some(id), None) => OrderRef::Id(id),
        (None, Some(out)) => OrderRef::Out(out),
        (None, None) => return Err(TopError::missing_argument("order_id")),
    };
    let code = super::confirm_code;
    let uses = if wire.voucher_infos.is_empty() {
        match (&wire.confirm_code, wire.check_num) {
            (Some(c), Some(n)) => VerifyUses::Code {
                code: code(c, "confirm_code")?,
                check_num: n,
            },
            (None, Some(n)) => VerifyUses::Order { check_num: n },
            (_, None) => return Err(TopError::missing_argument("check_num")),
        }
    } else {
        let entries = wire
            .voucher_infos
            .iter()
            .map(|v| {
                Ok(VoucherUse {
                    code: code(&v.confirm_code, "voucher_infos")?,
                    quantity: v.used_quantity,
                    used_at: match &v.used_date {
                        Some(d) => Some(parse_beijing(d).ok_or_else(|| {
                            TopError::invalid_argument("voucher_infos", "used_date格式错误")
                        })?),
                        None => None,
                    },
                })
            })
            .collect::<Result<Vec<_>, TopError>>()?;
        VerifyUses::Vouchers {
            entries,
            legacy_code: wire
                .confirm_code
                .as_deref()
                .map(|c| code(c, "confirm_code"))
                .transpose()?,
        }
    };
    Ok(VerifyCommand {
        app_key: app.app_key.clone(),
        order,
        mode: wire.mode()?,
        uses,
        total_num: wire.total_num,
        return_num: wire.return_num,
        policy: state.verify_policy,
        meta: ctx.meta_with_summary(super::summary::of_verify(
            params,
            &wire.voucher_infos,
            super::summary::Entries::All,
        )),
        origin: VerifyOrigin::Vendor,
    })
}
