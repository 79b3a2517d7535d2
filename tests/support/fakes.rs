//! Ports played in memory: a callback queue that keeps what it is sent, and a supplier with fixed figures.

use crate::{deliver, TestEnv};
use async_trait::async_trait;
use domain::ids::ProductId;
use domain::ports::{SupplierStock, SupplierUnavailable};
use domain::PaymentEvent;
use std::collections::BTreeMap;
use std::sync::Mutex;

/// A callback queue in memory: keeps what it is sent, or refuses everything when `down`.
#[derive(Default)]
pub struct MemoryQueue {
    /// What was enqueued, oldest first.
    pub sent: Mutex<Vec<PaymentEvent>>,
    /// Refuse every message.
    pub down: bool,
}

#[async_trait]
impl domain::ports::CallbackQueue for MemoryQueue {
    async fn enqueue(&self, event: &PaymentEvent) -> Result<domain::ports::Enqueued, domain::ports::QueueUnavailable> {
        if self.down {
            return Err(domain::ports::QueueUnavailable(
                "connection refused to sqs.internal:443".into(),
            ));
        }
        self.sent.lock().expect("queue").push(event.clone());
        Ok(domain::ports::Enqueued::Taken)
    }
}

impl MemoryQueue {
    /// Hands everything enqueued so far to the real processor, one batch in order, and empties the queue.
    pub async fn drain_into(&self, env: &TestEnv) {
        let events: Vec<PaymentEvent> = std::mem::take(&mut *self.sent.lock().expect("queue"));
        let ids: Vec<String> = (0..events.len()).map(|i| format!("msg-{i}")).collect();
        let messages: Vec<(&str, &PaymentEvent)> = ids.iter().map(String::as_str).zip(events.iter()).collect();
        for chunk in messages.chunks(10) {
            assert!(deliver(env, chunk).await.is_empty(), "the processor reported failures");
        }
    }
}

/// A supplier port with fixed figures, for exercising the use case's supplier branch.
pub struct FixedSupplier(pub BTreeMap<String, u32>);

#[async_trait]
impl SupplierStock for FixedSupplier {
    async fn available(&self, product: &ProductId) -> Result<u32, SupplierUnavailable> {
        Ok(self.0.get(product.as_str()).copied().unwrap_or(0))
    }
}
