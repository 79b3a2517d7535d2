//! The payment callback receiver (no JWT; providers authenticate by signature): the generic signed format
//! at `POST /api/payments/callback/`, WeChat Pay APIv3 at `.../wechatpay/` and Alipay at `.../alipay/`.
//! Each is verified its own way and becomes the same normalized event, enqueued the same way; the
//! processor applies it.

use std::sync::Arc;

use domain::ports::{CallbackQueue, Clock};
use domain::usecases::enqueue_callback;
use domain::usecases::request::MAX_BODY_BYTES;
use domain::{PaymentEvent, SignatureVerifier};
use infra::http;
use infra::providers::alipay::Alipay;
use infra::providers::wechatpay::WechatPay;
use infra::providers::{Rejection, Verdict};
use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, Response};

/// The header carrying the generic format's signature.
pub const SIGNATURE_HEADER: &str = "x-payment-signature";

/// What the receiver runs with, built once per cold start.
#[derive(Clone)]
pub struct Receiver {
    /// Checks the generic format's signature against the configured secrets.
    pub verifier: SignatureVerifier,
    /// Where verified events go.
    pub queue: Arc<dyn CallbackQueue>,
    /// The time signatures are checked against.
    pub clock: Arc<dyn Clock>,
    /// WeChat Pay's settings, when configured.
    pub wechatpay: Option<Arc<WechatPay>>,
    /// Alipay's settings, when configured.
    pub alipay: Option<Arc<Alipay>>,
}

impl Receiver {
    /// From the environment: `PAYMENT_CALLBACK_SECRETS` (comma-separated; several for rotation),
    /// `CALLBACK_QUEUE_URL`, `SQS_ENDPOINT` for a local emulator, and the providers' settings
    /// (`WECHATPAY_*`, `ALIPAY_*`; a provider left unset refuses its notifications).
    pub async fn from_env() -> Result<Self, lambda_http::Error> {
        let secrets = infra::lambda::required("PAYMENT_CALLBACK_SECRETS")?;
        let verifier = SignatureVerifier::from_list(&secrets)?;
        let url = infra::lambda::required("CALLBACK_QUEUE_URL")?;
        let endpoint = std::env::var("SQS_ENDPOINT").ok().filter(|v| !v.is_empty());
        let queue = infra::sqs::SqsQueue::new(infra::sqs::client(endpoint.as_deref()), url);
        queue.warm_up().await;
        Ok(Receiver {
            verifier,
            queue: Arc::new(queue),
            clock: Arc::new(domain::ports::SystemClock),
            wechatpay: WechatPay::from_env()?.map(Arc::new),
            alipay: Alipay::from_env()?.map(Arc::new),
        })
    }
}

/// Any of the three routes, by path (one Lambda function serves them all).
pub async fn handle_any(rx: &Receiver, req: Request) -> Response<Body> {
    let path = req.uri().path().to_owned();
    if path.ends_with("/wechatpay/") {
        handle_wechatpay(rx, req).await
    } else if path.ends_with("/alipay/") {
        handle_alipay(rx, req).await
    } else {
        handle(rx, req).await
    }
}

fn wechat_fail(status: StatusCode, message: &str) -> Response<Body> {
    let body = serde_json::json!({ "code": "FAIL", "message": message }).to_string();
    http::plain(status, "application/json", &body)
}

/// A WeChat Pay APIv3 notification: `200` with no body once enqueued (or verified and nothing to do);
/// `401 {"code":"FAIL","message":"签名错误"}` when not verified; `400` when verified but unreadable or
/// not ours (logged at error level); `500 {"code":"FAIL","message":"系统繁忙"}` when the queue cannot
/// take it, so WeChat Pay retries.
pub async fn handle_wechatpay(rx: &Receiver, req: Request) -> Response<Body> {
    let request_id = http::request_id(&req);
    let Some(wechatpay) = &rx.wechatpay else {
        tracing::error!(%request_id, "WeChat Pay notification received but WeChat Pay is not configured");
        return wechat_fail(StatusCode::INTERNAL_SERVER_ERROR, "系统繁忙");
    };
    let body: &[u8] = req.body().as_ref();
    if body.len() > MAX_BODY_BYTES {
        return wechat_fail(StatusCode::BAD_REQUEST, "通知过大");
    }
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    match wechatpay.verify(&header, body, rx.clock.now()) {
        Err(Rejection::Signature(why)) => {
            tracing::warn!(%request_id, why, "WeChat Pay notification not verified");
            wechat_fail(StatusCode::UNAUTHORIZED, "签名错误")
        }
        Err(Rejection::Refused(why)) => {
            tracing::error!(%request_id, why = %why, "verified WeChat Pay notification refused");
            wechat_fail(StatusCode::BAD_REQUEST, "通知无法处理")
        }
        Ok(Verdict::Acknowledge(why)) => {
            tracing::info!(%request_id, why, "WeChat Pay notification acknowledged; nothing to apply");
            http::plain(StatusCode::OK, "application/json", "")
        }
        Ok(Verdict::Event(event)) => match enqueue_callback(rx.queue.as_ref(), &event).await {
            Ok(()) => http::plain(StatusCode::OK, "application/json", ""),
            Err(err) => {
                err.log(&request_id);
                wechat_fail(StatusCode::INTERNAL_SERVER_ERROR, "系统繁忙")
            }
        },
    }
}

/// An Alipay asynchronous notification: plain text `success` once enqueued, `failure` otherwise (Alipay
/// then retries).
pub async fn handle_alipay(rx: &Receiver, req: Request) -> Response<Body> {
    let request_id = http::request_id(&req);
    let answer = |ok: bool| http::plain(StatusCode::OK, "text/plain", if ok { "success" } else { "failure" });
    let Some(alipay) = &rx.alipay else {
        tracing::error!(%request_id, "Alipay notification received but Alipay is not configured");
        return answer(false);
    };
    let body: &[u8] = req.body().as_ref();
    if body.len() > MAX_BODY_BYTES {
        return answer(false);
    }
    match alipay.verify(body) {
        Err(Rejection::Signature(why)) => {
            tracing::warn!(%request_id, why, "Alipay notification not verified");
            answer(false)
        }
        Err(Rejection::Refused(why)) => {
            tracing::error!(%request_id, why = %why, "verified Alipay notification refused");
            answer(false)
        }
        Ok(Verdict::Acknowledge(why)) => {
            tracing::info!(%request_id, why, "Alipay notification acknowledged; nothing to apply");
            answer(true)
        }
        Ok(Verdict::Event(event)) => match enqueue_callback(rx.queue.as_ref(), &event).await {
            Ok(()) => answer(true),
            Err(err) => {
                err.log(&request_id);
                answer(false)
            }
        },
    }
}

/// Handles one notification: `401` for a bad signature or stale time, `400` for a malformed body (both
/// enqueue nothing), `503` when the queue cannot take it (so the provider retries), else `200
/// {"code":"SUCCESS"}`.
pub async fn handle(rx: &Receiver, req: Request) -> Response<Body> {
    http::respond(req, |req| async move {
        let body = http::body(&req)?;
        let signature = req.headers().get(SIGNATURE_HEADER).and_then(|v| v.to_str().ok());
        rx.verifier.verify(signature, body, rx.clock.now())?;
        let event = PaymentEvent::parse_generic(body)?;
        enqueue_callback(rx.queue.as_ref(), &event).await?;
        http::json(StatusCode::OK, &serde_json::json!({ "code": "SUCCESS" }))
    })
    .await
}
