//! cancel_order: `POST /api/orders/{order_id}/cancel/`, the shopper cancels a pending order; its stock
//! returns and its open payments expire, in one write, once their trades are closed at the providers.

use domain::usecases::{cancel_order, Services};
use infra::http;
use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, Response};

/// Handles one API Gateway request; every outcome, errors included, is a response.
pub async fn handle(svc: &Services, req: Request) -> Response<Body> {
    http::respond(req, |req| async move {
        let user = http::caller(&req)?;
        let id = http::order_id(&req)?;
        let cancelled = cancel_order(&svc.closer(), &user, &id).await?;
        http::json(
            StatusCode::OK,
            &serde_json::json!({ "order": cancelled.order, "payments": cancelled.payments }),
        )
    })
    .await
}
