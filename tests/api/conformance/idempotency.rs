//! Idempotency keys: one key creates at most one set of orders, even under concurrent retries, and a
//! retry gets the first answer back.

use std::sync::Arc;

use domain::ProductId;
use e2e::{create_with_key, TestEnv};
use serde_json::{json, Value};

const ORDER: &str = "/api/orders/create_order/";
const BATCH: &str = "/api/orders/create_batch_orders/";

async fn given(env: &TestEnv, stock: u32) -> ProductId {
    env.address("dan-home", "dan").await;
    env.product("kettle", "89.90", stock).await
}

fn body(quantity: u32) -> serde_json::Value {
    json!({"product_id": "kettle", "address_id": "dan-home", "quantity": quantity})
}

pub async fn fifty_concurrent_retries_of_one_key_create_one_order(env: TestEnv) {
    let kettle = given(&env, 100).await;
    let env = Arc::new(env);
    let calls = (0..50).map(|_| {
        let env = env.clone();
        tokio::spawn(async move { create_with_key(&env, ORDER, "dan", "retry-me", &body(2)).await })
    });
    let answers: Vec<_> = futures::future::join_all(calls)
        .await
        .into_iter()
        .map(|a| a.expect("task"))
        .collect();

    let first = answers
        .iter()
        .find(|(_, _, replayed)| !replayed)
        .expect("one original answer");
    assert_eq!(answers.iter().filter(|(_, _, replayed)| !replayed).count(), 1);
    for (status, body, _) in &answers {
        assert_eq!(*status, 201, "{body}");
        assert_eq!(body, &first.1, "every answer names the same order");
    }
    let (orders, payments) = env.records().await;
    assert_eq!((orders.len(), payments.len()), (1, 1));
    assert_eq!(orders[0].id.as_str(), first.1["order"]["id"].as_str().unwrap());
    assert_eq!(env.stock(&kettle).await, 98, "stock taken once");
}

pub async fn a_key_answers_only_its_own_request_for_a_day(env: TestEnv) {
    let kettle = given(&env, 10).await;
    let (status, created, replayed) = create_with_key(&env, ORDER, "dan", "k1", &body(1)).await;
    assert_eq!((status, replayed), (201, false), "{created}");
    let before = env.snapshot().await;

    // The same request, re-serialized: replayed, nothing written
    let reordered = json!({"quantity": 1, "address_id": "dan-home", "product_id": "kettle"});
    let (status, again, replayed) = create_with_key(&env, ORDER, "dan", "k1", &reordered).await;
    assert_eq!((status, replayed, &again), (201, true, &created));

    // Another body, another route, a bad key: refused, nothing written
    let (status, other, _) = create_with_key(&env, ORDER, "dan", "k1", &body(2)).await;
    assert_eq!(
        (status, other["error"]["code"].as_str()),
        (422, Some("IDEMPOTENCY_KEY_REUSED"))
    );
    let batch = json!({"items": [{"product_id": "kettle", "quantity": 1}], "address_id": "dan-home"});
    let (status, other, _) = create_with_key(&env, BATCH, "dan", "k1", &batch).await;
    assert_eq!(
        (status, other["error"]["code"].as_str()),
        (422, Some("IDEMPOTENCY_KEY_REUSED"))
    );
    let long = "k".repeat(256);
    let (status, other, _) = create_with_key(&env, ORDER, "dan", &long, &body(1)).await;
    assert_eq!(
        (status, other["error"]["code"].as_str()),
        (400, Some("VALIDATION_ERROR"))
    );
    assert_eq!(other["error"]["details"]["fields"][0]["field"], "Idempotency-Key");
    // A key sent twice reaches a function joined with a comma, as API Gateway joins repeated headers
    for joined in ["k1,k1", "k1,k2", "clé-42"] {
        let (status, other, _) = create_with_key(&env, ORDER, "dan", joined, &body(1)).await;
        assert_eq!(
            (status, other["error"]["details"]["fields"][0]["field"].as_str()),
            (400, Some("Idempotency-Key")),
            "{joined}: {other}"
        );
    }
    assert_eq!(env.snapshot().await, before);

    // Keys are per shopper: another shopper's same key is a different key
    env.address("eve-home", "eve").await;
    let eves = json!({"product_id": "kettle", "address_id": "eve-home", "quantity": 1});
    let (status, _, replayed) = create_with_key(&env, ORDER, "eve", "k1", &eves).await;
    assert_eq!((status, replayed), (201, false));

    // After the product was withdrawn, the retry still gets its first answer
    env.product_with("kettle", "89.90", 8, domain::StockSource::Local, false)
        .await;
    let (status, again, replayed) = create_with_key(&env, ORDER, "dan", "k1", &body(1)).await;
    assert_eq!((status, replayed, &again), (201, true, &created));
    env.product("kettle", "89.90", 8).await;

    // The record lives 24 hours: stored with its expiry, and in DynamoDB with a TTL of that same instant
    let records: Vec<Value> = env
        .snapshot()
        .await
        .into_iter()
        .filter(|(k, _)| k.starts_with("idempotency|") || k.starts_with("IDEMPOTENCY#"))
        .map(|(_, v)| v.get("doc").cloned().unwrap_or(v))
        .filter(|r| r["user_id"] == "dan" && r["key"] == "k1")
        .collect();
    assert_eq!(records.len(), 1, "{records:?}");
    let created_at = domain::Timestamp::parse(records[0]["created_at"].as_str().unwrap()).unwrap();
    let expires_at = domain::Timestamp::parse(records[0]["expires_at"].as_str().unwrap()).unwrap();
    assert_eq!(expires_at.unix_seconds() - created_at.unix_seconds(), 24 * 3600);
    if env.table_name().is_some() {
        assert_eq!(
            records[0]["ttl"].as_i64(),
            Some(expires_at.unix_seconds()),
            "{}",
            records[0]
        );
    }

    // 23 h 59 min later the key still answers with its first response
    env.clock.advance(23 * 3600 + 59 * 60);
    let (status, again, replayed) = create_with_key(&env, ORDER, "dan", "k1", &body(1)).await;
    assert_eq!((status, replayed, &again), (201, true, &created));

    // A day and a second after it was made the key is free again: a new order
    env.clock.advance(60 + 1);
    let (status, fresh, replayed) = create_with_key(&env, ORDER, "dan", "k1", &body(1)).await;
    assert_eq!((status, replayed), (201, false), "{fresh}");
    assert_ne!(fresh["order"]["id"], created["order"]["id"]);
    assert_eq!(env.stock(&kettle).await, 7);
}

pub async fn a_refused_request_stores_nothing_and_its_retry_may_succeed(env: TestEnv) {
    let kettle = given(&env, 1).await;
    let (status, refused, _) = create_with_key(&env, ORDER, "dan", "k-short", &body(3)).await;
    assert_eq!(
        (status, refused["error"]["code"].as_str()),
        (409, Some("INSUFFICIENT_STOCK"))
    );

    env.product("kettle", "89.90", 5).await;
    let (status, created, replayed) = create_with_key(&env, ORDER, "dan", "k-short", &body(3)).await;
    assert_eq!((status, replayed), (201, false), "{created}");
    assert_eq!(env.stock(&kettle).await, 2);

    // Batches too: the same key on the batch route replays the batch
    let batch = json!({"items": [{"product_id": "kettle", "quantity": 1}], "address_id": "dan-home"});
    let (status, first, _) = create_with_key(&env, BATCH, "dan", "k-batch", &batch).await;
    assert_eq!(status, 201, "{first}");
    let (status, again, replayed) = create_with_key(&env, BATCH, "dan", "k-batch", &batch).await;
    assert_eq!((status, replayed, &again), (201, true, &first));
    assert_eq!(env.stock(&kettle).await, 1);
}

pub async fn create_payment_is_idempotent_too(env: TestEnv) {
    given(&env, 10).await;
    let (status, created, _) = create_with_key(&env, ORDER, "dan", "order-key", &body(1)).await;
    assert_eq!(status, 201, "{created}");
    let pay = format!("/api/orders/{}/payments/", created["order"]["id"].as_str().unwrap());
    let method = json!({"payment_method": "alipay"});

    // 20 concurrent retries of one key: one new payment, every answer the same
    let env = Arc::new(env);
    let calls = (0..20).map(|_| {
        let (env, pay, method) = (env.clone(), pay.clone(), method.clone());
        tokio::spawn(async move { create_with_key(&env, &pay, "dan", "pay-key", &method).await })
    });
    let answers: Vec<_> = futures::future::join_all(calls)
        .await
        .into_iter()
        .map(|a| a.expect("task"))
        .collect();
    assert_eq!(answers.iter().filter(|(_, _, replayed)| !replayed).count(), 1);
    let first = &answers[0].1;
    for (status, answer, _) in &answers {
        assert_eq!(
            (*status, answer["payment"]["id"].clone()),
            (201, first["payment"]["id"].clone()),
            "{answer}"
        );
    }
    let (_, payments) = env.records().await;
    assert_eq!(payments.len(), 2, "the order's first payment and exactly one new one");

    // The same key for another body, or on create_order, is refused
    let (status, other, _) = create_with_key(&env, &pay, "dan", "pay-key", &json!({"payment_method": "bank"})).await;
    assert_eq!(
        (status, other["error"]["code"].as_str()),
        (422, Some("IDEMPOTENCY_KEY_REUSED"))
    );
    let (status, other, _) = create_with_key(&env, ORDER, "dan", "pay-key", &body(1)).await;
    assert_eq!(
        (status, other["error"]["code"].as_str()),
        (422, Some("IDEMPOTENCY_KEY_REUSED"))
    );
}
