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
