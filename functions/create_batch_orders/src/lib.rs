//! create_batch_orders: `POST /api/orders/create_batch_orders/`, one order and payment per distinct
//! product, all or nothing; at most once per `Idempotency-Key`.

use domain::usecases::request::parse_create_batch;
use domain::usecases::{Created, Services};
use domain::ServiceError;
use infra::http;
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
    http::respond_storing_payment(svc, req, |req| async move {
        http::create(svc, &req, ROUTE, parse_create_batch, render).await
    })
    .await
}
