//! Plays API Gateway: matches the routes of template.yaml, authenticates with `Authorization: Bearer
//! <user id>` (a shortcut that exists only here, standing in for the JWT authorizer), and hands the
//! handlers the same request a Lambda invocation would carry.

use std::sync::Arc;

use admin_orders::Admin;
use axum::body::Body as AxumBody;
use axum::extract::{Request as AxumRequest, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use domain::usecases::Services;
use domain::ServiceError;
use infra::http::{GatewayRequest, Handler};
use lambda_http::Body;
use list_orders::Listing;
use payment_callback::Receiver;

/// Larger than any route accepts, so that the handlers, not the server, answer `413` in the catalogue's
/// form; API Gateway's own payload limit is larger still.
const TRANSPORT_BODY_LIMIT: usize = 1024 * 1024;

/// What the routes run with.
pub struct App {
    /// The services every shopper-facing function shares.
    pub services: Arc<Services>,
    /// The list function's state (the services and its cursor key).
    pub listing: Listing,
    /// The merchant's function's state (the services and its cursor key).
    pub admin: Admin,
    /// The callback receiver.
    pub receiver: Receiver,
    /// The fake providers' cashiers.
    pub cashiers: Cashiers,
    /// The catalogue the demo page shows.
    pub demo: crate::demo::DemoCatalog,
}

/// The fake providers the server runs for those not configured: a shopper "pays" a trade there, as
/// scanning the QR code and confirming in the provider's app would, and the fake posts its real signed
/// notification to this server. Development only (`/dev/...` routes exist in the local server alone).
#[derive(Clone, Default)]
pub struct Cashiers {
    /// The fake WeChat Pay.
    pub wechatpay: Option<testkit::fake_wechatpay::FakeWechatPay>,
    /// The fake Alipay.
    pub alipay: Option<testkit::fake_alipay::FakeAlipay>,
}

/// `POST /dev/{wechatpay|alipay}/pay/{payment_id}`: pays the payment's open trade at the fake provider,
/// which posts its notification here; answers what the notification route said.
async fn pay_at_fake(app: &App, provider: &str, payment_id: &str) -> Response {
    use axum::response::IntoResponse;
    let answer = match provider {
        "wechatpay" => match &app.cashiers.wechatpay {
            Some(fake) => fake.pay_and_notify(payment_id).await.map(|status| status.to_string()),
            None => Err("WeChat Pay is configured: pay in its own app".into()),
        },
        "alipay" => match &app.cashiers.alipay {
            Some(fake) => fake.pay_and_notify(payment_id).await,
            None => Err("Alipay is configured: pay in its own app".into()),
        },
        _ => return edge_error(ServiceError::NotFound),
    };
    let (status, body) = match answer {
        Ok(notified) => (
            axum::http::StatusCode::OK,
            serde_json::json!({ "paid": true, "provider": provider, "notification_answered": notified }),
        ),
        Err(why) => (
            axum::http::StatusCode::CONFLICT,
            serde_json::json!({ "paid": false, "provider": provider, "reason": why }),
        ),
    };
    (status, axum::Json(body)).into_response()
}

/// `POST /dev/{wechatpay|alipay}/outage` with `{"down": true|false}`: while down, the fake provider
/// answers every request with its system error, so the routes that call it answer `503
/// PROVIDER_UNAVAILABLE` (how a client, or the contract test, sees a provider outage on a laptop).
async fn outage_at_fake(app: &App, provider: &str, body: &[u8]) -> Response {
    use axum::response::IntoResponse;
    let controls = match provider {
        "wechatpay" => app.cashiers.wechatpay.as_ref().map(|fake| fake.controls()),
        "alipay" => app.cashiers.alipay.as_ref().map(|fake| fake.controls()),
        _ => None,
    };
    let Some(controls) = controls else {
        return edge_error(ServiceError::NotFound);
    };
    let down = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("down").and_then(serde_json::Value::as_bool));
    let Some(down) = down else {
        return edge_error(ServiceError::field("down", "must be true or false"));
    };
    controls.set_failing(down);
    axum::Json(serde_json::json!({ "provider": provider, "down": down })).into_response()
}

/// `GET /dev/wechatpay/cashier/{payment_id}`: where scanning the QR code leads on a laptop, the fake
/// WeChat Pay's cashier for the payment's trade (its 确认支付 sends the real signed notification here),
/// which links back to this server's page.
fn wechatpay_cashier(app: &App, req: &AxumRequest) -> Response {
    use axum::response::IntoResponse;
    let Some(fake) = &app.cashiers.wechatpay else {
        return edge_error(ServiceError::NotFound);
    };
    let host = req
        .headers()
        .get("host")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1");
    let back = format!("http://{host}/");
    let target = format!(
        "{}/cashier/{}?back={}",
        fake.base_url,
        form_urlencoded::byte_serialize(segment(req, 4).as_bytes()).collect::<String>(),
        form_urlencoded::byte_serialize(back.as_bytes()).collect::<String>()
    );
    axum::response::Redirect::to(&target).into_response()
}

/// One route as template.yaml declares it.
struct Route<S: 'static> {
    key: &'static str,
    /// Whether the JWT authorizer guards it (every route but the provider callbacks).
    authorized: bool,
    /// The scopes the token must grant (API Gateway's route authorization scopes).
    scopes: &'static [&'static str],
    handler: Handler<S>,
}

/// The `{order_id}` segment of `/api/orders/{order_id}/...`, percent-decoded; an undecodable one is
/// passed on as it came, which no order id matches, so the handler answers `404 ORDER_NOT_FOUND` in the
/// catalogue's shape as it does on Lambda.
fn order_id_segment(req: &AxumRequest) -> String {
    segment(req, 3)
}

/// The `n`th segment of the path, percent-decoded as `order_id_segment` is.
fn segment(req: &AxumRequest, n: usize) -> String {
    let raw = req.uri().path().split('/').nth(n).unwrap_or("").to_owned();
    percent_decode(&raw).unwrap_or(raw)
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// A catalogue answer from the edge itself (no handler reached).
fn edge_error(err: ServiceError) -> Response {
    let request_id = uuid::Uuid::now_v7().to_string();
    let response = infra::http::error(&err, &request_id);
    into_axum(response, &request_id)
}

fn into_axum(response: lambda_http::Response<Body>, request_id: &str) -> Response {
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

/// Every route, as template.yaml declares them.
pub fn router(app: Arc<App>, read_timeout: std::time::Duration) -> Router {
    const CREATE: Route<Services> = Route {
        key: "POST /api/orders/create_order/",
        authorized: true,
        scopes: &[],
        handler: |s, r| Box::pin(create_order::handle(s, r)),
    };
    const BATCH: Route<Services> = Route {
        key: "POST /api/orders/create_batch_orders/",
        authorized: true,
        scopes: &[],
        handler: |s, r| Box::pin(create_batch_orders::handle(s, r)),
    };
    const GET: Route<Services> = Route {
        key: "GET /api/orders/{order_id}/",
        authorized: true,
        scopes: &[],
        handler: |s, r| Box::pin(get_order::handle(s, r)),
    };
    const PAY: Route<Services> = Route {
        key: "POST /api/orders/{order_id}/payments/",
        authorized: true,
        scopes: &[],
        handler: |s, r| Box::pin(create_payment::handle(s, r)),
    };
    const CHECKOUT: Route<Services> = Route {
        key: "POST /api/orders/{order_id}/payments/{payment_id}/checkout/",
        authorized: true,
        scopes: &[],
        handler: |s, r| Box::pin(checkout_payment::handle(s, r)),
    };
    const CANCEL: Route<Services> = Route {
        key: "POST /api/orders/{order_id}/cancel/",
        authorized: true,
        scopes: &[],
        handler: |s, r| Box::pin(cancel_order::handle(s, r)),
    };
    const LIST: Route<Listing> = Route {
        key: "GET /api/orders/",
        authorized: true,
        scopes: &[],
        handler: |s, r| Box::pin(list_orders::handle(s, r)),
    };
    const CALLBACK: Route<Receiver> = Route {
        key: "POST /api/payments/callback/",
        authorized: false,
        scopes: &[],
        handler: |s, r| Box::pin(payment_callback::handle(s, r)),
    };
    const WECHATPAY: Route<Receiver> = Route {
        key: "POST /api/payments/callback/wechatpay/",
        authorized: false,
        scopes: &[],
        handler: |s, r| Box::pin(payment_callback::handle_wechatpay(s, r)),
    };
    const ALIPAY: Route<Receiver> = Route {
        key: "POST /api/payments/callback/alipay/",
        authorized: false,
        scopes: &[],
        handler: |s, r| Box::pin(payment_callback::handle_alipay(s, r)),
    };
    const ADMIN: Route<Admin> = Route {
        key: "",
        authorized: true,
        scopes: &[domain::operator::SCOPE],
        handler: |s, r| Box::pin(admin_orders::handle(s, r)),
    };
    let admin = |key: &'static str| Route { key, ..ADMIN };
    let admin_action = move |action: &'static str| {
        post(move |s: State<Arc<App>>, req: AxumRequest| async move {
            let key = match action {
                "ship" => admin_orders::ROUTES[2],
                "complete" => admin_orders::ROUTES[3],
                "refund" => admin_orders::ROUTES[4],
                _ => admin_orders::ROUTES[5],
            };
            let id = segment(&req, 4);
            dispatch(&s.admin, req, admin(key), vec![("order_id", id)]).await
        })
    };
    Router::new()
        .route(
            "/api/admin/orders/{order_id}/",
            get(move |s: State<Arc<App>>, req: AxumRequest| async move {
                let id = segment(&req, 4);
                dispatch(&s.admin, req, admin(admin_orders::ROUTES[0]), vec![("order_id", id)]).await
            }),
        )
        .route(
            "/api/admin/attention/",
            get(move |s: State<Arc<App>>, req: AxumRequest| async move {
                dispatch(&s.admin, req, admin(admin_orders::ROUTES[1]), vec![]).await
            }),
        )
        .route("/api/admin/orders/{order_id}/ship/", admin_action("ship"))
        .route("/api/admin/orders/{order_id}/complete/", admin_action("complete"))
        .route("/api/admin/orders/{order_id}/refund/", admin_action("refund"))
        .route("/api/admin/orders/{order_id}/cancel/", admin_action("cancel"))
        .route(
            "/api/admin/orders/{order_id}/payments/{payment_id}/resolve/",
            post(move |s: State<Arc<App>>, req: AxumRequest| async move {
                let params = vec![("order_id", segment(&req, 4)), ("payment_id", segment(&req, 6))];
                dispatch(&s.admin, req, admin(admin_orders::ROUTES[6]), params).await
            }),
        )
        .route(
            "/api/payments/callback/wechatpay/",
            post(|s: State<Arc<App>>, req: AxumRequest| async move { dispatch(&s.receiver, req, WECHATPAY, vec![]).await }),
        )
        .route(
            "/api/payments/callback/alipay/",
            post(|s: State<Arc<App>>, req: AxumRequest| async move { dispatch(&s.receiver, req, ALIPAY, vec![]).await }),
        )
        .route(
            "/api/orders/create_order/",
            post(|s: State<Arc<App>>, req: AxumRequest| async move { dispatch(s.services.as_ref(), req, CREATE, vec![]).await }),
        )
        .route(
            "/api/orders/create_batch_orders/",
            post(|s: State<Arc<App>>, req: AxumRequest| async move { dispatch(s.services.as_ref(), req, BATCH, vec![]).await }),
        )
        .route(
            "/api/orders/{order_id}/",
            get(|s: State<Arc<App>>, req: AxumRequest| async move {
                let id = order_id_segment(&req);
                dispatch(s.services.as_ref(), req, GET, vec![("order_id", id)]).await
            }),
        )
        .route(
            "/api/orders/{order_id}/payments/",
            post(|s: State<Arc<App>>, req: AxumRequest| async move {
                let id = order_id_segment(&req);
                dispatch(s.services.as_ref(), req, PAY, vec![("order_id", id)]).await
            }),
        )
        .route(
            "/api/orders/{order_id}/payments/{payment_id}/checkout/",
            post(|s: State<Arc<App>>, req: AxumRequest| async move {
                let params = vec![("order_id", segment(&req, 3)), ("payment_id", segment(&req, 5))];
                dispatch(s.services.as_ref(), req, CHECKOUT, params).await
            }),
        )
        .route(
            "/api/orders/{order_id}/cancel/",
            post(|s: State<Arc<App>>, req: AxumRequest| async move {
                let id = order_id_segment(&req);
                dispatch(s.services.as_ref(), req, CANCEL, vec![("order_id", id)]).await
            }),
        )
        .route(
            "/api/orders/",
            get(|s: State<Arc<App>>, req: AxumRequest| async move { dispatch(&s.listing, req, LIST, vec![]).await }),
        )
        .route(
            "/",
            get(|| async { axum::response::Html(include_str!("page/index.html")) }),
        )
        .route(
            "/demo/catalog",
            get(|s: State<Arc<App>>| async move { s.demo.answer(&s.services).await }),
        )
        .route(
            "/demo/qr.svg",
            get(|req: AxumRequest| async move { crate::demo::qr_svg(req.uri().query()) }),
        )
        .route(
            "/dev/wechatpay/cashier/{payment_id}",
            get(|s: State<Arc<App>>, req: AxumRequest| async move { wechatpay_cashier(&s, &req) }),
        )
        .route(
            "/dev/{provider}/pay/{payment_id}",
            post(|s: State<Arc<App>>, req: AxumRequest| async move {
                pay_at_fake(&s, &segment(&req, 2), &segment(&req, 4)).await
            }),
        )
        .route(
            "/dev/{provider}/outage",
            post(|s: State<Arc<App>>, req: AxumRequest| async move {
                let provider = segment(&req, 2);
                match axum::body::to_bytes(req.into_body(), 4096).await {
                    Ok(body) => outage_at_fake(&s, &provider, &body).await,
                    Err(_) => edge_error(ServiceError::field("down", "must be true or false")),
                }
            }),
        )
        .route(
            "/api/payments/callback/",
            post(|s: State<Arc<App>>, req: AxumRequest| async move { dispatch(&s.receiver, req, CALLBACK, vec![]).await }),
        )
        .fallback(|| async { edge_error(ServiceError::NotFound) })
        .method_not_allowed_fallback(|| async { edge_error(ServiceError::MethodNotAllowed) })
        .layer(axum::Extension(ReadTimeout(read_timeout)))
        .with_state(app)
}

/// How long a request's body may take to arrive.
#[derive(Clone, Copy)]
struct ReadTimeout(std::time::Duration);

/// The user named by `Authorization: Bearer <id> [<scope> ...]`, as the JWT authorizer would put it in
/// `sub`, and the scopes after it, as the token's `scope` claim would grant them (`Bearer ops
/// orders:admin` acts as an operator). More than one `Authorization` header names nobody.
fn bearer(headers: &HeaderMap) -> Option<(&str, Vec<String>)> {
    let mut values = headers.get_all("authorization").iter();
    let value = values.next()?.to_str().ok()?;
    if values.next().is_some() {
        return None;
    }
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))?
        .trim();
    let mut words = token.split_whitespace();
    let user = words.next()?;
    Some((user, words.map(str::to_owned).collect()))
}

/// The headers as API Gateway (payload 2.0) hands them to a function: names lower-cased, a header sent
/// more than once joined into one value with commas. Nothing is dropped on the way: a value that is not
/// UTF-8 cannot be put in the event, and a `Host` or `X-Forwarded-Proto` no URL can be built from would
/// make `lambda_http`'s conversion panic, so each is refused with `400` naming the header.
fn gateway_headers(headers: &HeaderMap, path: &str) -> Result<Vec<(String, String)>, ServiceError> {
    let mut pairs: Vec<(String, String)> = Vec::new();
    for name in headers.keys() {
        let mut joined = Vec::new();
        for value in headers.get_all(name) {
            let text = std::str::from_utf8(value.as_bytes())
                .map_err(|_| ServiceError::field(name.as_str(), "header value is not UTF-8 text"))?;
            joined.push(text);
        }
        pairs.push((name.as_str().to_owned(), joined.join(",")));
    }
    let value = |name: &str| pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    if let Some(header) = infra::http::unparsable_url_header(value("host"), value("x-forwarded-proto"), path) {
        return Err(ServiceError::field(header, "not a valid value for this header"));
    }
    Ok(pairs)
}

async fn dispatch<S>(
    state: &S,
    req: AxumRequest,
    route: Route<S>,
    path_parameters: Vec<(&'static str, String)>,
) -> Response {
    let request_id = uuid::Uuid::now_v7().to_string();
    let read_timeout = req
        .extensions()
        .get::<ReadTimeout>()
        .map_or(std::time::Duration::from_secs(10), |t| t.0);
    let (parts, body) = req.into_parts();
    let (method, uri, headers) = (parts.method, parts.uri, parts.headers);
    let body = match tokio::time::timeout(read_timeout, axum::body::to_bytes(body, TRANSPORT_BODY_LIMIT)).await {
        Ok(Ok(body)) => body,
        Ok(Err(err)) => {
            // Over the transport limit, or framing that cannot be read (a malformed chunk).
            let too_large = std::error::Error::source(&err).is_some_and(|e| e.is::<http_body_util::LengthLimitError>());
            return edge_error(if too_large {
                ServiceError::PayloadTooLarge {
                    limit: domain::usecases::request::MAX_BODY_BYTES,
                }
            } else {
                ServiceError::field("body", "malformed request framing")
            });
        }
        Err(_) => return edge_error(ServiceError::RequestTimeout),
    };
    let header_pairs = match gateway_headers(&headers, uri.path()) {
        Ok(pairs) => pairs,
        Err(err) => return edge_error(err),
    };
    let (user, scopes) = match bearer(&headers).filter(|_| route.authorized) {
        Some((user, scopes)) => (Some(user), scopes),
        None => (None, Vec::new()),
    };
    // API Gateway refuses a token without the route's scopes before any function runs.
    if user.is_some() && !route.scopes.iter().all(|needed| scopes.iter().any(|s| s == needed)) {
        return edge_error(ServiceError::Forbidden);
    }
    let event = GatewayRequest {
        method: method.as_str(),
        path: uri.path(),
        route_key: route.key,
        query: uri.query().unwrap_or(""),
        headers: header_pairs,
        path_parameters,
        body: &body,
        user,
        scopes,
        request_id: &request_id,
    };
    let request = match event.into_request() {
        Ok(request) => request,
        Err(err) => return edge_error(ServiceError::internal(err)),
    };
    let response = (route.handler)(state, request).await;
    into_axum(response, &request_id)
}
