//! The payment callback processor: SQS FIFO batches of normalized events, each applied exactly once, in
//! order within its payment's group; transient failures are reported for redelivery.

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use domain::ports::Metric;
use domain::usecases::{apply_callback, Services};
use domain::PaymentEvent;

/// Handles one batch; the response names the messages SQS must deliver again.
pub async fn handle(svc: &Services, event: SqsEvent) -> SqsBatchResponse {
    infra::fifo::process_batch(event, |message| apply(svc, message)).await
}

/// Applies one message; `false` when it must be delivered again.
async fn apply(svc: &Services, message: SqsMessage) -> bool {
    let message_id = message.message_id.unwrap_or_default();
    let receives = message
        .attributes
        .get("ApproximateReceiveCount")
        .cloned()
        .unwrap_or_default();
    // The receiver only enqueues events it parsed, so an unreadable body is a defect: keep it (the
    // redrive policy moves it to the dead-letter queue) rather than drop evidence.
    let event: PaymentEvent = match message.body.as_deref().map(serde_json::from_str) {
        Some(Ok(event)) => event,
        _ => {
            tracing::error!(%message_id, "callback message is not a payment event");
            return false;
        }
    };
    match apply_callback(svc.updates.as_ref(), svc.clock.as_ref(), svc.metrics.as_ref(), &event).await {
        Ok(_) => true,
        Err(err) => {
            svc.metrics.count(Metric::CallbackRetried);
            tracing::warn!(
                %message_id,
                event_id = %event.event_id,
                payment_id = %event.payment_id,
                receives,
                error = %domain::error::error_chain(&err),
                "callback not applied; it will be delivered again"
            );
            false
        }
    }
}
