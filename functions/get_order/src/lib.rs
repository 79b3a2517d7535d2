//! get_order: `GET /api/orders/{order_id}/`, the caller's order with its payments.

use domain::usecases::{get_order, Services};
use domain::{OrderId, ServiceError};
use infra::http;
use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, Response};

/// Handles one API Gateway request; every outcome, errors included, is a response.
pub async fn handle(svc: &Services, req: Request) -> Response<Body> {
    http::respond(req, |req| async move {
        let user = http::caller(&req)?;
        // An id that cannot exist is simply not found: nothing to validate for the caller.
        let id = http::path_param(&req, "order_id")
            .and_then(|id| OrderId::parse(&id).ok())
            .ok_or(ServiceError::OrderNotFound)?;
        let found = get_order(svc, &user, &id).await?;
        http::json(
            StatusCode::OK,
            &serde_json::json!({ "order": found.order, "payments": found.payments }),
        )
    })
    .await
}
