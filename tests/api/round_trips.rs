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

/// What one refund run costs, counted on moto with the fake WeChat Pay: one query of the work index's
/// refund partition per page, then per refund one read of its order and one conditional write (and one
/// provider request), then one query of the attention partition for the oldest item's age.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refund_run_costs_two_store_requests_and_one_provider_request_per_refund() {
    let Some((env, counter)) = dynamodb_counted().await else {
        return;
    };
    let (env, fakes) = crate::conformance::closing::with_providers(env).await;
    for _ in 0..3 {
        let (_, _, lost) = crate::conformance::refunds::paid_after_cancel(&env, &fakes, "wechat", "native").await;
        assert!(e2e::deliver(&env, &[("late", &lost)]).await.is_empty());
    }
    let wechat_requests = fakes.wechat.controls().requests();
    let (report, store) = counter.during(e2e::refund_run(&env.svc)).await;
    let provider = fakes.wechat.controls().requests() - wechat_requests;
    eprintln!(
        "refund run of {} refunds: {store} DynamoDB requests, {provider} WeChat Pay requests; {report:?}",
        report.refunded
    );
    assert_eq!((report.found, report.refunded), (3, 3), "{report:?}");
    assert_eq!(
        store,
        1 + 3 * 2 + 1,
        "index page, per refund a read and a write, attention age"
    );
    assert_eq!((provider, report.provider_requests), (3, 3));
    let (idle, store) = counter.during(e2e::refund_run(&env.svc)).await;
    assert_eq!((idle.found, store), (0, 2), "an idle run: the two index queries");
}
