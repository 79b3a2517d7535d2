//! Idempotency keys (docs/api.md §12): a create request's key, and the record written in the same atomic
//! write as its orders, so a key can never produce two sets of orders.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::ids::UserId;
use crate::time::Timestamp;

/// How long a record answers for its key: at least a day, as docs/api.md §12 asks.
pub const RETENTION_MINUTES: u32 = 24 * 60;

/// The `Idempotency-Key` header: 1..=255 visible ASCII characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct IdempotencyKey(String);

/// Why a header value is not an idempotency key (a `VALIDATION_ERROR` on `Idempotency-Key`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("Idempotency-Key {0}")]
pub struct KeyError(pub &'static str);

impl IdempotencyKey {
    /// Accepts 1..=255 visible ASCII characters other than a comma; anything else is a validation error
    /// on the header. A comma is how API Gateway (payload 2.0) joins a header sent more than once, so a
    /// key with one may be two keys: the request is refused rather than guessed at.
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        if text.contains(',') {
            return Err(KeyError(
                "must be given once (a comma is how a repeated header arrives)",
            ));
        }
        if (1..=255).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_graphic()) {
            Ok(IdempotencyKey(text.to_owned()))
        } else {
            Err(KeyError("must be 1 to 255 visible ASCII characters"))
        }
    }

    /// The key as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What identifies a request under its key: the route and the SHA-256 of its canonical body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotentRequest {
    /// The key the client sent.
    pub key: IdempotencyKey,
    /// The route, e.g. `POST /api/orders/create_order/`.
    pub route: String,
    /// Hex SHA-256 of the body with object keys sorted and no insignificant white space, so that the
    /// same request re-serialized by a client's retry is the same request.
    pub body_hash: String,
}

impl IdempotentRequest {
    /// The request under `key` on `route` with this (already parsed, valid) JSON body.
    pub fn new(key: IdempotencyKey, route: &str, body: &Value) -> Self {
        let canonical = serde_json::to_string(&canonical(body)).unwrap_or_default();
        IdempotentRequest {
            key,
            route: route.to_owned(),
            body_hash: hex::encode(Sha256::digest(canonical.as_bytes())),
        }
    }
}

/// The same JSON with every object's keys sorted.
fn canonical(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let sorted: BTreeMap<&String, Value> = map.iter().map(|(k, v)| (k, canonical(v))).collect();
            Value::Object(sorted.into_iter().map(|(k, v)| (k.clone(), v)).collect())
        }
        Value::Array(items) => Value::Array(items.iter().map(canonical).collect()),
        other => other.clone(),
    }
}

/// A stored answer, replayed as it was given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredResponse {
    /// The HTTP status.
    pub status: u16,
    /// The JSON body, as text.
    pub body: String,
}

/// What a key has answered, kept with the orders it created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdempotencyRecord {
    /// The shopper (keys are per shopper).
    pub user_id: UserId,
    /// The key.
    pub key: IdempotencyKey,
    /// The route it was used on.
    pub route: String,
    /// The hash of the body it was used with.
    pub body_hash: String,
    /// The answer given.
    pub response: StoredResponse,
    /// When it was written.
    pub created_at: Timestamp,
    /// From this instant the record counts as absent (stores may delete it later).
    pub expires_at: Timestamp,
}

/// What a key's record, as a store holds it, means for a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyUse {
    /// No live record: the request may proceed (and write one).
    Fresh,
    /// The same request was answered before: replay that answer.
    Replay(StoredResponse),
    /// The key was used for a different request (body or route): `422`.
    Reused,
}

impl IdempotencyRecord {
    /// What the record a store holds for this record's key (if any) means for writing this one, judged
    /// at the moment this one was made: `Fresh` (no live holder: write it, replacing an expired one), or
    /// the holder's answer.
    pub fn against(&self, holder: Option<&IdempotencyRecord>) -> KeyUse {
        Self::judge(holder, &self.request(), self.created_at)
    }

    /// The record for `request` answered with `response` at `now`.
    pub fn new(user: &UserId, request: &IdempotentRequest, response: StoredResponse, now: Timestamp) -> Self {
        IdempotencyRecord {
            user_id: user.clone(),
            key: request.key.clone(),
            route: request.route.clone(),
            body_hash: request.body_hash.clone(),
            response,
            created_at: now,
            expires_at: now.plus_minutes(RETENTION_MINUTES),
        }
    }

    /// The one liveness rule: a record holds its key until `expires_at`, and from that instant counts
    /// as absent whether or not the store has deleted it yet. (DynamoDB's write condition states the same
    /// rule as `expires_at <= :now`, the instants written as fixed-width RFC 3339 text.)
    pub fn is_live_at(&self, now: Timestamp) -> bool {
        now < self.expires_at
    }

    /// The request this record answered (its key, route and body hash).
    pub fn request(&self) -> IdempotentRequest {
        IdempotentRequest {
            key: self.key.clone(),
            route: self.route.clone(),
            body_hash: self.body_hash.clone(),
        }
    }

    /// Judges the record a store holds for the key (if any) against a request at `now`. Every store
    /// calls this, so they agree on what an existing key means.
    pub fn judge(existing: Option<&IdempotencyRecord>, request: &IdempotentRequest, now: Timestamp) -> KeyUse {
        match existing {
            None => KeyUse::Fresh,
            Some(record) if !record.is_live_at(now) => KeyUse::Fresh,
            Some(record) if record.route == request.route && record.body_hash == request.body_hash => {
                KeyUse::Replay(record.response.clone())
            }
            Some(_) => KeyUse::Reused,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(body: &str, route: &str) -> IdempotentRequest {
        let body: Value = serde_json::from_str(body).unwrap();
        IdempotentRequest::new(IdempotencyKey::parse("k-1").unwrap(), route, &body)
    }

    #[test]
    fn keys_are_1_to_255_visible_ascii() {
        assert!(IdempotencyKey::parse("a").is_ok());
        assert!(IdempotencyKey::parse(&"x".repeat(255)).is_ok());
        for bad in [
            "",
            "has space",
            "tab\t",
            "é",
            "clé-42",
            &"x".repeat(256),
            "k-1,k-2",
            "k-1,k-1",
        ] {
            assert!(IdempotencyKey::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_same_request_reserialized_is_the_same_request() {
        let a = request(r#"{"quantity": 1, "product_id": "p"}"#, "POST /x");
        let b = request(r#"{"product_id":"p","quantity":1}"#, "POST /x");
        assert_eq!(a, b);
        assert_ne!(a, request(r#"{"product_id":"p","quantity":2}"#, "POST /x"));
    }

    #[test]
    fn a_record_replays_its_request_refuses_others_and_expires() {
        let now = Timestamp::parse("2026-11-25T07:00:00Z").unwrap();
        let user = UserId::parse("u").unwrap();
        let req = request(r#"{"q": 1}"#, "POST /x");
        let response = StoredResponse {
            status: 201,
            body: "{}".into(),
        };
        let record = IdempotencyRecord::new(&user, &req, response.clone(), now);
        assert_eq!(IdempotencyRecord::judge(None, &req, now), KeyUse::Fresh);
        assert_eq!(
            IdempotencyRecord::judge(Some(&record), &req, now),
            KeyUse::Replay(response)
        );
        let other_body = request(r#"{"q": 2}"#, "POST /x");
        let other_route = request(r#"{"q": 1}"#, "POST /y");
        assert_eq!(
            IdempotencyRecord::judge(Some(&record), &other_body, now),
            KeyUse::Reused
        );
        assert_eq!(
            IdempotencyRecord::judge(Some(&record), &other_route, now),
            KeyUse::Reused
        );
        let later = now.plus_minutes(RETENTION_MINUTES).plus_seconds(1);
        assert_eq!(IdempotencyRecord::judge(Some(&record), &req, later), KeyUse::Fresh);
    }
}
