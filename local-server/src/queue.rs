//! Plays SQS FIFO and its event source mapping: an in-process queue that the callback receiver sends
//! to, and a consumer that hands batches to the SAME processor handler as a real SQS event. Like SQS
//! FIFO: deduplication by id within a group for five minutes (the template's `DeduplicationScope:
//! messageGroup`), one group's messages in order and never two batches of
//! a group in flight, failed messages redelivered (here after a backoff) and moved to a dead-letter
//! list after five receives. And like SQS, durable: a message it acknowledged is kept in a SQLite
//! journal in the data folder until it has been delivered (or dead-lettered), so one the process had
//! taken but not yet applied is delivered after a restart, even after a crash.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use domain::callback::PaymentEvent;
use domain::ports::{CallbackQueue, Enqueued, QueueUnavailable};
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
    /// (group, deduplication id) → when first sent: deduplication is per message group (per payment).
    seen: HashMap<(String, String), Instant>,
}

/// Where a durable queue keeps its messages until they are settled: a SQLite file of its own (the store
/// may be DynamoDB), one row per message, in the order they were sent.
struct Journal(Mutex<rusqlite::Connection>);

impl Journal {
    fn open(path: &std::path::Path) -> rusqlite::Result<Journal> {
        let conn = rusqlite::Connection::open(path)?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             CREATE TABLE IF NOT EXISTS messages (
                 seq      INTEGER PRIMARY KEY AUTOINCREMENT,
                 id       TEXT NOT NULL UNIQUE,
                 grp      TEXT NOT NULL,
                 dedup    TEXT NOT NULL,
                 body     TEXT NOT NULL,
                 receives INTEGER NOT NULL
             );",
        )?;
        Ok(Journal(Mutex::new(conn)))
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, rusqlite::Connection> {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The messages not yet settled, oldest first, visible at once.
    fn pending(&self) -> rusqlite::Result<Vec<Message>> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT id, grp, dedup, body, receives FROM messages ORDER BY seq")?;
        let rows = stmt.query_map([], |row| {
            Ok(Message {
                id: row.get(0)?,
                group: row.get(1)?,
                dedup_id: row.get(2)?,
                body: row.get(3)?,
                receives: row.get(4)?,
                visible_at: Instant::now(),
                in_flight: false,
            })
        })?;
        rows.collect()
    }

    fn put(&self, message: &Message) -> rusqlite::Result<()> {
        self.conn().execute(
            "INSERT INTO messages (id, grp, dedup, body, receives) VALUES (?1, ?2, ?3, ?4, ?5)",
            rusqlite::params![
                message.id,
                message.group,
                message.dedup_id,
                message.body,
                message.receives
            ],
        )?;
        Ok(())
    }

    fn received(&self, id: &str, receives: u32) {
        let done = self.conn().execute(
            "UPDATE messages SET receives = ?2 WHERE id = ?1",
            rusqlite::params![id, receives],
        );
        if let Err(err) = done {
            tracing::error!(message_id = id, error = %err, "could not record a receive in the queue's journal");
        }
    }

    fn remove(&self, id: &str) {
        if let Err(err) = self.conn().execute("DELETE FROM messages WHERE id = ?1", [id]) {
            tracing::error!(message_id = id, error = %err, "could not settle a message in the queue's journal");
        }
    }
}

/// The in-process FIFO queue.
#[derive(Clone, Default)]
pub struct LocalQueue {
    state: Arc<Mutex<State>>,
    wake: Arc<Notify>,
    retry_base: Duration,
    journal: Option<Arc<Journal>>,
}

impl LocalQueue {
    /// A queue whose failed messages wait `retry_base`, doubled per receive, before redelivery; kept in
    /// memory only (the tests' queue).
    #[cfg(test)]
    pub fn new(retry_base: Duration) -> Self {
        LocalQueue {
            retry_base,
            ..Default::default()
        }
    }

    /// [`LocalQueue::new`], its messages kept in the journal at `path` until settled: those a previous
    /// process left there are delivered first (and deduplicated against from now on).
    pub fn durable(retry_base: Duration, path: &std::path::Path) -> rusqlite::Result<Self> {
        let journal = Journal::open(path)?;
        let pending = journal.pending()?;
        if !pending.is_empty() {
            tracing::info!(messages = pending.len(), journal = %path.display(), "callback messages left by the last run, delivering them");
        }
        let queue = LocalQueue {
            retry_base,
            journal: Some(Arc::new(journal)),
            ..Default::default()
        };
        {
            let mut state = queue.lock();
            let now = Instant::now();
            for message in &pending {
                state
                    .seen
                    .insert((message.group.clone(), message.dedup_id.clone()), now);
            }
            state.messages = pending;
        }
        Ok(queue)
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
                if let Some(journal) = &self.journal {
                    journal.remove(id);
                }
                continue;
            }
            let message = &mut messages[at];
            message.in_flight = false;
            if message.receives >= MAX_RECEIVES {
                tracing::error!(message_id = id, group = %message.group, receives = message.receives, body = %message.body,
                    "callback message dead-lettered after its last receive");
                messages.remove(at);
                if let Some(journal) = &self.journal {
                    journal.remove(id);
                }
            } else {
                message.visible_at = Instant::now() + self.retry_base * 2u32.pow(message.receives - 1);
                if let Some(journal) = &self.journal {
                    journal.received(id, message.receives);
                }
            }
        }
    }

    /// Feeds batches to `handle` (the processor handler) until the process ends.
    pub async fn consume<F, Fut>(self, handle: F)
    where
        F: Fn(SqsEvent) -> Fut,
        Fut: std::future::Future<Output = SqsBatchResponse>,
    {
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
            let response = handle(event).await;
            self.settle(&batch, &response);
        }
    }
}

#[async_trait]
impl CallbackQueue for LocalQueue {
    async fn enqueue(&self, event: &PaymentEvent) -> Result<Enqueued, QueueUnavailable> {
        let body = serde_json::to_string(event).map_err(|e| QueueUnavailable(Box::new(e)))?;
        let now = Instant::now();
        {
            let mut state = self.lock();
            state.seen.retain(|_, at| now.duration_since(*at) < DEDUP_WINDOW);
            let key = (event.payment_id.to_string(), event.event_id.to_string());
            if state.seen.contains_key(&key) {
                return Ok(Enqueued::Duplicate);
            }
            let message = Message {
                id: uuid::Uuid::new_v4().to_string(),
                group: event.payment_id.to_string(),
                dedup_id: event.event_id.to_string(),
                body,
                receives: 0,
                visible_at: now,
                in_flight: false,
            };
            // Kept before it is acknowledged: a journal that cannot take it is a queue that is down.
            if let Some(journal) = &self.journal {
                journal.put(&message).map_err(|e| QueueUnavailable(Box::new(e)))?;
            }
            state.seen.insert(key, now);
            state.messages.push(message);
        }
        self.wake.notify_one();
        Ok(Enqueued::Taken)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lambda_events::sqs::BatchItemFailure;
    use domain::{EventId, EventSource, Money, PaymentId, ReportedStatus, Timestamp};

    fn event(payment: &str, id: &str) -> PaymentEvent {
        PaymentEvent {
            event_id: EventId::parse(id).unwrap(),
            payment_id: PaymentId::parse(payment).unwrap(),
            provider_txn_id: "txn".into(),
            status: ReportedStatus::Succeeded,
            amount: Money::parse("1.00").unwrap(),
            occurred_at: Timestamp::now(),
            source: EventSource::Generic,
        }
    }

    /// Runs the consumer with a handler that fails each event named in `failing` on its first `n`
    /// receives and, like the real processor, holds back the rest of a group after a failure, until
    /// `deliveries` deliveries were seen; returns (event id, receive count, applied) in delivery order.
    async fn run(
        queue: LocalQueue,
        failing: &'static [(&'static str, u32)],
        deliveries: usize,
    ) -> Vec<(String, u32, bool)> {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let consumer = tokio::spawn(queue.consume(move |event: SqsEvent| {
            let log = log.clone();
            async move {
                let mut response = SqsBatchResponse::default();
                let mut broken: Vec<String> = Vec::new();
                for m in event.records {
                    let e: PaymentEvent = serde_json::from_str(m.body.as_deref().unwrap()).unwrap();
                    let receives: u32 = m.attributes["ApproximateReceiveCount"].parse().unwrap();
                    let group = m.attributes["MessageGroupId"].clone();
                    let fails = failing
                        .iter()
                        .any(|(id, n)| *id == e.event_id.as_str() && receives <= *n);
                    let failed = broken.contains(&group) || fails;
                    log.lock().unwrap().push((e.event_id.to_string(), receives, !failed));
                    if failed {
                        broken.push(group);
                        let mut failure = BatchItemFailure::default();
                        failure.item_identifier = m.message_id.unwrap();
                        response.batch_item_failures.push(failure);
                    }
                }
                response
            }
        }));
        for _ in 0..300 {
            if seen.lock().unwrap().len() >= deliveries {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        consumer.abort();
        let seen = seen.lock().unwrap().clone();
        seen
    }

    fn receives_of(seen: &[(String, u32, bool)], id: &str) -> Vec<(u32, bool)> {
        seen.iter()
            .filter(|(e, _, _)| e == id)
            .map(|(_, n, ok)| (*n, *ok))
            .collect()
    }

    #[tokio::test]
    async fn a_failed_message_comes_back_in_order_and_holds_its_group_only() {
        let queue = LocalQueue::new(Duration::from_millis(1));
        for e in [
            event("pay_a", "a1"),
            event("pay_a", "a1"),
            event("pay_a", "a2"),
            event("pay_b", "b1"),
        ] {
            queue.enqueue(&e).await.unwrap();
        }
        // a1 fails on its first two receives; a2 waits behind it; b1 is not held up; the duplicate a1
        // was dropped at the door.
        let seen = run(queue.clone(), &[("a1", 2)], 7).await;
        assert_eq!(receives_of(&seen, "a1"), [(1, false), (2, false), (3, true)]);
        assert_eq!(receives_of(&seen, "a2"), [(1, false), (2, false), (3, true)]);
        assert_eq!(receives_of(&seen, "b1"), [(1, true)]);
        let applied: Vec<&str> = seen
            .iter()
            .filter(|(_, _, ok)| *ok)
            .map(|(e, _, _)| e.as_str())
            .collect();
        let (a1, a2) = (
            applied.iter().position(|e| *e == "a1"),
            applied.iter().position(|e| *e == "a2"),
        );
        assert!(a1 < a2, "a2 applied before a1: {seen:?}");
        assert!(queue.lock().messages.is_empty());
    }

    #[tokio::test]
    async fn one_event_id_in_two_groups_is_two_messages() {
        let queue = LocalQueue::new(Duration::from_millis(1));
        for e in [
            event("pay_d", "shared"),
            event("pay_e", "shared"),
            event("pay_d", "shared"),
        ] {
            queue.enqueue(&e).await.unwrap();
        }
        let groups: Vec<String> = queue.lock().messages.iter().map(|m| m.group.clone()).collect();
        assert_eq!(groups, ["pay_d", "pay_e"], "deduplicated within a payment's group only");
        let seen = run(queue.clone(), &[], 2).await;
        assert_eq!(receives_of(&seen, "shared"), [(1, true), (1, true)]);
    }

    #[tokio::test]
    async fn a_durable_queue_keeps_what_it_acknowledged_until_it_is_delivered() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("queue.sqlite3");
        let queue = LocalQueue::durable(Duration::from_millis(1), &path).unwrap();
        for e in [event("pay_f", "f1"), event("pay_f", "f2"), event("pay_g", "g1")] {
            queue.enqueue(&e).await.unwrap();
        }
        drop(queue);

        // A new process finds all three, in order, and still drops a duplicate at the door
        let queue = LocalQueue::durable(Duration::from_millis(1), &path).unwrap();
        let kept: Vec<String> = queue.lock().messages.iter().map(|m| m.dedup_id.clone()).collect();
        assert_eq!(kept, ["f1", "f2", "g1"]);
        assert!(matches!(
            queue.enqueue(&event("pay_f", "f1")).await,
            Ok(Enqueued::Duplicate)
        ));
        // f1 fails once and comes back; once all are delivered, nothing is left for the next process
        let seen = run(queue.clone(), &[("f1", 1)], 5).await;
        assert_eq!(receives_of(&seen, "f1"), [(1, false), (2, true)]);
        drop(queue);
        let queue = LocalQueue::durable(Duration::from_millis(1), &path).unwrap();
        assert!(queue.lock().messages.is_empty());
    }

    #[tokio::test]
    async fn a_message_failing_five_times_is_dead_lettered() {
        let queue = LocalQueue::new(Duration::from_millis(1));
        queue.enqueue(&event("pay_c", "c1")).await.unwrap();
        let seen = run(queue.clone(), &[("c1", u32::MAX)], 5).await;
        assert_eq!(
            receives_of(&seen, "c1"),
            [(1, false), (2, false), (3, false), (4, false), (5, false)]
        );
        assert!(
            queue.lock().messages.is_empty(),
            "dead-lettered after the fifth receive"
        );
    }
}
