//! Plays SQS FIFO and its event source mapping: an in-process queue that the callback receiver sends
//! to, and a consumer that hands batches to the SAME processor handler as a real SQS event. Like SQS
//! FIFO: deduplication by id for five minutes, one group's messages in order and never two batches of
//! a group in flight, failed messages redelivered (here after a backoff) and moved to a dead-letter
//! list after five receives.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use domain::callback::PaymentEvent;
use domain::ports::{CallbackQueue, QueueUnavailable};
use domain::usecases::Services;
use serde_json::json;
use tokio::sync::Notify;

/// SQS FIFO's deduplication window.
const DEDUP_WINDOW: Duration = Duration::from_secs(300);
/// Receives after which a failing message is dead-lettered (the template's `maxReceiveCount`).
pub const MAX_RECEIVES: u32 = 5;
/// The most messages one batch carries (the template's `BatchSize`).
const BATCH_SIZE: usize = 10;

struct Message {
    id: String,
    group: String,
    dedup_id: String,
    body: String,
    receives: u32,
    visible_at: Instant,
    in_flight: bool,
}

#[derive(Default)]
struct State {
    messages: Vec<Message>,
    seen: HashMap<String, Instant>,
}

/// The in-process FIFO queue.
#[derive(Clone, Default)]
pub struct LocalQueue {
    state: Arc<Mutex<State>>,
    wake: Arc<Notify>,
    retry_base: Duration,
}

impl LocalQueue {
    /// A queue whose failed messages wait `retry_base`, doubled per receive, before redelivery.
    pub fn new(retry_base: Duration) -> Self {
        LocalQueue {
            retry_base,
            ..Default::default()
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Takes the next batch: from each group whose first message is visible and not in flight, its
    /// messages in order, up to the batch size.
    fn receive(&self) -> Vec<serde_json::Value> {
        let mut state = self.lock();
        let now = Instant::now();
        let mut blocked: Vec<String> = Vec::new();
        let mut batch = Vec::new();
        for message in state.messages.iter_mut() {
            if batch.len() == BATCH_SIZE {
                break;
            }
            if blocked.contains(&message.group) {
                continue;
            }
            if message.in_flight || message.visible_at > now {
                blocked.push(message.group.clone());
                continue;
            }
            message.in_flight = true;
            message.receives += 1;
            batch.push(json!({
                "messageId": message.id,
                "receiptHandle": format!("{}-{}", message.id, message.receives),
                "body": message.body,
                "attributes": {
                    "ApproximateReceiveCount": message.receives.to_string(),
                    "MessageGroupId": message.group,
                    "MessageDeduplicationId": message.dedup_id,
                    "SentTimestamp": "0",
                },
                "messageAttributes": {},
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:local:000000000000:payment-callbacks.fifo",
                "awsRegion": "local",
            }));
        }
        batch
    }

    /// Settles a batch: delivered messages leave; failed ones wait and come back, or are dead-lettered
    /// after their fifth receive.
    fn settle(&self, batch: &[serde_json::Value], response: &SqsBatchResponse) {
        let failed: Vec<&str> = response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.as_str())
            .collect();
        let mut state = self.lock();
        let messages = &mut state.messages;
        for id in batch.iter().filter_map(|m| m["messageId"].as_str()) {
            let Some(at) = messages.iter().position(|m| m.id == id) else {
                continue;
            };
            if !failed.contains(&id) {
                messages.remove(at);
                continue;
            }
            let message = &mut messages[at];
            message.in_flight = false;
            if message.receives >= MAX_RECEIVES {
                tracing::error!(message_id = id, group = %message.group, receives = message.receives, body = %message.body,
                    "callback message dead-lettered after its last receive");
                messages.remove(at);
            } else {
                message.visible_at = Instant::now() + self.retry_base * 2u32.pow(message.receives - 1);
            }
        }
    }

    /// Feeds batches to the processor handler until the process ends.
    pub async fn consume(self, services: Arc<Services>) {
        loop {
            let batch = self.receive();
            if batch.is_empty() {
                let _ = tokio::time::timeout(Duration::from_millis(100), self.wake.notified()).await;
                continue;
            }
            let event: SqsEvent = match serde_json::from_value(json!({ "Records": batch })) {
                Ok(event) => event,
                Err(err) => {
                    tracing::error!(error = %err, "could not build the SQS event");
                    return;
                }
            };
            let response = process_payment_callbacks::handle(&services, event).await;
            self.settle(&batch, &response);
        }
    }
}

#[async_trait]
impl CallbackQueue for LocalQueue {
    async fn enqueue(&self, event: &PaymentEvent) -> Result<(), QueueUnavailable> {
        let body = serde_json::to_string(event).map_err(|e| QueueUnavailable(Box::new(e)))?;
        let now = Instant::now();
        {
            let mut state = self.lock();
            state.seen.retain(|_, at| now.duration_since(*at) < DEDUP_WINDOW);
            if state.seen.contains_key(event.event_id.as_str()) {
                return Ok(());
            }
            state.seen.insert(event.event_id.to_string(), now);
            state.messages.push(Message {
                id: uuid::Uuid::new_v4().to_string(),
                group: event.payment_id.to_string(),
                dedup_id: event.event_id.to_string(),
                body,
                receives: 0,
                visible_at: now,
                in_flight: false,
            });
        }
        self.wake.notify_one();
        Ok(())
    }
}
