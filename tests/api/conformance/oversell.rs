//! No oversell under real concurrency: many requests at once, through the handlers, on a multi-threaded runtime.

use std::collections::BTreeMap;
use std::sync::Arc;

use domain::StockSource;
use e2e::{create_batch, create_order, FixedSupplier, TestEnv};
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

/// `buyers` shoppers with addresses `addr-<i>` buy `quantity` of `product` at once: the statuses and bodies.
async fn buy_at_once(env: &Arc<TestEnv>, product: &str, buyers: usize, quantity: u32) -> Vec<(u16, serde_json::Value)> {
    let tasks = (0..buyers).map(|i| {
        let env = Arc::clone(env);
        let product = product.to_owned();
        tokio::spawn(async move {
            let body = json!({"product_id": product, "address_id": format!("addr-{i}"), "quantity": quantity});
            create_order(&env, Some(&format!("user-{i}")), &body).await
        })
    });
    join_all(tasks).await.into_iter().map(|r| r.expect("task")).collect()
}

pub async fn concurrent_buyers_never_take_more_than_the_supplier_has(env: TestEnv) {
    // Given two supplier-held products the supplier has 5 and 18 of, and 200 shoppers
    let supplier = BTreeMap::from([("haier-heater".to_owned(), 5), ("haier-fridge".to_owned(), 18)]);
    let env = env.with_supplier(Arc::new(FixedSupplier(supplier)));
    let heater = env
        .product_with("haier-heater", "1599.00", 0, StockSource::Supplier, true)
        .await;
    let fridge = env
        .product_with("haier-fridge", "4999.00", 0, StockSource::Supplier, true)
        .await;
    for i in 0..200 {
        env.address(&format!("addr-{i}"), &format!("user-{i}")).await;
    }
    let env = Arc::new(env);

    // When 100 shoppers buy 5 heaters each at once
    let results = buy_at_once(&env, "haier-heater", 100, 5).await;

    // Then one order takes all 5; the other 99 are told nothing is left; the ledger holds 5
    assert_eq!(
        results.iter().filter(|(s, _)| *s == 201).count(),
        1,
        "{:?}",
        results.iter().find(|(s, _)| *s != 409)
    );
    for (status, body) in results.iter().filter(|(s, _)| *s != 201) {
        assert_eq!(*status, 409, "{body}");
        assert_eq!(
            body["error"]["details"],
            json!([{"product_id": "haier-heater", "requested": 5, "available": 0}])
        );
    }
    assert_eq!(env.reserved(&heater).await, 5);
    assert_eq!(
        env.stock(&heater).await,
        0,
        "a supplier-held product's local figure is never touched"
    );

    // When 200 shoppers buy one fridge each at once
    let results = buy_at_once(&env, "haier-fridge", 200, 1).await;

    // Then exactly 18 are sold, and the books balance against the supplier's figure
    assert_eq!(results.iter().filter(|(s, _)| *s == 201).count(), 18);
    assert_eq!(results.iter().filter(|(s, _)| *s == 409).count(), 182);
    assert_eq!(env.reserved(&fridge).await, 18);
    // and reloading the catalogue keeps the ledger
    env.product_with("haier-fridge", "4999.00", 0, StockSource::Supplier, true)
        .await;
    assert_eq!(env.reserved(&fridge).await, 18);
    let (orders, payments) = env.records().await;
    for (product, figure) in [(&heater, 5), (&fridge, 18)] {
        let sold: u32 = orders
            .iter()
            .filter(|o| &o.product_id == product)
            .map(|o| o.quantity.get())
            .sum();
        assert_eq!(sold, figure, "{product}");
        assert!(orders
            .iter()
            .filter(|o| &o.product_id == product)
            .all(|o| o.holds_reservation));
    }
    assert_eq!(payments.len(), orders.len());

    // When the heater's order is cancelled, its units go back to the supplier's figure, once
    let order = results_order(&orders, &heater);
    for _ in 0..2 {
        let (status, body) = e2e::cancel_order(&env, Some(&order.user_id.to_string()), order.id.as_str()).await;
        assert_eq!(status, 200, "{body}");
    }
    assert_eq!(env.reserved(&heater).await, 0);

    // Then the next buyer of 5 gets them, and the one after is refused
    let results = buy_at_once(&env, "haier-heater", 2, 5).await;
    assert_eq!(results.iter().filter(|(s, _)| *s == 201).count(), 1, "{results:?}");
    assert_eq!(env.reserved(&heater).await, 5);
}

fn results_order<'a>(orders: &'a [domain::Order], product: &domain::ProductId) -> &'a domain::Order {
    orders
        .iter()
        .find(|o| &o.product_id == product)
        .expect("an order of the product")
}

/// Contention at scale (docs/testing.md, "Contention"): one product with 1,000 units and 5,000 shoppers,
/// each with their own address, buying one each through the real handler at once (on DynamoDB at most
/// 16 requests in flight: moto serves one request at a time, so more would only queue there, ahead of
/// every other test's requests sharing the emulator). Exactly 1,000
/// orders, 4,000 `409`s with the true figure (0), stock 0, each order with its one payment; the time to
/// sell out is printed for BENCHMARKS.md.
pub async fn five_thousand_buyers_of_a_thousand_units_sell_exactly_the_stock(env: TestEnv) {
    const STOCK: u32 = 1_000;
    const BUYERS: usize = 5_000;
    let store = if env.table_name().is_some() {
        "dynamodb"
    } else {
        "sqlite"
    };
    let product = env.product("flash-fridge", "1999.00", STOCK).await;
    env.shoppers(BUYERS).await;
    let env = Arc::new(env);
    let in_flight = Arc::new(tokio::sync::Semaphore::new(if store == "dynamodb" {
        16
    } else {
        BUYERS
    }));

    // When all 5,000 buy one at once
    let started = std::time::Instant::now();
    let tasks = (0..BUYERS).map(|i| {
        let (env, in_flight) = (Arc::clone(&env), Arc::clone(&in_flight));
        tokio::spawn(async move {
            let _permit = in_flight.acquire().await.expect("semaphore");
            let body = json!({"product_id": "flash-fridge", "address_id": format!("addr-{i}"), "quantity": 1});
            let answer = create_order(&env, Some(&format!("user-{i}")), &body).await;
            (answer, started.elapsed())
        })
    });
    let results: Vec<((u16, serde_json::Value), std::time::Duration)> =
        join_all(tasks).await.into_iter().map(|r| r.expect("task")).collect();
    let all_answered = started.elapsed();

    // Then exactly the stock is sold, everyone else is told 0 are left, and the books balance
    let sold_out = results
        .iter()
        .filter(|((s, _), _)| *s == 201)
        .map(|(_, at)| *at)
        .max()
        .unwrap_or_default();
    let created = results.iter().filter(|((s, _), _)| *s == 201).count();
    let odd = results.iter().find(|((s, _), _)| *s != 201 && *s != 409);
    assert_eq!(created, STOCK as usize, "{odd:?}");
    for ((status, body), _) in results.iter().filter(|((s, _), _)| *s != 201) {
        assert_eq!(*status, 409, "{body}");
        assert_eq!(
            body["error"]["details"],
            json!([{"product_id": "flash-fridge", "requested": 1, "available": 0}])
        );
    }
    assert_eq!(env.stock(&product).await, 0);
    let (orders, payments) = env.records().await;
    assert_eq!(orders.len(), STOCK as usize);
    let paying: std::collections::BTreeSet<_> = payments.iter().map(|p| p.order_id.clone()).collect();
    assert_eq!(payments.len(), orders.len());
    assert!(
        orders.iter().all(|o| paying.contains(&o.id)),
        "every order has its payment"
    );
    println!(
        "{store}: {BUYERS} buyers of {STOCK} units: sold out after {:.2} s, all answered after {:.2} s",
        sold_out.as_secs_f64(),
        all_answered.as_secs_f64()
    );
}
