//! Round trips to DynamoDB, counted by an SDK interceptor on moto: one request for a create when the
//! warm function's cache holds its products and address, two when cold.

use e2e::{create_batch, create_order, dynamodb_counted, get_order};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creates_cost_one_request_warm_and_two_cold() {
    let Some((env, counter)) = dynamodb_counted().await else {
        return;
    };
    let products: Vec<String> = (0..10).map(|i| format!("r{i}")).collect();
    for p in &products {
        env.product(p, "10.00", 100).await;
    }
    env.address("fay-home", "fay").await;
    let one = json!({"product_id": "r0", "address_id": "fay-home", "quantity": 1});
    let items: Vec<_> = products
        .iter()
        .map(|p| json!({"product_id": p, "quantity": 1}))
        .collect();
    let batch = json!({"items": items, "address_id": "fay-home"});

    let ((status, created), cold_order) = counter.during(create_order(&env, Some("fay"), &one)).await;
    assert_eq!(status, 201, "{created}");
    let ((status, _), warm_order) = counter.during(create_order(&env, Some("fay"), &one)).await;
    assert_eq!(status, 201);
    // r1..r9 are not cached yet: the batch reads them (and the rest) in one request, then writes.
    let ((status, body), cold_batch) = counter.during(create_batch(&env, Some("fay"), &batch)).await;
    assert_eq!(status, 201, "{body}");
    let ((status, _), warm_batch) = counter.during(create_batch(&env, Some("fay"), &batch)).await;
    assert_eq!(status, 201);
    let order_id = created["order"]["id"].as_str().unwrap();
    let ((status, _), read) = counter.during(get_order(&env, Some("fay"), order_id)).await;
    assert_eq!(status, 200);

    eprintln!(
        "DynamoDB requests: create_order cold {cold_order}, warm {warm_order}; batch of 10 cold {cold_batch}, warm {warm_batch}; get_order {read}"
    );
    // Cold: one BatchGetItem for the products and the address, then the one TransactWriteItems.
    assert_eq!(cold_order, 2, "cold create_order");
    assert_eq!(warm_order, 1, "warm create_order");
    assert_eq!(cold_batch, 2, "cold batch of 10");
    assert_eq!(warm_batch, 1, "warm batch of 10");
    assert_eq!(read, 1, "get_order");

    // Past the product's 30 minutes (but within the address's hour), the next create reads again.
    env.clock.advance(30 * 60 + 1);
    let ((status, _), expired) = counter.during(create_order(&env, Some("fay"), &one)).await;
    assert_eq!((status, expired), (201, 2));
}
