//! checkout_payment: `POST /api/orders/{order_id}/payments/{payment_id}/checkout/`, what the shopper pays
//! an open payment with, from its provider (docs/api.md §16).

use domain::usecases::request::{json_body, parse_checkout};
use domain::usecases::{checkout_payment, Services};
use infra::http;
use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, Response};

/// Handles one API Gateway request; every outcome, errors included, is a response.
pub async fn handle(svc: &Services, req: Request) -> Response<Body> {
    http::respond_storing_payment(svc, req, |req| async move {
        let user = http::caller(&req)?;
        let order_id = http::order_id(&req)?;
        let payment_id = http::payment_id(&req)?;
        let bytes = http::body(&req)?;
        // An empty body asks for the method's default scene.
        let ask = if bytes.iter().all(u8::is_ascii_whitespace) {
            Default::default()
        } else {
            parse_checkout(&json_body(bytes)?)?
        };
        let (payment, checkout) = checkout_payment(&svc.checkouts(), &user, &order_id, &payment_id, &ask).await?;
        http::json(
            StatusCode::OK,
            &serde_json::json!({ "payment": payment, "checkout": checkout }),
        )
    })
    .await
}
