//! The payment callback receiver: `POST /api/payments/callback/` (no JWT; the provider authenticates by
//! signature). Verifies, normalizes, enqueues; the processor applies.

use std::sync::Arc;

use domain::ports::{CallbackQueue, Clock};
use domain::usecases::enqueue_callback;
use domain::{PaymentEvent, SignatureVerifier};
use infra::http;
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
}

impl Receiver {
    /// From the environment: `PAYMENT_CALLBACK_SECRETS` (comma-separated; several for rotation),
    /// `CALLBACK_QUEUE_URL`, and `SQS_ENDPOINT` for a local emulator.
    pub async fn from_env() -> Result<Self, lambda_http::Error> {
        let secrets = infra::lambda::required("PAYMENT_CALLBACK_SECRETS")?;
        let verifier = SignatureVerifier::from_list(&secrets)?;
        let url = infra::lambda::required("CALLBACK_QUEUE_URL")?;
        let endpoint = std::env::var("SQS_ENDPOINT").ok().filter(|v| !v.is_empty());
        let client = infra::sqs::client(endpoint.as_deref()).await;
        Ok(Receiver {
            verifier,
            queue: Arc::new(infra::sqs::SqsQueue::new(client, url)),
            clock: Arc::new(domain::ports::SystemClock),
        })
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
