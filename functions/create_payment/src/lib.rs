//! create_payment: `POST /api/orders/{order_id}/payments/`, a new payment for the caller's pending order,
//! superseding any open one.

use domain::usecases::request::parse_create_payment;
use domain::usecases::{create_payment, Services};
use infra::http;
use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, Response};

/// Handles one API Gateway request; every outcome, errors included, is a response.
pub async fn handle(svc: &Services, req: Request) -> Response<Body> {
    http::respond(req, |req| async move {
        let user = http::caller(&req)?;
        let id = http::order_id(&req)?;
        let cmd = parse_create_payment(http::body(&req)?)?;
        let (order, payment) = create_payment(svc, &user, &id, &cmd).await?;
        http::json(
            StatusCode::CREATED,
            &serde_json::json!({ "order": order, "payment": payment }),
        )
    })
    .await
}
