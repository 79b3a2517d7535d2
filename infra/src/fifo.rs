//! Processing an SQS FIFO batch with partial failures: message groups run side by side, each group's
//! messages strictly in order; after a group's first failure, that message and every later message of
//! the group in the batch are reported as failures (and not attempted), so SQS redelivers them in order.

use std::future::Future;

use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};

/// The attribute SQS puts a FIFO message's group id in.
const GROUP_ATTRIBUTE: &str = "MessageGroupId";

/// Applies every message of `event` with `apply` (which answers whether the message is done) and reports
/// the ones to redeliver.
pub async fn process_batch<F, Fut>(event: SqsEvent, apply: F) -> SqsBatchResponse
where
    F: Fn(SqsMessage) -> Fut,
    Fut: Future<Output = bool>,
{
    let mut groups: Vec<(Option<String>, Vec<SqsMessage>)> = Vec::new();
    for message in event.records {
        // A message without a group (a standard queue) is a group of its own.
        let group = message.attributes.get(GROUP_ATTRIBUTE).cloned();
        match groups.iter_mut().find(|(g, _)| group.is_some() && *g == group) {
            Some((_, messages)) => messages.push(message),
            None => groups.push((group, vec![message])),
        }
    }
    let apply = &apply;
    let failed = futures::future::join_all(groups.into_iter().map(|(group, messages)| async move {
        let mut failed = Vec::new();
        let mut blocked = false;
        for message in messages {
            let id = message.message_id.clone().unwrap_or_default();
            if blocked {
                tracing::info!(message_id = %id, group = ?group, "held back behind an earlier failure in its group");
                failed.push(id);
            } else if !apply(message).await {
                blocked = true;
                failed.push(id);
            }
        }
        failed
    }))
    .await;
    let mut response = SqsBatchResponse::default();
    for id in failed.into_iter().flatten() {
        let mut failure = BatchItemFailure::default();
        failure.item_identifier = id;
        response.batch_item_failures.push(failure);
    }
    response
}
