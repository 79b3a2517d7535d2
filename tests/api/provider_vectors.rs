//! The providers' verifiers against vectors written out by hand, not made with the verifier's own
//! functions: a canonicalisation bug in `alipay::signing_string` (or in how the form is decoded) would
//! otherwise sign and verify the same wrong string and pass. The simulators are used only for their keys
//! and, for WeChat Pay, the AES-GCM sealing the verifier must undo.

use domain::{Money, ReportedStatus, Timestamp};
use infra::providers::alipay::signing_string;
use infra::providers::{Rejection, Verdict};
use testkit::providers::{AlipaySimulator, WechatPaySimulator};

const APP_ID: &str = "2021000117650139";

/// A notification body as Alipay posts it (form-urlencoded, written out by hand): a subject with
/// non-ASCII text, a space (`+`) and an encoded `&`, a body holding `=`, an empty parameter, and `sign` /
/// `sign_type` in the middle rather than at the end.
fn alipay_body(sign_type: &str, signature: &str, trade_status: &str) -> String {
    format!(
        "gmt_payment=2026-11-25+15%3A00%3A04&notify_time=2026-11-25+15%3A00%3A05&charset=utf-8\
         &subject=%E6%B5%B7%E5%B0%94+%E5%86%B0%E7%AE%B1%26%E7%83%AD%E6%B0%B4%E5%99%A8\
         &sign_type={sign_type}&sign={}&body=color%3Dwhite&passback_params=&app_id={APP_ID}\
         &notify_id=ntf-vector-1&out_trade_no=pay_0195f2a0c3d47e8f9a0b1c2d3e4f\
         &total_amount=3299.00&trade_no=2026112522001400000000000001&trade_status={trade_status}\
         &version=1.0",
        form_urlencoded::byte_serialize(signature.as_bytes()).collect::<String>()
    )
}

/// The string Alipay signs for [`alipay_body`], written out by hand: decoded values, `sign`, `sign_type`
/// and the empty `passback_params` left out, names in byte order.
fn alipay_signed(trade_status: &str) -> String {
    format!(
        "app_id={APP_ID}&body=color=white&charset=utf-8&gmt_payment=2026-11-25 15:00:04\
         &notify_id=ntf-vector-1&notify_time=2026-11-25 15:00:05&out_trade_no=pay_0195f2a0c3d47e8f9a0b1c2d3e4f\
         &subject=海尔 冰箱&热水器&total_amount=3299.00&trade_no=2026112522001400000000000001\
         &trade_status={trade_status}&version=1.0"
    )
}

#[test]
fn an_alipay_notification_verifies_over_the_string_written_out_by_hand() {
    let alipay = AlipaySimulator::generate();
    let config = alipay.config();
    for trade_status in ["TRADE_SUCCESS", "TRADE_FINISHED"] {
        let signature = alipay.key.sign(alipay_signed(trade_status).as_bytes());
        let body = alipay_body("RSA2", &signature, trade_status);

        // The verifier's canonical string is the hand-written one.
        let params: Vec<(String, String)> = form_urlencoded::parse(body.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        assert_eq!(signing_string(&params), alipay_signed(trade_status));

        let Ok(Verdict::Event(event)) = config.verify(body.as_bytes()) else {
            panic!("{trade_status}: {:?}", config.verify(body.as_bytes()));
        };
        assert_eq!(event.status, ReportedStatus::Succeeded, "{trade_status}");
        assert_eq!(event.amount, Money::parse("3299.00").unwrap());
        assert_eq!(event.event_id.as_str(), "ntf-vector-1");
        assert_eq!(event.payment_id.as_str(), "pay_0195f2a0c3d47e8f9a0b1c2d3e4f");
        assert_eq!(
            event.occurred_at,
            Timestamp::parse("2026-11-25T07:00:04Z").unwrap(),
            "Beijing time"
        );
    }
}

#[test]
fn alipay_refuses_a_repeated_parameter_another_sign_type_and_a_changed_value() {
    let alipay = AlipaySimulator::generate();
    let config = alipay.config();
    let signature = alipay.key.sign(alipay_signed("TRADE_SUCCESS").as_bytes());
    let good = alipay_body("RSA2", &signature, "TRADE_SUCCESS");
    assert!(matches!(config.verify(good.as_bytes()), Ok(Verdict::Event(_))));

    let repeated = format!("{good}&total_amount=0.01");
    let rsa1 = alipay_body("RSA", &signature, "TRADE_SUCCESS");
    let changed = good.replace("color%3Dwhite", "color%3Dblack");
    let plus_as_literal = good.replace("%E6%B5%B7%E5%B0%94+", "%E6%B5%B7%E5%B0%94%2B");
    for (name, body) in [
        ("a parameter given twice", repeated),
        ("sign_type RSA", rsa1),
        ("a signed value changed", changed),
        ("a space turned into a literal +", plus_as_literal),
    ] {
        assert!(
            matches!(config.verify(body.as_bytes()), Err(Rejection::Signature(_))),
            "{name}: {:?}",
            config.verify(body.as_bytes())
        );
    }
}

/// A WeChat Pay notification for `transaction`, signed by the platform key at `timestamp`.
fn wechat_headers(
    sim: &WechatPaySimulator,
    transaction: &serde_json::Value,
    timestamp: i64,
) -> (Vec<(String, String)>, String) {
    let body = WechatPaySimulator::body("EV-vector-1", &sim.apiv3_key, transaction);
    let posted = sim.post(body, timestamp);
    (posted.headers, posted.body)
}

fn verify_wechat(
    sim: &WechatPaySimulator,
    transaction: &serde_json::Value,
    timestamp: i64,
    now: Timestamp,
) -> Result<Verdict, Rejection> {
    let (headers, body) = wechat_headers(sim, transaction, timestamp);
    let header = |name: &str| headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    sim.config().verify(&header, body.as_bytes(), now)
}

#[test]
fn wechatpay_trade_states_map_as_documented() {
    let sim = WechatPaySimulator::generate("PUB_KEY_ID_0114232134912410000000000001");
    let now = Timestamp::now();
    for (state, expected) in [
        ("SUCCESS", ReportedStatus::Succeeded),
        ("USERPAYING", ReportedStatus::Processing),
        ("PAYERROR", ReportedStatus::Failed),
        ("REVOKED", ReportedStatus::Failed),
        ("CLOSED", ReportedStatus::Failed),
    ] {
        let transaction = sim.transaction("pay_0195f2a0c3d47e8f9a0b1c2d3e4f", state, 329_900);
        match verify_wechat(&sim, &transaction, now.unix_seconds(), now) {
            Ok(Verdict::Event(event)) => {
                assert_eq!(event.status, expected, "{state}");
                assert_eq!(event.amount, Money::parse("3299.00").unwrap(), "{state}: fen to yuan");
            }
            other => panic!("{state}: {other:?}"),
        }
    }
    let transaction = sim.transaction("pay_0195f2a0c3d47e8f9a0b1c2d3e4f", "NOTPAY", 329_900);
    assert!(matches!(
        verify_wechat(&sim, &transaction, now.unix_seconds(), now),
        Ok(Verdict::Acknowledge(_))
    ));
}

#[test]
fn wechatpay_refund_notifications_map_as_documented_and_only_ours_are_believed() {
    let sim = WechatPaySimulator::generate("PUB_KEY_ID_0114232134912410000000000001");
    let now = Timestamp::now();
    let payment = domain::PaymentId::parse("pay_0195f2a0c3d47e8f9a0b1c2d3e4f").unwrap();
    let ours = domain::refund::out_refund_no(&payment);
    let header_of = |posted: &testkit::providers::Posted| {
        let headers = posted.headers.clone();
        move |name: &str| headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    };
    for (status, expected) in [
        ("SUCCESS", ReportedStatus::Refunded),
        ("ABNORMAL", ReportedStatus::RefundAbnormal),
        ("CLOSED", ReportedStatus::RefundClosed),
    ] {
        let resource = sim.refund_resource(
            payment.as_str(),
            &ours,
            "50000000382019052709732678859",
            status,
            329_900,
            329_900,
        );
        let posted = sim.refund_notification("EV-refund-1", &resource);
        match sim.config().verify(&header_of(&posted), posted.body.as_bytes(), now) {
            Ok(Verdict::Event(event)) => {
                assert_eq!(event.status, expected, "{status}");
                assert_eq!(event.payment_id, payment);
                assert_eq!(event.provider_txn_id, "50000000382019052709732678859", "the refund id");
                assert_eq!(
                    event.amount,
                    Money::parse("3299.00").unwrap(),
                    "amount.refund, fen to yuan"
                );
                assert_eq!(event.event_id.as_str(), "EV-refund-1");
            }
            other => panic!("{status}: {other:?}"),
        }
    }
    // Another refund number than the one this service derives: acknowledged, never applied
    let resource = sim.refund_resource(payment.as_str(), "R-someone-else", "5000", "SUCCESS", 100, 329_900);
    let posted = sim.refund_notification("EV-refund-2", &resource);
    assert!(matches!(
        sim.config().verify(&header_of(&posted), posted.body.as_bytes(), now),
        Ok(Verdict::Acknowledge(_))
    ));
    // Another merchant's refund, or an event type its status contradicts: refused
    let mut other = sim.refund_resource(payment.as_str(), &ours, "5000", "SUCCESS", 100, 100);
    other["mchid"] = serde_json::json!(format!("{}0", sim.mchid));
    let posted = sim.refund_notification("EV-refund-3", &other);
    assert!(matches!(
        sim.config().verify(&header_of(&posted), posted.body.as_bytes(), now),
        Err(Rejection::Refused(_))
    ));
    let resource = sim.refund_resource(payment.as_str(), &ours, "5000", "SUCCESS", 100, 100);
    let body = WechatPaySimulator::sealed(
        "EV-refund-4",
        &sim.apiv3_key,
        "REFUND.CLOSED",
        "退款关闭",
        "refund",
        &resource,
    );
    let posted = sim.post(body, now.unix_seconds());
    assert!(matches!(
        sim.config().verify(&header_of(&posted), posted.body.as_bytes(), now),
        Err(Rejection::Refused(_))
    ));
}

#[test]
fn wechatpay_refuses_a_timestamp_from_the_future_and_another_appid() {
    let sim = WechatPaySimulator::generate("PUB_KEY_ID_0114232134912410000000000001");
    let now = Timestamp::now();
    let transaction = sim.transaction("pay_0195f2a0c3d47e8f9a0b1c2d3e4f", "SUCCESS", 329_900);
    for skew in [-300, 300] {
        assert!(
            verify_wechat(&sim, &transaction, now.unix_seconds() + skew, now).is_ok(),
            "{skew} s is within the window"
        );
    }
    for skew in [-301, 301] {
        assert_eq!(
            verify_wechat(&sim, &transaction, now.unix_seconds() + skew, now)
                .err()
                .map(|r| matches!(r, Rejection::Signature(_))),
            Some(true),
            "{skew} s"
        );
    }
    let mut other_app = transaction.clone();
    other_app["appid"] = "wx0000000000000000".into();
    assert!(
        matches!(
            verify_wechat(&sim, &other_app, now.unix_seconds(), now),
            Err(Rejection::Refused(_))
        ),
        "another appid"
    );
}

// Our requests to the providers: signed their way, checked against strings written out by hand, and
// their answers believed only once verified over the exact bytes they sent.

fn merchant_key(key: &testkit::providers::SigningKey) -> infra::providers::signing::MerchantKey {
    infra::providers::signing::MerchantKey::parse(&key.pkcs8_base64()).expect("a PKCS#8 key")
}

#[test]
fn a_wechatpay_request_carries_the_merchants_signature_over_the_five_lines() {
    use infra::providers::wechatpay::WechatPayMerchant;
    let key = testkit::providers::SigningKey::generate();
    let merchant = WechatPayMerchant {
        mchid: "1900000109".into(),
        appid: "wxd678efh567hg6787".into(),
        serial: "5157F09EFDC096DE15EBE81A47057A7232F1B8E1".into(),
        key: merchant_key(&key),
        notify_url: "https://shop.example/api/payments/callback/wechatpay/".into(),
        base_url: infra::providers::wechatpay::DEFAULT_BASE_URL.into(),
    };
    assert!(
        !format!("{merchant:?}").contains(&key.pkcs8_base64()[..40]),
        "the key stays out of Debug"
    );
    let body = r#"{"appid":"wxd678efh567hg6787","mchid":"1900000109","description":"海尔 冰箱","out_trade_no":"pay_0195f2a0c3d47e8f9a0b1c2d3e4f","amount":{"total":329900,"currency":"CNY"}}"#;
    let header = merchant.authorization(
        "POST",
        "/v3/pay/transactions/native",
        body,
        1_764_054_000,
        "593BEC0C930BF1AFEB40B4A08C8FB242",
    );

    let fields = header
        .strip_prefix("WECHATPAY2-SHA256-RSA2048 ")
        .expect("the scheme first, then one space");
    let field = |name: &str| {
        fields
            .split(',')
            .find_map(|f| f.strip_prefix(&format!("{name}=\"")))
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or_else(|| panic!("{name} in {header}"))
            .to_owned()
    };
    assert_eq!(field("mchid"), "1900000109");
    assert_eq!(field("nonce_str"), "593BEC0C930BF1AFEB40B4A08C8FB242");
    assert_eq!(field("timestamp"), "1764054000");
    assert_eq!(field("serial_no"), "5157F09EFDC096DE15EBE81A47057A7232F1B8E1");
    let signed = format!("POST\n/v3/pay/transactions/native\n1764054000\n593BEC0C930BF1AFEB40B4A08C8FB242\n{body}\n");
    let public = infra::providers::rsa_public_key(&key.public_key_pem()).unwrap();
    assert!(infra::providers::rsa_sha256_verifies(
        &public,
        signed.as_bytes(),
        &field("signature")
    ));
    assert!(!infra::providers::rsa_sha256_verifies(
        &public,
        signed.replace("329900", "329901").as_bytes(),
        &field("signature")
    ));
}

#[test]
fn a_wechatpay_answer_is_believed_only_with_the_platforms_signature() {
    let sim = WechatPaySimulator::generate("PUB_KEY_ID_0114232134912410000000000001");
    let now = Timestamp::now();
    let answer = r#"{"code_url":"weixin://wxpay/bizpayurl?pr=p4lpSuKzz"}"#.to_owned();
    let posted = sim.post(answer.clone(), now.unix_seconds());
    let header = |name: &str| posted.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    assert!(sim.config().verify_signed(&header, answer.as_bytes(), now).is_ok());
    let forged = answer.replace("p4lpSuKzz", "attacker00");
    assert!(matches!(
        sim.config().verify_signed(&header, forged.as_bytes(), now),
        Err(Rejection::Signature(_))
    ));
    let unsigned = |name: &str| (name != "wechatpay-signature").then(|| header(name)).flatten();
    assert!(sim.config().verify_signed(&unsigned, answer.as_bytes(), now).is_err());
}

#[test]
fn times_are_written_in_china_standard_time_as_each_provider_wants() {
    let at = Timestamp::parse("2026-11-25T07:00:00.999Z").unwrap();
    assert_eq!(
        infra::providers::wechatpay::time_expire(at),
        "2026-11-25T15:00:00+08:00"
    );
    assert_eq!(infra::providers::alipay::china_time(at), "2026-11-25 15:00:00");
    let late = Timestamp::parse("2026-11-25T23:30:00Z").unwrap();
    assert_eq!(
        infra::providers::wechatpay::time_expire(late),
        "2026-11-26T07:30:00+08:00"
    );
}

#[test]
fn an_alipay_request_is_signed_over_every_parameter_but_sign_sorted_and_unencoded() {
    use infra::providers::alipay::{AlipayApp, DEFAULT_GATEWAY};
    let key = testkit::providers::SigningKey::generate();
    let app = AlipayApp {
        app_id: APP_ID.into(),
        key: merchant_key(&key),
        notify_url: "https://shop.example/api/payments/callback/alipay/".into(),
        return_url: Some("https://shop.example/paid?from=alipay".into()),
        gateway: DEFAULT_GATEWAY.into(),
    };
    let biz = serde_json::json!({"out_trade_no": "pay_0195f2a0c3d47e8f9a0b1c2d3e4f", "total_amount": "3299.00", "subject": "海尔 冰箱"});
    let now = Timestamp::parse("2026-11-25T07:00:00Z").unwrap();
    let params = app.signed_params("alipay.trade.page.pay", &biz, now, app.return_url.as_deref());

    let expected = format!(
        "app_id={APP_ID}&biz_content={biz}&charset=utf-8&format=JSON&method=alipay.trade.page.pay\
         &notify_url=https://shop.example/api/payments/callback/alipay/&return_url=https://shop.example/paid?from=alipay\
         &sign_type=RSA2&timestamp=2026-11-25 15:00:00&version=1.0"
    );
    assert_eq!(infra::providers::alipay::request_signing_string(&params), expected);
    let sign = &params.iter().find(|(k, _)| k == "sign").unwrap().1;
    let public = infra::providers::rsa_public_key(&key.public_key_base64()).unwrap();
    assert!(infra::providers::rsa_sha256_verifies(
        &public,
        expected.as_bytes(),
        sign
    ));

    // The page-pay link carries the same parameters, URL-encoded, at the gateway.
    let url = app.url(&params);
    let (gateway, query) = url.split_once('?').unwrap();
    assert_eq!(gateway, DEFAULT_GATEWAY);
    let decoded: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    assert_eq!(decoded, params);
}

#[test]
fn an_alipay_answer_is_verified_over_its_exact_text() {
    let alipay = AlipaySimulator::generate();
    let config = alipay.config();
    // As Alipay writes it: escaped slashes and its own spacing, which a re-serialisation would change.
    let response = r#"{"code":"10000","msg":"Success","out_trade_no":"pay_0195f2a0c3d47e8f9a0b1c2d3e4f","qr_code":"https:\/\/qr.alipay.com\/bax03112"}"#;
    let sign = alipay.key.sign(response.as_bytes());
    let body = format!(r#"{{"alipay_trade_precreate_response":{response},"sign":"{sign}"}}"#);
    let got = config.verify_answer("alipay.trade.precreate", body.as_bytes()).unwrap();
    assert_eq!(got["qr_code"], "https://qr.alipay.com/bax03112");

    let respaced = body.replace(r#""code":"10000""#, r#""code": "10000""#);
    let unescaped = body.replace(r"\/", "/");
    let other_method = config.verify_answer("alipay.trade.query", body.as_bytes());
    assert!(other_method.is_err(), "an answer names its method");
    for (name, tampered) in [
        ("respaced", respaced),
        ("slashes unescaped", unescaped),
        (
            "unsigned",
            format!(r#"{{"alipay_trade_precreate_response":{response}}}"#),
        ),
    ] {
        assert!(
            matches!(
                config.verify_answer("alipay.trade.precreate", tampered.as_bytes()),
                Err(Rejection::Signature(_))
            ),
            "{name}"
        );
    }

    // An error answer is signed the same way under `error_response`.
    let error = r#"{"code":"40002","msg":"Invalid Arguments","sub_code":"isv.invalid-signature","sub_msg":"验签出错"}"#;
    let body = format!(
        r#"{{"error_response":{error},"sign":"{}"}}"#,
        alipay.key.sign(error.as_bytes())
    );
    assert_eq!(
        config.verify_answer("alipay.trade.precreate", body.as_bytes()).unwrap()["sub_code"],
        "isv.invalid-signature"
    );
}
