//! create_order and get_order, the happy paths and their edges.

use std::collections::BTreeMap;
use std::sync::Arc;

use domain::StockSource;
use e2e::{create_order, get_order, FixedSupplier, TestEnv};
use serde_json::json;

pub async fn create_order_writes_order_payment_and_takes_stock(env: TestEnv) {
    // Given a product with stock 10 and alice's address
    let product = env.product("fridge", "2999.50", 10).await;
    env.address("alice-home", "alice").await;

    // When alice orders 3 with alipay and a 15-minute payment window
    let (status, body) = create_order(
        &env,
        Some("alice"),
        &json!({"product_id": "fridge", "address_id": "alice-home", "quantity": 3, "payment_method": "alipay", "ttl_minutes": 15}),
    )
    .await;

    // Then the order and payment come back, and the store holds exactly them
    assert_eq!(status, 201, "{body}");
    let order = &body["order"];
    let payment = &body["payment"];
    assert_eq!(order["status"], "pending");
    assert_eq!(order["user_id"], "alice");
    assert_eq!(order["quantity"], 3);
    assert_eq!(order["unit_price"], "2999.50");
    assert_eq!(order["total_amount"], "8998.50");
    assert_eq!(order["address"]["id"], "alice-home");
    assert_eq!(order["address"]["fields"]["city"], "青岛");
    assert_eq!(order["history"][0]["to"], "pending");
    assert_eq!(payment["order_id"], order["id"]);
    assert_eq!(payment["amount"], "8998.50");
    assert_eq!(payment["method"], "alipay");
    assert_eq!(payment["status"], "init");
    assert_eq!(payment["logs"][0]["event"], "created");
    let created = domain::Timestamp::parse(order["created_at"].as_str().unwrap()).unwrap();
    assert_eq!(payment["expires_at"], json!(created.plus_minutes(15)));
    assert_eq!(order["payment_deadline"], payment["expires_at"]);

    assert_eq!(env.stock(&product).await, 7);
    let (orders, payments) = env.records().await;
    assert_eq!(orders.len(), 1);
    assert_eq!(payments.len(), 1);
    assert_eq!(json!(orders[0]), *order);
    assert_eq!(json!(payments[0]), *payment);
}

/// Given bob with an address and one order for a washer: the create response.
async fn bobs_order(env: &TestEnv) -> serde_json::Value {
    env.product("washer", "100.00", 5).await;
    env.address("bob-home", "bob").await;
    let body = json!({"product_id": "washer", "address_id": "bob-home", "quantity": 1});
    let (status, created) = create_order(env, Some("bob"), &body).await;
    assert_eq!(status, 201, "{created}");
    created
}

pub async fn get_order_returns_the_order_with_its_payments(env: TestEnv) {
    let created = bobs_order(&env).await;
    let id = created["order"]["id"].as_str().unwrap();

    let (status, body) = get_order(&env, Some("bob"), id).await;

    assert_eq!(status, 200, "{body}");
    assert_eq!(body["order"], created["order"]);
    assert_eq!(body["payments"], json!([created["payment"]]));
}

pub async fn get_order_hides_other_users_orders_and_unknown_ids(env: TestEnv) {
    let created = bobs_order(&env).await;
    let id = created["order"]["id"].as_str().unwrap();

    for (user, order_id) in [
        (Some("mallory"), id),
        (Some("bob"), "ord_does_not_exist"),
        (Some("bob"), "bad#id"),
    ] {
        let (status, body) = get_order(&env, user, order_id).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (404, Some("ORDER_NOT_FOUND")),
            "{user:?} {order_id}"
        );
    }
    let (status, body) = get_order(&env, None, id).await;
    assert_eq!((status, body["error"]["code"].as_str()), (401, Some("UNAUTHENTICATED")));
}

pub async fn supplier_products_are_checked_with_the_supplier_not_local_stock(env: TestEnv) {
    let env = env.with_supplier(Arc::new(FixedSupplier(BTreeMap::from([(
        "haier-heater".to_owned(),
        5,
    )]))));
    // Local stock 0: irrelevant for a supplier-held product, and never decremented.
    let product = env
        .product_with("haier-heater", "1599.00", 0, StockSource::Supplier, true)
        .await;
    env.address("alice-home", "alice").await;

    let (status, body) = create_order(
        &env,
        Some("alice"),
        &json!({"product_id": "haier-heater", "address_id": "alice-home", "quantity": 3}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["order"]["stock_source"], "supplier");
    assert_eq!(env.stock(&product).await, 0);

    let before = env.snapshot().await;
    let (status, body) = create_order(
        &env,
        Some("alice"),
        &json!({"product_id": "haier-heater", "address_id": "alice-home", "quantity": 9}),
    )
    .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(
        body["error"]["details"],
        json!([{"product_id": "haier-heater", "requested": 9, "available": 5}])
    );
    assert_eq!(env.snapshot().await, before);
}

pub async fn supplier_down_is_503_and_writes_nothing(env: TestEnv) {
    env.product_with("haier-heater", "1599.00", 0, StockSource::Supplier, true)
        .await;
    env.address("alice-home", "alice").await;
    let before = env.snapshot().await;

    let req = e2e::request(
        "POST",
        "/api/orders/create_order/",
        Some("alice"),
        json!({"product_id": "haier-heater", "address_id": "alice-home", "quantity": 1})
            .to_string()
            .as_bytes(),
    );
    let resp = create_order::handle(&env.svc, req).await;
    assert_eq!(
        resp.headers().get("retry-after").map(|v| v.to_str().unwrap()),
        Some("5")
    );
    let (status, body) = e2e::read(resp);

    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (503, Some("SUPPLIER_UNAVAILABLE"))
    );
    assert!(
        !body.to_string().contains("configured"),
        "internal detail leaked: {body}"
    );
    assert_eq!(env.snapshot().await, before);
}
