//! Plays API Gateway: matches the routes of template.yaml, authenticates with `Authorization: Bearer
//! <user id>` (a shortcut that exists only here, standing in for the JWT authorizer), and hands the
//! handlers the same request a Lambda invocation would carry.

use std::sync::Arc;

use axum::body::Body as AxumBody;
use axum::extract::{Path, Request as AxumRequest, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use domain::usecases::Services;
use infra::http::{GatewayRequest, Handler};
use lambda_http::Body;

/// Larger than any route accepts, so that the handlers, not the server, answer `413` in the catalogue's
/// form; API Gateway's own payload limit is larger still.
const TRANSPORT_BODY_LIMIT: usize = 1024 * 1024;

/// Every route, as template.yaml declares them.
pub fn router(services: Arc<Services>) -> Router {
    Router::new()
        .route(
            "/api/orders/create_order/",
            post(|s: State<Arc<Services>>, req: AxumRequest| {
                dispatch(s, req, "POST /api/orders/create_order/", vec![], |s, r| {
                    Box::pin(create_order::handle(s, r))
                })
            }),
        )
        .route(
            "/api/orders/create_batch_orders/",
            post(|s: State<Arc<Services>>, req: AxumRequest| {
                dispatch(s, req, "POST /api/orders/create_batch_orders/", vec![], |s, r| {
                    Box::pin(create_batch_orders::handle(s, r))
                })
            }),
        )
        .route(
            "/api/orders/{order_id}/",
            get(|s: State<Arc<Services>>, Path(id): Path<String>, req: AxumRequest| {
                dispatch(s, req, "GET /api/orders/{order_id}/", vec![("order_id", id)], |s, r| {
                    Box::pin(get_order::handle(s, r))
                })
            }),
        )
        .fallback(|| async {
            (
                StatusCode::NOT_FOUND,
                [("content-type", "application/json")],
                r#"{"message":"Not Found"}"#,
            )
        })
        .with_state(services)
}

/// The user named by `Authorization: Bearer <id>`, as the JWT authorizer would put it in `sub`.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get("authorization")?.to_str().ok()?;
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))?
        .trim();
    (!token.is_empty()).then_some(token)
}

async fn dispatch(
    State(services): State<Arc<Services>>,
    req: AxumRequest,
    route_key: &'static str,
    path_parameters: Vec<(&'static str, String)>,
    handler: Handler,
) -> Response {
    let request_id = uuid::Uuid::now_v7().to_string();
    let (parts, body) = req.into_parts();
    let (method, uri, headers) = (parts.method, parts.uri, parts.headers);
    let Ok(body) = axum::body::to_bytes(body, TRANSPORT_BODY_LIMIT).await else {
        return (
            StatusCode::PAYLOAD_TOO_LARGE,
            [("content-type", "application/json")],
            r#"{"message":"Request Entity Too Large"}"#,
        )
            .into_response();
    };
    let header_pairs = headers
        .iter()
        .filter_map(|(k, v)| v.to_str().ok().map(|v| (k.as_str().to_owned(), v.to_owned())))
        .collect();
    let event = GatewayRequest {
        method: method.as_str(),
        path: uri.path(),
        route_key,
        query: uri.query().unwrap_or(""),
        headers: header_pairs,
        path_parameters,
        body: &body,
        user: bearer(&headers),
        request_id: &request_id,
    };
    let request = match event.into_request() {
        Ok(request) => request,
        Err(err) => {
            tracing::error!(%request_id, error = %err, "could not build the gateway event");
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    };
    let response = handler(&services, request).await;
    let (parts, body) = response.into_parts();
    let bytes: Vec<u8> = match body {
        Body::Empty => Vec::new(),
        Body::Text(text) => text.into_bytes(),
        Body::Binary(bytes) => bytes,
        _ => Vec::new(),
    };
    let mut out = Response::from_parts(parts, AxumBody::from(bytes));
    if let Ok(value) = request_id.parse() {
        out.headers_mut().insert("apigw-requestid", value);
    }
    out
}
