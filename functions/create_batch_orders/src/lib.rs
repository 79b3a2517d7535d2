//! create_batch_orders: `POST /api/orders/create_batch_orders/`, one order and payment per distinct
//! product, all or nothing.

use domain::usecases::request::parse_create_batch;
use domain::usecases::{create_orders, Services};
use infra::http;
use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, Response};

/// Handles one API Gateway request; every outcome, errors included, is a response.
pub async fn handle(svc: &Services, req: Request) -> Response<Body> {
    http::respond(req, |req| async move {
        let user = http::caller(&req)?;
        let cmd = parse_create_batch(http::body(&req)?)?;
        let created = create_orders(svc, &user, &cmd).await?;
        http::json(StatusCode::CREATED, &created)
    })
    .await
}
