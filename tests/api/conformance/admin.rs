//! The merchant's routes (docs/api.md §17) through the real handler: scope `orders:admin` or 403, no
//! identity 401; ship, complete, refund and cancel move only what the state machine allows (409
//! `ORDER_TRANSITION_NOT_ALLOWED` with `details.allowed` otherwise), each recorded as `staff:<sub>`; a
//! paid order's cancel returns its stock once and refunds it once; an operator's refund racing a
//! duplicate success starts one refund; the attention list pages oldest first and never lists a
//! settled payment. On both stores.

use std::sync::Arc;

use domain::{ProductId, ReportedStatus};
use e2e::{admin, create_order, deliver, event, logged, refund_run, TestEnv};
use serde_json::{json, Value};

use super::closing::{checked_out, order_of, with_providers, Fakes};

const SCOPE: &[&str] = &["orders:admin"];
const GET: &str = "GET /api/admin/orders/{order_id}/";
const ATTENTION: &str = "GET /api/admin/attention/";
const SHIP: &str = "POST /api/admin/orders/{order_id}/ship/";
const COMPLETE: &str = "POST /api/admin/orders/{order_id}/complete/";
const REFUND: &str = "POST /api/admin/orders/{order_id}/refund/";
const CANCEL: &str = "POST /api/admin/orders/{order_id}/cancel/";
const RESOLVE: &str = "POST /api/admin/orders/{order_id}/payments/{payment_id}/resolve/";

/// An operator's action on `order` as `ops`.
async fn act(env: &TestEnv, route: &str, order: &str, body: Value) -> (u16, Value) {
    admin(env, Some("ops"), SCOPE, route, &[("order_id", order)], "", &body).await
}

fn body_of(route: &str) -> Value {
    match route {
        SHIP => json!({"carrier": "顺丰速运", "tracking_no": "SF1234567890"}),
        COMPLETE => json!({"note": "客户已签收"}),
        _ => json!({"reason": "客户要求"}),
    }
}

/// An order of one fridge paid at the fake WeChat Pay (checked out, paid, its notification delivered).
async fn paid_order(env: &TestEnv, fakes: &Fakes) -> (String, String) {
    let (order, payment) = checked_out(env, "wechat", "native").await;
    let paid = fakes.pay("wechat", &payment).expect("paid at the provider");
    assert!(deliver(env, &[("paid", &paid)]).await.is_empty());
    (order, payment)
}

/// An order brought to `status` through the routes: its id.
async fn order_in(env: &TestEnv, fakes: &Fakes, status: &str) -> String {
    if status == "pending" || status == "cancelled" {
        let (order, _) = checked_out(env, "wechat", "native").await;
        if status == "cancelled" {
            assert_eq!(e2e::cancel_order(env, Some("alice"), &order).await.0, 200);
        }
        return order;
    }
    let (order, _) = paid_order(env, fakes).await;
    let steps: &[&str] = match status {
        "shipped" => &[SHIP],
        "completed" => &[SHIP, COMPLETE],
        "refunded" => &[REFUND],
        _ => &[],
    };
    for route in steps {
        let (code, got) = act(env, route, &order, body_of(route)).await;
        assert_eq!(code, 200, "{route}: {got}");
    }
    if status == "refunded" {
        // (with any refund an earlier case started)
        assert!(refund_run(&env.svc).await.refunded >= 1);
    }
    assert_eq!(order_of(env, &order).await["order"]["status"], status);
    order
}

pub async fn operator_actions_move_only_what_the_state_machine_allows(env: TestEnv) {
    let (env, fakes) = with_providers(env).await;
    let allowed = [
        ("pending", CANCEL, "cancelled"),
        ("paid", SHIP, "shipped"),
        ("paid", REFUND, "paid"),
        ("paid", CANCEL, "cancelled"),
        ("shipped", COMPLETE, "completed"),
        ("shipped", REFUND, "shipped"),
    ];
    let next: &[(&str, &[&str])] = &[
        ("pending", &["paid", "cancelled"]),
        ("paid", &["shipped", "refunded", "cancelled"]),
        ("shipped", &["completed", "refunded"]),
        ("completed", &[]),
        ("cancelled", &[]),
        ("refunded", &[]),
    ];
    for (from, may) in next {
        for route in [SHIP, COMPLETE, REFUND, CANCEL] {
            let order = order_in(&env, &fakes, from).await;
            let before = order_of(&env, &order).await;
            let (code, got) = act(&env, route, &order, body_of(route)).await;
            let name = format!("{from} {route}");
            match allowed.iter().find(|(f, r, _)| f == from && *r == route) {
                Some((_, _, to)) => {
                    assert_eq!(code, 200, "{name}: {got}");
                    assert_eq!(got["order"]["status"], *to, "{name}: {got}");
                    let history = got["order"]["history"].as_array().unwrap();
                    assert_eq!(history.len(), before["order"]["history"].as_array().unwrap().len() + 1);
                    let entry = history.last().unwrap();
                    assert_eq!(
                        (entry["from"].as_str(), entry["to"].as_str(), entry["operator"].as_str()),
                        (Some(*from), Some(*to), Some("staff:ops")),
                        "{name}: {entry}"
                    );
                    assert_eq!(got, order_of_admin(&env, &order).await, "{name}: answered as stored");
                }
                None if *from == "refunded" && route == REFUND => {
                    // Its refund already ran: the order as it stands.
                    assert_eq!(code, 200, "{name}: {got}");
                    assert_eq!(got["order"], before["order"], "{name}");
                }
                None => {
                    assert_eq!(code, 409, "{name}: {got}");
                    let error = &got["error"];
                    assert_eq!(error["code"], "ORDER_TRANSITION_NOT_ALLOWED", "{name}");
                    assert_eq!(error["message"], "订单状态不允许此操作");
                    assert_eq!(error["details"]["from"], *from);
                    assert_eq!(error["details"]["allowed"], json!(may), "{name}");
                    assert_eq!(order_of(&env, &order).await, before, "{name}: nothing changed");
                }
            }
        }
    }
}

async fn order_of_admin(env: &TestEnv, order: &str) -> Value {
    let (code, got) = admin(env, Some("ops"), SCOPE, GET, &[("order_id", order)], "", &Value::Null).await;
    assert_eq!(code, 200, "{got}");
    got
}

pub async fn operator_routes_need_the_scope_and_good_bodies(env: TestEnv) {
    let (env, fakes) = with_providers(env).await;
    let (order, _) = paid_order(&env, &fakes).await;
    let before = order_of(&env, &order).await;
    let routes = [GET, ATTENTION, SHIP, COMPLETE, REFUND, CANCEL, RESOLVE];
    for route in routes {
        let params = [
            ("order_id", order.as_str()),
            ("payment_id", "pay_01a2332e423172f79e481260e83d"),
        ];
        let body = body_of(route);
        // No identity: 401; a shopper's token, or another scope: 403
        let (code, got) = admin(&env, None, SCOPE, route, &params, "", &body).await;
        assert_eq!(
            (code, got["error"]["code"].as_str()),
            (401, Some("UNAUTHENTICATED")),
            "{route}"
        );
        for scopes in [&[][..], &["orders:read"][..]] {
            let (code, got) = admin(&env, Some("alice"), scopes, route, &params, "", &body).await;
            assert_eq!(
                (code, got["error"]["code"].as_str()),
                (403, Some("FORBIDDEN")),
                "{route}"
            );
            assert_eq!(got["error"]["message"], "无权限");
        }
    }
    assert_eq!(order_of(&env, &order).await, before, "nothing changed");

    // Any user's order, for an operator; an unknown one is 404
    let got = order_of_admin(&env, &order).await;
    assert_eq!(
        (got["order"].clone(), got["payments"].clone()),
        (before["order"].clone(), before["payments"].clone())
    );
    let (code, got) = act(&env, SHIP, "ord_unknown", body_of(SHIP)).await;
    assert_eq!((code, got["error"]["code"].as_str()), (404, Some("ORDER_NOT_FOUND")));

    // Bad bodies name every bad field and change nothing
    let cases = [
        (SHIP, json!({}), vec!["carrier", "tracking_no"]),
        (
            SHIP,
            json!({"carrier": " ", "tracking_no": 5, "note": "x".repeat(201)}),
            vec!["carrier", "tracking_no", "note"],
        ),
        (REFUND, json!({"reason": "x".repeat(81)}), vec!["reason"]),
        (CANCEL, json!({"reason": null}), vec!["reason"]),
        (COMPLETE, json!({"note": ["not text"]}), vec!["note"]),
    ];
    for (route, body, fields) in cases {
        let (code, got) = act(&env, route, &order, body.clone()).await;
        assert_eq!(
            (code, got["error"]["code"].as_str()),
            (400, Some("VALIDATION_ERROR")),
            "{route} {body}"
        );
        let named: Vec<&str> = got["error"]["details"]["fields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["field"].as_str().unwrap())
            .collect();
        assert_eq!(named, fields, "{route} {body}");
    }
    let (code, _) = admin(
        &env,
        Some("ops"),
        SCOPE,
        SHIP,
        &[("order_id", &order)],
        "",
        &json!("text"),
    )
    .await;
    assert_eq!(code, 400);
    assert_eq!(order_of(&env, &order).await, before, "nothing changed");
}

pub async fn a_paid_order_cancelled_by_an_operator_returns_stock_once_and_is_refunded_once(env: TestEnv) {
    let (env, fakes) = with_providers(env).await;
    let fridge = ProductId::parse("fridge").unwrap();
    let (order, payment) = paid_order(&env, &fakes).await;
    let stock = env.stock(&fridge).await;

    let (code, got) = act(&env, CANCEL, &order, json!({"reason": "缺货，无法发货"})).await;
    assert_eq!(code, 200, "{got}");
    assert_eq!(got["order"]["status"], "cancelled");
    assert_eq!(got["payments"][0]["status"], "refunding");
    assert_eq!(got["payments"][0]["refund"]["requested_by"], "staff:ops");
    assert_eq!(got["payments"][0]["refund"]["refunds_order"], false);
    assert_eq!(env.stock(&fridge).await, stock + 1, "stock returned");

    // Cancelled again: refused, and nothing moves a second time
    let (code, _) = act(&env, CANCEL, &order, json!({"reason": "again"})).await;
    assert_eq!(code, 409);
    assert_eq!(env.stock(&fridge).await, stock + 1, "stock returned once");

    let report = refund_run(&env.svc).await;
    assert_eq!((report.refunded, report.provider_requests), (1, 1), "{report:?}");
    assert_eq!(refund_run(&env.svc).await.found, 0);
    let refunds: Vec<_> = fakes
        .wechat
        .refunds()
        .into_iter()
        .filter(|r| r.out_trade_no == payment)
        .collect();
    assert_eq!(refunds.len(), 1, "one refund at the provider");
    let got = order_of(&env, &order).await;
    assert_eq!(got["order"]["status"], "cancelled", "a cancelled order stays cancelled");
    assert_eq!(got["payments"][0]["status"], "refunded");
    assert_eq!(env.stock(&fridge).await, stock + 1);
}

pub async fn an_operators_refund_refunds_the_order_when_the_provider_does(env: TestEnv) {
    let (env, fakes) = with_providers(env).await;
    let order = order_in(&env, &fakes, "shipped").await;
    let (code, got) = act(&env, REFUND, &order, json!({"reason": "质量问题"})).await;
    assert_eq!(code, 200, "{got}");
    assert_eq!(
        (got["order"]["status"].as_str(), got["payments"][0]["status"].as_str()),
        (Some("shipped"), Some("refunding"))
    );
    assert_eq!(got["order"]["shipment"]["tracking_no"], "SF1234567890");
    // A refund already running answers the order as it stands
    let (code, again) = act(&env, REFUND, &order, json!({"reason": "质量问题"})).await;
    assert_eq!((code, &again), (200, &got));

    assert_eq!(refund_run(&env.svc).await.refunded, 1);
    let got = order_of(&env, &order).await;
    assert_eq!(got["order"]["status"], "refunded", "{got}");
    let last = got["order"]["history"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        (last["from"].as_str(), last["to"].as_str(), last["operator"].as_str()),
        (Some("shipped"), Some("refunded"), Some("system:refund"))
    );
    assert_eq!(logged(&got["payments"][0], "refund_started"), 1);
}

pub async fn an_operators_refund_racing_a_duplicate_success_starts_one_refund(env: TestEnv) {
    env.product("fridge", "3299.00", 1000).await;
    env.address("alice-home", "alice").await;
    let env = Arc::new(env);
    for trial in 0..100 {
        let body =
            json!({"product_id": "fridge", "address_id": "alice-home", "quantity": 1, "payment_method": "wechat"});
        let (_, created) = create_order(&env, Some("alice"), &body).await;
        let order = created["order"]["id"].as_str().unwrap().to_owned();
        let payment = created["payment"]["id"].as_str().unwrap().to_owned();
        let paid = event(&payment, &format!("paid-{trial}"), ReportedStatus::Succeeded, "3299.00");
        assert!(deliver(&env, &[("m", &paid)]).await.is_empty());

        // The operator's refund and the shopper's provider sending its success again, at once
        let again = event(
            &payment,
            &format!("again-{trial}"),
            ReportedStatus::Succeeded,
            "3299.00",
        );
        let messages = [("m2", &again)];
        let (refund, redelivered) = tokio::join!(
            act(&env, REFUND, &order, json!({"reason": "客户要求"})),
            deliver(&env, &messages),
        );
        assert_eq!(refund.0, 200, "trial {trial}: {}", refund.1);
        assert!(redelivered.is_empty(), "trial {trial}");

        let got = order_of(&env, &order).await;
        let p = &got["payments"][0];
        assert_eq!(p["status"], "refunding", "trial {trial}: {got}");
        assert_eq!(logged(p, "refund_started"), 1, "trial {trial}: one refund: {p}");
        assert_eq!(p["refund"]["requested_by"], "staff:ops");
        assert_eq!(
            logged(p, "duplicate_success"),
            1,
            "trial {trial}: the success applied once, as a duplicate"
        );
        assert_eq!(got["order"]["status"], "paid");
    }
}

/// An operator settles a payment's attention items with `note`.
async fn resolve(env: &TestEnv, params: &[(&'static str, &str)], note: &str) -> (u16, Value) {
    admin(env, Some("ops"), SCOPE, RESOLVE, params, "", &json!({ "note": note })).await
}

/// The whole attention list, page by page (two at a time): the payment ids, in order.
async fn attention_walk(env: &TestEnv) -> Vec<String> {
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let query = match &cursor {
            Some(c) => format!("limit=2&cursor={c}"),
            None => "limit=2".to_owned(),
        };
        let (code, page) = admin(env, Some("ops"), SCOPE, ATTENTION, &[], &query, &Value::Null).await;
        assert_eq!(code, 200, "{page}");
        let items = page["items"].as_array().unwrap();
        assert!(items.len() <= 2, "{page}");
        for item in items {
            assert_eq!(item["reasons"][0]["reason"], "refund_failed", "{item}");
            assert_eq!(item["payment"]["refund"]["failure"], "manual_refund");
            assert_eq!(item["since"], item["reasons"][0]["since"]);
            seen.push(item["payment"]["id"].as_str().unwrap().to_owned());
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return seen,
        }
    }
}

pub async fn the_attention_list_pages_oldest_first_and_never_lists_a_settled_item(env: TestEnv) {
    env.product("fridge", "3299.00", 100).await;
    env.address("alice-home", "alice").await;
    // Five bank payments whose late success cannot be refunded by a provider: refund_failed
    let mut failed = Vec::new();
    for n in 0..5 {
        let body = json!({"product_id": "fridge", "address_id": "alice-home", "quantity": 1, "payment_method": "bank"});
        let (_, created) = create_order(&env, Some("alice"), &body).await;
        let order = created["order"]["id"].as_str().unwrap().to_owned();
        let payment = created["payment"]["id"].as_str().unwrap().to_owned();
        assert_eq!(e2e::cancel_order(&env, Some("alice"), &order).await.0, 200);
        let late = event(&payment, &format!("late-{n}"), ReportedStatus::Succeeded, "3299.00");
        assert!(deliver(&env, &[("m", &late)]).await.is_empty());
        assert_eq!(refund_run(&env.svc).await.failed, 1);
        env.clock.advance(60);
        failed.push((order, payment));
    }

    // Pages of two, oldest first, each item with its reasons
    let expected: Vec<String> = failed.iter().map(|(_, p)| p.clone()).collect();
    assert_eq!(attention_walk(&env).await, expected, "oldest first, each once");

    // A cursor is the operator's own
    let (_, page) = admin(&env, Some("ops"), SCOPE, ATTENTION, &[], "limit=2", &Value::Null).await;
    let cursor = page["next_cursor"].as_str().unwrap();
    let (code, got) = admin(
        &env,
        Some("other-ops"),
        SCOPE,
        ATTENTION,
        &[],
        &format!("cursor={cursor}"),
        &Value::Null,
    )
    .await;
    assert_eq!((code, got["error"]["code"].as_str()), (400, Some("VALIDATION_ERROR")));

    // Settled by an operator (paid back by hand): never listed again
    let (order, payment) = &failed[1];
    let params = [("order_id", order.as_str()), ("payment_id", payment.as_str())];
    let (code, got) = resolve(&env, &params, "已线下退款").await;
    assert_eq!(code, 200, "{got}");
    assert_eq!(logged(&got["payments"][0], "attention_resolved"), 1);
    let (code, again) = resolve(&env, &params, "again").await;
    assert_eq!(
        (code, logged(&again["payments"][0], "attention_resolved")),
        (200, 1),
        "nothing left to settle"
    );
    let expected: Vec<String> = expected.into_iter().filter(|p| p != payment).collect();
    assert_eq!(attention_walk(&env).await, expected);
}
