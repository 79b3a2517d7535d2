//! create_payment: `POST /api/orders/{order_id}/payments/`, a new payment for the caller's pending order,
//! superseding any open one; at most once per `Idempotency-Key`.

use domain::usecases::request::parse_create_payment;
use domain::usecases::{create_payment, Services};
use domain::{Order, Payment};
use infra::http;
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
    http::respond_storing_payment(svc, req, |req| async move {
        // Who asks comes before which order (an anonymous request is 401, whatever order it names).
        http::caller(&req)?;
        let id = http::order_id(&req)?;
        // The same key for another order is another request: the order id is hashed with the body.
        let http::KeyedRequest { user, cmd, idempotency } = http::keyed_request(
            &req,
            ROUTE,
            parse_create_payment,
            |body| serde_json::json!({ "order_id": id, "body": body }),
        )?;
        let keyed = idempotency
            .as_ref()
            .map(|request| (request, render as domain::usecases::RenderPayment));
        let answer = create_payment(&svc.closer(), svc.orders.as_ref(), &user, &id, &cmd, keyed).await?;
        http::answered(answer, |(order, payment)| Ok(render(order, payment)))
    })
    .await
}
