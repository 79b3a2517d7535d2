//! The handlers fed API Gateway HTTP API (payload 2.0) events as a deployed API sends them, from the
//! JSON fixtures in tests/fixtures/apigw: status, headers and body are checked, and the store after.

use e2e::{read, sqlite, TestEnv};
use lambda_http::{Body, Request, Response};
use serde_json::json;

fn event(name: &str, replacements: &[(&str, &str)]) -> Request {
    let path = format!("{}/fixtures/apigw/{name}.json", env!("CARGO_MANIFEST_DIR"));
    let mut text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    for (from, to) in replacements {
        text = text.replace(from, to);
    }
    lambda_http::request::from_str(&text).unwrap_or_else(|e| panic!("{name} is not an API Gateway event: {e}"))
}

async fn shop() -> TestEnv {
    let env = sqlite().await;
    env.product("fridge", "3299.00", 10).await;
    env.product("washer", "2199.00", 10).await;
    env.address("alice-home", "alice").await;
    env
}

fn content_type(resp: &Response<Body>) -> Option<&str> {
    resp.headers().get("content-type").and_then(|v| v.to_str().ok())
}

#[tokio::test]
async fn create_order_event_creates_the_order_for_the_jwt_subject() {
    let env = shop().await;

    let resp = create_order::handle(&env.svc, event("create_order", &[])).await;

    assert_eq!(content_type(&resp), Some("application/json"));
    let (status, body) = read(resp);
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["order"]["user_id"], "alice");
    assert_eq!(body["order"]["quantity"], 2);
    assert_eq!(body["order"]["total_amount"], "6598.00");
    assert_eq!(body["payment"]["method"], "alipay");
    assert_eq!(env.stock(&domain::ProductId::parse("fridge").unwrap()).await, 8);
}

#[tokio::test]
async fn base64_bodies_are_decoded() {
    let env = shop().await;
    let (status, body) = read(create_order::handle(&env.svc, event("create_order_base64", &[])).await);
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["order"]["quantity"], 2);
}

#[tokio::test]
async fn without_an_authorizer_no_header_or_body_field_is_trusted() {
    let env = shop().await;
    let before = env.snapshot().await;

    let resp = create_order::handle(&env.svc, event("create_order_no_authorizer", &[])).await;

    assert_eq!(content_type(&resp), Some("application/json"));
    let (status, body) = read(resp);
    assert_eq!(status, 401);
    assert_eq!(
        body,
        json!({"error": {"code": "UNAUTHENTICATED", "message": "未认证", "details": null}, "request_id": "Cq1vQhX0oAMEb9Q="})
    );
    assert_eq!(env.snapshot().await, before);
}

#[tokio::test]
async fn create_batch_orders_event_merges_and_answers_in_request_order() {
    let env = shop().await;
    let (status, body) = read(create_batch_orders::handle(&env.svc, event("create_batch_orders", &[])).await);
    assert_eq!(status, 201, "{body}");
    let lines: Vec<_> = body["orders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| (o["product_id"].clone(), o["quantity"].clone()))
        .collect();
    assert_eq!(lines, [(json!("fridge"), json!(2)), (json!("washer"), json!(2))]);
    assert_eq!(body["orders"][0]["ttl_minutes"], 60);
}

#[tokio::test]
async fn get_order_event_reads_the_path_parameter() {
    let env = shop().await;
    let (_, created) = read(create_order::handle(&env.svc, event("create_order", &[])).await);
    let id = created["order"]["id"].as_str().unwrap();

    let resp = get_order::handle(&env.svc, event("get_order", &[("{{order_id}}", id)])).await;

    assert_eq!(content_type(&resp), Some("application/json"));
    let (status, body) = read(resp);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["order"], created["order"]);
    assert_eq!(body["payments"], json!([created["payment"]]));
}

#[tokio::test]
async fn undecodable_path_parameters_are_not_found_in_the_catalogue_shape() {
    let env = e2e::sqlite().await;
    for id in ["%ff", "\u{fffd}", "a/b", ""] {
        let (status, body) = e2e::get_order(&env, Some("alice"), id).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (404, Some("ORDER_NOT_FOUND")),
            "{id:?}: {body}"
        );
        assert_eq!(body["error"]["message"], "订单不存在");
        let (status, body) = e2e::cancel_order(&env, Some("alice"), id).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (404, Some("ORDER_NOT_FOUND")),
            "{id:?}: {body}"
        );
    }
}

/// An event as a deployed API could deliver it, but with `Host` and `X-Forwarded-Proto` values no URL can
/// be built from: `lambda_http`'s own conversion unwraps that URL parse (and would abort the process,
/// built with `panic = "abort"`); the wiring's guard drops those headers first and the handler answers.
#[tokio::test]
async fn a_host_or_forwarded_proto_no_url_can_be_built_from_cannot_crash_a_handler() {
    let path = format!("{}/fixtures/apigw/create_order.json", env!("CARGO_MANIFEST_DIR"));
    let fixture = std::fs::read_to_string(&path).unwrap();
    for (host, proto) in [
        ("a b", "https"),
        ("[", "https"),
        ("x:99999999", "https"),
        ("%", "https"),
        ("x", "1bad"),
        ("x", "://"),
    ] {
        let text = fixture
            .replace("abc123.execute-api.ap-east-1.amazonaws.com", host)
            .replace(
                "\"x-forwarded-proto\": \"https\"",
                &format!("\"x-forwarded-proto\": \"{proto}\""),
            );
        assert_ne!(text, fixture);

        let unguarded = std::panic::catch_unwind(|| lambda_http::request::from_str(&text));
        assert!(
            unguarded.is_err(),
            "{host} / {proto}: lambda_http no longer panics; the guard may be dropped"
        );

        let mut event: lambda_http::request::LambdaRequest = serde_json::from_str(&text).unwrap();
        infra::http::guard_event(&mut event);
        let request: Request = event.into();
        let env = shop().await;
        let (status, body) = read(create_order::handle(&env.svc, request).await);
        assert_eq!(status, 201, "{host} / {proto}: {body}");
        assert_eq!(body["order"]["user_id"], "alice");
    }
}
