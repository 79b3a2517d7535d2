//! The HTTP edge every API function shares: identity from the JWT authorizer, the body limit, and the
//! one place a `ServiceError` becomes a response.

use std::future::Future;
use std::pin::Pin;

use domain::usecases::request::MAX_BODY_BYTES;
use domain::usecases::Services;
use domain::{ServiceError, UserId};
use lambda_http::http::header::{CONTENT_TYPE, RETRY_AFTER};
use lambda_http::http::StatusCode;
use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt, Response};
use serde::Serialize;
use tracing::Instrument;

/// What every API function's handler is: its shared state (the services, for most) and one request in,
/// one response out.
pub type Handler<S = Services> =
    for<'a> fn(&'a S, Request) -> Pin<Box<dyn Future<Output = Response<Body>> + Send + 'a>>;

/// The request id: API Gateway's, else the Lambda invocation's, else a fresh one.
pub fn request_id(req: &Request) -> String {
    if let Some(RequestContext::ApiGatewayV2(ctx)) = req.request_context_ref() {
        if let Some(id) = &ctx.request_id {
            return id.clone();
        }
    }
    match req.lambda_context_ref() {
        Some(ctx) if !ctx.request_id.is_empty() => ctx.request_id.clone(),
        _ => uuid::Uuid::now_v7().to_string(),
    }
}

/// The caller, from the JWT authorizer's `sub` claim that API Gateway put in the request context.
/// Headers and body are never consulted.
pub fn caller(req: &Request) -> Result<UserId, ServiceError> {
    let Some(RequestContext::ApiGatewayV2(ctx)) = req.request_context_ref() else {
        return Err(ServiceError::Unauthenticated);
    };
    let sub = ctx
        .authorizer
        .as_ref()
        .and_then(|a| a.jwt.as_ref())
        .and_then(|jwt| jwt.claims.get("sub"));
    match sub {
        Some(sub) => UserId::parse(sub).map_err(|_| ServiceError::Unauthenticated),
        None => Err(ServiceError::Unauthenticated),
    }
}

/// An operator: the caller, whose JWT grants the scope `orders:admin` (in its space-separated `scope`
/// claim, or among the scopes API Gateway's authorizer matched). No identity: `401`; no scope: `403
/// FORBIDDEN`. API Gateway checks the route's scopes first; this holds even if a route lost them.
pub fn operator(req: &Request) -> Result<domain::operator::Staff, ServiceError> {
    let user = caller(req)?;
    let jwt = match req.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(ctx)) => ctx.authorizer.as_ref().and_then(|a| a.jwt.as_ref()),
        _ => None,
    };
    let scope = domain::operator::SCOPE;
    let claimed = jwt
        .and_then(|jwt| jwt.claims.get("scope"))
        .is_some_and(|scopes| scopes.split_whitespace().any(|s| s == scope));
    let matched = jwt
        .and_then(|jwt| jwt.scopes.as_ref())
        .is_some_and(|scopes| scopes.iter().any(|s| s == scope));
    if claimed || matched {
        Ok(domain::operator::Staff::new(user))
    } else {
        Err(ServiceError::Forbidden)
    }
}

/// The route API Gateway matched, e.g. `POST /api/admin/orders/{order_id}/ship/` (empty if none).
pub fn route_key(req: &Request) -> String {
    match req.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(ctx)) => ctx.route_key.clone().unwrap_or_default(),
        _ => String::new(),
    }
}

/// The body's bytes, refused when over the limit.
pub fn body(req: &Request) -> Result<&[u8], ServiceError> {
    let bytes: &[u8] = req.body().as_ref();
    if bytes.len() > MAX_BODY_BYTES {
        return Err(ServiceError::PayloadTooLarge { limit: MAX_BODY_BYTES });
    }
    Ok(bytes)
}

/// A path parameter by name.
pub fn path_param(req: &Request, name: &str) -> Option<String> {
    req.path_parameters_ref().and_then(|p| p.first(name)).map(str::to_owned)
}

/// The `{order_id}` path parameter. An id that cannot exist is simply not found: there is nothing to
/// validate for the caller, and another user's order answers the same.
pub fn order_id(req: &Request) -> Result<domain::OrderId, ServiceError> {
    path_param(req, "order_id")
        .and_then(|id| domain::OrderId::parse(&id).ok())
        .ok_or(ServiceError::OrderNotFound)
}

/// The `{payment_id}` path parameter; like an order id, one that cannot exist is simply not found.
pub fn payment_id(req: &Request) -> Result<domain::PaymentId, ServiceError> {
    path_param(req, "payment_id")
        .and_then(|id| domain::PaymentId::parse(&id).ok())
        .ok_or(ServiceError::OrderNotFound)
}

/// A JSON response with the given status; a value that cannot be serialized is an internal error,
/// which `respond` renders with the request's id.
pub fn json<T: Serialize>(status: StatusCode, value: &T) -> Result<Response<Body>, ServiceError> {
    let text = serde_json::to_string(value).map_err(ServiceError::internal)?;
    Ok(response(status, text))
}

/// Logs the error at its level and renders the catalogue body, with `Retry-After` where it applies.
pub fn error(err: &ServiceError, request_id: &str) -> Response<Body> {
    err.log(request_id);
    let code = err.code();
    let status = StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = response(status, err.to_body(request_id).to_string());
    if let Some(seconds) = code.retry_after_seconds() {
        resp.headers_mut().insert(RETRY_AFTER, seconds.into());
    }
    resp
}

/// Which header keeps `lambda_http` from turning an API Gateway event into a request: it assembles
/// `<X-Forwarded-Proto or https>://<Host or domain name><path>` and unwraps the URL parse, so a value
/// that does not parse would panic the invocation (and, with `panic = "abort"`, the process). `None`
/// when the URL parses (or there is no host, when it uses the path alone).
pub fn unparsable_url_header(host: Option<&str>, forwarded_proto: Option<&str>, path: &str) -> Option<&'static str> {
    let host = host?;
    if url::Url::parse(&format!("https://{host}{path}")).is_err() {
        return Some("Host");
    }
    match forwarded_proto {
        Some(proto) if url::Url::parse(&format!("{proto}://{host}{path}")).is_err() => Some("X-Forwarded-Proto"),
        _ => None,
    }
}

/// Makes an API Gateway event safe for `lambda_http`'s conversion: a `Host` or `X-Forwarded-Proto` it
/// could not build a URL from (see [`unparsable_url_header`]) is dropped, with a warning. No handler
/// reads either header, so the request is otherwise answered as usual.
pub fn guard_event(event: &mut lambda_http::request::LambdaRequest) {
    use lambda_http::http::header::HOST;
    #[allow(irrefutable_let_patterns)] // one variant with the features this workspace enables
    let lambda_http::request::LambdaRequest::ApiGatewayV2(ag) = event
    else {
        return;
    };
    let raw_path = ag.raw_path.clone().unwrap_or_default();
    let path = match ag.request_context.stage.as_deref() {
        None | Some("$default") => raw_path,
        Some(stage) if raw_path.starts_with(&format!("/{stage}/")) => raw_path,
        Some(stage) => format!("/{stage}{raw_path}"),
    };
    for _ in 0..3 {
        let host = ag
            .headers
            .get(HOST)
            .and_then(|v| v.to_str().ok())
            .or(ag.request_context.domain_name.as_deref());
        let proto = ag.headers.get("x-forwarded-proto").and_then(|v| v.to_str().ok());
        match unparsable_url_header(host, proto, &path) {
            None => return,
            Some("X-Forwarded-Proto") => {
                tracing::warn!("dropping an X-Forwarded-Proto header no URL can be built from");
                ag.headers.remove("x-forwarded-proto");
            }
            Some(_) if ag.headers.contains_key(HOST) => {
                tracing::warn!("dropping a Host header no URL can be built from");
                ag.headers.remove(HOST);
            }
            Some(_) => ag.request_context.domain_name = None,
        }
    }
}

/// The request's `Idempotency-Key`, if it carries one: given once, 1..=255 visible ASCII characters.
pub fn idempotency_key(req: &Request) -> Result<Option<domain::idempotency::IdempotencyKey>, ServiceError> {
    let mut values = req.headers().get_all("idempotency-key").iter();
    let Some(first) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(ServiceError::field("Idempotency-Key", "must be given once"));
    }
    let text = first
        .to_str()
        .map_err(|_| ServiceError::field("Idempotency-Key", "must be 1 to 255 visible ASCII characters"))?;
    Ok(Some(domain::idempotency::IdempotencyKey::parse(text)?))
}

/// What a route that takes an `Idempotency-Key` reads from its request.
pub struct KeyedRequest<C> {
    /// The caller.
    pub user: UserId,
    /// The command, parsed from the body.
    pub cmd: C,
    /// The key's request (key, route, hash of the body in its context), when a key was given.
    pub idempotency: Option<domain::idempotency::IdempotentRequest>,
}

/// The one way a keyed route reads its request, in this order: the caller, the `Idempotency-Key`, the
/// body (its size, then parsed as JSON once), the command `parse` reads from it, and the key's request,
/// hashing `context(body)` (the body itself, or the body with whatever else names the request).
pub fn keyed_request<C>(
    req: &Request,
    route: &str,
    parse: fn(&serde_json::Value) -> Result<C, ServiceError>,
    context: impl FnOnce(serde_json::Value) -> serde_json::Value,
) -> Result<KeyedRequest<C>, ServiceError> {
    let user = caller(req)?;
    let key = idempotency_key(req)?;
    let body = domain::usecases::request::json_body(body(req)?)?;
    let cmd = parse(&body)?;
    let idempotency = key.map(|key| domain::idempotency::IdempotentRequest::new(key, route, &context(body)));
    Ok(KeyedRequest { user, cmd, idempotency })
}

/// A keyed route's answer: `201` with `render`'s body for what was made now, or the key's earlier answer
/// replayed as it was.
pub fn answered<T>(
    answer: domain::usecases::Answered<T>,
    render: impl FnOnce(&T) -> Result<serde_json::Value, ServiceError>,
) -> Result<Response<Body>, ServiceError> {
    match answer {
        domain::usecases::Answered::Made(made) => json(StatusCode::CREATED, &render(&made)?),
        domain::usecases::Answered::Replayed(stored) => Ok(replayed(&stored)),
    }
}

/// The create routes' one flow: the keyed request, the use case (the `201` body rendered by `render` is
/// stored with the orders when a key was given), and the answer.
pub async fn create(
    svc: &Services,
    req: &Request,
    route: &str,
    parse: fn(&serde_json::Value) -> Result<domain::usecases::request::CreateOrders, ServiceError>,
    render: fn(&domain::usecases::Created) -> Result<serde_json::Value, ServiceError>,
) -> Result<Response<Body>, ServiceError> {
    use domain::ports::Metric;
    use domain::usecases::{create_orders, Answered, Idempotency};
    let answer = async {
        let KeyedRequest { user, cmd, idempotency } = keyed_request(req, route, parse, |body| body)?;
        let idempotency = idempotency.as_ref().map(|request| Idempotency {
            request,
            render: &render,
        });
        create_orders(&svc.placing(), &user, &cmd, idempotency).await
    }
    .await;
    // The create routes' outcomes, counted in one place (docs/api.md §13).
    let metrics = svc.metrics.as_ref();
    match &answer {
        Ok(Answered::Made(created)) => {
            metrics.count(Metric::OrderCreateSucceeded);
            metrics.add(Metric::OrdersCreated, created.orders.len() as u64);
        }
        Ok(Answered::Replayed(_)) => {}
        Err(err) => {
            metrics.count(Metric::OrderCreateRefused(err.code()));
            if err.code().http_status() >= 500 {
                metrics.count(Metric::OrderCreateFailed);
            }
        }
    }
    answered(answer?, render)
}

/// An idempotency key's earlier answer, replayed as it was, marked `Idempotent-Replayed: true`.
pub fn replayed(stored: &domain::idempotency::StoredResponse) -> Response<Body> {
    let status = StatusCode::from_u16(stored.status).unwrap_or(StatusCode::OK);
    let mut resp = response(status, stored.body.clone());
    resp.headers_mut().insert(
        "idempotent-replayed",
        lambda_http::http::HeaderValue::from_static("true"),
    );
    resp
}

/// A response in a provider's own format (not the catalogue's): a status, a content type and a body.
pub fn plain(status: StatusCode, content_type: &'static str, text: &str) -> Response<Body> {
    let mut resp = Response::new(if text.is_empty() {
        Body::Empty
    } else {
        Body::Text(text.to_owned())
    });
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, lambda_http::http::HeaderValue::from_static(content_type));
    resp
}

fn response(status: StatusCode, text: String) -> Response<Body> {
    let mut resp = Response::new(Body::Text(text));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        CONTENT_TYPE,
        lambda_http::http::HeaderValue::from_static("application/json"),
    );
    resp
}

/// [`respond`] for the routes that store a payment (create_order, create_batch_orders, create_payment,
/// checkout_payment): the time from the request's arrival to a successful answer, the payment stored, is
/// measured as `PaymentCreationLatency` (a replayed answer stored nothing now, and is not).
pub async fn respond_storing_payment<F, Fut>(svc: &Services, req: Request, handle: F) -> Response<Body>
where
    F: FnOnce(Request) -> Fut,
    Fut: Future<Output = Result<Response<Body>, ServiceError>>,
{
    let started = std::time::Instant::now();
    let resp = respond(req, handle).await;
    if resp.status().is_success() && !resp.headers().contains_key("idempotent-replayed") {
        let millis = started.elapsed().as_secs_f64() * 1000.0;
        svc.metrics
            .measure(domain::ports::Metric::PaymentCreationLatency, millis);
    }
    resp
}

/// Runs one handler body: any error it returns becomes the catalogue response, tagged with the request id.
pub async fn respond<F, Fut>(req: Request, handle: F) -> Response<Body>
where
    F: FnOnce(Request) -> Fut,
    Fut: Future<Output = Result<Response<Body>, ServiceError>>,
{
    let request_id = request_id(&req);
    crate::telemetry::set_correlation_id(&request_id);
    let span =
        tracing::info_span!("request", request_id = %request_id, method = %req.method(), path = %req.uri().path());
    match handle(req).instrument(span).await {
        Ok(resp) => resp,
        Err(err) => error(&err, &request_id),
    }
}

/// What the local server (or a test) knows about an incoming request (feature `local`: the Lambda
/// functions receive real events and never build one), to be presented the way API
/// Gateway presents it.
#[cfg(feature = "local")]
#[derive(Debug, Clone, Default)]
pub struct GatewayRequest<'a> {
    /// `GET`, `POST`, ...
    pub method: &'a str,
    /// The path as requested.
    pub path: &'a str,
    /// The route as declared, e.g. `GET /api/orders/{order_id}/`.
    pub route_key: &'a str,
    /// Raw query string, without `?`.
    pub query: &'a str,
    /// Headers, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// Path parameters the route extracted.
    pub path_parameters: Vec<(&'a str, String)>,
    /// The raw body.
    pub body: &'a [u8],
    /// The authenticated user, as a JWT authorizer would have put it in the `sub` claim.
    pub user: Option<&'a str>,
    /// The token's scopes (its `scope` claim), as an authorizer would pass them on.
    pub scopes: Vec<String>,
    /// The request id.
    pub request_id: &'a str,
}

#[cfg(feature = "local")]
impl GatewayRequest<'_> {
    /// The request as an API Gateway HTTP API (payload 2.0) event, deserialized by `lambda_http` exactly
    /// as the Lambda runtime deserializes a real one.
    pub fn into_request(self) -> Result<Request, serde_json::Error> {
        use base64::Engine;
        let (body, is_base64) = match std::str::from_utf8(self.body) {
            Ok(text) => (text.to_owned(), false),
            Err(_) => (base64::engine::general_purpose::STANDARD.encode(self.body), true),
        };
        let headers: serde_json::Map<String, serde_json::Value> = self
            .headers
            .into_iter()
            .map(|(k, v)| (k, serde_json::Value::String(v)))
            .collect();
        let mut context = serde_json::json!({
            "accountId": "local",
            "apiId": "local",
            "domainName": "localhost",
            "domainPrefix": "localhost",
            "http": {"method": self.method, "path": self.path, "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1", "userAgent": ""},
            "requestId": self.request_id,
            "routeKey": self.route_key,
            "stage": "$default",
            "time": "",
            "timeEpoch": chrono::Utc::now().timestamp_millis(),
        });
        if let Some(user) = self.user {
            let mut claims = serde_json::json!({ "sub": user });
            if !self.scopes.is_empty() {
                claims["scope"] = serde_json::Value::String(self.scopes.join(" "));
            }
            context["authorizer"] = serde_json::json!({"jwt": {"claims": claims, "scopes": null}});
        }
        let mut event = serde_json::json!({
            "version": "2.0",
            "routeKey": self.route_key,
            "rawPath": self.path,
            "rawQueryString": self.query,
            "headers": headers,
            "requestContext": context,
            "body": body,
            "isBase64Encoded": is_base64,
        });
        if !self.path_parameters.is_empty() {
            let params: serde_json::Map<String, serde_json::Value> = self
                .path_parameters
                .into_iter()
                .map(|(k, v)| (k.to_owned(), serde_json::Value::String(v)))
                .collect();
            event["pathParameters"] = serde_json::Value::Object(params);
        }
        lambda_http::request::from_str(&event.to_string())
    }
}
