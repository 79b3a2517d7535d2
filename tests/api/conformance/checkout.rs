//! checkout_payment (docs/api.md §16): what the shopper pays with, stored on the payment in a
//! conditional write, handed out again while young, refused for a payment that cannot be paid, on both
//! stores.

use std::sync::Arc;

use e2e::{cancel_order, checkout, create_order, create_payment, deliver, event, get_order, logged, TestEnv};
use infra::checkout::Providers;
use infra::providers::alipay::{china_time, request_signing_string, AlipayApp};
use serde_json::{json, Value};

const ALIPAY_APP: &str = "2021000117650139";

/// Alice's pending order of one fridge at 3299.00, paid by `method` (ttl `ttl` minutes); the gateway has
/// a bank account and an Alipay app whose public key is returned.
async fn given(env: TestEnv, method: &str, ttl: u32) -> (TestEnv, Value, String) {
    let key = testkit::providers::SigningKey::generate();
    let providers = Providers {
        bank: json!({"payee": "海尔商城", "bank": "招商银行青岛分行", "account_number": "5329 0000 1234"})
            .as_object()
            .cloned(),
        wechatpay: None,
        alipay_api: None,
        alipay: Some(AlipayApp {
            app_id: ALIPAY_APP.into(),
            key: infra::providers::signing::MerchantKey::parse(&key.pkcs8_base64()).unwrap(),
            notify_url: "https://shop.example/api/payments/callback/alipay/".into(),
            return_url: Some("https://shop.example/paid".into()),
            gateway: "https://openapi.alipay.com/gateway.do".into(),
        }),
    };
    let env = env.with_gateway(Arc::new(providers));
    env.product("fridge", "3299.00", 10).await;
    env.address("alice-home", "alice").await;
    let body = json!({"product_id": "fridge", "address_id": "alice-home", "quantity": 1, "payment_method": method, "ttl_minutes": ttl});
    let (status, created) = create_order(&env, Some("alice"), &body).await;
    assert_eq!(status, 201, "{created}");
    (env, created, key.public_key_base64())
}

fn ids(created: &Value) -> (String, String) {
    (
        created["order"]["id"].as_str().unwrap().to_owned(),
        created["payment"]["id"].as_str().unwrap().to_owned(),
    )
}

pub async fn a_bank_transfer_checkout_is_stored_once_and_handed_out_again(env: TestEnv) {
    // Given a pending order paid by bank transfer
    let (env, created, _) = given(env, "bank", 1440).await;
    let (order, payment) = ids(&created);

    // When the shopper checks it out (no body: the method's default scene)
    let (status, first) = checkout(&env, Some("alice"), &order, &payment, &Value::Null).await;

    // Then the bank's instructions name the payment as the reference and the exact amount
    assert_eq!(status, 200, "{first}");
    let c = &first["checkout"];
    assert_eq!(
        (c["provider"].as_str(), c["scene"].as_str()),
        (Some("bank"), Some("transfer"))
    );
    assert_eq!(c["reference"], payment.as_str());
    assert_eq!(c["amount"], "3299.00");
    assert_eq!(c["account"]["account_number"], "5329 0000 1234");
    assert_eq!(c["expires_at"], created["payment"]["expires_at"]);
    assert_eq!(first["payment"]["id"], payment.as_str());

    // and the store holds it on the payment, logged once, in one write
    let (_, got) = get_order(&env, Some("alice"), &order).await;
    assert_eq!(got["payments"][0]["checkout"], *c);
    assert_eq!(logged(&got["payments"][0], "checkout_created"), 1);
    assert_eq!(got["order"]["version"], 1);

    // When asked again, and again with the scene named: the stored checkout, nothing written
    let before = env.snapshot().await;
    for body in [Value::Null, json!({"scene": "transfer"})] {
        let (status, again) = checkout(&env, Some("alice"), &order, &payment, &body).await;
        assert_eq!((status, &again["checkout"]), (200, c));
    }
    assert_eq!(env.snapshot().await, before);

    // After 110 minutes the provider is asked again, and the newer checkout is stored
    env.clock.advance(111 * 60);
    let (status, later) = checkout(&env, Some("alice"), &order, &payment, &Value::Null).await;
    assert_eq!(status, 200, "{later}");
    assert_ne!(later["checkout"]["created_at"], c["created_at"]);
    let (_, got) = get_order(&env, Some("alice"), &order).await;
    assert_eq!(logged(&got["payments"][0], "checkout_created"), 2);
}

pub async fn an_alipay_page_checkout_is_a_signed_gateway_link(env: TestEnv) {
    let (env, created, app_public_key) = given(env, "alipay", 30).await;
    let (order, payment) = ids(&created);

    let (status, got) = checkout(&env, Some("alice"), &order, &payment, &json!({"scene": "page"})).await;
    assert_eq!(status, 200, "{got}");
    assert_eq!(
        (got["checkout"]["provider"].as_str(), got["checkout"]["scene"].as_str()),
        (Some("alipay"), Some("page"))
    );
    let url = got["checkout"]["url"].as_str().unwrap();
    let (gateway, query) = url.split_once('?').unwrap();
    assert_eq!(gateway, "https://openapi.alipay.com/gateway.do");
    let params: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let param = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    assert_eq!(param("method"), "alipay.trade.page.pay");
    assert_eq!(param("app_id"), ALIPAY_APP);
    assert_eq!(
        param("notify_url"),
        "https://shop.example/api/payments/callback/alipay/"
    );
    assert_eq!(param("return_url"), "https://shop.example/paid");
    let biz: Value = serde_json::from_str(&param("biz_content")).unwrap();
    assert_eq!(biz["out_trade_no"], payment.as_str());
    assert_eq!(biz["total_amount"], "3299.00", "yuan, exact");
    assert_eq!(biz["product_code"], "FAST_INSTANT_TRADE_PAY");
    let expires = domain::Timestamp::parse(created["payment"]["expires_at"].as_str().unwrap()).unwrap();
    assert_eq!(
        biz["time_expire"],
        china_time(expires),
        "the payment's expiry, China time"
    );
    let public = infra::providers::rsa_public_key(&app_public_key).unwrap();
    assert!(infra::providers::rsa_sha256_verifies(
        &public,
        request_signing_string(&params).as_bytes(),
        &param("sign")
    ));

    // Another scene for the same payment is refused: the shopper makes a new payment for it.
    let before = env.snapshot().await;
    let (status, body) = checkout(&env, Some("alice"), &order, &payment, &json!({"scene": "qr"})).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("PAYMENT_NOT_PAYABLE")),
        "{body}"
    );
    assert_eq!(env.snapshot().await, before);
}

/// A refused checkout: name, caller, order, payment, body, status, code.
type Refusal<'a> = (&'a str, Option<&'a str>, &'a str, &'a str, Value, u16, &'a str);

pub async fn a_checkout_is_refused_for_what_cannot_be_paid_and_changes_nothing(env: TestEnv) {
    let (env, created, _) = given(env, "wechat", 30).await;
    let (order, first_payment) = ids(&created);
    // A second payment supersedes the first; a paid and a cancelled order beside it
    let (status, again) = create_payment(&env, Some("alice"), &order, &json!({"payment_method": "bank"})).await;
    assert_eq!(status, 201, "{again}");
    let second_payment = again["payment"]["id"].as_str().unwrap().to_owned();
    let body = json!({"product_id": "fridge", "address_id": "alice-home", "quantity": 1, "payment_method": "bank"});
    let (_, paid) = create_order(&env, Some("alice"), &body).await;
    let (paid_order, paid_payment) = ids(&paid);
    let success = event(&paid_payment, "evt-paid", domain::ReportedStatus::Succeeded, "3299.00");
    assert!(deliver(&env, &[("m1", &success)]).await.is_empty());
    let (_, cancelled) = create_order(&env, Some("alice"), &body).await;
    let (cancelled_order, cancelled_payment) = ids(&cancelled);
    assert_eq!(cancel_order(&env, Some("alice"), &cancelled_order).await.0, 200);
    let before = env.snapshot().await;

    let cases: Vec<Refusal> = vec![
        (
            "superseded payment",
            Some("alice"),
            &order,
            &first_payment,
            Value::Null,
            409,
            "PAYMENT_NOT_PAYABLE",
        ),
        (
            "succeeded payment of a paid order",
            Some("alice"),
            &paid_order,
            &paid_payment,
            Value::Null,
            409,
            "PAYMENT_NOT_PAYABLE",
        ),
        (
            "cancelled order",
            Some("alice"),
            &cancelled_order,
            &cancelled_payment,
            Value::Null,
            409,
            "PAYMENT_NOT_PAYABLE",
        ),
        (
            "another user's order",
            Some("mallory"),
            &order,
            &second_payment,
            Value::Null,
            404,
            "ORDER_NOT_FOUND",
        ),
        (
            "a payment of another order",
            Some("alice"),
            &order,
            &paid_payment,
            Value::Null,
            404,
            "ORDER_NOT_FOUND",
        ),
        (
            "no such payment",
            Some("alice"),
            &order,
            "pay_0000000000000000000000000000",
            Value::Null,
            404,
            "ORDER_NOT_FOUND",
        ),
        (
            "no identity",
            None,
            &order,
            &second_payment,
            Value::Null,
            401,
            "UNAUTHENTICATED",
        ),
        (
            "a scene the method does not offer",
            Some("alice"),
            &order,
            &second_payment,
            json!({"scene": "native"}),
            400,
            "VALIDATION_ERROR",
        ),
        (
            "a scene that is not a string",
            Some("alice"),
            &order,
            &second_payment,
            json!({"scene": 7}),
            400,
            "VALIDATION_ERROR",
        ),
        (
            "a return_url that is not a URL",
            Some("alice"),
            &order,
            &second_payment,
            json!({"return_url": "javascript:alert(1)"}),
            400,
            "VALIDATION_ERROR",
        ),
        (
            "a body that is not an object",
            Some("alice"),
            &order,
            &second_payment,
            json!([1]),
            400,
            "VALIDATION_ERROR",
        ),
    ];
    for (name, user, order_id, payment_id, body, status, code) in cases {
        let (got, answer) = checkout(&env, user, order_id, payment_id, &body).await;
        assert_eq!(
            (got, answer["error"]["code"].as_str()),
            (status, Some(code)),
            "{name}: {answer}"
        );
        assert_eq!(env.snapshot().await, before, "{name} changed the store");
    }
    let (_, answer) = checkout(&env, Some("alice"), &order, &first_payment, &Value::Null).await;
    assert_eq!(answer["error"]["details"], json!({"status": "expired"}));

    // WeChat Pay JSAPI needs the payer; WeChat Pay itself is not configured here: 503, retry later
    let (_, wechat) = create_order(
        &env,
        Some("alice"),
        &json!({"product_id": "fridge", "address_id": "alice-home", "quantity": 1}),
    )
    .await;
    let (wechat_order, wechat_payment) = ids(&wechat);
    let before = env.snapshot().await;
    let (status, answer) = checkout(
        &env,
        Some("alice"),
        &wechat_order,
        &wechat_payment,
        &json!({"scene": "jsapi"}),
    )
    .await;
    assert_eq!(
        (status, answer["error"]["details"]["fields"][0]["field"].as_str()),
        (400, Some("payer_openid")),
        "{answer}"
    );
    let (status, answer) = checkout(&env, Some("alice"), &wechat_order, &wechat_payment, &Value::Null).await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (503, Some("PROVIDER_UNAVAILABLE")),
        "{answer}"
    );
    assert_eq!(answer["error"]["message"], "支付服务暂不可用");
    assert_eq!(
        env.snapshot().await,
        before,
        "nothing stored when the provider gives nothing"
    );

    // Past the payment's own expiry, a payment that is still open is no longer payable
    env.clock.advance(31 * 60);
    let (status, answer) = checkout(&env, Some("alice"), &order, &second_payment, &Value::Null).await;
    assert_eq!(
        (status, answer["error"]["details"]["status"].as_str()),
        (409, Some("expired")),
        "{answer}"
    );
}

/// Alice's pending WeChat Pay order of one fridge (3299.00, payable for a day), checked out through a
/// fake WeChat Pay over HTTP that knows the merchant's public key; the merchant's key is returned for the
/// JSAPI signature check. With `wrong_key`, the client signs with a key the fake does not know.
async fn with_wechatpay(
    env: TestEnv,
    wrong_key: bool,
) -> (
    TestEnv,
    testkit::fake_wechatpay::FakeWechatPay,
    testkit::providers::SigningKey,
) {
    use infra::providers::wechatpay::{WechatPayClient, WechatPayMerchant};
    use testkit::providers::{SigningKey, WechatPaySimulator};
    let merchant = SigningKey::generate();
    let sim = WechatPaySimulator::generate("PUB_KEY_ID_0114232134912410000000000001");
    let platform = sim.config();
    let (mchid, appid) = (sim.mchid.clone(), sim.appid.clone());
    let fake = testkit::fake_wechatpay::FakeWechatPay::start(sim, &merchant.public_key_pem())
        .await
        .expect("fake WeChat Pay");
    let signing = if wrong_key {
        SigningKey::generate()
    } else {
        SigningKey::from_pkcs8_base64(&merchant.pkcs8_base64()).unwrap()
    };
    let client = WechatPayClient::new(
        WechatPayMerchant {
            mchid,
            appid,
            serial: "5157F09EFDC096DE15EBE81A47057A7232F1B8E1".into(),
            key: infra::providers::signing::MerchantKey::parse(&signing.pkcs8_base64()).unwrap(),
            notify_url: "https://shop.example/api/payments/callback/wechatpay/".into(),
            base_url: fake.base_url.clone(),
        },
        platform,
        std::time::Duration::from_millis(500),
    )
    .unwrap()
    .with_breaker(5, std::time::Duration::from_millis(300));
    let providers = Providers {
        wechatpay: Some(client),
        ..Providers::default()
    };
    let env = env.with_gateway(Arc::new(providers));
    env.product("fridge", "3299.00", 100).await;
    env.address("alice-home", "alice").await;
    (env, fake, merchant)
}

async fn wechat_order(env: &TestEnv) -> (String, String, Value) {
    let body = json!({"product_id": "fridge", "address_id": "alice-home", "quantity": 1, "ttl_minutes": 1440});
    let (status, created) = create_order(env, Some("alice"), &body).await;
    assert_eq!(status, 201, "{created}");
    let (order, payment) = ids(&created);
    (order, payment, created)
}

pub async fn a_wechatpay_checkout_opens_the_trade_once_signed_both_ways(env: TestEnv) {
    let (env, fake, merchant) = with_wechatpay(env, false).await;
    let (order, payment, created) = wechat_order(&env).await;

    // Native: the code_url, from a trade the fake opened for exactly this payment
    let (status, got) = checkout(&env, Some("alice"), &order, &payment, &Value::Null).await;
    assert_eq!(status, 200, "{got}");
    assert_eq!(
        (got["checkout"]["provider"].as_str(), got["checkout"]["scene"].as_str()),
        (Some("wechatpay"), Some("native"))
    );
    assert!(
        got["checkout"]["code_url"]
            .as_str()
            .unwrap()
            .starts_with("weixin://wxpay/bizpayurl?pr="),
        "{got}"
    );
    let trade = fake
        .trade(&payment)
        .expect("a trade under out_trade_no = the payment id");
    assert_eq!(
        trade.request["amount"],
        json!({"total": 329900, "currency": "CNY"}),
        "fen, exact"
    );
    let expires = domain::Timestamp::parse(created["payment"]["expires_at"].as_str().unwrap()).unwrap();
    assert_eq!(
        trade.request["time_expire"],
        infra::providers::wechatpay::time_expire(expires)
    );
    assert!(trade.request["time_expire"].as_str().unwrap().ends_with("+08:00"));
    assert_eq!(
        trade.request["notify_url"],
        "https://shop.example/api/payments/callback/wechatpay/"
    );
    assert_eq!(trade.request["description"], "product fridge × 1");
    assert_eq!(fake.prepay_calls(), 1);

    // The same checkout again: stored, no second call
    let (status, again) = checkout(&env, Some("alice"), &order, &payment, &json!({"scene": "native"})).await;
    assert_eq!((status, &again["checkout"]), (200, &got["checkout"]));
    assert_eq!(fake.prepay_calls(), 1);

    // JSAPI for another payment: the prepay id in `package`, paySign by the merchant key over four lines
    let (order, payment, _) = wechat_order(&env).await;
    let body = json!({"scene": "jsapi", "payer_openid": "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"});
    let (status, got) = checkout(&env, Some("alice"), &order, &payment, &body).await;
    assert_eq!(status, 200, "{got}");
    let params = &got["checkout"]["params"];
    let prepay_id = fake.trade(&payment).unwrap().prepay_id;
    assert_eq!(params["package"], format!("prepay_id={prepay_id}"));
    assert_eq!(params["signType"], "RSA");
    assert_eq!(
        fake.trade(&payment).unwrap().request["payer"]["openid"],
        "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"
    );
    let signed = format!(
        "{}\n{}\n{}\n{}\n",
        params["appId"].as_str().unwrap(),
        params["timeStamp"].as_str().unwrap(),
        params["nonceStr"].as_str().unwrap(),
        params["package"].as_str().unwrap()
    );
    let public = infra::providers::rsa_public_key(&merchant.public_key_pem()).unwrap();
    assert!(infra::providers::rsa_sha256_verifies(
        &public,
        signed.as_bytes(),
        params["paySign"].as_str().unwrap()
    ));

    // A trade paid at the provider (its notification not arrived) whose checkout is asked afresh: the
    // provider says paid; the query's success is applied, and the payment is not payable here
    let (order, payment, _) = wechat_order(&env).await;
    assert_eq!(
        checkout(&env, Some("alice"), &order, &payment, &Value::Null).await.0,
        200
    );
    fake.pay(&payment);
    env.clock.advance(111 * 60);
    let (status, answer) = checkout(&env, Some("alice"), &order, &payment, &Value::Null).await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (409, Some("PAYMENT_NOT_PAYABLE")),
        "{answer}"
    );
    assert_paid_by_query(&env, &order, fake.trade(&payment).unwrap().transaction_id.as_deref()).await;
}

/// The order is paid, by the success the provider's query reported (event `query:<transaction id>`).
async fn assert_paid_by_query(env: &TestEnv, order: &str, transaction: Option<&str>) {
    let (_, got) = get_order(env, Some("alice"), order).await;
    assert_eq!(got["order"]["status"], "paid", "{got}");
    let paid = &got["payments"][0];
    assert_eq!(
        (paid["status"].as_str(), paid["provider_txn_id"].as_str()),
        (Some("succeeded"), transaction)
    );
    let event = format!("query:{}", transaction.unwrap());
    assert_eq!(
        paid["logs"].as_array().unwrap().last().unwrap()["event_id"],
        event.as_str()
    );
}

pub async fn a_wechatpay_that_fails_or_lies_is_503_and_nothing_is_stored(env: TestEnv) {
    let (env, fake, _) = with_wechatpay(env, false).await;

    // A signed answer changed on the way: not believed
    let (order, payment, _) = wechat_order(&env).await;
    let before = env.snapshot().await;
    fake.controls().set_tampering(true);
    let (status, answer) = checkout(&env, Some("alice"), &order, &payment, &Value::Null).await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (503, Some("PROVIDER_UNAVAILABLE")),
        "{answer}"
    );
    assert_eq!(env.snapshot().await, before);
    fake.controls().set_tampering(false);

    // Slower than the timeout: two tries, then 503 with Retry-After
    fake.controls().set_delay(std::time::Duration::from_millis(800));
    let requests = fake.controls().requests();
    let path = format!("/api/orders/{order}/payments/{payment}/checkout/");
    let resp = checkout_payment::handle(&env.svc, e2e::request("POST", &path, Some("alice"), b"")).await;
    assert_eq!(
        resp.headers().get("retry-after").and_then(|v| v.to_str().ok()),
        Some("5")
    );
    let (status, answer) = e2e::read(resp);
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (503, Some("PROVIDER_UNAVAILABLE")),
        "{answer}"
    );
    assert_eq!(fake.controls().requests() - requests, 2, "one retry");
    assert_eq!(env.snapshot().await, before);
    fake.controls().set_delay(std::time::Duration::ZERO);

    // A system error on every try: after five failed checkouts the breaker fails the next at once
    fake.controls().set_failing(true);
    for _ in 0..3 {
        // (two failures already counted above)
        assert_eq!(
            checkout(&env, Some("alice"), &order, &payment, &Value::Null).await.0,
            503
        );
    }
    let requests = fake.controls().requests();
    assert_eq!(
        checkout(&env, Some("alice"), &order, &payment, &Value::Null).await.0,
        503
    );
    assert_eq!(fake.controls().requests(), requests, "open: no request");
    // After the cool-down, a trial that succeeds closes it
    fake.controls().set_failing(false);
    tokio::time::sleep(std::time::Duration::from_millis(350)).await;
    let (status, got) = checkout(&env, Some("alice"), &order, &payment, &Value::Null).await;
    assert_eq!(status, 200, "{got}");
    assert_eq!(
        env.snapshot().await.len(),
        before.len(),
        "the checkout rewrote the payment, added nothing"
    );
}

pub async fn a_request_the_provider_cannot_verify_is_our_defect_500(env: TestEnv) {
    let (env, fake, _) = with_wechatpay(env, true).await;
    let (order, payment, _) = wechat_order(&env).await;
    let before = env.snapshot().await;
    let (status, answer) = checkout(&env, Some("alice"), &order, &payment, &Value::Null).await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (500, Some("INTERNAL_ERROR")),
        "{answer}"
    );
    assert_eq!(
        (fake.prepay_calls(), fake.trade(&payment)),
        (0, None),
        "the fake refused it: SIGN_ERROR"
    );
    assert_eq!(env.snapshot().await, before);
}

/// Alice's pending Alipay order, checked out as a QR trade through a fake Alipay gateway over HTTP that
/// knows the app's public key; with `wrong_key`, the app signs with a key the fake does not know.
async fn with_alipay(
    env: TestEnv,
    wrong_key: bool,
) -> (TestEnv, testkit::fake_alipay::FakeAlipay, String, String, Value) {
    use infra::providers::alipay::AlipayClient;
    use testkit::providers::{AlipaySimulator, SigningKey};
    let app_key = SigningKey::generate();
    let alipay = AlipaySimulator::generate();
    let verifier = alipay.config();
    let app_id = alipay.app_id.clone();
    let fake = testkit::fake_alipay::FakeAlipay::start(alipay, &app_key.public_key_base64())
        .await
        .expect("fake Alipay");
    let signing = if wrong_key { SigningKey::generate() } else { app_key };
    let app = AlipayApp {
        app_id,
        key: infra::providers::signing::MerchantKey::parse(&signing.pkcs8_base64()).unwrap(),
        notify_url: "https://shop.example/api/payments/callback/alipay/".into(),
        return_url: None,
        gateway: fake.gateway.clone(),
    };
    let client = AlipayClient::new(app, verifier, std::time::Duration::from_millis(500))
        .unwrap()
        .with_breaker(5, std::time::Duration::from_millis(300));
    let env = env.with_gateway(Arc::new(Providers {
        alipay_api: Some(client),
        ..Providers::default()
    }));
    env.product("fridge", "3299.00", 100).await;
    env.address("alice-home", "alice").await;
    let body = json!({"product_id": "fridge", "address_id": "alice-home", "quantity": 1, "payment_method": "alipay", "ttl_minutes": 1440});
    let (status, created) = create_order(&env, Some("alice"), &body).await;
    assert_eq!(status, 201, "{created}");
    let (order, payment) = ids(&created);
    (env, fake, order, payment, created)
}

pub async fn an_alipay_qr_checkout_opens_a_verified_trade_at_the_gateway(env: TestEnv) {
    let (env, fake, order, payment, created) = with_alipay(env, false).await;
    let qr = json!({"scene": "qr"});

    let (status, got) = checkout(&env, Some("alice"), &order, &payment, &qr).await;
    assert_eq!(status, 200, "{got}");
    assert_eq!(
        (got["checkout"]["provider"].as_str(), got["checkout"]["scene"].as_str()),
        (Some("alipay"), Some("qr"))
    );
    assert!(
        got["checkout"]["qr_code"]
            .as_str()
            .unwrap()
            .starts_with("https://qr.alipay.com/"),
        "{got}"
    );
    let trade = fake
        .trade(&payment)
        .expect("a trade under out_trade_no = the payment id");
    assert_eq!(trade.biz["total_amount"], "3299.00", "yuan, exact");
    let expires = domain::Timestamp::parse(created["payment"]["expires_at"].as_str().unwrap()).unwrap();
    assert_eq!(trade.biz["time_expire"], china_time(expires));
    let param = |name: &str| trade.params.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    assert_eq!(param("method").as_deref(), Some("alipay.trade.precreate"));
    assert_eq!(
        param("notify_url").as_deref(),
        Some("https://shop.example/api/payments/callback/alipay/")
    );
    assert_eq!(param("sign_type").as_deref(), Some("RSA2"));
    let requests = fake.controls().requests();
    assert_eq!(checkout(&env, Some("alice"), &order, &payment, &qr).await.0, 200);
    assert_eq!(
        fake.controls().requests(),
        requests,
        "the stored checkout, no second call"
    );

    // A tampered answer, and a gateway that keeps failing: 503, nothing stored
    let body = json!({"product_id": "fridge", "address_id": "alice-home", "quantity": 1, "payment_method": "alipay"});
    let (_, other) = create_order(&env, Some("alice"), &body).await;
    let (other_order, other_payment) = ids(&other);
    let before = env.snapshot().await;
    for (tamper, failing) in [(true, false), (false, true)] {
        fake.controls().set_tampering(tamper);
        fake.controls().set_failing(failing);
        let (status, answer) = checkout(&env, Some("alice"), &other_order, &other_payment, &qr).await;
        assert_eq!(
            (status, answer["error"]["code"].as_str()),
            (503, Some("PROVIDER_UNAVAILABLE")),
            "{answer}"
        );
        assert_eq!(env.snapshot().await, before);
    }
    fake.controls().set_tampering(false);
    fake.controls().set_failing(false);

    // Paid at Alipay (its notification not arrived), then asked afresh: the trade has succeeded; the
    // query's success is applied, and the payment is not payable here
    fake.pay(&payment);
    env.clock.advance(111 * 60);
    let (status, answer) = checkout(&env, Some("alice"), &order, &payment, &qr).await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (409, Some("PAYMENT_NOT_PAYABLE")),
        "{answer}"
    );
    assert_paid_by_query(&env, &order, Some(fake.trade(&payment).unwrap().trade_no.as_str())).await;
}

pub async fn an_alipay_request_signed_with_another_key_is_our_defect_500(env: TestEnv) {
    let (env, fake, order, payment, _) = with_alipay(env, true).await;
    let before = env.snapshot().await;
    let (status, answer) = checkout(&env, Some("alice"), &order, &payment, &json!({"scene": "qr"})).await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (500, Some("INTERNAL_ERROR")),
        "{answer}"
    );
    assert_eq!(
        fake.trade(&payment),
        None,
        "the gateway refused it: isv.invalid-signature"
    );
    assert_eq!(env.snapshot().await, before);
}

/// The shopper pays at the fake provider; the provider's own notification, posted to the receiver, pays
/// the order through the queue and the processor, once.
pub async fn paying_at_the_provider_pays_the_order_through_its_notification(env: TestEnv) {
    use payment_callback::Receiver;
    use testkit::providers::{AlipaySimulator, SigningKey, WechatPaySimulator};

    // Both providers faked over HTTP, the receiver verifying with the same platform keys
    let (merchant, app_key) = (SigningKey::generate(), SigningKey::generate());
    let wechat = WechatPaySimulator::generate("PUB_KEY_ID_0114232134912410000000000001");
    let alipay = AlipaySimulator::generate();
    let (wechat_verifier, alipay_verifier) = (wechat.config(), alipay.config());
    // The receiver, verifying with the same platform keys.
    let queue = Arc::new(e2e::MemoryQueue::default());
    let rx = Receiver {
        verifier: domain::SignatureVerifier::from_list("generic-secret-0123456789").unwrap(),
        queue: queue.clone(),
        clock: Arc::new(domain::ports::SystemClock),
        wechatpay: Some(Arc::new(wechat.config())),
        alipay: Some(Arc::new(alipay.config())),
    };
    let (mchid, appid, app_id) = (wechat.mchid.clone(), wechat.appid.clone(), alipay.app_id.clone());
    let wechat_fake = testkit::fake_wechatpay::FakeWechatPay::start(wechat, &merchant.public_key_pem())
        .await
        .unwrap();
    let alipay_fake = testkit::fake_alipay::FakeAlipay::start(alipay, &app_key.public_key_base64())
        .await
        .unwrap();
    let key = |k: &SigningKey| infra::providers::signing::MerchantKey::parse(&k.pkcs8_base64()).unwrap();
    let providers = Providers {
        wechatpay: Some(
            infra::providers::wechatpay::WechatPayClient::new(
                infra::providers::wechatpay::WechatPayMerchant {
                    mchid,
                    appid,
                    serial: "5157F09EFDC096DE15EBE81A47057A7232F1B8E1".into(),
                    key: key(&merchant),
                    notify_url: "http://127.0.0.1:9/unused".into(),
                    base_url: wechat_fake.base_url.clone(),
                },
                wechat_verifier,
                std::time::Duration::from_secs(2),
            )
            .unwrap(),
        ),
        alipay_api: Some(
            infra::providers::alipay::AlipayClient::new(
                AlipayApp {
                    app_id,
                    key: key(&app_key),
                    notify_url: "http://127.0.0.1:9/unused".into(),
                    return_url: None,
                    gateway: alipay_fake.gateway.clone(),
                },
                alipay_verifier,
                std::time::Duration::from_secs(2),
            )
            .unwrap(),
        ),
        ..Providers::default()
    };
    let env = env.with_gateway(Arc::new(providers));
    env.product("fridge", "3299.00", 10).await;
    env.address("alice-home", "alice").await;

    for (method, scene) in [("wechat", "native"), ("alipay", "qr")] {
        // Given a checked-out payment
        let body = json!({"product_id": "fridge", "address_id": "alice-home", "quantity": 1, "payment_method": method});
        let (_, created) = create_order(&env, Some("alice"), &body).await;
        let (order, payment) = ids(&created);
        let (status, got) = checkout(&env, Some("alice"), &order, &payment, &json!({"scene": scene})).await;
        assert_eq!(status, 200, "{got}");

        // When the shopper pays at the provider, and its notification reaches the receiver twice
        let (headers, body, content_type, answer) = match method {
            "wechat" => {
                let posted = wechat_fake.pay(&payment).expect("an open trade");
                (posted.headers, posted.body, "application/json", "")
            }
            _ => {
                let body = alipay_fake.pay(&payment).expect("an open trade");
                (vec![], body, "application/x-www-form-urlencoded", "success")
            }
        };
        for _ in 0..2 {
            let mut headers = headers.clone();
            headers.push(("content-type".into(), content_type.into()));
            let path = format!(
                "/api/payments/callback/{}/",
                if method == "wechat" { "wechatpay" } else { "alipay" }
            );
            let route = format!("POST {path}");
            let req = infra::http::GatewayRequest {
                method: "POST",
                path: &path,
                route_key: &route,
                headers,
                body: body.as_bytes(),
                request_id: "notify",
                ..Default::default()
            }
            .into_request()
            .unwrap();
            let resp = payment_callback::handle_any(&rx, req).await;
            assert_eq!(resp.status().as_u16(), 200, "{method}");
            assert_eq!(String::from_utf8(resp.body().to_vec()).unwrap(), answer, "{method}");
        }
        queue.drain_into(&env).await;

        // Then the order is paid, once, by the provider's amount to the fen
        let (_, got) = get_order(&env, Some("alice"), &order).await;
        assert_eq!(got["order"]["status"], "paid", "{method}: {got}");
        assert_eq!(got["payments"][0]["status"], "succeeded");
        let paid = got["order"]["history"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|h| h["to"] == "paid")
            .count();
        assert_eq!(paid, 1, "{method}");
        assert!(
            wechat_fake.pay(&payment).is_none() && alipay_fake.pay(&payment).is_none(),
            "paid once"
        );
    }
}

/// A change judged from a state the caller read earlier (the checkout's plan) is written only if the
/// order has not moved since; if it has, the store reads it again and the domain judges afresh.
pub async fn a_change_judged_from_an_earlier_read_is_judged_again_if_the_order_moved(env: TestEnv) {
    use domain::change::{update_from_with, Change, Decided};
    let (env, created, _) = given(env, "bank", 30).await;
    let (order, _) = ids(&created);
    let id = domain::OrderId::parse(&order).unwrap();
    let read = env.svc.orders.order_with_payments(&id).await.unwrap().unwrap();
    let versions = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let judge = |seen: std::sync::Arc<std::sync::Mutex<Vec<u64>>>| {
        move |state: &domain::change::OrderWithPayments| {
            seen.lock().unwrap().push(state.order.version);
            (state.order.version, Some(Change::of(state, state.order.created_at)))
        }
    };

    // Nothing moved: the earlier read is judged once and its change written.
    let decided = update_from_with(env.svc.updates.as_ref(), read.clone(), judge(versions.clone())).await;
    assert_eq!(decided.unwrap(), Decided::Outcome(read.order.version));
    // (the outcome is the judgement of the state judged last, computed again: consecutive repeats fold)
    let judged = |seen: &std::sync::Mutex<Vec<u64>>| {
        let mut versions = seen.lock().unwrap().clone();
        versions.dedup();
        versions
    };
    assert_eq!(judged(&versions).last(), Some(&read.order.version));

    // The order moved since (the write above): the stale read is refused, the order read again and
    // judged afresh, and that judgement's change is the one written.
    versions.lock().unwrap().clear();
    let decided = update_from_with(env.svc.updates.as_ref(), read.clone(), judge(versions.clone())).await;
    let moved = read.order.version + 1;
    assert_eq!(decided.unwrap(), Decided::Outcome(moved));
    // (a store may skip the stale read, as DynamoDB does, or read afresh at once, as SQLite does)
    let judged = judged(&versions);
    assert_eq!(judged.last(), Some(&moved), "{judged:?}");
    assert!(
        judged.iter().all(|v| *v == read.order.version || *v == moved),
        "{judged:?}"
    );
    let now = env.svc.orders.order_with_payments(&id).await.unwrap().unwrap();
    assert_eq!(now.order.version, moved + 1);
}
