//! No oversell under real concurrency: many requests at once, through the handlers, on a multi-threaded runtime.

use std::sync::Arc;

use e2e::{create_batch, create_order, TestEnv};
use futures::future::join_all;
use serde_json::json;

pub async fn two_hundred_concurrent_buyers_never_oversell(env: TestEnv) {
    // Given 50 units and 200 shoppers, each with their own address
    const STOCK: u32 = 50;
    const BUYERS: usize = 200;
    let product = env.product("hot-item", "99.00", STOCK).await;
    for i in 0..BUYERS {
        env.address(&format!("addr-{i}"), &format!("user-{i}")).await;
    }
    let env = Arc::new(env);

    // When all 200 buy one at the same time
    let tasks = (0..BUYERS).map(|i| {
        let env = Arc::clone(&env);
        tokio::spawn(async move {
            let user = format!("user-{i}");
            create_order(
                &env,
                Some(&user),
                &json!({"product_id": "hot-item", "address_id": format!("addr-{i}"), "quantity": 1}),
            )
            .await
        })
    });
    let results: Vec<(u16, serde_json::Value)> = join_all(tasks).await.into_iter().map(|r| r.expect("task")).collect();

    // Then exactly 50 succeed, the rest are told what is available, and the books balance
    let created = results.iter().filter(|(s, _)| *s == 201).count();
    let refused: Vec<_> = results.iter().filter(|(s, _)| *s == 409).collect();
    assert_eq!(
        created,
        STOCK as usize,
        "{:?}",
        results.iter().find(|(s, _)| *s != 201 && *s != 409)
    );
    assert_eq!(refused.len(), BUYERS - STOCK as usize);
    for (_, body) in &refused {
        assert_eq!(body["error"]["code"], "INSUFFICIENT_STOCK");
        assert_eq!(
            body["error"]["details"],
            json!([{"product_id": "hot-item", "requested": 1, "available": 0}])
        );
    }
    assert_eq!(env.stock(&product).await, 0);
    let (orders, payments) = env.records().await;
    let ordered: u32 = orders.iter().map(|o| o.quantity.get()).sum();
    assert_eq!(env.stock(&product).await + ordered, STOCK);
    assert_eq!(orders.len(), STOCK as usize);
    assert_eq!(payments.len(), orders.len());
    for order in &orders {
        assert_eq!(
            payments.iter().filter(|p| p.order_id == order.id).count(),
            1,
            "order {} has one payment",
            order.id
        );
    }
}

pub async fn concurrent_batches_over_shared_products_never_oversell(env: TestEnv) {
    // Given three products and 40 shoppers each buying a mix of them at once
    let stocks = [("a", 30u32), ("b", 20), ("c", 25)];
    for (id, stock) in stocks {
        env.product(id, "10.00", stock).await;
    }
    for i in 0..40 {
        env.address(&format!("addr-{i}"), &format!("user-{i}")).await;
    }
    let env = Arc::new(env);
    let tasks = (0..40).map(|i| {
        let env = Arc::clone(&env);
        tokio::spawn(async move {
            let body = json!({
                "items": [
                    {"product_id": "a", "quantity": 1 + i % 2},
                    {"product_id": "b", "quantity": 1},
                    {"product_id": "c", "quantity": 1 + i % 3},
                ],
                "address_id": format!("addr-{i}"),
            });
            create_batch(&env, Some(&format!("user-{i}")), &body).await
        })
    });
    let results: Vec<(u16, serde_json::Value)> = join_all(tasks).await.into_iter().map(|r| r.expect("task")).collect();

    // Then every batch either wrote all three orders or nothing, and stock + ordered = initial for each
    assert!(results.iter().all(|(s, _)| *s == 201 || *s == 409), "{results:?}");
    let created = results.iter().filter(|(s, _)| *s == 201).count();
    let (orders, payments) = env.records().await;
    assert_eq!(orders.len(), created * 3);
    assert_eq!(payments.len(), orders.len());
    for (id, initial) in stocks {
        let pid = domain::ProductId::parse(id).unwrap();
        let ordered: u32 = orders
            .iter()
            .filter(|o| o.product_id == pid)
            .map(|o| o.quantity.get())
            .sum();
        assert_eq!(env.stock(&pid).await + ordered, initial, "product {id}");
    }
    assert!(
        created > 0 && created < 40,
        "contention should both succeed and refuse: {created}"
    );
}
