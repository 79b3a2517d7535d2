//! Requests as API Gateway, SQS and EventBridge hand them to the functions, and drivers that run one
//! through the real handler and read the answer.

use crate::TestEnv;
use aws_lambda_events::sqs::SqsEvent;
use domain::{EventId, EventSource, Money, PaymentEvent, ReportedStatus, Timestamp};
use infra::http::GatewayRequest;
use lambda_http::{Body, Request, Response};
use serde_json::Value;

/// A request as API Gateway would hand it to a function: `{order_id}` is taken from
/// `/api/orders/{order_id}/`, `/api/orders/{order_id}/payments/` and `/api/orders/{order_id}/cancel/`.
pub fn request(method: &str, path: &str, user: Option<&str>, body: &[u8]) -> Request {
    let segments: Vec<&str> = path
        .strip_prefix("/api/orders/")
        .and_then(|rest| rest.strip_suffix('/'))
        .map(|rest| rest.split('/').collect())
        .unwrap_or_default();
    let path_parameters = match (method, segments.as_slice()) {
        ("GET", [id]) | ("POST", [id, "payments" | "cancel"]) => vec![("order_id", (*id).to_owned())],
        ("POST", [id, "payments", payment, "checkout"]) => {
            vec![("order_id", (*id).to_owned()), ("payment_id", (*payment).to_owned())]
        }
        _ => vec![],
    };
    GatewayRequest {
        method,
        path,
        route_key: "test",
        headers: vec![("content-type".into(), "application/json".into())],
        path_parameters,
        body,
        user,
        request_id: "test-request",
        ..Default::default()
    }
    .into_request()
    .expect("gateway event")
}

/// Status and JSON body of a response.
pub fn read(resp: Response<Body>) -> (u16, Value) {
    let status = resp.status().as_u16();
    let body: &[u8] = resp.body().as_ref();
    (status, serde_json::from_slice(body).unwrap_or(Value::Null))
}

/// `POST /api/orders/create_order/` through the real handler.
pub async fn create_order(env: &TestEnv, user: Option<&str>, body: &Value) -> (u16, Value) {
    let req = request("POST", "/api/orders/create_order/", user, body.to_string().as_bytes());
    read(create_order::handle(&env.svc, req).await)
}

/// A create through the real handler with an `Idempotency-Key`: status, body, and whether the answer
/// was marked `Idempotent-Replayed: true`.
pub async fn create_with_key(env: &TestEnv, route: &str, user: &str, key: &str, body: &Value) -> (u16, Value, bool) {
    let text = body.to_string();
    let order_id = route
        .strip_prefix("/api/orders/")
        .and_then(|rest| rest.strip_suffix("/payments/"))
        .map(|id| vec![("order_id", id.to_owned())])
        .unwrap_or_default();
    let req = GatewayRequest {
        method: "POST",
        path: route,
        route_key: route,
        path_parameters: order_id,
        headers: vec![
            ("content-type".into(), "application/json".into()),
            ("idempotency-key".into(), key.into()),
        ],
        body: text.as_bytes(),
        user: Some(user),
        request_id: "test-request",
        ..Default::default()
    }
    .into_request()
    .expect("gateway event");
    let resp = if route.ends_with("create_batch_orders/") {
        create_batch_orders::handle(&env.svc, req).await
    } else if route.ends_with("/payments/") {
        create_payment::handle(&env.svc, req).await
    } else {
        create_order::handle(&env.svc, req).await
    };
    let replayed = resp.headers().get("idempotent-replayed").is_some_and(|v| v == "true");
    let (status, body) = read(resp);
    (status, body, replayed)
}

/// `POST /api/orders/create_batch_orders/` through the real handler.
pub async fn create_batch(env: &TestEnv, user: Option<&str>, body: &Value) -> (u16, Value) {
    let req = request(
        "POST",
        "/api/orders/create_batch_orders/",
        user,
        body.to_string().as_bytes(),
    );
    read(create_batch_orders::handle(&env.svc, req).await)
}

/// `GET /api/orders/{id}/` through the real handler.
pub async fn get_order(env: &TestEnv, user: Option<&str>, id: &str) -> (u16, Value) {
    let req = request("GET", &format!("/api/orders/{id}/"), user, b"");
    read(get_order::handle(&env.svc, req).await)
}

/// `POST /api/orders/{id}/payments/` through the real handler.
pub async fn create_payment(env: &TestEnv, user: Option<&str>, order_id: &str, body: &Value) -> (u16, Value) {
    let path = format!("/api/orders/{order_id}/payments/");
    let req = request("POST", &path, user, body.to_string().as_bytes());
    read(create_payment::handle(&env.svc, req).await)
}

/// A normalized callback event in the generic format.
pub fn event(payment_id: &str, event_id: &str, status: ReportedStatus, amount: &str) -> PaymentEvent {
    PaymentEvent {
        event_id: EventId::parse(event_id).expect("event id"),
        payment_id: domain::PaymentId::parse(payment_id).expect("payment id"),
        provider_txn_id: format!("txn-{payment_id}"),
        status,
        amount: Money::parse(amount).expect("amount"),
        occurred_at: Timestamp::now(),
        source: EventSource::Generic,
    }
}

/// The SQS event Lambda would deliver for these messages (message id, event), each in its payment's
/// group, received for the `receives`-th time.
pub fn sqs_event(messages: &[(&str, &PaymentEvent)], receives: u32) -> SqsEvent {
    let records: Vec<Value> = messages
        .iter()
        .map(|(id, event)| {
            serde_json::json!({
                "messageId": id,
                "receiptHandle": format!("rh-{id}"),
                "body": serde_json::to_string(event).expect("event json"),
                "attributes": {
                    "ApproximateReceiveCount": receives.to_string(),
                    "MessageGroupId": event.payment_id,
                    "MessageDeduplicationId": event.event_id,
                    "SentTimestamp": "1764054000000",
                },
                "messageAttributes": {},
                "md5OfBody": "",
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:callbacks.fifo",
                "awsRegion": "us-east-1",
            })
        })
        .collect();
    serde_json::from_value(serde_json::json!({ "Records": records })).expect("SQS event")
}

/// Runs the real processor handler on one batch; the ids of the messages it reports as failed.
pub async fn deliver(env: &TestEnv, messages: &[(&str, &PaymentEvent)]) -> Vec<String> {
    let response = process_payment_callbacks::handle(&env.svc, sqs_event(messages, 1)).await;
    response
        .batch_item_failures
        .into_iter()
        .map(|f| f.item_identifier)
        .collect()
}

/// `POST /api/orders/{id}/cancel/` through the real handler.
pub async fn cancel_order(env: &TestEnv, user: Option<&str>, order_id: &str) -> (u16, Value) {
    let req = request("POST", &format!("/api/orders/{order_id}/cancel/"), user, b"");
    read(cancel_order::handle(&env.svc, req).await)
}

/// `GET /api/orders/?<query>` through the real handler, with cursors signed by `key`.
pub async fn list_orders(env: &TestEnv, key: &str, user: Option<&str>, query: &str) -> (u16, Value) {
    let listing = list_orders::Listing {
        services: env.svc.clone(),
        cursors: domain::usecases::CursorKey::new(key).expect("cursor key"),
    };
    let req = GatewayRequest {
        method: "GET",
        path: "/api/orders/",
        route_key: "GET /api/orders/",
        query,
        user,
        request_id: "test-request",
        ..Default::default()
    }
    .into_request()
    .expect("gateway event");
    read(list_orders::handle(&listing, req).await)
}

/// Runs the real sweeper handler on a scheduled event, with `budget` before the invocation's deadline
/// (on top of the handler's safety margin).
pub async fn sweep(env: &TestEnv, budget: std::time::Duration) -> domain::usecases::SweepReport {
    let event = serde_json::from_value(serde_json::json!({
        "version": "0", "id": "test-tick", "detail-type": "Scheduled Event", "source": "aws.events",
        "account": "123456789012", "time": "2026-11-25T07:00:00Z", "region": "us-east-1",
        "resources": ["arn:aws:events:us-east-1:123456789012:rule/expire"], "detail": {},
    }))
    .expect("scheduled event");
    let deadline = std::time::SystemTime::now() + expire_payments::SAFETY_MARGIN + budget;
    expire_payments::handle(&env.svc, event, deadline).await.expect("sweep")
}

/// A merchant's route through the real handler: `route` as template.yaml declares it (its
/// `{order_id}` and `{payment_id}` filled from `params` for the path), the caller `user` with `scopes`
/// in its token, `query` and `body` (JSON, or none for `null`). Attention cursors are signed with
/// `test-cursor-key`.
pub async fn admin(
    env: &TestEnv,
    user: Option<&str>,
    scopes: &[&str],
    route: &str,
    params: &[(&'static str, &str)],
    query: &str,
    body: &Value,
) -> (u16, Value) {
    let (method, template) = route.split_once(' ').expect("METHOD /path");
    let mut path = template.to_owned();
    for (name, value) in params {
        path = path.replace(&format!("{{{name}}}"), value);
    }
    let body = if body.is_null() {
        String::new()
    } else {
        body.to_string()
    };
    let state = admin_orders::Admin {
        services: env.svc.clone(),
        cursors: domain::usecases::CursorKey::new("test-cursor-key").expect("cursor key"),
    };
    let req = GatewayRequest {
        method,
        path: &path,
        route_key: route,
        query,
        headers: vec![("content-type".into(), "application/json".into())],
        path_parameters: params.iter().map(|(k, v)| (*k, (*v).to_owned())).collect(),
        body: body.as_bytes(),
        user,
        scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
        request_id: "test-request",
    }
    .into_request()
    .expect("gateway event");
    read(admin_orders::handle(&state, req).await)
}

/// Runs the real refund worker's handler on a scheduled event with `svc` (the env's, or one with a
/// port swapped for a fault), with a minute before the invocation's deadline.
pub async fn refund_run(svc: &domain::usecases::Services) -> domain::usecases::RefundReport {
    let event = serde_json::from_value(serde_json::json!({
        "version": "0", "id": "test-tick", "detail-type": "Scheduled Event", "source": "aws.events",
        "account": "123456789012", "time": "2026-11-25T07:00:00Z", "region": "us-east-1",
        "resources": ["arn:aws:events:us-east-1:123456789012:rule/refund"], "detail": {},
    }))
    .expect("scheduled event");
    let deadline = std::time::SystemTime::now() + refund_payments::SAFETY_MARGIN + std::time::Duration::from_secs(60);
    refund_payments::handle(svc, event, deadline).await.expect("refund run")
}

/// `POST /api/orders/{order_id}/payments/{payment_id}/checkout/` through the real handler.
pub async fn checkout(
    env: &TestEnv,
    user: Option<&str>,
    order_id: &str,
    payment_id: &str,
    body: &Value,
) -> (u16, Value) {
    let path = format!("/api/orders/{order_id}/payments/{payment_id}/checkout/");
    let text = if body.is_null() {
        String::new()
    } else {
        body.to_string()
    };
    read(checkout_payment::handle(&env.svc, request("POST", &path, user, text.as_bytes())).await)
}

/// How many entries of a payment's `logs` (as a response shows it) record `event`.
pub fn logged(payment: &Value, event: &str) -> usize {
    payment["logs"]
        .as_array()
        .expect("a payment's logs")
        .iter()
        .filter(|l| l["event"] == event)
        .count()
}
