//! create_order: `POST /api/orders/create_order/`, one product, one order, one payment; at most once per
//! `Idempotency-Key`.

use domain::usecases::request::parse_create_order;
use domain::usecases::{Created, Services};
use domain::ServiceError;
use infra::http;
use lambda_http::{Body, Request, Response};
use serde_json::Value;

/// The route, as idempotency records name it.
pub const ROUTE: &str = "POST /api/orders/create_order/";

/// The `201` body: the order and its payment.
fn render(created: &Created) -> Result<Value, ServiceError> {
    match (created.orders.first(), created.payments.first()) {
        (Some(order), Some(payment)) => Ok(serde_json::json!({ "order": order, "payment": payment })),
        _ => Err(ServiceError::internal("create_orders returned no order")),
    }
}

/// Handles one API Gateway request; every outcome, errors included, is a response.
pub async fn handle(svc: &Services, req: Request) -> Response<Body> {
    http::respond_storing_payment(svc, req, |req| async move {
        http::create(svc, &req, ROUTE, parse_create_order, render).await
    })
    .await
}
