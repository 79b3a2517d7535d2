//! Model-checked histories (docs/testing.md, "Histories"): seeded random histories of shopper, provider,
//! sweeper, refund-worker and operator operations, some of them run concurrently, against each store
//! through the real handlers and the fake providers over HTTP. A reference model, a plain in-memory
//! statement of docs/api.md's rules written for this test alone, predicts every answer; after every step
//! some serial order of that step's operations must explain both the answers and the store's whole state
//! (every order's and payment's status, the refund flags, every product's stock), and the invariants of
//! docs/api.md §14 must hold on what the store holds.
//!
//! `HISTORIES` histories (default 500 on SQLite; on DynamoDB `DYNAMODB_HISTORIES`, default 16, as moto
//! is slow) of `HISTORY_OPS` (default 50) operations run per store; history `i` uses seed
//! `HISTORY_SEED + i` (`HISTORY_SEED` defaults to a fresh one, printed). A failure names the seed, the
//! history so far and what disagreed; `HISTORY_SEED=<seed> HISTORIES=1` runs the same generator again
//! (a concurrent step may interleave differently, and what follows it may then differ).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use domain::ports::Clock;
use domain::refund::out_refund_no;
use domain::{PaymentEvent, ReportedStatus, Timestamp};
use e2e::{
    admin, cancel_order, checkout, create_batch, create_order, create_payment, deliver, event, refund_run, sweep,
    TestEnv,
};
use futures::future::join_all;
use infra::checkout::Providers;
use rust_decimal::Decimal;
use serde_json::{json, Value};

use crate::conformance::closing::{fake_providers, Fakes};

const PRODUCTS: [(&str, &str, u32); 3] = [("p0", "10.00", 6), ("p1", "25.50", 4), ("p2", "99.99", 2)];
const USERS: usize = 2;
const METHODS: [&str; 3] = ["bank", "wechat", "alipay"];
const TTLS: [u32; 3] = [5, 30, 90];
const SCOPE: &[&str] = &["orders:admin"];

/// A clock that moves only when the history moves it.
struct ManualClock(Mutex<Timestamp>);

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        *self.0.lock().expect("clock")
    }
}

impl ManualClock {
    fn advance(&self, seconds: i64) {
        let mut now = self.0.lock().expect("clock");
        *now = now.plus_seconds(seconds);
    }
}

fn user(i: usize) -> String {
    format!("user-{i}")
}

fn price(product: &str) -> Decimal {
    let (_, price, _) = PRODUCTS.iter().find(|(id, _, _)| *id == product).expect("a product");
    price.parse().expect("a price")
}

fn money(amount: Decimal) -> String {
    format!("{:.2}", amount.round_dp(2))
}

// ---------------------------------------------------------------------------------------------------
// Operations

#[derive(Debug, Clone)]
enum Op {
    Create {
        user: usize,
        product: &'static str,
        qty: u32,
        method: &'static str,
        ttl: u32,
    },
    Batch {
        user: usize,
        lines: Vec<(&'static str, u32)>,
        method: &'static str,
        ttl: u32,
    },
    NewPayment {
        user: usize,
        order: String,
        method: &'static str,
        ttl: u32,
    },
    Cancel {
        user: usize,
        order: String,
    },
    Checkout {
        user: usize,
        order: String,
        payment: String,
        scene: &'static str,
    },
    /// The shopper pays the trade at its fake provider (the notification is held, for a later delivery).
    PayAtProvider {
        payment: String,
        method: &'static str,
    },
    /// One event handed to the real processor (fresh, late, out of order, or a duplicate).
    Deliver(Box<PaymentEvent>),
    /// The clock moved `advance` seconds, then one sweep.
    Sweep {
        advance: i64,
    },
    Ship {
        order: String,
    },
    Complete {
        order: String,
    },
    AdminRefund {
        order: String,
    },
    AdminCancel {
        order: String,
    },
    RefundRun,
}

impl Op {
    /// Whether the operation runs many writes, one order at a time (a sweep, a refund run): it is not
    /// atomic, so it joins a concurrent step only with one other operation that touches one order and
    /// reads no stock (a sweep returns stock order by order), and some serial order explains the pair.
    fn is_bulk(&self) -> bool {
        matches!(self, Op::Sweep { .. } | Op::RefundRun)
    }

    /// Whether the operation's answer depends on stock figures.
    fn reads_stock(&self) -> bool {
        matches!(self, Op::Create { .. } | Op::Batch { .. })
    }
}

/// What an operation answered: its status (200 for the workers) and body (the workers' reports), and a
/// notification the fake provider would post.
#[derive(Debug, Clone)]
struct Observed {
    status: u16,
    body: Value,
    event: Option<PaymentEvent>,
}

impl Observed {
    fn code(&self) -> Option<&str> {
        self.body["error"]["code"].as_str()
    }
}

/// The fixed surroundings of one history.
struct World {
    env: TestEnv,
    clock: Arc<ManualClock>,
    fakes: Arc<Fakes>,
}

async fn run(world: &World, op: &Op) -> Observed {
    let env = &world.env;
    let answered = |(status, body): (u16, Value)| Observed {
        status,
        body,
        event: None,
    };
    match op {
        Op::Create {
            user: u,
            product,
            qty,
            method,
            ttl,
        } => {
            let body = json!({"product_id": product, "address_id": format!("addr-{u}"), "quantity": qty, "payment_method": method, "ttl_minutes": ttl});
            answered(create_order(env, Some(&user(*u)), &body).await)
        }
        Op::Batch {
            user: u,
            lines,
            method,
            ttl,
        } => {
            let items: Vec<Value> = lines
                .iter()
                .map(|(p, q)| json!({"product_id": p, "quantity": q}))
                .collect();
            let body = json!({"items": items, "address_id": format!("addr-{u}"), "payment_method": method, "ttl_minutes": ttl});
            answered(create_batch(env, Some(&user(*u)), &body).await)
        }
        Op::NewPayment {
            user: u,
            order,
            method,
            ttl,
        } => {
            let body = json!({"payment_method": method, "ttl_minutes": ttl});
            answered(create_payment(env, Some(&user(*u)), order, &body).await)
        }
        Op::Cancel { user: u, order } => answered(cancel_order(env, Some(&user(*u)), order).await),
        Op::Checkout {
            user: u,
            order,
            payment,
            scene,
        } => answered(checkout(env, Some(&user(*u)), order, payment, &json!({ "scene": scene })).await),
        Op::PayAtProvider { payment, method } => {
            let event = world.fakes.pay(method, payment);
            Observed {
                status: 200,
                body: json!({ "paid": event.is_some() }),
                event,
            }
        }
        Op::Deliver(event) => {
            let failed = deliver(env, &[("m", event)]).await;
            Observed {
                status: if failed.is_empty() { 200 } else { 500 },
                body: json!({ "failed": failed }),
                event: None,
            }
        }
        Op::Sweep { .. } => {
            let report = sweep(env, Duration::from_secs(600)).await;
            answered((200, serde_json::to_value(report).expect("report")))
        }
        Op::RefundRun => {
            let report = refund_run(&env.svc).await;
            answered((200, serde_json::to_value(report).expect("report")))
        }
        Op::Ship { order } => {
            let body = json!({"carrier": "顺丰速运", "tracking_no": "SF1234567890"});
            answered(staff(env, "ship", order, body).await)
        }
        Op::Complete { order } => answered(staff(env, "complete", order, json!({})).await),
        Op::AdminRefund { order } => answered(staff(env, "refund", order, json!({"reason": "客户要求"})).await),
        Op::AdminCancel { order } => answered(staff(env, "cancel", order, json!({"reason": "缺货"})).await),
    }
}

async fn staff(env: &TestEnv, action: &str, order: &str, body: Value) -> (u16, Value) {
    let route = format!("POST /api/admin/orders/{{order_id}}/{action}/");
    admin(env, Some("ops"), SCOPE, &route, &[("order_id", order)], "", &body).await
}

// ---------------------------------------------------------------------------------------------------
// The reference model

/// A trade as the model expects the fake provider to hold it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trade {
    Open,
    Paid,
    Closed,
    /// Refunded in full (WeChat Pay `REFUND`; Alipay closes a trade refunded in full).
    Refunded,
}

#[derive(Debug, Clone)]
struct MOrder {
    user: usize,
    product: &'static str,
    qty: u32,
    status: &'static str,
    deadline: Timestamp,
    /// Its payments, oldest first.
    payments: Vec<String>,
}

#[derive(Debug, Clone)]
struct MPayment {
    order: String,
    method: &'static str,
    amount: Decimal,
    status: &'static str,
    expires_at: Timestamp,
    /// Event ids recorded on the payment.
    events: BTreeSet<String>,
    refund_required: bool,
    checkout: Option<&'static str>,
    /// The refund decided for it: whether it refunds the order.
    refund: Option<bool>,
}

impl MPayment {
    /// A new payment, `init`.
    fn new(order: String, method: &'static str, amount: Decimal, expires_at: Timestamp) -> MPayment {
        MPayment {
            order,
            method,
            amount,
            status: "init",
            expires_at,
            events: BTreeSet::new(),
            refund_required: false,
            checkout: None,
            refund: None,
        }
    }

    fn is_open(&self) -> bool {
        matches!(self.status, "init" | "processing")
    }

    fn holds_money(&self) -> bool {
        matches!(self.status, "succeeded" | "refunding" | "refund_failed")
    }
}

#[derive(Debug, Clone)]
struct Model {
    now: Timestamp,
    stock: BTreeMap<&'static str, u32>,
    orders: BTreeMap<String, MOrder>,
    payments: BTreeMap<String, MPayment>,
    /// Trades at the fake providers, by payment id.
    trades: BTreeMap<String, Trade>,
}

type Verdict = Result<(), String>;

fn expect_status(got: &Observed, status: u16, code: Option<&str>) -> Verdict {
    if got.status == status && got.code() == code {
        Ok(())
    } else {
        Err(format!("expected {status} {code:?}, got {} {}", got.status, got.body))
    }
}

fn field<'a>(body: &'a Value, pointer: &str) -> Result<&'a str, String> {
    body.pointer(pointer)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("no {pointer} in {body}"))
}

fn timestamp(body: &Value, pointer: &str) -> Result<Timestamp, String> {
    Timestamp::parse(field(body, pointer)?).map_err(|e| format!("{pointer}: {e}"))
}

impl Model {
    fn new(now: Timestamp) -> Model {
        Model {
            now,
            stock: PRODUCTS.iter().map(|(id, _, stock)| (*id, *stock)).collect(),
            orders: BTreeMap::new(),
            payments: BTreeMap::new(),
            trades: BTreeMap::new(),
        }
    }

    fn open_payments(&self, order: &str) -> Vec<String> {
        self.orders[order]
            .payments
            .iter()
            .filter(|p| self.payments[*p].is_open())
            .cloned()
            .collect()
    }

    /// Records a new order and its payment from a 201's `order` and `payment` objects.
    fn record_order(
        &mut self,
        (user, product, qty): (usize, &'static str, u32),
        (method, ttl): (&'static str, u32),
        order: &Value,
        payment: &Value,
    ) -> Verdict {
        let (order_id, payment_id) = (field(order, "/id")?.to_owned(), field(payment, "/id")?.to_owned());
        let deadline = timestamp(order, "/payment_deadline")?;
        let expires_at = timestamp(payment, "/expires_at")?;
        if deadline != self.now.plus_minutes(ttl) || expires_at != deadline {
            return Err(format!(
                "deadline {deadline:?} / expiry {expires_at:?} for ttl {ttl} at {:?}",
                self.now
            ));
        }
        let amount = price(product) * Decimal::from(qty);
        if field(payment, "/amount")? != money(amount) || field(order, "/status")? != "pending" {
            return Err(format!("order {order} payment {payment}"));
        }
        self.orders.insert(
            order_id.clone(),
            MOrder {
                user,
                product,
                qty,
                status: "pending",
                deadline,
                payments: vec![payment_id.clone()],
            },
        );
        self.payments
            .insert(payment_id, MPayment::new(order_id, method, amount, expires_at));
        Ok(())
    }

    /// docs/api.md §8: a success, failure or processing event applied to its payment (and order).
    fn apply_event(&mut self, event: &PaymentEvent) {
        let id = event.payment_id.as_str().to_owned();
        let Some(payment) = self.payments.get(&id) else { return };
        let event_id = event.event_id.as_str().to_owned();
        if payment.events.contains(&event_id) {
            return;
        }
        let speaks = match event.source {
            domain::EventSource::Generic => true,
            domain::EventSource::Wechatpay => payment.method == "wechat",
            domain::EventSource::Alipay => payment.method == "alipay",
        };
        if !speaks {
            return;
        }
        let reported: Decimal = event.amount.to_string().parse().expect("an amount");
        let amount_ok = match event.source {
            domain::EventSource::Generic => (reported - payment.amount).abs() <= Decimal::new(1, 2),
            _ => reported == payment.amount,
        };
        let (status, open) = (payment.status, payment.is_open());
        let holds = payment.holds_money();
        self.payments.get_mut(&id).expect("payment").events.insert(event_id);
        match event.status {
            ReportedStatus::Processing if status == "init" => self.set_payment(&id, "processing"),
            ReportedStatus::Failed if open => self.set_payment(&id, "failed"),
            ReportedStatus::Processing | ReportedStatus::Failed => {}
            ReportedStatus::Succeeded if !amount_ok => {}
            ReportedStatus::Succeeded if holds || status == "refunded" => {}
            ReportedStatus::Succeeded => self.succeed(&id),
            _ => unreachable!("no refund notifications in these histories"),
        }
    }

    /// A success (amount right) for a payment not yet holding the money: it pays a pending order, unless
    /// the payment had failed; otherwise the money goes back (`refund_required`, refunding).
    fn succeed(&mut self, id: &str) {
        let payment = &self.payments[id];
        let order = payment.order.clone();
        if payment.status != "failed" && self.orders[&order].status == "pending" {
            self.pay(&order, id);
        } else {
            let payment = self.payments.get_mut(id).expect("payment");
            payment.status = "refunding";
            payment.refund_required = true;
            payment.refund = Some(false);
        }
    }

    /// The successes of `orders`' trades paid at a provider and not yet applied, applied as a close's
    /// query applies them (docs/api.md §16): a let-go decision that read its order before a concurrent
    /// write closed the trade, found it paid, and applied the success to the payment as it then stood.
    /// The same as the trade's notification delivered right after the step.
    fn apply_paid_trades(&mut self, orders: &BTreeSet<String>) {
        let paid: Vec<String> = self
            .trades
            .iter()
            .filter(|(id, trade)| {
                let p = &self.payments[*id];
                **trade == Trade::Paid && orders.contains(&p.order) && !p.holds_money() && p.status != "refunded"
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in paid {
            self.succeed(&id);
        }
    }

    fn set_payment(&mut self, id: &str, status: &'static str) {
        self.payments.get_mut(id).expect("payment").status = status;
    }

    /// The payment pays its pending order; any other open payment is superseded.
    fn pay(&mut self, order: &str, payment: &str) {
        self.set_payment(payment, "succeeded");
        for other in self.open_payments(order) {
            self.set_payment(&other, "expired");
        }
        self.orders.get_mut(order).expect("order").status = "paid";
    }

    /// Close before letting go (docs/api.md §16): every open payment of the order with a trade at a
    /// provider is closed there; `false` when a trade was found paid, in which case its success has been
    /// applied (the order is paid) and the decision must not go ahead.
    fn close_trades(&mut self, order: &str, only: Option<&str>) -> bool {
        for payment in self.open_payments(order) {
            if only.is_some_and(|p| p != payment) {
                continue;
            }
            match self.trades.get(&payment).copied() {
                Some(Trade::Paid) => {
                    self.pay(order, &payment);
                    return false;
                }
                Some(Trade::Open) => {
                    self.trades.insert(payment.clone(), Trade::Closed);
                }
                Some(Trade::Closed | Trade::Refunded) | None => {}
            }
        }
        true
    }

    /// The order cancelled: open payments expired, stock returned.
    fn cancel(&mut self, order: &str) {
        for payment in self.open_payments(order) {
            self.set_payment(&payment, "expired");
        }
        let o = self.orders.get_mut(order).expect("order");
        o.status = "cancelled";
        *self.stock.get_mut(o.product).expect("product") += o.qty;
    }

    /// The latest succeeded payment of an order.
    fn paid_by(&self, order: &str) -> Option<String> {
        self.orders[order]
            .payments
            .iter()
            .rev()
            .find(|p| self.payments[*p].status == "succeeded")
            .cloned()
    }

    /// Predicts `op`'s answer, checks `got` against it, and moves the model as the store must have
    /// moved (ids and times of new records are taken from the answer).
    fn apply(&mut self, op: &Op, got: &Observed) -> Verdict {
        match op {
            Op::Create {
                user,
                product,
                qty,
                method,
                ttl,
            } => {
                let available = self.stock[product];
                if available < *qty {
                    expect_status(got, 409, Some("INSUFFICIENT_STOCK"))?;
                    let details = json!([{"product_id": product, "requested": qty, "available": available}]);
                    if got.body["error"]["details"] != details {
                        return Err(format!("expected details {details}, got {}", got.body));
                    }
                    return Ok(());
                }
                expect_status(got, 201, None)?;
                *self.stock.get_mut(product).expect("product") -= qty;
                let body = &got.body;
                self.record_order((*user, product, *qty), (method, *ttl), &body["order"], &body["payment"])
            }
            Op::Batch {
                user,
                lines,
                method,
                ttl,
            } => {
                let mut merged: Vec<(&'static str, u32)> = Vec::new();
                for (p, q) in lines {
                    match merged.iter_mut().find(|(m, _)| m == p) {
                        Some((_, total)) => *total += q,
                        None => merged.push((p, *q)),
                    }
                }
                let short: Vec<Value> = merged
                    .iter()
                    .filter(|(p, q)| self.stock[p] < *q)
                    .map(|(p, q)| json!({"product_id": p, "requested": q, "available": self.stock[p]}))
                    .collect();
                if !short.is_empty() {
                    expect_status(got, 409, Some("INSUFFICIENT_STOCK"))?;
                    if got.body["error"]["details"] != Value::Array(short.clone()) {
                        return Err(format!("expected details {short:?}, got {}", got.body));
                    }
                    return Ok(());
                }
                expect_status(got, 201, None)?;
                let (orders, payments) = (&got.body["orders"], &got.body["payments"]);
                for (i, (p, q)) in merged.iter().enumerate() {
                    if orders[i]["product_id"] != *p {
                        return Err(format!("line {i} is not {p}: {}", got.body));
                    }
                    *self.stock.get_mut(p).expect("product") -= q;
                    self.record_order((*user, p, *q), (method, *ttl), &orders[i], &payments[i])?;
                }
                if orders.as_array().map(Vec::len) != Some(merged.len()) {
                    return Err(format!("expected {} orders: {}", merged.len(), got.body));
                }
                Ok(())
            }
            Op::NewPayment {
                user,
                order,
                method,
                ttl,
            } => {
                let o = &self.orders[order];
                if o.user != *user {
                    return expect_status(got, 404, Some("ORDER_NOT_FOUND"));
                }
                if o.status != "pending" {
                    return expect_status(got, 400, Some("INVALID_ORDER_STATUS"));
                }
                if self.now >= o.deadline {
                    return expect_status(got, 400, Some("ORDER_EXPIRED"));
                }
                let deadline = o.deadline;
                if !self.close_trades(order, None) {
                    return expect_status(got, 400, Some("INVALID_ORDER_STATUS"));
                }
                expect_status(got, 201, None)?;
                for open in self.open_payments(order) {
                    self.set_payment(&open, "expired");
                }
                let payment = &got.body["payment"];
                let id = field(payment, "/id")?.to_owned();
                let expires_at = timestamp(payment, "/expires_at")?;
                let expected = std::cmp::min(self.now.plus_minutes(*ttl), deadline);
                if expires_at != expected {
                    return Err(format!("expected expiry {expected:?}, got {}", got.body));
                }
                let o = self.orders.get_mut(order).expect("order");
                o.payments.push(id.clone());
                let amount = price(o.product) * Decimal::from(o.qty);
                self.payments
                    .insert(id, MPayment::new(order.clone(), method, amount, expires_at));
                Ok(())
            }
            Op::Cancel { user, order } => {
                let o = &self.orders[order];
                if o.user != *user {
                    return expect_status(got, 404, Some("ORDER_NOT_FOUND"));
                }
                match o.status {
                    "cancelled" => expect_status(got, 200, None),
                    "pending" => {
                        if !self.close_trades(order, None) {
                            return expect_status(got, 409, Some("ORDER_NOT_CANCELLABLE"));
                        }
                        expect_status(got, 200, None)?;
                        self.cancel(order);
                        Ok(())
                    }
                    _ => expect_status(got, 409, Some("ORDER_NOT_CANCELLABLE")),
                }
            }
            Op::Checkout {
                user,
                order,
                payment,
                scene,
            } => {
                let o = &self.orders[order];
                if o.user != *user {
                    return expect_status(got, 404, Some("ORDER_NOT_FOUND"));
                }
                let p = &self.payments[payment];
                if !(p.is_open() && o.status == "pending" && self.now < p.expires_at) {
                    return expect_status(got, 409, Some("PAYMENT_NOT_PAYABLE"));
                }
                let valid = matches!(
                    (p.method, *scene),
                    ("wechat", "native") | ("alipay", "qr" | "page") | ("bank", "transfer")
                );
                if !valid {
                    return expect_status(got, 400, Some("VALIDATION_ERROR"));
                }
                if p.checkout.is_some_and(|s| s != *scene) {
                    return expect_status(got, 409, Some("PAYMENT_NOT_PAYABLE"));
                }
                expect_status(got, 200, None)?;
                if p.checkout.is_none() {
                    self.payments.get_mut(payment).expect("payment").checkout = Some(scene);
                    if matches!(*scene, "native" | "qr") {
                        self.trades.insert(payment.clone(), Trade::Open);
                    }
                }
                Ok(())
            }
            Op::PayAtProvider { payment, .. } => {
                let open = self.trades.get(payment) == Some(&Trade::Open);
                if got.event.is_some() != open {
                    return Err(format!(
                        "the trade was {:?}, the fake paid: {}",
                        self.trades.get(payment),
                        got.body
                    ));
                }
                if open {
                    self.trades.insert(payment.clone(), Trade::Paid);
                }
                Ok(())
            }
            Op::Deliver(event) => {
                expect_status(got, 200, None)?;
                self.apply_event(event);
                Ok(())
            }
            Op::Sweep { .. } => {
                let (mut cancelled, mut expired, mut paid_on_close) = (0, 0, 0);
                let due: Vec<String> = self
                    .orders
                    .iter()
                    .filter(|(_, o)| o.status == "pending" && o.deadline < self.now)
                    .map(|(id, _)| id.clone())
                    .collect();
                for order in due {
                    if self.close_trades(&order, None) {
                        self.cancel(&order);
                        cancelled += 1;
                    } else {
                        paid_on_close += 1;
                    }
                }
                let lapsed: Vec<String> = self
                    .payments
                    .iter()
                    .filter(|(_, p)| p.is_open() && p.expires_at < self.now)
                    .map(|(id, _)| id.clone())
                    .collect();
                for payment in lapsed {
                    let order = self.payments[&payment].order.clone();
                    if self.orders[&order].status != "pending" || !self.payments[&payment].is_open() {
                        continue;
                    }
                    if self.close_trades(&order, Some(&payment)) {
                        self.set_payment(&payment, "expired");
                        expired += 1;
                    } else {
                        paid_on_close += 1;
                    }
                }
                let report = &got.body;
                let counts = (
                    report["cancelled"].as_u64(),
                    report["expired"].as_u64(),
                    report["paid_on_close"].as_u64(),
                    report["close_pending"].as_u64(),
                    report["failed"].as_u64(),
                );
                if counts != (Some(cancelled), Some(expired), Some(paid_on_close), Some(0), Some(0)) {
                    return Err(format!(
                        "expected cancelled {cancelled}, expired {expired}, paid_on_close {paid_on_close}: {report}"
                    ));
                }
                Ok(())
            }
            Op::RefundRun => {
                let (mut refunded, mut failed) = (0, 0);
                let due: Vec<String> = self
                    .payments
                    .iter()
                    .filter(|(_, p)| p.status == "refunding")
                    .map(|(id, _)| id.clone())
                    .collect();
                for id in due {
                    let payment = self.payments.get_mut(&id).expect("payment");
                    if payment.method == "bank" {
                        payment.status = "refund_failed";
                        failed += 1;
                        continue;
                    }
                    payment.status = "refunded";
                    refunded += 1;
                    let trade = if payment.method == "wechat" {
                        Trade::Refunded
                    } else {
                        Trade::Closed
                    };
                    self.trades.insert(id.clone(), trade);
                    let (order, refunds_order) = (payment.order.clone(), payment.refund == Some(true));
                    let o = self.orders.get_mut(&order).expect("order");
                    if refunds_order && matches!(o.status, "paid" | "shipped") {
                        o.status = "refunded";
                    }
                }
                let report = &got.body;
                let counts = (
                    report["refunded"].as_u64(),
                    report["failed"].as_u64(),
                    report["pending"].as_u64(),
                    report["unreachable"].as_u64(),
                    report["errors"].as_u64(),
                );
                if counts != (Some(refunded), Some(failed), Some(0), Some(0), Some(0)) {
                    return Err(format!("expected refunded {refunded}, failed {failed}: {report}"));
                }
                Ok(())
            }
            Op::Ship { order } => self.transition(got, order, &["paid"], "shipped"),
            Op::Complete { order } => self.transition(got, order, &["shipped"], "completed"),
            Op::AdminRefund { order } => {
                let paid = self.paid_by(order);
                let running = self.orders[order]
                    .payments
                    .iter()
                    .any(|p| self.payments[p].refund == Some(true));
                if paid.is_none() && running {
                    return expect_status(got, 200, None);
                }
                let status = self.orders[order].status;
                match paid {
                    Some(payment) if matches!(status, "paid" | "shipped") => {
                        expect_status(got, 200, None)?;
                        let p = self.payments.get_mut(&payment).expect("payment");
                        p.status = "refunding";
                        p.refund = Some(true);
                        Ok(())
                    }
                    _ => expect_status(got, 409, Some("ORDER_TRANSITION_NOT_ALLOWED")),
                }
            }
            // A pending order's trades are closed first; one found paid pays the order, and the cancel
            // is judged again on the paid order (docs/api.md §16).
            Op::AdminCancel { order } => match (self.orders[order].status, self.paid_by(order)) {
                ("pending", _) if self.close_trades(order, None) => {
                    expect_status(got, 200, None)?;
                    self.cancel(order);
                    Ok(())
                }
                ("pending", _) => self.apply(op, got),
                ("paid", Some(payment)) => {
                    expect_status(got, 200, None)?;
                    let p = self.payments.get_mut(&payment).expect("payment");
                    p.status = "refunding";
                    p.refund = Some(false);
                    let o = self.orders.get_mut(order).expect("order");
                    o.status = "cancelled";
                    *self.stock.get_mut(o.product).expect("product") += o.qty;
                    Ok(())
                }
                _ => expect_status(got, 409, Some("ORDER_TRANSITION_NOT_ALLOWED")),
            },
        }
    }

    fn transition(&mut self, got: &Observed, order: &str, from: &[&str], to: &'static str) -> Verdict {
        if !from.contains(&self.orders[order].status) {
            return expect_status(got, 409, Some("ORDER_TRANSITION_NOT_ALLOWED"));
        }
        expect_status(got, 200, None)?;
        self.orders.get_mut(order).expect("order").status = to;
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------------
// The store's state, against the model and against docs/api.md §14

/// What the store holds, read raw.
struct Held {
    orders: Vec<domain::Order>,
    payments: Vec<domain::Payment>,
    stock: BTreeMap<String, u64>,
    /// The fake providers' trades of the store's payments.
    trades: BTreeMap<String, Trade>,
}

impl Held {
    async fn read(world: &World) -> Held {
        let (orders, payments, stock) = world.env.state().await;
        let trades = payments
            .iter()
            .filter_map(|p| {
                let id = p.id.as_str();
                let state = match p.method {
                    domain::PaymentMethod::Wechat => world.fakes.wechat.trade(id)?.state,
                    domain::PaymentMethod::Alipay => world.fakes.alipay.trade(id)?.state,
                    domain::PaymentMethod::Bank => return None,
                };
                let trade = match state.as_str() {
                    "NOTPAY" | "WAIT_BUYER_PAY" => Trade::Open,
                    "SUCCESS" | "TRADE_SUCCESS" => Trade::Paid,
                    "CLOSED" | "TRADE_CLOSED" => Trade::Closed,
                    "REFUND" => Trade::Refunded,
                    other => panic!("trade {id} is {other} at the fake"),
                };
                Some((id.to_owned(), trade))
            })
            .collect();
        Held {
            orders,
            payments,
            stock,
            trades,
        }
    }
}

/// The model and the store agree on every record's status, the refund flags and every stock figure.
fn agrees(model: &mut Model, held: &Held) -> Verdict {
    let stock: BTreeMap<String, u64> = model
        .stock
        .iter()
        .map(|(id, n)| ((*id).to_owned(), u64::from(*n)))
        .collect();
    if stock != held.stock {
        return Err(format!("stock: model {stock:?}, store {:?}", held.stock));
    }
    let orders: BTreeMap<String, &str> = held
        .orders
        .iter()
        .map(|o| (o.id.as_str().to_owned(), o.status.as_str()))
        .collect();
    let expected: BTreeMap<String, &str> = model.orders.iter().map(|(id, o)| (id.clone(), o.status)).collect();
    if orders != expected {
        return Err(format!("orders: model {expected:?}, store {orders:?}"));
    }
    let payments: BTreeMap<String, (&str, bool, bool)> = held
        .payments
        .iter()
        .map(|p| {
            (
                p.id.as_str().to_owned(),
                (p.status.as_str(), p.refund_required, p.close_pending),
            )
        })
        .collect();
    let expected: BTreeMap<String, (&str, bool, bool)> = model
        .payments
        .iter()
        .map(|(id, p)| (id.clone(), (p.status, p.refund_required, false)))
        .collect();
    if payments != expected {
        return Err(format!("payments: model {expected:?}, store {payments:?}"));
    }
    // Trades: as the model has them, with two allowances for a close that raced another write. A trade
    // the model does not know was opened by a checkout whose payment was let go before the checkout could
    // be stored, and closed again at once. A trade the model has open may be closed if its payment is no
    // longer open: a let-go decision closed it, then found the payment failed or paid meanwhile and was
    // judged again (the close of a trade nobody can pay any more changes nothing). The model adopts both.
    let mut trades = model.trades.clone();
    for (id, trade) in &held.trades {
        let payment_open = model.payments.get(id).is_some_and(MPayment::is_open);
        match (model.trades.get(id), trade) {
            (None, Trade::Closed) => {}
            (Some(Trade::Open), Trade::Closed) if !payment_open => {}
            (Some(expected), got) if expected == got => continue,
            _ => return Err(format!("trades: model {:?}, fakes {:?}", model.trades, held.trades)),
        }
        trades.insert(id.clone(), Trade::Closed);
    }
    if trades.len() != held.trades.len() {
        return Err(format!("trades: model {:?}, fakes {:?}", model.trades, held.trades));
    }
    model.trades = trades;
    Ok(())
}

/// docs/api.md §14 on the store's own records (and the fake providers' refunds), whatever the model says.
fn invariants(held: &Held, fakes: &Fakes) -> Verdict {
    // 1. No oversell: stock + quantities of non-cancelled orders = initial stock.
    for (id, _, initial) in PRODUCTS {
        let ordered: u64 = held
            .orders
            .iter()
            .filter(|o| o.product_id.as_str() == id && o.status != domain::OrderStatus::Cancelled)
            .map(|o| u64::from(o.quantity.get()))
            .sum();
        if held.stock[id] + ordered != u64::from(initial) {
            return Err(format!(
                "invariant 1: {id}: stock {} + ordered {ordered} != {initial}",
                held.stock[id]
            ));
        }
    }
    // 2. Atomicity: every order has its payments, every payment its order, at the order's total.
    let orders: BTreeMap<&str, &domain::Order> = held.orders.iter().map(|o| (o.id.as_str(), o)).collect();
    for payment in &held.payments {
        let Some(order) = orders.get(payment.order_id.as_str()) else {
            return Err(format!("invariant 2: payment {} without its order", payment.id));
        };
        if payment.amount != order.total_amount {
            return Err(format!("payment {} is not its order's total", payment.id));
        }
    }
    for order in &held.orders {
        let payments: Vec<&domain::Payment> = held.payments.iter().filter(|p| p.order_id == order.id).collect();
        if payments.is_empty() {
            return Err(format!("invariant 2: order {} without a payment", order.id));
        }
        // At most one open payment, and only while the order is pending.
        let open = payments.iter().filter(|p| p.status.is_open()).count();
        if open > usize::from(order.status == domain::OrderStatus::Pending) {
            return Err(format!(
                "order {} ({}) has {open} open payments",
                order.id, order.status
            ));
        }
        // 4. One outcome: never both paid and cancelled by expiry.
        let paid = order.history.iter().any(|h| h.to == domain::OrderStatus::Paid);
        let expired = order.history.iter().any(|h| h.operator == "system:expiry");
        if paid && expired {
            return Err(format!(
                "invariant 4: order {} both paid and cancelled by expiry",
                order.id
            ));
        }
        // 6. A cancelled order keeps no money: every payment holding it has its refund decided.
        if order.status == domain::OrderStatus::Cancelled {
            if let Some(p) = payments.iter().find(|p| p.status == domain::PaymentStatus::Succeeded) {
                return Err(format!(
                    "invariant 6: cancelled order {} with {} succeeded, no refund",
                    order.id, p.id
                ));
            }
        }
    }
    // 6. Money returned once, with one number, and `refunded` only on the provider's success.
    let mut refunds = fakes.wechat.refunds();
    refunds.extend(fakes.alipay.refunds());
    let mut numbers = BTreeSet::new();
    for refund in &refunds {
        if !numbers.insert(refund.out_refund_no.clone()) {
            return Err(format!("invariant 6: refund {} sent twice", refund.out_refund_no));
        }
    }
    for payment in &held.payments {
        if let Some(refund) = &payment.refund {
            if refund.out_refund_no != out_refund_no(&payment.id) {
                return Err(format!(
                    "invariant 6: payment {} refunded as {}",
                    payment.id, refund.out_refund_no
                ));
            }
        }
        if payment.status == domain::PaymentStatus::Refunded {
            let at_provider = refunds
                .iter()
                .any(|r| r.out_trade_no == payment.id.as_str() && r.status == "SUCCESS");
            if !at_provider {
                return Err(format!(
                    "invariant 6: payment {} refunded without the provider",
                    payment.id
                ));
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------------
// Generating histories

/// What the generator remembers besides the model: notifications held back for late delivery, and
/// events already delivered (for duplicates).
#[derive(Default)]
struct Pool {
    held: Vec<PaymentEvent>,
    delivered: Vec<PaymentEvent>,
    counter: u64,
}

fn pick<'a, T>(rng: &mut fastrand::Rng, items: &'a [T]) -> Option<&'a T> {
    (!items.is_empty()).then(|| &items[rng.usize(..items.len())])
}

fn generate(rng: &mut fastrand::Rng, model: &Model, pool: &mut Pool, seed: u64) -> Op {
    let orders: Vec<String> = model.orders.keys().cloned().collect();
    let payments: Vec<String> = model.payments.keys().cloned().collect();
    // Orders an operator has something to do with.
    let settled: Vec<String> = model
        .orders
        .iter()
        .filter(|(_, o)| matches!(o.status, "paid" | "shipped"))
        .map(|(id, _)| id.clone())
        .collect();
    let method = METHODS[rng.usize(..METHODS.len())];
    let ttl = TTLS[rng.usize(..TTLS.len())];
    let product = PRODUCTS[rng.usize(..PRODUCTS.len())].0;
    loop {
        let choice = rng.u32(..100);
        let op = match choice {
            0..=17 => Some(Op::Create {
                user: rng.usize(..USERS),
                product,
                qty: rng.u32(1..=3),
                method,
                ttl,
            }),
            18..=22 => {
                let lines = (0..rng.usize(1..=3))
                    .map(|_| (PRODUCTS[rng.usize(..PRODUCTS.len())].0, rng.u32(1..=2)))
                    .collect();
                Some(Op::Batch {
                    user: rng.usize(..USERS),
                    lines,
                    method,
                    ttl,
                })
            }
            23..=28 => pick(rng, &orders).map(|order| Op::NewPayment {
                user: owner_mostly(rng, model, order),
                order: order.clone(),
                method,
                ttl: rng.u32(1..=40),
            }),
            29..=32 => pick(rng, &orders).map(|order| Op::Cancel {
                user: owner_mostly(rng, model, order),
                order: order.clone(),
            }),
            33..=44 => pick(rng, &payments).map(|payment| {
                let p = &model.payments[payment];
                let scene = match (p.method, rng.u32(..10)) {
                    (_, 0) => "jsapi",
                    ("wechat", _) => "native",
                    ("alipay", n) if n < 7 => "qr",
                    ("alipay", _) => "page",
                    _ => "transfer",
                };
                Op::Checkout {
                    user: owner_mostly(rng, model, &p.order),
                    order: p.order.clone(),
                    payment: payment.clone(),
                    scene,
                }
            }),
            45..=56 => {
                let traded: Vec<String> = model.trades.keys().cloned().collect();
                pick(rng, &traded).map(|payment| Op::PayAtProvider {
                    payment: payment.clone(),
                    method: model.payments[payment].method,
                })
            }
            57..=64 => pick(rng, &payments).and_then(|payment| {
                // A generic event: a bank transfer's success, or anyone's processing / failure.
                let p = &model.payments[payment];
                let status = match (p.method, rng.u32(..10)) {
                    ("bank", 0..=5) => ReportedStatus::Succeeded,
                    (_, 0..=4) => ReportedStatus::Processing,
                    _ => ReportedStatus::Failed,
                };
                let delta = match rng.u32(..10) {
                    0 => Decimal::new(2, 2),
                    1 => Decimal::new(-1, 2),
                    _ => Decimal::ZERO,
                };
                pool.counter += 1;
                let id = format!("evt-{seed}-{}", pool.counter);
                let e = event(payment, &id, status, &money(p.amount + delta));
                if rng.u32(..3) == 0 {
                    // Held back: delivered later, out of order.
                    pool.held.push(e);
                    return None;
                }
                Some(Op::Deliver(Box::new(e)))
            }),
            65..=74 => {
                if !pool.held.is_empty() {
                    let e = pool.held.swap_remove(rng.usize(..pool.held.len()));
                    Some(Op::Deliver(Box::new(e)))
                } else {
                    pick(rng, &pool.delivered).map(|e| Op::Deliver(Box::new(e.clone())))
                }
            }
            75..=80 => Some(Op::Sweep {
                advance: [0, 0, 3, 6, 31, 91][rng.usize(..6)] * 60 + 7,
            }),
            81..=85 => Some(Op::RefundRun),
            _ => {
                let among = if rng.bool() { &settled } else { &orders };
                pick(rng, among).cloned()
            }
            .map(|order| match rng.u32(..4) {
                0 => Op::Ship { order },
                1 => Op::Complete { order },
                2 => Op::AdminRefund { order },
                _ => Op::AdminCancel { order },
            }),
        };
        if let Some(op) = op {
            if let Op::Deliver(e) = &op {
                pool.delivered.push((**e).clone());
            }
            return op;
        }
    }
}

/// The order's owner, or now and then the other user.
fn owner_mostly(rng: &mut fastrand::Rng, model: &Model, order: &str) -> usize {
    let owner = model.orders[order].user;
    if rng.u32(..10) == 0 {
        (owner + 1) % USERS
    } else {
        owner
    }
}

/// One step: one operation, or two or three at once (a sweep or refund run with one other at most).
fn step(rng: &mut fastrand::Rng, model: &Model, pool: &mut Pool, seed: u64) -> Vec<Op> {
    let first = generate(rng, model, pool, seed);
    let size = match rng.u32(..10) {
        0..=5 => 1,
        6..=8 => 2,
        _ => 3,
    };
    let mut ops = vec![first];
    while ops.len() < size {
        let next = generate(rng, model, pool, seed);
        let bulk = ops.iter().filter(|o| o.is_bulk()).count() + usize::from(next.is_bulk());
        let stock = ops.iter().any(Op::reads_stock) || next.reads_stock();
        if bulk > 1 || (bulk == 1 && (ops.len() >= 2 || stock)) {
            break;
        }
        ops.push(next);
    }
    ops
}

fn permutations(n: usize) -> Vec<Vec<usize>> {
    match n {
        1 => vec![vec![0]],
        2 => vec![vec![0, 1], vec![1, 0]],
        _ => vec![
            vec![0, 1, 2],
            vec![0, 2, 1],
            vec![1, 0, 2],
            vec![1, 2, 0],
            vec![2, 0, 1],
            vec![2, 1, 0],
        ],
    }
}

/// What one history did, for the report.
#[derive(Debug, Default, Clone)]
struct Counts {
    operations: usize,
    concurrent_steps: usize,
    created: usize,
    refused: usize,
    /// Final statuses of every order and payment (`order paid`, `payment refunded`, …), and the trades.
    reached: BTreeMap<String, usize>,
}

impl Counts {
    fn add(&mut self, other: &Counts) {
        self.operations += other.operations;
        self.concurrent_steps += other.concurrent_steps;
        self.created += other.created;
        self.refused += other.refused;
        for (k, n) in &other.reached {
            *self.reached.entry(k.clone()).or_default() += n;
        }
    }
}

/// Runs history `seed` on a fresh `env`: panics with the seed and the history on the first
/// disagreement.
async fn history(env: TestEnv, gateway: Arc<Providers>, fakes: Arc<Fakes>, seed: u64, length: usize) -> Counts {
    let clock = Arc::new(ManualClock(Mutex::new(Timestamp::now())));
    let mut env = env.with_gateway(gateway);
    env.svc.clock = clock.clone();
    for (id, price, stock) in PRODUCTS {
        env.product(id, price, stock).await;
    }
    for u in 0..USERS {
        env.address(&format!("addr-{u}"), &user(u)).await;
    }
    let world = Arc::new(World { env, clock, fakes });
    let mut model = Model::new(world.clock.now());
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut pool = Pool::default();
    let mut log: Vec<String> = Vec::new();
    let mut counts = Counts::default();
    while counts.operations < length {
        let ops = step(&mut rng, &model, &mut pool, seed);
        // The clock moves before the step: a sweep's advance.
        for op in &ops {
            if let Op::Sweep { advance } = op {
                world.clock.advance(*advance);
            }
        }
        let now = world.clock.now();
        let tasks = ops.iter().cloned().map(|op| {
            let world = Arc::clone(&world);
            tokio::spawn(async move { run(&world, &op).await })
        });
        let observed: Vec<Observed> = join_all(tasks)
            .await
            .into_iter()
            .map(|r| r.expect("operation"))
            .collect();
        let held = Held::read(&world).await;
        // The orders whose trades a let-go decision of this step may have closed (and queried).
        let closing: BTreeSet<String> = ops
            .iter()
            .flat_map(|op| match op {
                Op::NewPayment { order, .. } | Op::Cancel { order, .. } | Op::AdminCancel { order } => {
                    vec![order.clone()]
                }
                Op::Sweep { .. } => model.orders.keys().cloned().collect(),
                _ => vec![],
            })
            .collect();
        let mut failures = Vec::new();
        let mut explained = None;
        for order in permutations(ops.len()) {
            let mut candidate = model.clone();
            candidate.now = now;
            let verdict = order
                .iter()
                .try_for_each(|&i| {
                    candidate
                        .apply(&ops[i], &observed[i])
                        .map_err(|e| format!("{:?}: {e}", ops[i]))
                })
                .and_then(|()| agrees(&mut candidate, &held));
            // A let-go decision racing another write may have applied a paid trade's success early.
            let verdict = match verdict {
                Err(e) if ops.len() > 1 && !closing.is_empty() => {
                    let mut early = candidate.clone();
                    early.apply_paid_trades(&closing);
                    agrees(&mut early, &held).map(|()| candidate = early).map_err(|_| e)
                }
                verdict => verdict,
            };
            match verdict {
                Ok(()) => {
                    explained = Some(candidate);
                    break;
                }
                Err(e) => failures.push(format!("order {order:?}: {e}")),
            }
        }
        log.push(format!(
            "{ops:?} -> {:?}",
            observed
                .iter()
                .map(|o| (o.status, o.code().map(str::to_owned)))
                .collect::<Vec<_>>()
        ));
        let Some(next) = explained else {
            panic!(
                "history seed {seed}: no serial order of step {} explains it\n{}\n\nhistory:\n{}",
                log.len(),
                failures.join("\n"),
                log.join("\n")
            );
        };
        if let Err(e) = invariants(&held, &world.fakes) {
            panic!(
                "history seed {seed}, step {}: {e}\n\nhistory:\n{}",
                log.len(),
                log.join("\n")
            );
        }
        model = next;
        for o in &observed {
            if let Some(e) = &o.event {
                pool.held.push(e.clone());
            }
        }
        counts.operations += ops.len();
        counts.concurrent_steps += usize::from(ops.len() > 1);
        counts.created += observed.iter().filter(|o| o.status == 201).count();
        counts.refused += observed.iter().filter(|o| o.status >= 400).count();
    }
    let reached = model
        .orders
        .values()
        .map(|o| format!("order {}", o.status))
        .chain(model.payments.values().map(|p| format!("payment {}", p.status)))
        .chain(model.trades.values().map(|t| format!("trade {t:?}")));
    for key in reached {
        *counts.reached.entry(key).or_default() += 1;
    }
    counts
}

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .map(|v| v.parse().unwrap_or_else(|_| panic!("{name} must be a number")))
        .unwrap_or(default)
}

/// Runs the configured histories, `parallel` at once, each on a store from `store`.
async fn histories<F, Fut>(name: &str, default_count: u64, parallel: usize, store: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Option<TestEnv>>,
{
    let count = setting("HISTORIES", default_count);
    let length = setting("HISTORY_OPS", 50) as usize;
    let base = setting("HISTORY_SEED", fastrand::u64(..u64::MAX / 2));
    println!("{name}: {count} histories of {length} operations from HISTORY_SEED={base}");
    let (providers, fakes) = fake_providers().await;
    let gateway = Arc::new(Providers {
        bank: Some(
            json!({"payee": "海尔家电旗舰店", "bank": "招商银行青岛分行", "account_number": "6225880212345678"})
                .as_object()
                .expect("an object")
                .clone(),
        ),
        ..providers
    });
    let fakes = Arc::new(fakes);
    let started = std::time::Instant::now();
    let mut total = Counts::default();
    for chunk in (0..count).collect::<Vec<_>>().chunks(parallel) {
        let mut runs = Vec::new();
        for &i in chunk {
            let Some(env) = store().await else { return };
            let (gateway, fakes) = (Arc::clone(&gateway), Arc::clone(&fakes));
            runs.push(tokio::spawn(history(env, gateway, fakes, base + i, length)));
        }
        for run in join_all(runs).await {
            match run {
                Ok(counts) => total.add(&counts),
                Err(e) => std::panic::resume_unwind(e.into_panic()),
            }
        }
    }
    println!(
        "{name}: {count} histories, {} operations ({} concurrent steps, {} created, {} refused) agreed with the model in {:.1} s",
        total.operations,
        total.concurrent_steps,
        total.created,
        total.refused,
        started.elapsed().as_secs_f64()
    );
    println!("{name}: final states reached: {:?}", total.reached);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_histories_agree_with_the_model() {
    histories("sqlite", 500, 4, || async { Some(e2e::sqlite().await) }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dynamodb_histories_agree_with_the_model() {
    histories("dynamodb", setting("DYNAMODB_HISTORIES", 16), 8, e2e::dynamodb).await;
}
