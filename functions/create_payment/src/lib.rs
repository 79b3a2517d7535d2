//! create_payment: `POST /api/orders/{order_id}/payments/`, a new payment for the caller's pending order,
//! superseding any open one; at most once per `Idempotency-Key`.

use domain::idempotency::IdempotentRequest;
use domain::usecases::request::parse_create_payment;
use domain::usecases::{create_payment, PaymentPlaced, Services};
use domain::{Order, Payment};
use infra::http;
use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, Response};
use serde_json::Value;

/// The route, as idempotency records name it (the order is part of the body hash's context below).
pub const ROUTE: &str = "POST /api/orders/{order_id}/payments/";

/// The `201` body: the order and its new payment.
fn render(order: &Order, payment: &Payment) -> Value {
    serde_json::json!({ "order": order, "payment": payment })
}

/// Handles one API Gateway request; every outcome, errors included, is a response.
pub async fn handle(svc: &Services, req: Request) -> Response<Body> {
    http::respond(req, |req| async move {
        let user = http::caller(&req)?;
        let id = http::order_id(&req)?;
        let key = http::idempotency_key(&req)?;
        let body = http::body(&req)?;
        let cmd = parse_create_payment(body)?;
        // The same key for another order is another request: the order id is hashed with the body.
        let hashed =
            serde_json::json!({ "order_id": id, "body": serde_json::from_slice::<Value>(body).unwrap_or_default() });
        let request = key.map(|key| IdempotentRequest::new(key, ROUTE, &hashed));
        let keyed = request
            .as_ref()
            .map(|request| (request, render as domain::usecases::RenderPayment));
        match create_payment(svc, &user, &id, &cmd, keyed).await? {
            PaymentPlaced::Created(created) => http::json(StatusCode::CREATED, &render(&created.0, &created.1)),
            PaymentPlaced::Replayed(stored) => Ok(http::replayed(&stored)),
        }
    })
    .await
}
