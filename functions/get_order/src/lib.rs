//! get_order: `GET /api/orders/{order_id}/`, the caller's order with its payments.

use domain::usecases::{get_order, Services};
use infra::http;
use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, Response};

/// Handles one API Gateway request; every outcome, errors included, is a response.
pub async fn handle(svc: &Services, req: Request) -> Response<Body> {
    http::respond(req, |req| async move {
        let user = http::caller(&req)?;
        let id = http::order_id(&req)?;
        let found = get_order(svc.orders.as_ref(), &user, &id).await?;
        http::json(
            StatusCode::OK,
            &serde_json::json!({ "order": found.order, "payments": found.payments }),
        )
    })
    .await
}
