//! create_batch_orders: all or nothing, merged lines, the transaction-derived cap.

use domain::usecases::request::MAX_BATCH_PRODUCTS;
use e2e::{create_batch, TestEnv};
use serde_json::json;

pub async fn one_short_product_writes_nothing_and_every_short_product_is_listed(env: TestEnv) {
    // Given a: 5, b: 1, c: 0 in stock
    env.product("a", "10.00", 5).await;
    env.product("b", "20.00", 1).await;
    env.product("c", "30.00", 0).await;
    env.address("alice-home", "alice").await;
    let before = env.snapshot().await;

    // When a batch asks for a: 2, b: 3, c: 1
    let (status, body) = create_batch(
        &env,
        Some("alice"),
        &json!({"items": [{"product_id": "a", "quantity": 2}, {"product_id": "b", "quantity": 3}, {"product_id": "c", "quantity": 1}],
                "address_id": "alice-home"}),
    )
    .await;

    // Then nothing is written and both short products are named with what is left
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "INSUFFICIENT_STOCK");
    assert_eq!(
        body["error"]["details"],
        json!([{"product_id": "b", "requested": 3, "available": 1}, {"product_id": "c", "requested": 1, "available": 0}])
    );
    assert_eq!(env.snapshot().await, before);
}

pub async fn duplicate_lines_are_merged(env: TestEnv) {
    let a = env.product("a", "10.00", 10).await;
    let b = env.product("b", "0.10", 10).await;
    env.address("alice-home", "alice").await;

    let (status, body) = create_batch(
        &env,
        Some("alice"),
        &json!({"items": [{"product_id": "b", "quantity": 1}, {"product_id": "a", "quantity": 2}, {"product_id": "b", "quantity": 2}],
                "address_id": "alice-home", "payment_method": "bank"}),
    )
    .await;

    assert_eq!(status, 201, "{body}");
    let lines: Vec<_> = body["orders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            (
                o["product_id"].clone(),
                o["quantity"].clone(),
                o["total_amount"].clone(),
            )
        })
        .collect();
    assert_eq!(
        lines,
        [
            (json!("b"), json!(3), json!("0.30")),
            (json!("a"), json!(2), json!("20.00"))
        ]
    );
    let payments = body["payments"].as_array().unwrap();
    assert_eq!(payments.len(), 2);
    for (order, payment) in body["orders"].as_array().unwrap().iter().zip(payments) {
        assert_eq!(payment["order_id"], order["id"]);
        assert_eq!(payment["amount"], order["total_amount"]);
        assert_eq!(payment["method"], "bank");
    }
    assert_eq!((env.stock(&a).await, env.stock(&b).await), (8, 7));
    let (orders, stored_payments) = env.records().await;
    assert_eq!((orders.len(), stored_payments.len()), (2, 2));
}

pub async fn the_largest_batch_fits_one_write_and_one_more_is_refused(env: TestEnv) {
    for i in 0..=MAX_BATCH_PRODUCTS {
        env.product(&format!("p{i}"), "1.00", 1).await;
    }
    env.address("alice-home", "alice").await;
    let items = |n: usize| {
        (0..n)
            .map(|i| json!({"product_id": format!("p{i}"), "quantity": 1}))
            .collect::<Vec<_>>()
    };

    let before = env.snapshot().await;
    let (status, body) = create_batch(
        &env,
        Some("alice"),
        &json!({"items": items(MAX_BATCH_PRODUCTS + 1), "address_id": "alice-home"}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "BATCH_TOO_LARGE");
    assert_eq!(body["error"]["details"]["max_distinct_products"], MAX_BATCH_PRODUCTS);
    assert_eq!(env.snapshot().await, before);

    let (status, body) = create_batch(
        &env,
        Some("alice"),
        &json!({"items": items(MAX_BATCH_PRODUCTS), "address_id": "alice-home"}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["orders"].as_array().unwrap().len(), MAX_BATCH_PRODUCTS);
    let (orders, payments) = env.records().await;
    assert_eq!((orders.len(), payments.len()), (MAX_BATCH_PRODUCTS, MAX_BATCH_PRODUCTS));
}
