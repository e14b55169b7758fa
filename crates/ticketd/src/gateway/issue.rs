//! `alitrip.travel.ticket.order.create` (成功发码回调): wire parameters → [`IssueCommand`] →
//! ledger → `is_success`.

use ticket_api::issue::{IssueParams, IssueType};
use ticket_ledger::{App, IssueCommand, IssueResult, IssuedVoucher};
use top_protocol::{Params, TopError};

use super::{confirm_code, is_success, order_id, out_order_id, CallContext};
use crate::server::AppState;

/// Handles one authenticated issuance report.
pub async fn handle(
    state: &AppState,
    params: &Params,
    app: &App,
    ctx: &CallContext,
) -> Result<super::Accepted, TopError> {
    let wire = IssueParams::from_params(params)?;
    let result = match (wire.kind()?, wire.describe) {
        (IssueType::Failed, Some(describe)) => IssueResult::Failed { describe },
        _ => IssueResult::Issued(
            wire.voucher_infos
                .iter()
                .map(|v| {
                    Ok(IssuedVoucher {
                        code: confirm_code(&v.confirm_code, "voucher_infos")?,
                        capacity: v.quantity,
                        voucher_type: v.voucher_type,
                        extras: v.extras.clone(),
                    })
                })
                .collect::<Result<_, TopError>>()?,
        ),
    };
    let cmd = IssueCommand {
        app_key: app.app_key.clone(),
        order_id: order_id(wire.order_id)?,
        out_order_id: out_order_id(&wire.out_order_id)?,
        result,
        attributes: wire.attribute_map,
        meta: ctx.meta(params),
    };
    is_success(state.store.issue(cmd).await)
}
