//! `taobao.travel.ticket.order.refund` (退票结果通知): wire parameters → [`RefundCommand`] →
//! ledger → `is_success`.

use ticket_api::refund::{RefundParams, RefundStatus, RefundType};
use ticket_ledger::{App, RefundCommand, RefundOutcomeStatus};
use top_protocol::{Params, TopError};

use super::{is_success, order_id, CallContext};
use crate::server::AppState;

/// Handles one authenticated refund notification.
pub async fn handle(
    state: &AppState,
    params: &Params,
    app: &App,
    ctx: &CallContext,
) -> Result<super::Accepted, TopError> {
    let wire = RefundParams::from_params(params)?;
    let partial = wire.kind()? == RefundType::Partial;
    let cmd = RefundCommand {
        app_key: app.app_key.clone(),
        order_id: order_id(wire.order_id)?,
        status: match wire.status()? {
            RefundStatus::Refunded => RefundOutcomeStatus::Succeeded,
            RefundStatus::NotRefunded => RefundOutcomeStatus::Failed,
        },
        refund_num: wire.refund_num,
        batch_no: wire.refund_batch_no,
        failure_reason: wire.refund_failure_reason,
        partial,
        flow_id: wire.fliggy_refund_flow_id,
        meta: ctx.meta(params),
    };
    is_success(state.store.refund(cmd).await)
}
