//! The one flow of every route that takes an `Idempotency-Key` (docs/api.md §12): the key's record
//! rides in the use case's own write, so a key can never make two of anything; the store reports a key
//! that had already answered; and a refusal before the write is checked against the key's record, since
//! it may only mean the world moved on after the key's first, successful answer.

use crate::error::ServiceError;
use crate::idempotency::{IdempotencyRecord, IdempotentRequest, KeyUse, StoredResponse};
use crate::ids::UserId;
use crate::ports::{Clock, OrderStore};

/// What a keyed route answers.
#[derive(Debug, Clone)]
pub enum Answered<T> {
    /// Made now.
    Made(T),
    /// The key's earlier answer, to replay as it was.
    Replayed(StoredResponse),
}

/// What one attempt of a keyed use case came to.
#[derive(Debug, Clone)]
pub enum Attempt<T> {
    /// Made, with the key's record written in the same write.
    Made(T),
    /// The write found the key already answered (a replay, or `Reused`); nothing was written.
    KeyAnswered(KeyUse),
}

/// Turns an attempt into the route's answer: the key's answer where the write found one; where the
/// attempt was refused before its write (anything but a fault), the key's live record's answer if it has
/// one, else the refusal.
pub async fn at_most_once<T>(
    records: &dyn OrderStore,
    clock: &dyn Clock,
    user: &UserId,
    request: Option<&IdempotentRequest>,
    attempt: Result<Attempt<T>, ServiceError>,
) -> Result<Answered<T>, ServiceError> {
    let refused = match attempt {
        Ok(Attempt::Made(made)) => return Ok(Answered::Made(made)),
        Ok(Attempt::KeyAnswered(answer)) => return answer_of(answer),
        Err(
            fault @ (ServiceError::ServiceBusy(_) | ServiceError::ProviderUnavailable(_) | ServiceError::Internal(_)),
        ) => return Err(fault),
        Err(refused) => refused,
    };
    let Some(request) = request else {
        return Err(refused);
    };
    let existing = records.idempotency_record(user, &request.key).await?;
    match IdempotencyRecord::judge(existing.as_ref(), request, clock.now()) {
        KeyUse::Fresh => Err(refused),
        answer => answer_of(answer),
    }
}

fn answer_of<T>(answer: KeyUse) -> Result<Answered<T>, ServiceError> {
    match answer {
        KeyUse::Replay(response) => Ok(Answered::Replayed(response)),
        KeyUse::Reused => Err(ServiceError::IdempotencyKeyReused),
        KeyUse::Fresh => Err(ServiceError::ServiceBusy(
            "a store reported a free key as answered".into(),
        )),
    }
}
