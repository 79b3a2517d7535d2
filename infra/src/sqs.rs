//! The callback queue on SQS FIFO: one message group per payment (so a payment's events are applied
//! in order), deduplicated by the provider's event id.

use async_trait::async_trait;
use aws_sdk_sqs::Client;
use domain::callback::PaymentEvent;
use domain::ports::{CallbackQueue, Enqueued, QueueUnavailable};

/// A FIFO queue, by URL.
#[derive(Clone, Debug)]
pub struct SqsQueue {
    client: Client,
    url: String,
}

impl SqsQueue {
    /// The queue at `url`.
    pub fn new(client: Client, url: impl Into<String>) -> Self {
        SqsQueue {
            client,
            url: url.into(),
        }
    }

    /// Opens the connection (TCP and TLS) to SQS during the function's init, so that its first
    /// invocation does not pay for the handshake: one GetQueueAttributes for the queue's ARN, waited for
    /// at most `aws::WARM_UP_LIMIT`. A failure is logged and otherwise ignored.
    pub async fn warm_up(&self) {
        let request = self
            .client
            .get_queue_attributes()
            .queue_url(&self.url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
            .send();
        crate::aws::warm_up("SQS", request).await;
    }
}

#[async_trait]
impl CallbackQueue for SqsQueue {
    async fn enqueue(&self, event: &PaymentEvent) -> Result<Enqueued, QueueUnavailable> {
        let body = serde_json::to_string(event).map_err(|e| QueueUnavailable(Box::new(e)))?;
        self.client
            .send_message()
            .queue_url(&self.url)
            .message_body(body)
            .message_group_id(event.payment_id.as_str())
            .message_deduplication_id(event.event_id.as_str())
            .send()
            .await
            .map_err(|e| QueueUnavailable(Box::new(e.into_service_error())))?;
        Ok(Enqueued::Taken)
    }
}

/// An SQS client from the environment's AWS configuration, pointed at `endpoint` when given (moto).
pub fn client(endpoint: Option<&str>) -> Client {
    Client::new(&crate::aws::config(endpoint))
}
