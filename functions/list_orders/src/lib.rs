//! list_orders: `GET /api/orders/?limit=N&cursor=C`, the caller's orders newest first, each with its
//! open payment, and an opaque cursor while more remain.

use domain::usecases::list::{list_orders, parse_limit, CursorKey};
use domain::usecases::Services;
use infra::http;
use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, RequestExt, Response};

/// What the function runs with: the services and the key its cursors are signed with.
#[derive(Clone)]
pub struct Listing {
    /// The shared services.
    pub services: Services,
    /// Signs and checks cursors.
    pub cursors: CursorKey,
}

impl Listing {
    /// From the environment: the standard services and `LIST_CURSOR_SECRET`.
    pub async fn from_env() -> Result<Self, lambda_http::Error> {
        let secret = infra::lambda::required("LIST_CURSOR_SECRET")?;
        Ok(Listing {
            services: infra::lambda::services(&infra::lambda::Config::from_env()?).await,
            cursors: CursorKey::new(&secret).ok_or("LIST_CURSOR_SECRET is blank")?,
        })
    }
}

/// Handles one API Gateway request; every outcome, errors included, is a response.
pub async fn handle(listing: &Listing, req: Request) -> Response<Body> {
    http::respond(req, |req| async move {
        let user = http::caller(&req)?;
        let query = req.query_string_parameters_ref();
        let limit = parse_limit(query.and_then(|q| q.first("limit")))?;
        let cursor = query.and_then(|q| q.first("cursor"));
        let page = list_orders(listing.services.list.as_ref(), &listing.cursors, &user, limit, cursor).await?;
        let orders: Vec<serde_json::Value> = page
            .orders
            .iter()
            .map(|listed| {
                let mut order = serde_json::to_value(&listed.order)?;
                order["open_payment"] = serde_json::to_value(&listed.open_payment)?;
                Ok(order)
            })
            .collect::<Result<_, serde_json::Error>>()
            .map_err(domain::ServiceError::internal)?;
        http::json(
            StatusCode::OK,
            &serde_json::json!({ "orders": orders, "next_cursor": page.next_cursor }),
        )
    })
    .await
}
