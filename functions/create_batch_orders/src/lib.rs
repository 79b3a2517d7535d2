//! create_batch_orders: `POST /api/orders/create_batch_orders/`, one order and payment per distinct
//! product, all or nothing; at most once per `Idempotency-Key`.

use domain::idempotency::IdempotentRequest;
use domain::usecases::request::parse_create_batch;
use domain::usecases::{create_orders, Created, Idempotency, Placed, Services};
use domain::ServiceError;
use infra::http;
use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, Response};
use serde_json::Value;

/// The route, as idempotency records name it.
pub const ROUTE: &str = "POST /api/orders/create_batch_orders/";

/// The `201` body: the orders and their payments.
fn render(created: &Created) -> Result<Value, ServiceError> {
    serde_json::to_value(created).map_err(ServiceError::internal)
}

/// Handles one API Gateway request; every outcome, errors included, is a response.
pub async fn handle(svc: &Services, req: Request) -> Response<Body> {
    http::respond(req, |req| async move {
        let user = http::caller(&req)?;
        let key = http::idempotency_key(&req)?;
        let body = http::body(&req)?;
        let cmd = parse_create_batch(body)?;
        let request =
            key.map(|key| IdempotentRequest::new(key, ROUTE, &serde_json::from_slice(body).unwrap_or_default()));
        let idempotency = request.as_ref().map(|request| Idempotency {
            request,
            render: &render,
        });
        match create_orders(svc, &user, &cmd, idempotency).await? {
            Placed::Created(created) => http::json(StatusCode::CREATED, &render(&created)?),
            Placed::Replayed(stored) => Ok(http::replayed(&stored)),
        }
    })
    .await
}
