//! Sharded stock (docs/api.md §19) on both stores: a hot product's stock split across shards, orders that
//! record the shards they took from, a `409` only when all shards together are short (with their sum),
//! stock returned to the shards it came from, and the operator's rebalance.

use std::collections::BTreeMap;
use std::sync::Arc;

use domain::catalog::Product;
use domain::stock::ShardTake;
use domain::{Money, OrderStatus, ProductId, ReportedStatus};
use e2e::{admin, cancel_order, create_batch, create_order, deliver, event, sweep, TestEnv};
use futures::future::join_all;
use serde_json::{json, Value};

/// Adds a locally stocked product with its stock split over `shards`.
pub async fn hot(env: &TestEnv, id: &str, stock: u32, shards: u16) -> ProductId {
    let product = Product {
        id: ProductId::parse(id).expect("product id"),
        name: format!("hot {id}"),
        price: Money::parse("1999.00").expect("price"),
        stock,
        stock_source: domain::StockSource::Local,
        active: true,
        reserved: 0,
        shards,
    };
    env.admin.upsert_product(&product).await.expect("upsert product");
    product.id
}

async fn figures(env: &TestEnv, product: &ProductId, shards: u16) -> Vec<u32> {
    env.svc
        .catalog
        .shard_stock(product, shards)
        .await
        .expect("shard figures")
}

/// The invariants of a sharded product after a run: per shard, its figure plus what the product's
/// non-cancelled orders took from it is what the shard started with (so none went negative and every
/// cancelled order's units are back where they came from); the product's stock is the shards' sum.
pub async fn shard_books_balance(env: &TestEnv, product: &ProductId, initial: &[u32]) {
    let shards = initial.len() as u16;
    let now = figures(env, product, shards).await;
    let (orders, _) = env.records().await;
    let mut held = vec![0u32; initial.len()];
    for order in orders.iter().filter(|o| &o.product_id == product) {
        assert!(
            !order.stock_shards.is_empty() || shards == 1,
            "{} records its shards",
            order.id
        );
        let taken: u32 = order.stock_takes().iter().map(|t| t.quantity).sum();
        assert_eq!(taken, order.quantity.get(), "{} took its quantity", order.id);
        if order.status != OrderStatus::Cancelled {
            for take in order.stock_takes() {
                held[usize::from(take.shard)] += take.quantity;
            }
        }
    }
    for k in 0..initial.len() {
        assert_eq!(
            now[k] + held[k],
            initial[k],
            "shard {k}: figure {} + held by orders {} = initial {}",
            now[k],
            held[k],
            initial[k]
        );
    }
    assert_eq!(env.stock(product).await, now.iter().sum::<u32>());
}

async fn buy(env: &TestEnv, product: &str, quantity: u32) -> (u16, Value) {
    let body = json!({"product_id": product, "address_id": "alice-home", "quantity": quantity});
    create_order(env, Some("alice"), &body).await
}

fn takes(created: &Value) -> Vec<ShardTake> {
    serde_json::from_value(created["order"]["stock_shards"].clone()).expect("stock_shards")
}

pub async fn a_sharded_product_sells_every_unit_and_answers_the_sum_once_short(env: TestEnv) {
    // Given 10 units over 4 shards: 3, 3, 2, 2
    let fridge = hot(&env, "fridge", 10, 4).await;
    env.address("alice-home", "alice").await;
    let initial = figures(&env, &fridge, 4).await;
    assert_eq!(initial, vec![3, 3, 2, 2]);
    assert_eq!(env.stock(&fridge).await, 10);

    // 4 units: more than any shard holds, so taken from several, and recorded
    let (status, first) = buy(&env, "fridge", 4).await;
    assert_eq!(status, 201, "{first}");
    let first_takes = takes(&first);
    assert!(first_takes.len() >= 2, "{first_takes:?}");
    assert_eq!(first_takes.iter().map(|t| t.quantity).sum::<u32>(), 4);
    shard_books_balance(&env, &fridge, &initial).await;

    // 5 of the 6 left: again spread; then 2 of the 1 left is a 409 with the sum, and changes nothing
    let (status, second) = buy(&env, "fridge", 5).await;
    assert_eq!(status, 201, "{second}");
    assert_eq!(env.stock(&fridge).await, 1);
    let before = env.snapshot().await;
    let (status, short) = buy(&env, "fridge", 2).await;
    assert_eq!(status, 409, "{short}");
    assert_eq!(short["error"]["code"], "INSUFFICIENT_STOCK");
    assert_eq!(
        short["error"]["details"],
        json!([{"product_id": "fridge", "requested": 2, "available": 1}])
    );
    assert_eq!(env.snapshot().await, before);

    // The last unit sells, then the product is sold out at 0
    assert_eq!(buy(&env, "fridge", 1).await.0, 201);
    let (status, out) = buy(&env, "fridge", 1).await;
    assert_eq!(status, 409);
    assert_eq!(
        out["error"]["details"],
        json!([{"product_id": "fridge", "requested": 1, "available": 0}])
    );
    assert_eq!(figures(&env, &fridge, 4).await, vec![0, 0, 0, 0]);
    shard_books_balance(&env, &fridge, &initial).await;

    // The order as read shows its shards; a batch line on a hot product takes from its shards too
    let (status, got) = e2e::get_order(&env, Some("alice"), first["order"]["id"].as_str().unwrap()).await;
    assert_eq!(status, 200);
    assert_eq!(got["order"]["stock_shards"], first["order"]["stock_shards"]);
    let oven = hot(&env, "oven", 6, 3).await;
    let plain = env.product("plain", "10.00", 5).await;
    let batch = json!({"address_id": "alice-home", "items": [
        {"product_id": "oven", "quantity": 3}, {"product_id": "plain", "quantity": 2}]});
    let (status, made) = create_batch(&env, Some("alice"), &batch).await;
    assert_eq!(status, 201, "{made}");
    assert_eq!(
        made["orders"][1]["stock_shards"],
        Value::Null,
        "an unsharded product records none"
    );
    assert_eq!(env.stock(&plain).await, 3);
    shard_books_balance(&env, &oven, &[2, 2, 2]).await;
    let batch = json!({"address_id": "alice-home", "items": [
        {"product_id": "oven", "quantity": 4}, {"product_id": "plain", "quantity": 1}]});
    let before = env.snapshot().await;
    let (status, short) = create_batch(&env, Some("alice"), &batch).await;
    assert_eq!(status, 409, "{short}");
    assert_eq!(
        short["error"]["details"],
        json!([{"product_id": "oven", "requested": 4, "available": 3}])
    );
    assert_eq!(env.snapshot().await, before, "a short batch writes nothing");
}

pub async fn cancelled_expired_and_refunded_orders_return_units_to_their_shards(env: TestEnv) {
    // Given 16 units over 8 shards and four orders of 3 (each more than one shard holds)
    let fridge = hot(&env, "fridge", 16, 8).await;
    env.address("alice-home", "alice").await;
    let initial = figures(&env, &fridge, 8).await;
    let mut orders = Vec::new();
    for ttl in [30, 30, 5, 30] {
        let body = json!({"product_id": "fridge", "address_id": "alice-home", "quantity": 3, "ttl_minutes": ttl});
        let (status, created) = create_order(&env, Some("alice"), &body).await;
        assert_eq!(status, 201, "{created}");
        orders.push(created);
    }
    assert_eq!(env.stock(&fridge).await, 4);
    let id = |created: &Value| created["order"]["id"].as_str().unwrap().to_owned();

    // The shopper cancels the first: its units go back to exactly its shards
    let before = figures(&env, &fridge, 8).await;
    let (status, body) = cancel_order(&env, Some("alice"), &id(&orders[0])).await;
    assert_eq!(status, 200, "{body}");
    let mut expected = before.clone();
    for take in takes(&orders[0]) {
        expected[usize::from(take.shard)] += take.quantity;
    }
    assert_eq!(figures(&env, &fridge, 8).await, expected);
    shard_books_balance(&env, &fridge, &initial).await;

    // The sweep expires the third (5 minutes to pay)
    env.clock.advance(6 * 60);
    let report = sweep(&env, std::time::Duration::from_secs(60)).await;
    assert_eq!(report.cancelled, 1, "{report:?}");
    for take in takes(&orders[2]) {
        expected[usize::from(take.shard)] += take.quantity;
    }
    assert_eq!(figures(&env, &fridge, 8).await, expected);

    // The fourth is paid, then cancelled by an operator (refunded): its units go back too
    let payment = orders[3]["payment"]["id"].as_str().unwrap();
    let amount = orders[3]["payment"]["amount"].as_str().unwrap();
    let success = event(payment, "evt-paid", ReportedStatus::Succeeded, amount);
    assert!(deliver(&env, &[("evt-paid", &success)]).await.is_empty());
    let route = "POST /api/admin/orders/{order_id}/cancel/";
    let order = id(&orders[3]);
    let (status, body) = admin(
        &env,
        Some("ops"),
        &["orders:admin"],
        route,
        &[("order_id", &order)],
        "",
        &json!({"reason": "缺货"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    for take in takes(&orders[3]) {
        expected[usize::from(take.shard)] += take.quantity;
    }
    assert_eq!(figures(&env, &fridge, 8).await, expected);
    shard_books_balance(&env, &fridge, &initial).await;
    assert_eq!(env.stock(&fridge).await, 13);
}

pub async fn concurrent_buyers_of_a_sharded_product_never_oversell(env: TestEnv) {
    // Given 60 units over 8 shards and 240 shoppers buying 1 or 2 at once
    const STOCK: u32 = 60;
    const BUYERS: usize = 240;
    let dynamodb = env.table_name().is_some();
    let fridge = hot(&env, "fridge", STOCK, 8).await;
    let initial = figures(&env, &fridge, 8).await;
    env.shoppers(BUYERS).await;
    let env = Arc::new(env);
    let in_flight = Arc::new(tokio::sync::Semaphore::new(if dynamodb { 16 } else { BUYERS }));
    let tasks = (0..BUYERS).map(|i| {
        let (env, in_flight) = (Arc::clone(&env), Arc::clone(&in_flight));
        tokio::spawn(async move {
            let _permit = in_flight.acquire().await.expect("semaphore");
            let quantity = 1 + (i % 2) as u32;
            let body = json!({"product_id": "fridge", "address_id": format!("addr-{i}"), "quantity": quantity});
            (quantity, create_order(&env, Some(&format!("user-{i}")), &body).await)
        })
    });
    let results: Vec<(u32, (u16, Value))> = join_all(tasks).await.into_iter().map(|r| r.expect("task")).collect();

    // Then every answer is 201 or 409; a 409 comes only when all shards together are short, and says so
    let sold: u32 = results.iter().filter(|(_, (s, _))| *s == 201).map(|(q, _)| *q).sum();
    let mut refusals = BTreeMap::new();
    for (quantity, (status, body)) in &results {
        match status {
            201 => {}
            409 => {
                let detail = &body["error"]["details"][0];
                assert_eq!(detail["requested"], *quantity);
                let available = detail["available"].as_u64().unwrap() as u32;
                assert!(available < *quantity, "{body}");
                *refusals.entry(available).or_insert(0) += 1;
            }
            _ => panic!("{status} {body}"),
        }
    }
    assert!(
        sold >= STOCK - 1,
        "sold {sold} of {STOCK}: a refusal came while units were left ({refusals:?})"
    );
    assert!(sold <= STOCK);
    shard_books_balance(&env, &fridge, &initial).await;
    assert_eq!(env.stock(&fridge).await, STOCK - sold);
}

pub async fn the_loader_splits_stock_and_an_operator_rebalances_it(env: TestEnv) {
    // Given a catalogue file marking a product hot
    let text = json!({"products": [
        {"id": "flash", "name": "秒杀冰箱", "price": "1999.00", "stock": 10, "shards": 4},
        {"id": "plain", "name": "普通冰箱", "price": "2999.00", "stock": 5}
    ]})
    .to_string();
    let file = infra::catalog_file::CatalogFile::parse(&text).expect("catalogue");
    file.load(env.svc.catalog.as_ref(), env.admin.as_ref(), &|_| {})
        .await
        .expect("load");
    let flash = ProductId::parse("flash").unwrap();
    let product = env.svc.catalog.product(&flash).await.unwrap().unwrap();
    assert_eq!((product.stock, product.shards), (10, 4));
    assert_eq!(figures(&env, &flash, 4).await, vec![3, 3, 2, 2]);
    let plain = env
        .svc
        .catalog
        .product(&ProductId::parse("plain").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((plain.stock, plain.shards), (5, 1));

    // Orders skew the shards; a rebalance spreads what is left evenly, keeping every unit
    env.address("alice-home", "alice").await;
    for _ in 0..3 {
        assert_eq!(buy(&env, "flash", 2).await.0, 201);
    }
    let skewed = figures(&env, &flash, 4).await;
    assert_eq!(skewed.iter().sum::<u32>(), 4);
    let done = env
        .admin
        .rebalance_stock(&flash)
        .await
        .expect("rebalance")
        .expect("known");
    assert_eq!(done.before, skewed);
    assert_eq!(done.after, vec![1, 1, 1, 1]);
    assert_eq!(figures(&env, &flash, 4).await, vec![1, 1, 1, 1]);
    assert_eq!(env.stock(&flash).await, 4);
    assert!(env
        .admin
        .rebalance_stock(&ProductId::parse("nope").unwrap())
        .await
        .unwrap()
        .is_none());

    // A reload with more shards splits the file's stock over them; fewer is refused, changing nothing
    let more = text
        .replace("\"shards\":4", "\"shards\":8")
        .replace("\"stock\":10", "\"stock\":16");
    assert_ne!(more, text);
    let file = infra::catalog_file::CatalogFile::parse(&more).expect("catalogue");
    file.load(env.svc.catalog.as_ref(), env.admin.as_ref(), &|_| {})
        .await
        .expect("load");
    assert_eq!(figures(&env, &flash, 8).await, vec![2; 8]);
    // A reader that still knows the old count (a warm cache's description) is given every shard
    assert_eq!(figures(&env, &flash, 4).await, vec![2; 8]);
    let before = env.snapshot().await;
    // A product before it in the file changes too: nothing of the file is written.
    let fewer = json!({"products": [
        {"id": "plain", "name": "普通冰箱", "price": "2999.00", "stock": 7},
        {"id": "flash", "name": "秒杀冰箱", "price": "1999.00", "stock": 16, "shards": 2}
    ]})
    .to_string();
    let file = infra::catalog_file::CatalogFile::parse(&fewer).expect("catalogue");
    let refused = file
        .load(env.svc.catalog.as_ref(), env.admin.as_ref(), &|_| {})
        .await
        .expect_err("shrinking is refused");
    assert!(refused.to_string().contains("shards cannot shrink"), "{refused}");
    assert_eq!(env.snapshot().await, before);

    // Out of range or on supplier stock is refused when the file is read
    for bad in [
        json!({"products": [{"id": "x", "name": "x", "price": "1.00", "shards": 0}]}),
        json!({"products": [{"id": "x", "name": "x", "price": "1.00", "shards": 33}]}),
        json!({"products": [{"id": "x", "name": "x", "price": "1.00", "shards": 2, "stock_source": "supplier"}]}),
    ] {
        let err = infra::catalog_file::CatalogFile::parse(&bad.to_string()).expect_err("refused");
        assert!(err.to_string().contains("shard"), "{err}");
    }
}
