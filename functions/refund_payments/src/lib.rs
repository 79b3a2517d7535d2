//! refund_payments: on an EventBridge schedule, sends every decided refund to its provider (with the
//! same refund number on every attempt) and records the provider's verified answer, until the
//! invocation's time runs short.

use std::time::{Duration, SystemTime};

use aws_lambda_events::eventbridge::EventBridgeEvent;
use domain::ports::StoreError;
use domain::usecases::{refund_due, RefundReport, Services};

/// Time kept in hand before the invocation's deadline: the run stops taking new refunds past it (a
/// provider call takes at most its client's timeout and retries, well within it).
pub const SAFETY_MARGIN: Duration = Duration::from_secs(15);

/// Refunds until done or until `deadline` minus the safety margin; the report says what it did.
pub async fn handle(svc: &Services, event: EventBridgeEvent, deadline: SystemTime) -> Result<RefundReport, StoreError> {
    let event_id = event.id.as_deref().unwrap_or("");
    tracing::info!(event_id, time = %event.time.map(|t| t.to_rfc3339()).unwrap_or_default(), "refund run triggered");
    let stop_at = deadline.checked_sub(SAFETY_MARGIN).unwrap_or(deadline);
    refund_due(&svc.refunder(), &move || SystemTime::now() < stop_at).await
}
