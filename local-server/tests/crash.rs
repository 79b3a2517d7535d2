//! The embedded store survives a crash (docs/testing.md, "Faults"): the local server killed with SIGKILL
//! in the middle of 200 concurrent creates and payment callbacks, then started again on the same
//! database file. Every order it acknowledged is there with its payment, every callback it acknowledged
//! is applied (the in-process queue keeps what it acknowledged in a journal, as SQS keeps messages),
//! stock is conserved, nothing is half-written (an order paid exactly when its payment succeeded, once;
//! no payment without its order), and the restarted server answers from the same file.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use domain::{OrderStatus, PaymentStatus};
use serde_json::{json, Value};

const STOCK: u64 = 300;
const SECRET: &str = "crash-secret";

fn server(dir: &std::path::Path, args: &[&str]) -> (std::process::Child, String) {
    let mut command = common::command();
    command
        .env("LOCAL_DATA_DIR", dir)
        .env("PAYMENT_CALLBACK_SECRETS", SECRET)
        .args(args);
    let (child, base, lines) = common::launch(command);
    std::thread::spawn(move || for _ in lines.map_while(Result::ok) {});
    (child, base)
}

async fn create(http: &reqwest::Client, base: &str, i: usize) -> Result<(u16, Value), reqwest::Error> {
    let body = json!({"product_id": "crash-fridge", "address_id": format!("addr-{i}"), "quantity": 1 + i % 2});
    let resp = http
        .post(format!("{base}/api/orders/create_order/"))
        .header("authorization", format!("Bearer user-{i}"))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await?;
    let status = resp.status().as_u16();
    Ok((status, resp.json().await?))
}

async fn pay(http: &reqwest::Client, base: &str, payment: &str, amount: &str) -> Result<u16, reqwest::Error> {
    let body = json!({"event_id": format!("evt-{payment}"), "payment_id": payment, "provider_txn_id": format!("txn-{payment}"),
                      "status": "succeeded", "amount": amount, "occurred_at": "2026-12-02T07:00:00Z"})
    .to_string();
    let t = domain::Timestamp::now().unix_seconds();
    let resp = http
        .post(format!("{base}/api/payments/callback/"))
        .header(
            "x-payment-signature",
            testkit::generic::header(SECRET.as_bytes(), t, body.as_bytes()),
        )
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await?;
    Ok(resp.status().as_u16())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_server_killed_in_the_middle_of_creates_and_callbacks_loses_no_acknowledged_order() {
    let dir = tempfile::tempdir().unwrap();
    let addresses: Vec<Value> = (0..200)
        .map(|i| json!({"id": format!("addr-{i}"), "user_id": format!("user-{i}")}))
        .collect();
    let catalog = json!({
        "products": [{"id": "crash-fridge", "name": "冰箱", "price": "100.00", "stock": STOCK}],
        "addresses": addresses,
    });
    let file = dir.path().join("catalog.json");
    std::fs::write(&file, catalog.to_string()).unwrap();
    let db = dir.path().join("shop.sqlite3");
    let (mut child, base) = server(
        dir.path(),
        &["--db", db.to_str().unwrap(), "--catalog", file.to_str().unwrap()],
    );
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();

    // Given 50 orders with their payments
    let mut payments = Vec::new();
    let mut acknowledged = BTreeSet::new();
    for i in 0..50 {
        let (status, body) = create(&http, &base, i).await.expect("an answer");
        assert_eq!(status, 201, "{body}");
        acknowledged.insert(body["order"]["id"].as_str().unwrap().to_owned());
        payments.push((
            body["payment"]["id"].as_str().unwrap().to_owned(),
            body["payment"]["amount"].as_str().unwrap().to_owned(),
        ));
    }

    // When 150 more shoppers buy and the 50 payments' successes are posted, all at once, and the server
    // is killed with SIGKILL while they are under way
    let mut tasks = tokio::task::JoinSet::new();
    for i in 50..200 {
        let (http, base) = (http.clone(), base.clone());
        tasks.spawn(async move { (format!("create-{i}"), create(&http, &base, i).await.ok()) });
    }
    for (payment, amount) in payments.clone() {
        let (http, base) = (http.clone(), base.clone());
        tasks.spawn(async move {
            let status = pay(&http, &base, &payment, &amount).await.ok();
            (format!("pay-{payment}"), status.map(|s| (s, Value::Null)))
        });
    }
    let mut answered = Vec::new();
    let killed_after = loop {
        let Some(done) = tasks.join_next().await else {
            break answered.len();
        };
        answered.push(done.expect("task"));
        if answered.len() == 60 {
            child.kill().expect("SIGKILL");
            child.wait().expect("killed");
            break answered.len();
        }
    };
    while let Some(done) = tasks.join_next().await {
        answered.push(done.expect("task"));
    }
    acknowledged.extend(
        answered
            .iter()
            .filter_map(|(_, got)| got.as_ref())
            .filter(|(status, _)| *status == 201)
            .map(|(_, body)| body["order"]["id"].as_str().unwrap().to_owned()),
    );
    let paid_acknowledged: BTreeSet<String> = answered
        .iter()
        .filter(|(_, got)| got.as_ref().is_some_and(|(s, _)| *s == 200))
        .filter_map(|(name, _)| name.strip_prefix("pay-").map(str::to_owned))
        .collect();
    let callbacks_acknowledged = paid_acknowledged.len();
    let unanswered = answered.iter().filter(|(_, got)| got.is_none()).count();
    assert!(
        unanswered > 0,
        "the server was killed before every request was answered"
    );

    // Then, started again on the same file: every acknowledged order with its payment, stock conserved,
    // nothing half-written
    let (mut child, base) = server(dir.path(), &["--db", db.to_str().unwrap(), "--no-demo"]);
    // The callbacks it acknowledged were kept in the queue's journal: the new process delivers them.
    let succeeded = |payments: &[domain::Payment]| {
        payments
            .iter()
            .filter(|p| p.status == PaymentStatus::Succeeded)
            .map(|p| p.id.as_str().to_owned())
            .collect::<BTreeSet<String>>()
    };
    for _ in 0..100 {
        if paid_acknowledged.is_subset(&succeeded(&e2e::sqlite_records(&db).1)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (orders, payments_held, stock) = e2e::sqlite_records(&db);
    assert!(
        paid_acknowledged.is_subset(&succeeded(&payments_held)),
        "acknowledged callbacks never applied: {:?}",
        paid_acknowledged
            .difference(&succeeded(&payments_held))
            .collect::<Vec<_>>()
    );
    let stored: BTreeSet<String> = orders.iter().map(|o| o.id.as_str().to_owned()).collect();
    assert!(
        acknowledged.is_subset(&stored),
        "acknowledged orders missing: {:?}",
        acknowledged.difference(&stored).collect::<Vec<_>>()
    );
    let ordered: u64 = orders
        .iter()
        .filter(|o| o.status != OrderStatus::Cancelled)
        .map(|o| u64::from(o.quantity.get()))
        .sum();
    assert_eq!(stock["crash-fridge"] + ordered, STOCK, "stock conserved");
    for order in &orders {
        let own: Vec<_> = payments_held.iter().filter(|p| p.order_id == order.id).collect();
        assert_eq!(own.len(), 1, "order {} has its one payment", order.id);
        let paid = order.status == OrderStatus::Paid;
        assert_eq!(
            paid,
            own[0].status == PaymentStatus::Succeeded,
            "order {} half-paid",
            order.id
        );
        assert_eq!(
            order.history.iter().filter(|h| h.to == OrderStatus::Paid).count(),
            usize::from(paid)
        );
    }
    assert!(payments_held.iter().all(|p| stored.contains(p.order_id.as_str())));
    let paid = orders.iter().filter(|o| o.status == OrderStatus::Paid).count();

    // And the restarted server answers from the same file
    let some = acknowledged.iter().next().expect("an acknowledged order");
    let owner = orders
        .iter()
        .find(|o| o.id.as_str() == some)
        .unwrap()
        .user_id
        .to_string();
    let resp = http
        .get(format!("{base}/api/orders/{some}/"))
        .header("authorization", format!("Bearer {owner}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    child.kill().ok();
    child.wait().ok();
    println!(
        "killed after {killed_after} of 200 answers: {} orders acknowledged, {} stored, {unanswered} requests unanswered; \
         {callbacks_acknowledged} callbacks acknowledged, {paid} orders paid after the restart",
        acknowledged.len(),
        orders.len(),
    );
}
