//! The supplier's stock API over real HTTP (a fake on loopback): timeouts, one retry, the circuit
//! breaker, and what an order for a supplier-held product answers in each case.

use std::sync::Arc;
use std::time::{Duration, Instant};

use domain::ports::SupplierStock;
use domain::{ProductId, StockSource};
use e2e::{create_batch, create_order, sqlite, TestEnv};
use infra::supplier::{HttpSupplier, SupplierConfig};
use serde_json::json;
use testkit::fake_supplier::FakeSupplier;

async fn setup(config: impl FnOnce(&mut SupplierConfig)) -> (TestEnv, FakeSupplier, Arc<HttpSupplier>) {
    let fake = FakeSupplier::start([("haier-heater".to_owned(), 7)], Some("supplier-key".into()))
        .await
        .unwrap();
    let mut settings = SupplierConfig::new(&fake.base_url);
    settings.api_key = Some("supplier-key".into());
    config(&mut settings);
    let client = Arc::new(HttpSupplier::new(settings).unwrap());
    let env = sqlite().await.with_supplier(client.clone());
    env.product_with("haier-heater", "1999.00", 0, StockSource::Supplier, true)
        .await;
    env.product("fridge", "10.00", 5).await;
    env.address("ivy-home", "ivy").await;
    (env, fake, client)
}

fn heater(quantity: u32) -> serde_json::Value {
    json!({"product_id": "haier-heater", "address_id": "ivy-home", "quantity": quantity})
}

#[tokio::test]
async fn enough_is_ordered_without_touching_local_stock_and_short_is_409_with_the_supplier_figure() {
    let (env, _fake, _) = setup(|_| {}).await;
    let (status, created) = create_order(&env, Some("ivy"), &heater(7)).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["order"]["stock_source"], "supplier");
    assert_eq!(env.stock(&ProductId::parse("haier-heater").unwrap()).await, 0);

    let before = env.snapshot().await;
    let (status, refused) = create_order(&env, Some("ivy"), &heater(8)).await;
    assert_eq!(status, 409, "{refused}");
    assert_eq!(
        refused["error"]["details"],
        json!([{"product_id": "haier-heater", "requested": 8, "available": 7}])
    );
    assert_eq!(env.snapshot().await, before);
}

#[tokio::test]
async fn a_slow_supplier_is_503_after_one_timed_out_retry() {
    let (env, fake, _) = setup(|_| {}).await;
    fake.set_delay(Duration::from_secs(3));
    let before = env.snapshot().await;
    let started = Instant::now();
    let resp = create_order::handle(
        &env.svc,
        e2e::request(
            "POST",
            "/api/orders/create_order/",
            Some("ivy"),
            heater(1).to_string().as_bytes(),
        ),
    )
    .await;
    let elapsed = started.elapsed();
    assert_eq!(
        resp.headers().get("retry-after").and_then(|v| v.to_str().ok()),
        Some("5")
    );
    let (status, body) = e2e::read(resp);
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (503, Some("SUPPLIER_UNAVAILABLE"))
    );
    // Two tries of at most 2 s each (plus a jitter of at most 120 ms), never the supplier's 3 s.
    assert!(
        elapsed >= Duration::from_millis(3900) && elapsed < Duration::from_millis(5000),
        "{elapsed:?}"
    );
    assert_eq!(fake.requests(), 2);
    assert_eq!(env.snapshot().await, before);
}

#[tokio::test]
async fn five_failures_open_the_breaker_which_fails_fast_then_closes_after_a_success() {
    let (_env, fake, client) = setup(|c| c.cool_down = Duration::from_millis(300)).await;
    let heater = ProductId::parse("haier-heater").unwrap();
    fake.set_failing(Some(500));
    for _ in 0..5 {
        assert!(client.available(&heater).await.is_err());
    }
    assert_eq!(fake.requests(), 10, "each failed call tried twice");

    // Open: fails at once, without a request
    let started = Instant::now();
    assert!(client.available(&heater).await.is_err());
    assert!(started.elapsed() < Duration::from_millis(50));
    assert_eq!(fake.requests(), 10);

    // After the cool-down one trial goes through; its success closes the breaker
    fake.set_failing(None);
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert_eq!(client.available(&heater).await.unwrap(), 7);
    assert_eq!(client.available(&heater).await.unwrap(), 7);
    assert_eq!(fake.requests(), 12);

    // A failing trial opens it again at once
    fake.set_failing(Some(503));
    for _ in 0..4 {
        let _ = client.available(&heater).await;
    }
    let requests = fake.requests();
    let _ = client.available(&heater).await;
    assert_eq!(fake.requests(), requests + 2, "the fifth failure still tries");
    let _ = client.available(&heater).await;
    assert_eq!(fake.requests(), requests + 2, "then the breaker is open");

    // After the cool-down one trial goes through (tried twice, as any call); its failure reopens the
    // breaker at once, for a whole new cool-down, without waiting for five failures
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert!(client.available(&heater).await.is_err(), "the trial fails");
    assert_eq!(fake.requests(), requests + 4, "the trial reached the supplier");
    let started = Instant::now();
    assert!(client.available(&heater).await.is_err());
    assert!(started.elapsed() < Duration::from_millis(50), "failed fast");
    assert_eq!(fake.requests(), requests + 4, "reopened: no request");
    fake.set_failing(None);
    assert!(
        client.available(&heater).await.is_err(),
        "still within the new cool-down"
    );
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert_eq!(
        client.available(&heater).await.unwrap(),
        7,
        "the next trial succeeds and closes it"
    );
}

#[tokio::test]
async fn a_batch_mixing_local_and_supplier_products_writes_nothing_when_the_supplier_is_down() {
    let (env, fake, _) = setup(|_| {}).await;
    fake.set_failing(Some(502));
    let before = env.snapshot().await;
    let batch = json!({"items": [{"product_id": "fridge", "quantity": 1}, {"product_id": "haier-heater", "quantity": 1}],
                       "address_id": "ivy-home"});
    let (status, body) = create_batch(&env, Some("ivy"), &batch).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (503, Some("SUPPLIER_UNAVAILABLE")),
        "{body}"
    );
    assert_eq!(env.snapshot().await, before);
    assert_eq!(env.stock(&ProductId::parse("fridge").unwrap()).await, 5);
}
