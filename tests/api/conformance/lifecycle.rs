//! Orders that end: the expiry sweep, the shopper's cancel, the order list, and the races between them
//! and success callbacks.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use domain::{ProductId, ReportedStatus, StockSource};
use e2e::{
    cancel_order, create_batch, create_order, create_payment, deliver, event, get_order, list_orders, sweep,
    FixedSupplier, TestEnv,
};
use serde_json::{json, Value};

const KEY: &str = "list-cursor-test-key";
const PLENTY: Duration = Duration::from_secs(60);

/// Alice's order of `quantity` of `product` with `ttl` minutes to pay: the create response.
async fn order(env: &TestEnv, product: &str, quantity: u32, ttl: u32) -> Value {
    let body = json!({"product_id": product, "address_id": "alice-home", "quantity": quantity, "ttl_minutes": ttl});
    let (status, created) = create_order(env, Some("alice"), &body).await;
    assert_eq!(status, 201, "{created}");
    created
}

fn id(created: &Value) -> String {
    created["order"]["id"].as_str().unwrap().to_owned()
}

fn payment_id(created: &Value) -> String {
    created["payment"]["id"].as_str().unwrap().to_owned()
}

async fn read(env: &TestEnv, order: &str) -> Value {
    let (status, got) = get_order(env, Some("alice"), order).await;
    assert_eq!(status, 200, "{got}");
    got
}

async fn pay(env: &TestEnv, created: &Value, event_id: &str) {
    let amount = created["payment"]["amount"].as_str().unwrap();
    let success = event(&payment_id(created), event_id, ReportedStatus::Succeeded, amount);
    assert!(deliver(env, &[(event_id, &success)]).await.is_empty());
}

fn last_history(got: &Value) -> &Value {
    got["order"]["history"].as_array().unwrap().last().unwrap()
}

pub async fn the_sweep_cancels_unpaid_orders_past_their_deadline_and_returns_local_stock(env: TestEnv) {
    // Given a local product, a supplier-held one, and four orders: unpaid and due, paid and due,
    // unpaid but not yet due, supplier-held unpaid and due
    let supplier = Arc::new(FixedSupplier(BTreeMap::from([("heater".to_owned(), 50)])));
    let env = env.with_supplier(supplier);
    let fridge = env.product("fridge", "10.00", 10).await;
    let heater = env
        .product_with("heater", "20.00", 7, StockSource::Supplier, true)
        .await;
    env.address("alice-home", "alice").await;
    let due = order(&env, "fridge", 2, 1).await;
    let paid = order(&env, "fridge", 3, 1).await;
    let later = order(&env, "fridge", 1, 30).await;
    let held = order(&env, "heater", 4, 1).await;
    pay(&env, &paid, "evt-paid").await;
    assert_eq!(env.stock(&fridge).await, 4);

    // When a minute and a second have passed and the sweeper runs
    env.clock.advance(61);
    let report = sweep(&env, PLENTY).await;

    // Then the due unpaid orders are cancelled by the system, their payments expired, local stock back
    assert_eq!(
        (report.cancelled, report.expired, report.failed, report.complete),
        (2, 0, 0, true),
        "{report:?}"
    );
    for cancelled in [&due, &held] {
        let got = read(&env, &id(cancelled)).await;
        assert_eq!(got["order"]["status"], "cancelled");
        assert_eq!(last_history(&got)["operator"], "system:expiry");
        assert_eq!(got["payments"][0]["status"], "expired");
        assert_eq!(
            got["payments"][0]["logs"].as_array().unwrap().last().unwrap()["event"],
            "expired"
        );
    }
    assert_eq!(env.stock(&fridge).await, 6, "the 2 unpaid fridges came back");
    assert_eq!(env.stock(&heater).await, 7, "supplier-held stock is never touched");
    assert_eq!(read(&env, &id(&paid)).await["order"]["status"], "paid");
    assert_eq!(read(&env, &id(&later)).await["order"]["status"], "pending");

    // And the index holds none of what was cancelled or expired; a second sweep changes nothing
    let index = env.expiry_index().await;
    for gone in [
        id(&due),
        payment_id(&due),
        id(&held),
        payment_id(&held),
        id(&paid),
        payment_id(&paid),
    ] {
        assert!(!index.contains(&gone), "{gone} still indexed: {index:?}");
    }
    assert_eq!(index, BTreeSet::from([id(&later), payment_id(&later)]));
    let before = env.snapshot().await;
    let again = sweep(&env, PLENTY).await;
    assert_eq!((again.cancelled, again.expired, again.found), (0, 0, 0), "{again:?}");
    assert_eq!(env.snapshot().await, before);
}

pub async fn a_payment_past_its_own_expiry_is_expired_and_the_order_stays_payable(env: TestEnv) {
    let fridge = env.product("fridge", "10.00", 10).await;
    env.address("alice-home", "alice").await;
    let created = order(&env, "fridge", 1, 30).await;
    let (status, second) = create_payment(&env, Some("alice"), &id(&created), &json!({"ttl_minutes": 1})).await;
    assert_eq!(status, 201, "{second}");

    env.clock.advance(61);
    let report = sweep(&env, PLENTY).await;

    assert_eq!((report.cancelled, report.expired), (0, 1), "{report:?}");
    let got = read(&env, &id(&created)).await;
    assert_eq!(got["order"]["status"], "pending");
    assert!(got["payments"]
        .as_array()
        .unwrap()
        .iter()
        .all(|p| p["status"] == "expired"));
    assert_eq!(env.stock(&fridge).await, 9);
    assert!(!env
        .expiry_index()
        .await
        .contains(second["payment"]["id"].as_str().unwrap()));
    // The shopper can pay again
    let (status, body) = create_payment(&env, Some("alice"), &id(&created), &json!({})).await;
    assert_eq!(status, 201, "{body}");
}

pub async fn the_shopper_cancels_a_pending_order_once(env: TestEnv) {
    let fridge = env.product("fridge", "10.00", 10).await;
    env.address("alice-home", "alice").await;
    let created = order(&env, "fridge", 3, 30).await;
    let paid = order(&env, "fridge", 1, 30).await;
    pay(&env, &paid, "evt-paid").await;
    assert_eq!(env.stock(&fridge).await, 6);

    // Another user's order and an unknown one are not found; a paid one cannot be cancelled
    let before = env.snapshot().await;
    for (user, order, status, code) in [
        ("mallory", id(&created), 404, "ORDER_NOT_FOUND"),
        ("alice", "ord_nope".to_owned(), 404, "ORDER_NOT_FOUND"),
        ("alice", id(&paid), 409, "ORDER_NOT_CANCELLABLE"),
    ] {
        let (got, body) = cancel_order(&env, Some(user), &order).await;
        assert_eq!((got, body["error"]["code"].as_str()), (status, Some(code)), "{body}");
    }
    let (status, body) = cancel_order(&env, Some("alice"), &id(&paid)).await;
    assert_eq!(
        (status, body["error"]["message"].as_str()),
        (409, Some("订单状态不允许取消"))
    );
    assert_eq!(body["error"]["details"], json!({"status": "paid"}));
    assert_eq!(cancel_order(&env, None, &id(&created)).await.0, 401);
    assert_eq!(env.snapshot().await, before);

    // Cancelled: operator user:alice, payment expired as cancelled_by_user, stock back
    let (status, first) = cancel_order(&env, Some("alice"), &id(&created)).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["order"]["status"], "cancelled");
    assert_eq!(last_history(&first)["operator"], "user:alice");
    assert_eq!(first["payments"][0]["status"], "expired");
    assert_eq!(first["payments"][0]["logs"][1]["event"], "cancelled_by_user");
    assert_eq!(env.stock(&fridge).await, 9);
    assert_eq!(first, read(&env, &id(&created)).await);

    // Twice: the same answer, stock returned once
    let (status, second) = cancel_order(&env, Some("alice"), &id(&created)).await;
    assert_eq!((status, &second), (200, &first));
    assert_eq!(env.stock(&fridge).await, 9);
    let index = env.expiry_index().await;
    assert!(!index.contains(&id(&created)) && !index.contains(&payment_id(&created)));
}

/// Stock + quantities of the product's non-cancelled orders, which must always equal the initial stock.
async fn books(env: &TestEnv, product: &ProductId) -> u32 {
    let (orders, _) = env.records().await;
    let held: u32 = orders
        .iter()
        .filter(|o| &o.product_id == product && o.status != domain::OrderStatus::Cancelled)
        .map(|o| o.quantity.get())
        .sum();
    env.stock(product).await + held
}

/// What a race between two writers to one order came to.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Winner {
    Paid,
    CancelledBy(String),
}

/// Who won, checked against every write the racers made: with a success callback among them, its
/// event is applied whoever won (paying the order, or recorded on the payment for refund after the
/// cancellation), so the payment ends `succeeded` with the event in its log and the order has taken
/// exactly the writes made (one to pay; or one to cancel and one to record the late success). Without
/// one, exactly one cancellation was written.
async fn outcome(env: &TestEnv, created: &Value, callback: bool) -> Winner {
    let got = read(env, &id(created)).await;
    let payment = &got["payments"][0];
    let logged: Vec<&str> = payment["logs"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|l| l["event_id"].as_str())
        .collect();
    let event_id = format!("evt-{}", id(created));
    let history = got["order"]["history"].as_array().unwrap();
    let winner = match got["order"]["status"].as_str().unwrap() {
        "paid" => {
            assert!(callback, "paid without a callback: {got}");
            assert_eq!(payment["refund_required"], false, "{got}");
            assert_eq!(got["order"]["version"], 1, "one write, the payment: {got}");
            Winner::Paid
        }
        "cancelled" => {
            assert!(history.iter().all(|h| h["to"] != "paid"), "paid and cancelled: {got}");
            if callback {
                assert_eq!(
                    payment["refund_required"], true,
                    "a success after the cancel is flagged: {got}"
                );
                assert_eq!(got["order"]["version"], 2, "the cancel and the late success: {got}");
            } else {
                assert_eq!(payment["status"], "expired", "{got}");
                assert_eq!(got["order"]["version"], 1, "one cancellation, written once: {got}");
            }
            Winner::CancelledBy(last_history(&got)["operator"].as_str().unwrap().to_owned())
        }
        other => panic!("order left {other}: {got}"),
    };
    if callback {
        let paid = if got["order"]["status"] == "paid" {
            "succeeded"
        } else {
            "refunding"
        };
        assert_eq!(payment["status"], paid, "the callback's write was lost: {got}");
        assert_eq!(logged, [event_id.as_str()], "the event applied exactly once: {got}");
    } else {
        assert!(logged.is_empty(), "{got}");
    }
    winner
}

/// Runs `trials` races on fresh due orders: `first` and `second` start together on the same order.
/// `callback` says whether one racer is a success callback (see [`outcome`]).
async fn race<A, B, FA, FB>(env: TestEnv, trials: usize, callback: bool, first: A, second: B) -> BTreeMap<Winner, usize>
where
    A: Fn(Arc<TestEnv>, Value) -> FA,
    B: Fn(Arc<TestEnv>, Value) -> FB,
    FA: std::future::Future<Output = ()> + Send + 'static,
    FB: std::future::Future<Output = ()> + Send + 'static,
{
    let fridge = env.product("fridge", "10.00", 10_000).await;
    env.address("alice-home", "alice").await;
    let env = Arc::new(env);
    let mut winners = BTreeMap::new();
    for trial in 0..trials {
        let created = order(&env, "fridge", 2, 1).await;
        env.clock.advance(61);
        // Staggered by 0..=40 ms, first one racer then the other, so that each gets to start first.
        let head_start = Duration::from_millis((trial as u64 * 7) % 41);
        let (delay_a, delay_b) = if trial % 2 == 0 {
            (head_start, Duration::ZERO)
        } else {
            (Duration::ZERO, head_start)
        };
        let a = first(env.clone(), created.clone());
        let b = second(env.clone(), created.clone());
        let a = tokio::spawn(async move {
            tokio::time::sleep(delay_a).await;
            a.await
        });
        let b = tokio::spawn(async move {
            tokio::time::sleep(delay_b).await;
            b.await
        });
        a.await.expect("first racer");
        b.await.expect("second racer");
        let winner = outcome(&env, &created, callback).await;
        *winners.entry(winner).or_default() += 1;
        assert_eq!(
            books(&env, &fridge).await,
            10_000,
            "books must balance after every trial"
        );
    }
    winners
}

const TRIALS: usize = 100;

async fn success_callback(env: Arc<TestEnv>, created: Value) {
    let event_id = format!("evt-{}", id(&created));
    pay(&env, &created, &event_id).await;
}

async fn sweeper(env: Arc<TestEnv>, _: Value) {
    let report = sweep(&env, PLENTY).await;
    assert_eq!(report.failed, 0, "{report:?}");
}

async fn shopper_cancel(env: Arc<TestEnv>, created: Value) {
    let (status, body) = cancel_order(&env, Some("alice"), &id(&created)).await;
    assert!(
        status == 200 || (status == 409 && body["error"]["details"]["status"] == "paid"),
        "{status} {body}"
    );
}

pub async fn a_success_callback_and_the_sweep_race_and_exactly_one_wins(env: TestEnv) {
    let winners = race(env, TRIALS, true, success_callback, sweeper).await;
    assert_eq!(winners.values().sum::<usize>(), TRIALS);
    let expected = [Winner::Paid, Winner::CancelledBy("system:expiry".into())];
    assert_eq!(
        winners.keys().collect::<Vec<_>>(),
        expected.iter().collect::<Vec<_>>(),
        "both must win sometimes"
    );
    eprintln!("callback vs sweep over {TRIALS} trials: {winners:?}");
}

pub async fn a_success_callback_and_the_shoppers_cancel_race_and_exactly_one_wins(env: TestEnv) {
    let winners = race(env, TRIALS, true, success_callback, shopper_cancel).await;
    assert_eq!(winners.values().sum::<usize>(), TRIALS);
    let expected = [Winner::Paid, Winner::CancelledBy("user:alice".into())];
    assert_eq!(
        winners.keys().collect::<Vec<_>>(),
        expected.iter().collect::<Vec<_>>(),
        "both must win sometimes"
    );
    eprintln!("callback vs cancel over {TRIALS} trials: {winners:?}");
}

pub async fn the_shoppers_cancel_and_the_sweep_race_and_stock_returns_once(env: TestEnv) {
    let winners = race(env, TRIALS, false, shopper_cancel, sweeper).await;
    assert_eq!(winners.values().sum::<usize>(), TRIALS);
    let expected = [
        Winner::CancelledBy("system:expiry".into()),
        Winner::CancelledBy("user:alice".into()),
    ];
    assert_eq!(
        winners.keys().collect::<Vec<_>>(),
        expected.iter().collect::<Vec<_>>(),
        "both must win sometimes"
    );
    eprintln!("cancel vs sweep over {TRIALS} trials: {winners:?}");
}

pub async fn a_thousand_due_orders_are_swept_across_pages_and_runs(env: TestEnv) {
    // Given 1,024 unpaid orders (32 batches of 32 products), all past their deadline
    let products: Vec<String> = (0..32).map(|i| format!("p{i:02}")).collect();
    for p in &products {
        env.product(p, "1.00", 100).await;
    }
    env.address("alice-home", "alice").await;
    let items: Vec<Value> = products
        .iter()
        .map(|p| json!({"product_id": p, "quantity": 1}))
        .collect();
    for _ in 0..32 {
        let body = json!({"items": items, "address_id": "alice-home", "ttl_minutes": 1});
        let (status, created) = create_batch(&env, Some("alice"), &body).await;
        assert_eq!(status, 201, "{created}");
    }
    env.clock.advance(61);

    // When a sweep with almost no time left runs, it stops early and says what it did
    let short = sweep(&env, Duration::from_millis(50)).await;
    assert!(!short.complete, "{short:?}");
    assert!(short.cancelled < 1024, "{short:?}");

    // Then the next run finishes the rest, and every unit is back (a generous budget: the emulator is
    // shared with every other test and serves one request at a time)
    let rest = sweep(&env, Duration::from_secs(600)).await;
    assert!(rest.complete, "{rest:?}");
    assert_eq!(short.cancelled + rest.cancelled, 1024, "{short:?} {rest:?}");
    assert_eq!(rest.failed, 0);
    for p in &products {
        assert_eq!(env.stock(&ProductId::parse(p).unwrap()).await, 100, "{p}");
    }
    assert!(env.expiry_index().await.is_empty());
    eprintln!("1,024 due orders: first run {short:?}, second run {rest:?}");
}

pub async fn the_list_pages_newest_first_behind_a_cursor_only_its_owner_can_use(env: TestEnv) {
    env.product("fridge", "10.00", 100).await;
    env.address("alice-home", "alice").await;
    env.address("bob-home", "bob").await;
    let mut created = Vec::new();
    for _ in 0..45 {
        created.push(id(&order(&env, "fridge", 1, 30).await));
    }
    let bobs = json!({"product_id": "fridge", "address_id": "bob-home", "quantity": 1});
    assert_eq!(create_order(&env, Some("bob"), &bobs).await.0, 201);

    // Pages of 20: 20, 20, 5, newest first, every order once, each with its open payment
    let mut seen: Vec<Value> = Vec::new();
    let mut query = "limit=20".to_owned();
    let mut pages = Vec::new();
    loop {
        let (status, page) = list_orders(&env, KEY, Some("alice"), &query).await;
        assert_eq!(status, 200, "{page}");
        let orders = page["orders"].as_array().unwrap().clone();
        pages.push(orders.len());
        seen.extend(orders);
        match page["next_cursor"].as_str() {
            Some(cursor) => query = format!("limit=20&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(pages, [20, 20, 5]);
    let ids: Vec<&str> = seen.iter().map(|o| o["id"].as_str().unwrap()).collect();
    let unique: BTreeSet<&str> = ids.iter().copied().collect();
    assert_eq!(unique.len(), 45, "none repeated");
    assert_eq!(
        unique,
        created.iter().map(String::as_str).collect(),
        "none missing, none of bob's"
    );
    let times: Vec<&str> = seen.iter().map(|o| o["created_at"].as_str().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "newest first: {times:?}");
    assert!(seen
        .iter()
        .all(|o| o["open_payment"]["status"] == "init" && o["open_payment"]["order_id"] == o["id"]));

    // The default page is 20; a paid order lists without an open payment
    let (_, first) = list_orders(&env, KEY, Some("alice"), "").await;
    assert_eq!(first["orders"].as_array().unwrap().len(), 20);
    let newest = first["orders"][0].clone();
    let newest = json!({"order": newest.clone(), "payment": newest["open_payment"].clone()});
    pay(&env, &newest, "evt-newest").await;
    let (_, first) = list_orders(&env, KEY, Some("alice"), "limit=1").await;
    assert_eq!(
        (
            first["orders"][0]["status"].as_str(),
            &first["orders"][0]["open_payment"]
        ),
        (Some("paid"), &Value::Null)
    );

    // Another user's cursor, a tampered one, one signed with another key, and bad limits: 400
    let (_, page) = list_orders(&env, KEY, Some("alice"), "limit=5").await;
    let cursor = page["next_cursor"].as_str().unwrap().to_owned();
    let (payload, tag) = cursor.split_once('.').unwrap();
    let flipped = format!(
        "{}{}.{tag}",
        &payload[..payload.len() - 1],
        if payload.ends_with('A') { "B" } else { "A" }
    );
    for (user, key, query, field) in [
        ("bob", KEY, format!("cursor={cursor}"), "cursor"),
        ("alice", KEY, format!("cursor={flipped}"), "cursor"),
        ("alice", "another-key", format!("cursor={cursor}"), "cursor"),
        ("alice", KEY, "cursor=garbage".to_owned(), "cursor"),
        ("alice", KEY, "limit=0".to_owned(), "limit"),
        ("alice", KEY, "limit=101".to_owned(), "limit"),
        ("alice", KEY, "limit=ten".to_owned(), "limit"),
    ] {
        let (status, body) = list_orders(&env, key, Some(user), &query).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (400, Some("VALIDATION_ERROR")),
            "{query}: {body}"
        );
        assert_eq!(body["error"]["details"]["fields"][0]["field"], field, "{query}");
    }
    assert_eq!(list_orders(&env, KEY, None, "").await.0, 401);
}

/// The list shows each order's open payment from a copy written with the order: the copy must follow
/// every write that opens, changes or closes a payment.
pub async fn the_lists_open_payment_follows_every_payment_write(env: TestEnv) {
    env.product("fridge", "10.00", 100).await;
    env.address("alice-home", "alice").await;
    let created = order(&env, "fridge", 1, 30).await;
    let (open, _) = listed(&env).await;
    assert_eq!(open["id"], created["payment"]["id"]);
    assert_eq!(open["status"], "init");

    // Superseded by a new payment (which expires in a minute, well before the order's deadline)
    let (status, paid_again) = create_payment(
        &env,
        Some("alice"),
        &id(&created),
        &json!({"payment_method": "alipay", "ttl_minutes": 1}),
    )
    .await;
    assert_eq!(status, 201, "{paid_again}");
    let (open, got) = listed(&env).await;
    assert_eq!(
        open["id"], paid_again["payment"]["id"],
        "the new payment, not the superseded one"
    );
    assert_eq!(open, got["payments"][1], "the copy equals the payment itself");

    // The provider reports it processing
    let amount = paid_again["payment"]["amount"].as_str().unwrap();
    let processing = event(
        paid_again["payment"]["id"].as_str().unwrap(),
        "evt-processing",
        ReportedStatus::Processing,
        amount,
    );
    assert!(deliver(&env, &[("m1", &processing)]).await.is_empty());
    let (open, got) = listed(&env).await;
    assert_eq!(open["status"], "processing");
    assert_eq!(open, got["payments"][1]);

    // Its own minute passes: the sweep expires it alone, and the order, still pending, lists none open
    env.clock.advance(61);
    let report = sweep(&env, PLENTY).await;
    assert_eq!(report.failed, 0, "{report:?}");
    let (open, got) = listed(&env).await;
    assert_eq!(got["order"]["status"], "pending");
    assert_eq!(got["payments"][1]["status"], "expired");
    assert_eq!(open, Value::Null, "no open payment left: {got}");
}

/// Alice's newest order's open payment as the list shows it, and that order as get_order reads it.
async fn listed(env: &TestEnv) -> (Value, Value) {
    let (status, page) = list_orders(env, KEY, Some("alice"), "limit=5").await;
    assert_eq!(status, 200, "{page}");
    let (_, got) = get_order(env, Some("alice"), page["orders"][0]["id"].as_str().unwrap()).await;
    (page["orders"][0]["open_payment"].clone(), got)
}

/// A cancellation that would give units back to a product the catalogue no longer holds is refused the
/// same way on both stores: nothing is written, and once the product is back the cancel goes through.
pub async fn stock_never_goes_back_to_a_product_that_is_gone(env: TestEnv) {
    env.product("fridge", "10.00", 5).await;
    env.address("alice-home", "alice").await;
    let created = order(&env, "fridge", 2, 30).await;
    env.remove_product("fridge").await;
    let before = env.snapshot().await;

    let (status, body) = cancel_order(&env, Some("alice"), &id(&created)).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (500, Some("INTERNAL_ERROR")),
        "{body}"
    );
    assert_eq!(env.snapshot().await, before, "nothing written");

    let fridge = env.product("fridge", "10.00", 3).await;
    let (status, body) = cancel_order(&env, Some("alice"), &id(&created)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(env.stock(&fridge).await, 5);
}
