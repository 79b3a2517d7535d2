//! Contention at scale on the embedded store, over real HTTP (docs/testing.md, "Contention"): the local
//! server with one product of 1,000 units and 5,000 shoppers, each with their own address, who all buy
//! one at once. Exactly 1,000 orders, 4,000 `409`s with the true figure, stock 0; the time to sell out is
//! printed for BENCHMARKS.md.

mod common;

use std::time::{Duration, Instant};

use serde_json::{json, Value};

const STOCK: u32 = 1_000;
const BUYERS: usize = 5_000;

/// The soft limit on this process's open files (`/proc/self/limits`), which bounds how many
/// connections the test may hold at once.
fn open_files_limit() -> usize {
    let limits = std::fs::read_to_string("/proc/self/limits").expect("/proc/self/limits");
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("a Max open files line");
    let soft = line.split_whitespace().nth(3).expect("a soft limit");
    soft.parse().unwrap_or(usize::MAX)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn five_thousand_buyers_of_a_thousand_units_over_http() {
    let dir = tempfile::tempdir().unwrap();
    let addresses: Vec<Value> = (0..BUYERS)
        .map(|i| json!({"id": format!("addr-{i}"), "user_id": format!("user-{i}"), "city": "青岛"}))
        .collect();
    let catalog = json!({
        "products": [{"id": "flash-fridge", "name": "秒杀冰箱", "price": "1999.00", "stock": STOCK}],
        "addresses": addresses,
    });
    let file = dir.path().join("catalog.json");
    std::fs::write(&file, catalog.to_string()).unwrap();
    let db = dir.path().join("shop.sqlite3");
    let (_server, base) = common::spawn(
        &["--db", db.to_str().unwrap(), "--catalog", file.to_str().unwrap()],
        dir.path(),
    );

    // Every buyer on their own connection, all at once, unless this process may not open that many
    // files (the server's limit is the same): then as many at once as it may, less a margin.
    let at_once = BUYERS.min(open_files_limit().saturating_sub(100) / 2).max(1);
    let gate = std::sync::Arc::new(tokio::sync::Semaphore::new(at_once));
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap();
    let started = Instant::now();
    let buyers = (0..BUYERS).map(|i| {
        let (http, base, gate) = (http.clone(), base.clone(), gate.clone());
        tokio::spawn(async move {
            let _permit = gate.acquire().await.unwrap();
            let body = json!({"product_id": "flash-fridge", "address_id": format!("addr-{i}"), "quantity": 1});
            let resp = http
                .post(format!("{base}/api/orders/create_order/"))
                .header("authorization", format!("Bearer user-{i}"))
                .header("content-type", "application/json")
                .body(body.to_string())
                .send()
                .await
                .expect("an answer");
            let status = resp.status().as_u16();
            let body: Value = resp.json().await.expect("a JSON body");
            (status, body, started.elapsed())
        })
    });
    let answers: Vec<(u16, Value, Duration)> = futures::future::join_all(buyers)
        .await
        .into_iter()
        .map(|r| r.expect("buyer"))
        .collect();
    let all_answered = started.elapsed();

    let created: Vec<&Value> = answers
        .iter()
        .filter(|(s, _, _)| *s == 201)
        .map(|(_, b, _)| b)
        .collect();
    let odd = answers.iter().find(|(s, _, _)| *s != 201 && *s != 409);
    assert_eq!(created.len(), STOCK as usize, "{odd:?}");
    for (status, body, _) in answers.iter().filter(|(s, _, _)| *s != 201) {
        assert_eq!(*status, 409, "{body}");
        assert_eq!(body["error"]["code"], "INSUFFICIENT_STOCK");
        assert_eq!(
            body["error"]["details"],
            json!([{"product_id": "flash-fridge", "requested": 1, "available": 0}])
        );
    }
    let sold_out = answers
        .iter()
        .filter(|(s, _, _)| *s == 201)
        .map(|(_, _, at)| *at)
        .max()
        .unwrap();

    // The store holds exactly the orders answered, each with its payment, and no stock.
    let (orders, payments, stock) = e2e::sqlite_records(&db);
    assert_eq!(stock.get("flash-fridge"), Some(&0));
    let answered: std::collections::BTreeSet<&str> =
        created.iter().map(|b| b["order"]["id"].as_str().unwrap()).collect();
    let stored: std::collections::BTreeSet<&str> = orders.iter().map(|o| o.id.as_str()).collect();
    assert_eq!(answered, stored);
    assert_eq!(payments.len(), orders.len());
    assert!(payments.iter().all(|p| stored.contains(p.order_id.as_str())));
    println!(
        "local server (SQLite): {BUYERS} buyers ({at_once} connections at once) of {STOCK} units: sold out after {:.2} s, all answered after {:.2} s",
        sold_out.as_secs_f64(),
        all_answered.as_secs_f64()
    );
}
