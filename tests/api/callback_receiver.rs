//! The callback receiver: only verified, well-formed notifications reach the queue; and the SQS adapter
//! sends them to a real FIFO queue (moto over HTTP) grouped by payment and deduplicated by event id.

use std::sync::Arc;

use domain::ports::{CallbackQueue, SystemClock};
use domain::{PaymentEvent, ReportedStatus, SignatureVerifier, Timestamp};
use e2e::{event, read, MemoryQueue};
use infra::http::GatewayRequest;
use payment_callback::Receiver;
use serde_json::{json, Value};
use testkit::generic::sign_with;

fn receiver(queue: Arc<MemoryQueue>) -> Receiver {
    Receiver {
        verifier: SignatureVerifier::from_list("current-secret,previous-secret").unwrap(),
        queue,
        clock: Arc::new(SystemClock),
        wechatpay: None,
        alipay: None,
    }
}

fn body(amount: &str) -> String {
    json!({"event_id": "evt-42", "payment_id": "pay_1", "provider_txn_id": "txn-9", "status": "succeeded",
           "amount": amount, "occurred_at": "2026-11-25T07:00:00Z"})
    .to_string()
}

fn signed(secret: &str, skew: i64, body: &str) -> String {
    let t = Timestamp::now().unix_seconds() + skew;
    format!("t={t},v1={}", sign_with(secret.as_bytes(), t, body.as_bytes()))
}

async fn post(rx: &Receiver, signature: Option<&str>, body: &str) -> (u16, Value, Option<String>) {
    let mut headers = vec![("content-type".to_owned(), "application/json".to_owned())];
    if let Some(signature) = signature {
        headers.push(("x-payment-signature".into(), signature.into()));
    }
    let req = GatewayRequest {
        method: "POST",
        path: "/api/payments/callback/",
        route_key: "POST /api/payments/callback/",
        headers,
        body: body.as_bytes(),
        request_id: "cb-request",
        ..Default::default()
    }
    .into_request()
    .unwrap();
    let resp = payment_callback::handle(rx, req).await;
    let retry_after = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let (status, body) = read(resp);
    (status, body, retry_after)
}

#[tokio::test]
async fn only_verified_well_formed_notifications_are_enqueued() {
    let queue = Arc::new(MemoryQueue::default());
    let rx = receiver(queue.clone());
    let good = body("199.00");
    let tampered = body("1.00");
    let t = Timestamp::now().unix_seconds();
    let wrong_tag = sign_with(b"not-ours", t, good.as_bytes());
    let right_tag = sign_with(b"previous-secret", t, good.as_bytes());

    let refused: Vec<(&str, Option<String>, &str)> = vec![
        ("wrong secret", Some(signed("not-ours", 0, &good)), &good),
        ("tampered body", Some(signed("current-secret", 0, &good)), &tampered),
        ("301 s old", Some(signed("current-secret", -301, &good)), &good),
        ("301 s ahead", Some(signed("current-secret", 301, &good)), &good),
        ("missing header", None, &good),
        ("empty header", Some(String::new()), &good),
        ("garbled header", Some("t=abc,v1=??".into()), &good),
    ];
    for (name, signature, body) in refused {
        let (status, reply, _) = post(&rx, signature.as_deref(), body).await;
        assert_eq!(status, 401, "{name}: {reply}");
        assert_eq!(
            reply,
            json!({"error": {"code": "INVALID_SIGNATURE", "message": "签名无效", "details": null}, "request_id": "cb-request"}),
            "{name}"
        );
    }
    assert!(
        queue.sent.lock().unwrap().is_empty(),
        "a refused notification was enqueued"
    );

    // Signed but malformed: 400 in the catalogue shape, nothing enqueued.
    for (name, bad, code) in [
        ("bad amount", body("12.345"), "INVALID_AMOUNT_FORMAT"),
        // A JSON number is never read as an amount (its exact literal is gone once parsed).
        (
            "amount a float",
            body("0").replace("\"amount\":\"0\"", "\"amount\":3299.0000000000001"),
            "INVALID_AMOUNT_FORMAT",
        ),
        (
            "amount an integer",
            body("0").replace("\"amount\":\"0\"", "\"amount\":3299"),
            "INVALID_AMOUNT_FORMAT",
        ),
        ("bad status", good.replace("succeeded", "paid"), "VALIDATION_ERROR"),
        ("not json", "{".to_owned(), "VALIDATION_ERROR"),
    ] {
        let (status, reply, _) = post(&rx, Some(&signed("current-secret", 0, &bad)), &bad).await;
        assert_eq!(
            (status, reply["error"]["code"].as_str()),
            (400, Some(code)),
            "{name}: {reply}"
        );
    }
    assert!(queue.sent.lock().unwrap().is_empty());

    // Either rotated secret, and one right tag among several, are accepted.
    for signature in [
        signed("current-secret", 0, &good),
        signed("previous-secret", -300, &good),
        format!("t={t},v1={wrong_tag},v1={right_tag}"),
    ] {
        let (status, reply, _) = post(&rx, Some(&signature), &good).await;
        assert_eq!((status, reply), (200, json!({"code": "SUCCESS"})));
    }
    let sent = queue.sent.lock().unwrap().clone();
    assert_eq!(sent.len(), 3);
    assert_eq!(sent[0], PaymentEvent::parse_generic(good.as_bytes()).unwrap());
    assert_eq!(sent[0].status, ReportedStatus::Succeeded);
}

#[tokio::test]
async fn a_queue_that_cannot_take_the_event_is_503_so_the_provider_retries() {
    let rx = receiver(Arc::new(MemoryQueue {
        down: true,
        ..Default::default()
    }));
    let good = body("199.00");
    let (status, reply, retry_after) = post(&rx, Some(&signed("current-secret", 0, &good)), &good).await;
    assert_eq!((status, reply["error"]["code"].as_str()), (503, Some("SERVICE_BUSY")));
    assert_eq!(retry_after.as_deref(), Some("1"));
    assert!(!reply.to_string().contains("sqs.internal"), "{reply}");
}

#[tokio::test]
async fn a_queue_down_answers_each_provider_its_own_way_so_it_retries() {
    use testkit::providers::{AlipaySimulator, WechatPaySimulator};
    let wechat = WechatPaySimulator::generate("PUB_KEY_ID_QUEUE_DOWN");
    let alipay = AlipaySimulator::generate();
    let mut rx = receiver(Arc::new(MemoryQueue {
        down: true,
        ..Default::default()
    }));
    rx.wechatpay = Some(Arc::new(wechat.config()));
    rx.alipay = Some(Arc::new(alipay.config()));
    let send = |path: &'static str, headers: Vec<(String, String)>, body: String| {
        let rx = rx.clone();
        async move {
            let req = GatewayRequest {
                method: "POST",
                path,
                route_key: "POST /api/payments/callback/",
                headers,
                body: body.as_bytes(),
                request_id: "cb-request",
                ..Default::default()
            }
            .into_request()
            .unwrap();
            let resp = payment_callback::handle_any(&rx, req).await;
            let status = resp.status().as_u16();
            (status, String::from_utf8(resp.body().to_vec()).unwrap())
        }
    };
    let posted = wechat.notification("EV-queue-down", "pay_queue_down_1", "SUCCESS", 19_900);
    let (status, text) = send("/api/payments/callback/wechatpay/", posted.headers, posted.body).await;
    assert_eq!(
        (status, text.as_str()),
        (500, r#"{"code":"FAIL","message":"系统繁忙"}"#)
    );
    let form = alipay.notification("N-queue-down", "pay_queue_down_2", "TRADE_SUCCESS", "199.00");
    let form_type = vec![(
        "content-type".to_owned(),
        "application/x-www-form-urlencoded".to_owned(),
    )];
    let (status, text) = send("/api/payments/callback/alipay/", form_type, form).await;
    assert_eq!((status, text.as_str()), (200, "failure"));
}

#[tokio::test]
async fn the_sqs_adapter_groups_by_payment_and_deduplicates_by_event_id() {
    let Some(endpoint) = e2e::emulator() else { return };
    let client = e2e::sqs_client(&endpoint);
    let url = e2e::fifo_queue(&client).await.expect("queue");
    let queue = infra::sqs::SqsQueue::new(client.clone(), url.clone());

    let first = event("pay_a", "evt-1", ReportedStatus::Processing, "10.00");
    let again = first.clone();
    let second = event("pay_a", "evt-2", ReportedStatus::Succeeded, "10.00");
    for e in [&first, &again, &second] {
        queue.enqueue(e).await.expect("send");
    }

    let received = client
        .receive_message()
        .queue_url(&url)
        .max_number_of_messages(10)
        .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
        .send()
        .await
        .expect("receive");
    let messages = received.messages();
    assert_eq!(
        messages.len(),
        2,
        "the repeated event id must be deduplicated: {messages:?}"
    );
    let mut seen = Vec::new();
    for m in messages {
        let attributes = m.attributes().expect("attributes");
        let group = &attributes[&aws_sdk_sqs::types::MessageSystemAttributeName::MessageGroupId];
        let dedup = &attributes[&aws_sdk_sqs::types::MessageSystemAttributeName::MessageDeduplicationId];
        let body: PaymentEvent = serde_json::from_str(m.body().expect("body")).expect("event body");
        assert_eq!(group, "pay_a");
        assert_eq!(dedup, body.event_id.as_str());
        seen.push(body);
    }
    assert_eq!(seen, [first, second], "FIFO order within the group");
}
