//! A table of bad requests: each gets its exact status and code, and the store does not change.

use domain::usecases::request::MAX_BATCH_PRODUCTS;
use e2e::{read, request, TestEnv};
use serde_json::{json, Value};

struct Case {
    name: &'static str,
    batch: bool,
    user: Option<&'static str>,
    body: Vec<u8>,
    status: u16,
    code: &'static str,
    /// For validation errors: the field the details must name.
    field: Option<&'static str>,
}

fn order(name: &'static str, body: Value, status: u16, code: &'static str, field: Option<&'static str>) -> Case {
    Case {
        name,
        batch: false,
        user: Some("alice"),
        body: body.to_string().into_bytes(),
        status,
        code,
        field,
    }
}

fn batch(name: &'static str, body: Value, status: u16, code: &'static str, field: Option<&'static str>) -> Case {
    Case {
        name,
        batch: true,
        ..order(name, body, status, code, field)
    }
}

fn raw(name: &'static str, body: &[u8], field: &'static str) -> Case {
    Case {
        name,
        batch: false,
        user: Some("alice"),
        body: body.to_vec(),
        status: 400,
        code: "VALIDATION_ERROR",
        field: Some(field),
    }
}

/// A valid create_order body with one field replaced (or removed, for `Value::Null` on a missing key).
fn with(key: &str, value: Option<Value>) -> Value {
    let mut body = json!({"product_id": "p1", "address_id": "alice-home", "quantity": 1, "payment_method": "wechat", "ttl_minutes": 30});
    match value {
        Some(v) => body[key] = v,
        None => {
            body.as_object_mut().unwrap().remove(key);
        }
    }
    body
}

fn batch_with(items: Value) -> Value {
    json!({"items": items, "address_id": "alice-home"})
}

fn cases() -> Vec<Case> {
    const V: &str = "VALIDATION_ERROR";
    let big_padding = "x".repeat(65 * 1024);
    let too_many: Vec<Value> = (0..=MAX_BATCH_PRODUCTS)
        .map(|i| json!({"product_id": format!("p{i}"), "quantity": 1}))
        .collect();
    vec![
        raw("malformed json", b"{\"product_id\": ", "body"),
        raw("empty body", b"", "body"),
        raw("json array", b"[]", "body"),
        raw("json string", b"\"order\"", "body"),
        raw("not utf-8", b"{\"product_id\": \"\xff\xfe\"}", "body"),
        order(
            "missing product_id",
            with("product_id", None),
            400,
            V,
            Some("product_id"),
        ),
        order(
            "missing address_id",
            with("address_id", None),
            400,
            V,
            Some("address_id"),
        ),
        order("missing quantity", with("quantity", None), 400, V, Some("quantity")),
        order("quantity 0", with("quantity", Some(json!(0))), 400, V, Some("quantity")),
        order(
            "quantity 1000",
            with("quantity", Some(json!(1000))),
            400,
            V,
            Some("quantity"),
        ),
        order(
            "quantity -1",
            with("quantity", Some(json!(-1))),
            400,
            V,
            Some("quantity"),
        ),
        order(
            "quantity \"2\"",
            with("quantity", Some(json!("2"))),
            400,
            V,
            Some("quantity"),
        ),
        order(
            "quantity 1.5",
            with("quantity", Some(json!(1.5))),
            400,
            V,
            Some("quantity"),
        ),
        order(
            "quantity huge",
            with("quantity", Some(json!(u64::MAX))),
            400,
            V,
            Some("quantity"),
        ),
        order(
            "product_id bool",
            with("product_id", Some(json!(true))),
            400,
            V,
            Some("product_id"),
        ),
        order(
            "product_id negative",
            with("product_id", Some(json!(-5))),
            400,
            V,
            Some("product_id"),
        ),
        order(
            "product_id empty",
            with("product_id", Some(json!(""))),
            400,
            V,
            Some("product_id"),
        ),
        order(
            "product_id with key separator",
            with("product_id", Some(json!("p1#x"))),
            400,
            V,
            Some("product_id"),
        ),
        order(
            "address_id object",
            with("address_id", Some(json!({}))),
            400,
            V,
            Some("address_id"),
        ),
        order(
            "unknown payment method",
            with("payment_method", Some(json!("cash"))),
            400,
            V,
            Some("payment_method"),
        ),
        order(
            "payment method number",
            with("payment_method", Some(json!(1))),
            400,
            V,
            Some("payment_method"),
        ),
        order(
            "payment method upper case",
            with("payment_method", Some(json!("WECHAT"))),
            400,
            V,
            Some("payment_method"),
        ),
        order(
            "ttl 0",
            with("ttl_minutes", Some(json!(0))),
            400,
            V,
            Some("ttl_minutes"),
        ),
        order(
            "ttl 1441",
            with("ttl_minutes", Some(json!(1441))),
            400,
            V,
            Some("ttl_minutes"),
        ),
        order(
            "ttl string",
            with("ttl_minutes", Some(json!("30"))),
            400,
            V,
            Some("ttl_minutes"),
        ),
        order(
            "ttl negative",
            with("ttl_minutes", Some(json!(-30))),
            400,
            V,
            Some("ttl_minutes"),
        ),
        order(
            "unknown product",
            with("product_id", Some(json!("nope"))),
            400,
            "PRODUCT_NOT_FOUND",
            None,
        ),
        order(
            "inactive product",
            with("product_id", Some(json!("retired"))),
            400,
            "PRODUCT_NOT_FOUND",
            None,
        ),
        order(
            "integer id of unknown product",
            with("product_id", Some(json!(42))),
            400,
            "PRODUCT_NOT_FOUND",
            None,
        ),
        order(
            "another user's address",
            with("address_id", Some(json!("bob-home"))),
            400,
            "ADDRESS_INVALID",
            None,
        ),
        order(
            "unknown address",
            with("address_id", Some(json!("nowhere"))),
            400,
            "ADDRESS_INVALID",
            None,
        ),
        order(
            "more than in stock",
            with("quantity", Some(json!(11))),
            409,
            "INSUFFICIENT_STOCK",
            None,
        ),
        Case {
            user: None,
            ..order(
                "missing identity",
                with("quantity", Some(json!(1))),
                401,
                "UNAUTHENTICATED",
                None,
            )
        },
        Case {
            user: None,
            ..raw("missing identity beats bad body", b"{", "body")
        }
        .expect(401, "UNAUTHENTICATED"),
        order(
            "body over 64 KiB",
            with("padding", Some(json!(big_padding))),
            413,
            "PAYLOAD_TOO_LARGE",
            None,
        ),
        batch(
            "batch without items",
            json!({"address_id": "alice-home"}),
            400,
            V,
            Some("items"),
        ),
        batch("batch with empty items", batch_with(json!([])), 400, V, Some("items")),
        batch(
            "batch items not a list",
            batch_with(json!({"product_id": "p1"})),
            400,
            V,
            Some("items"),
        ),
        batch(
            "batch item not an object",
            batch_with(json!([1])),
            400,
            V,
            Some("items[0]"),
        ),
        batch(
            "batch item quantity 0",
            batch_with(json!([{"product_id": "p1", "quantity": 0}])),
            400,
            V,
            Some("items[0].quantity"),
        ),
        batch(
            "batch merged quantity over 999",
            batch_with(json!([{"product_id": "p1", "quantity": 600}, {"product_id": "p1", "quantity": 400}])),
            400,
            V,
            Some("items[0].quantity"),
        ),
        batch(
            "batch over the cap",
            batch_with(json!(too_many)),
            400,
            "BATCH_TOO_LARGE",
            None,
        ),
        batch(
            "batch with an unknown product",
            batch_with(json!([{"product_id": "p1", "quantity": 1}, {"product_id": "nope", "quantity": 1}])),
            400,
            "PRODUCT_NOT_FOUND",
            None,
        ),
        batch(
            "batch with an inactive product",
            batch_with(json!([{"product_id": "retired", "quantity": 1}])),
            400,
            "PRODUCT_NOT_FOUND",
            None,
        ),
        batch(
            "batch to another user's address",
            json!({"items": [{"product_id": "p1", "quantity": 1}], "address_id": "bob-home"}),
            400,
            "ADDRESS_INVALID",
            None,
        ),
        batch(
            "batch short after merging",
            batch_with(json!([{"product_id": "p1", "quantity": 6}, {"product_id": "p1", "quantity": 5}])),
            409,
            "INSUFFICIENT_STOCK",
            None,
        ),
        // Totals the money type could not read back (issue: an order that could never be read again).
        order(
            "total of two at the highest amount",
            json!({"product_id": "priceless", "address_id": "alice-home", "quantity": 2}),
            400,
            V,
            Some("quantity"),
        ),
        order(
            "total of 999 at a price past the catalogue's limit",
            json!({"product_id": "gold", "address_id": "alice-home", "quantity": 999}),
            400,
            V,
            Some("quantity"),
        ),
        batch(
            "batch with one total out of range",
            batch_with(json!([{"product_id": "p1", "quantity": 1}, {"product_id": "gold", "quantity": 999}])),
            400,
            V,
            Some("quantity"),
        ),
        Case {
            user: None,
            ..batch(
                "batch without identity",
                batch_with(json!([{"product_id": "p1", "quantity": 1}])),
                401,
                "UNAUTHENTICATED",
                None,
            )
        },
    ]
}

impl Case {
    fn expect(self, status: u16, code: &'static str) -> Case {
        Case {
            status,
            code,
            field: None,
            ..self
        }
    }
}

pub async fn every_bad_request_gets_its_code_and_changes_nothing(env: TestEnv) {
    env.product("p1", "100.00", 10).await;
    env.product_with("retired", "100.00", 10, domain::StockSource::Local, false)
        .await;
    // Priced past the catalogue file's limit, as a store written by another path could hold them.
    env.product("priceless", "999999999999.99", 1000).await;
    env.product("gold", "1001001002.00", 1000).await;
    env.address("alice-home", "alice").await;
    env.address("bob-home", "bob").await;
    let before = env.snapshot().await;

    let cases = cases();
    assert!(cases.len() >= 30);
    for case in &cases {
        let path = if case.batch {
            "/api/orders/create_batch_orders/"
        } else {
            "/api/orders/create_order/"
        };
        let req = request("POST", path, case.user, &case.body);
        let resp = if case.batch {
            create_batch_orders::handle(&env.svc, req).await
        } else {
            create_order::handle(&env.svc, req).await
        };
        let (status, body) = read(resp);
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (case.status, Some(case.code)),
            "{}: {body}",
            case.name
        );
        assert!(
            body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{}: {body}",
            case.name
        );
        assert_eq!(body["request_id"], "test-request", "{}", case.name);
        if let Some(field) = case.field {
            let fields: Vec<&str> = body["error"]["details"]["fields"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|f| f["field"].as_str())
                .collect();
            assert!(
                fields.contains(&field),
                "{}: expected field {field} in {fields:?}",
                case.name
            );
        }
        assert_eq!(env.snapshot().await, before, "{} changed the store", case.name);
    }
}
