//! The warm-function cache never makes a write wrong: a stale entry fails the write's conditions, is
//! forgotten, and the request is decided on fresh data.

use domain::StockSource;
use e2e::{create_order, TestEnv};
use serde_json::json;

async fn warm(env: &TestEnv) -> serde_json::Value {
    env.product("heater", "500.00", 10).await;
    env.address("gus-home", "gus").await;
    let body = json!({"product_id": "heater", "address_id": "gus-home", "quantity": 1});
    let (status, created) = create_order(env, Some("gus"), &body).await;
    assert_eq!(status, 201, "{created}");
    body
}

pub async fn a_price_changed_behind_a_warm_cache_is_charged_at_the_new_price(env: TestEnv) {
    let env = env.with_cache();
    let body = warm(&env).await;
    env.product("heater", "450.00", 9).await;
    let (status, created) = create_order(&env, Some("gus"), &body).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["order"]["unit_price"], "450.00");
    assert_eq!(created["payment"]["amount"], "450.00");
    let (orders, _) = env.records().await;
    assert!(orders.iter().any(|o| o.unit_price.to_string() == "450.00"));
    assert!(!orders
        .iter()
        .any(|o| o.unit_price.to_string() == "500.00" && o.id.as_str() == created["order"]["id"]));
}

pub async fn a_product_withdrawn_behind_a_warm_cache_is_not_found(env: TestEnv) {
    let env = env.with_cache();
    let body = warm(&env).await;
    env.product_with("heater", "500.00", 9, StockSource::Local, false).await;
    let before = env.snapshot().await;
    let (status, refused) = create_order(&env, Some("gus"), &body).await;
    assert_eq!(
        (status, refused["error"]["code"].as_str()),
        (400, Some("PRODUCT_NOT_FOUND")),
        "{refused}"
    );
    assert_eq!(env.snapshot().await, before);
}

pub async fn an_address_reassigned_behind_a_warm_cache_is_invalid(env: TestEnv) {
    let env = env.with_cache();
    let body = warm(&env).await;
    env.address("gus-home", "hal").await;
    let before = env.snapshot().await;
    let (status, refused) = create_order(&env, Some("gus"), &body).await;
    assert_eq!(
        (status, refused["error"]["code"].as_str()),
        (400, Some("ADDRESS_INVALID")),
        "{refused}"
    );
    assert_eq!(env.snapshot().await, before);
}
