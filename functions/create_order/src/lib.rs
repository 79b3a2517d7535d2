//! create_order: `POST /api/orders/create_order/`, one product, one order, one payment.

use domain::usecases::request::parse_create_order;
use domain::usecases::{create_orders, Services};
use domain::ServiceError;
use infra::http;
use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, Response};

/// Handles one API Gateway request; every outcome, errors included, is a response.
pub async fn handle(svc: &Services, req: Request) -> Response<Body> {
    http::respond(req, |req| async move {
        let user = http::caller(&req)?;
        let cmd = parse_create_order(http::body(&req)?)?;
        let created = create_orders(svc, &user, &cmd).await?;
        let (Some(order), Some(payment)) = (created.orders.first(), created.payments.first()) else {
            return Err(ServiceError::internal("create_orders returned no order"));
        };
        http::json(
            StatusCode::CREATED,
            &serde_json::json!({ "order": order, "payment": payment }),
        )
    })
    .await
}
