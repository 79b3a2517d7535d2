//! expire_payments: on an EventBridge schedule, cancels pending orders past their deadline (stock
//! returned) and expires open payments past their own expiry, until the invocation's time runs short.

use std::time::{Duration, SystemTime};

use aws_lambda_events::eventbridge::EventBridgeEvent;
use domain::ports::StoreError;
use domain::usecases::{sweep, Services, SweepReport};

/// Time kept in hand before the invocation's deadline: the sweep stops taking new work past it.
pub const SAFETY_MARGIN: Duration = Duration::from_secs(3);

/// Sweeps until done or until `deadline` minus the safety margin; the report says what it did.
pub async fn handle(svc: &Services, event: EventBridgeEvent, deadline: SystemTime) -> Result<SweepReport, StoreError> {
    let event_id = event.id.as_deref().unwrap_or("");
    tracing::info!(event_id, time = %event.time.map(|t| t.to_rfc3339()).unwrap_or_default(), "expiry sweep triggered");
    let stop_at = deadline.checked_sub(SAFETY_MARGIN).unwrap_or(deadline);
    sweep(svc.expiry.as_ref(), &svc.closer(), &move || SystemTime::now() < stop_at).await
}
