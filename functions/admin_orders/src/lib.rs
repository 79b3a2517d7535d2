//! admin_orders: the merchant's routes under `/api/admin/` (docs/api.md §17), for callers whose JWT
//! holds the scope `orders:admin` (API Gateway checks the route's scopes; the handler checks the claim
//! too): any order with its payments, the attention list, and ship, complete, refund, cancel and
//! resolve, each one conditional write judged by the domain.

use domain::operator::Action;
use domain::usecases::admin::{act_on_order, admin_order, attention, resolve_payment};
use domain::usecases::list::{parse_limit, CursorKey};
use domain::usecases::request::{json_body, parse_action, parse_resolve};
use domain::usecases::Services;
use domain::ServiceError;
use infra::http;
use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, RequestExt, Response};

/// What the function runs with: the services (with the providers, for closing trades before a
/// cancel) and the key its attention cursors are signed with.
#[derive(Clone)]
pub struct Admin {
    /// The shared services.
    pub services: Services,
    /// Signs and checks attention-list cursors.
    pub cursors: CursorKey,
}

impl Admin {
    /// From the environment: the services with the providers, and `LIST_CURSOR_SECRET`.
    pub async fn from_env() -> Result<Self, lambda_http::Error> {
        let secret = infra::lambda::required("LIST_CURSOR_SECRET")?;
        let config = infra::lambda::Config::from_env()?;
        Ok(Admin {
            services: infra::lambda::services_with_providers(&config).await?,
            cursors: CursorKey::new(&secret).ok_or("LIST_CURSOR_SECRET is blank")?,
        })
    }
}

/// Every route this function serves, as template.yaml declares them.
pub const ROUTES: [&str; 7] = [
    "GET /api/admin/orders/{order_id}/",
    "GET /api/admin/attention/",
    "POST /api/admin/orders/{order_id}/ship/",
    "POST /api/admin/orders/{order_id}/complete/",
    "POST /api/admin/orders/{order_id}/refund/",
    "POST /api/admin/orders/{order_id}/cancel/",
    "POST /api/admin/orders/{order_id}/payments/{payment_id}/resolve/",
];

/// Handles one API Gateway request; every outcome, errors included, is a response.
pub async fn handle(admin: &Admin, req: Request) -> Response<Body> {
    http::respond(req, |req| async move {
        let staff = http::operator(&req)?;
        let svc = &admin.services;
        let route = http::route_key(&req);
        let answered = match route.as_str() {
            "GET /api/admin/orders/{order_id}/" => admin_order(svc.orders.as_ref(), &http::order_id(&req)?).await?,
            "GET /api/admin/attention/" => {
                let query = req.query_string_parameters_ref();
                let limit = parse_limit(query.and_then(|q| q.first("limit")))?;
                let cursor = query.and_then(|q| q.first("cursor"));
                let page = attention(svc, &admin.cursors, &staff, limit, cursor).await?;
                return http::json(StatusCode::OK, &page);
            }
            "POST /api/admin/orders/{order_id}/payments/{payment_id}/resolve/" => {
                let note = parse_resolve(&json_body(http::body(&req)?)?)?;
                let (order, payment) = (http::order_id(&req)?, http::payment_id(&req)?);
                resolve_payment(svc, &staff, &order, &payment, note).await?
            }
            route => {
                let kind = route
                    .strip_prefix("POST /api/admin/orders/{order_id}/")
                    .and_then(|rest| rest.strip_suffix('/'))
                    .ok_or(ServiceError::NotFound)?;
                let action: Action = parse_action(kind, &json_body(http::body(&req)?)?)?;
                act_on_order(svc, &staff, &http::order_id(&req)?, action).await?
            }
        };
        http::json(
            StatusCode::OK,
            &serde_json::json!({ "order": answered.order, "payments": answered.payments }),
        )
    })
    .await
}
