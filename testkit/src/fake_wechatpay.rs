//! A fake WeChat Pay APIv3 over real HTTP on loopback, for tests and the local server. Like the real
//! one it checks every request's `WECHATPAY2-SHA256-RSA2048` signature with the merchant's public key
//! (a wrong one gets its `401 SIGN_ERROR`), keeps trades by `out_trade_no` (a second prepay with other
//! parameters is refused, a paid trade answers `ORDERPAID`), closes and answers queries of them by
//! `out_trade_no`, closes a trade itself at its `time_expire`, and signs its answers with the platform
//! key; it can be made slow, failing (`500 SYSTEM_ERROR`), or to tamper with its signed answers. And it
//! can be paid: the trade turns `SUCCESS` and the platform's real notification (signed, its resource
//! sealed under the merchant's APIv3 key, the trade's `transaction_id`) goes to the trade's `notify_url`.
//! It refunds a paid trade (`POST /v3/refund/domestic/refunds`): one refund per `out_refund_no` however
//! often it is asked, succeeding at once, under way until queried enough, or refused, as its
//! [`RefundMode`] says; answers refund queries, and posts the signed refund notification
//! (`REFUND.SUCCESS` / `REFUND.CLOSED`) to the refund's `notify_url` when one settles.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use domain::Timestamp;
use serde_json::{json, Value};

use crate::controls::{Controls, Refund, RefundMode, Trades};
use crate::providers::{Posted, WechatPaySimulator};

/// A trade as the fake keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trade {
    /// The prepay request as received.
    pub request: Value,
    /// `NOTPAY`, `SUCCESS` or `CLOSED`.
    pub state: String,
    /// The prepay id it handed out.
    pub prepay_id: String,
    /// WeChat Pay's transaction id, once paid.
    pub transaction_id: Option<String>,
}

impl Trade {
    /// Closes an unpaid trade whose `time_expire` has passed, as WeChat Pay does.
    fn expire(&mut self, now: Timestamp) {
        let expired = self.request["time_expire"]
            .as_str()
            .and_then(|t| Timestamp::parse(t).ok())
            .is_some_and(|at| now >= at);
        if self.state == "NOTPAY" && expired {
            self.state = "CLOSED".into();
        }
    }
}

struct FakeState {
    mchid: String,
    merchant_key: infra::providers::RsaPublicKey,
    /// The platform: its key signs answers and notifications.
    platform: WechatPaySimulator,
    trades: Trades<Trade>,
    refunds: Trades<Refund>,
    prepay_calls: AtomicUsize,
    controls: Controls,
}

/// A running fake; its server stops with the runtime.
#[derive(Clone)]
pub struct FakeWechatPay {
    state: Arc<FakeState>,
    /// `http://127.0.0.1:<port>`.
    pub base_url: String,
}

fn error(status: StatusCode, code: &str, message: &str) -> (StatusCode, Value) {
    (status, json!({ "code": code, "message": message }))
}

/// The merchant's signature of the request, checked the way WeChat Pay checks it.
fn signed_by_merchant(state: &FakeState, headers: &HeaderMap, method: &str, path: &str, body: &[u8]) -> bool {
    let Some(auth) = headers.get("authorization").and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let Some(fields) = auth.strip_prefix("WECHATPAY2-SHA256-RSA2048 ") else {
        return false;
    };
    let field = |name: &str| {
        fields
            .split(',')
            .find_map(|f| f.trim().strip_prefix(&format!("{name}=\"")))
            .and_then(|v| v.strip_suffix('"'))
            .map(str::to_owned)
    };
    let (Some(mchid), Some(nonce), Some(timestamp), Some(signature)) = (
        field("mchid"),
        field("nonce_str"),
        field("timestamp"),
        field("signature"),
    ) else {
        return false;
    };
    let Ok(body) = std::str::from_utf8(body) else {
        return false;
    };
    let message = format!("{method}\n{path}\n{timestamp}\n{nonce}\n{body}\n");
    mchid == state.mchid && infra::providers::rsa_sha256_verifies(&state.merchant_key, message.as_bytes(), &signature)
}

/// What every request goes through: counted, delayed, failed while set, its signature checked; then
/// `serve` answers it (`None`: an empty `204`).
async fn admit(
    state: &FakeState,
    headers: &HeaderMap,
    method: &str,
    path: &str,
    body: &[u8],
    serve: impl FnOnce() -> (StatusCode, Option<Value>),
) -> Response {
    let (status, answer) = if state.controls.admit().await {
        let (status, answer) = error(StatusCode::INTERNAL_SERVER_ERROR, "SYSTEM_ERROR", "系统错误");
        (status, Some(answer))
    } else if !signed_by_merchant(state, headers, method, path, body) {
        let (status, answer) = error(StatusCode::UNAUTHORIZED, "SIGN_ERROR", "签名错误");
        (status, Some(answer))
    } else {
        serve()
    };
    signed_answer(state, status, answer.as_ref())
}

async fn prepay(
    State(state): State<Arc<FakeState>>,
    Path(kind): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = format!("/v3/pay/transactions/{kind}");
    admit(&state, &headers, "POST", &path, &body, || {
        state.prepay_calls.fetch_add(1, Ordering::SeqCst);
        let (status, answer) = open_trade(&state, &kind, &body);
        (status, Some(answer))
    })
    .await
}

/// `POST /v3/pay/transactions/out-trade-no/{out_trade_no}/close` with `{"mchid"}`: an unpaid trade
/// turns `CLOSED` (`204`, again for a closed one); a paid one answers `ORDERPAID`, an unknown one
/// `ORDER_NOT_EXIST`.
async fn close(
    State(state): State<Arc<FakeState>>,
    Path(out_trade_no): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = format!("/v3/pay/transactions/out-trade-no/{out_trade_no}/close");
    admit(&state, &headers, "POST", &path, &body, || {
        let mchid = serde_json::from_slice::<Value>(&body).ok().map(|b| b["mchid"].clone());
        if mchid.as_ref().and_then(Value::as_str) != Some(state.mchid.as_str()) {
            let (status, answer) = error(StatusCode::BAD_REQUEST, "PARAM_ERROR", "参数错误");
            return (status, Some(answer));
        }
        state.controls.count_close();
        let mut trades = state.trades.lock();
        let Some(trade) = trades.get_mut(&out_trade_no) else {
            let (status, answer) = error(StatusCode::NOT_FOUND, "ORDER_NOT_EXIST", "订单不存在");
            return (status, Some(answer));
        };
        trade.expire(Timestamp::now());
        match trade.state.as_str() {
            "SUCCESS" => {
                let (status, answer) = error(StatusCode::BAD_REQUEST, "ORDERPAID", "订单已支付");
                (status, Some(answer))
            }
            _ => {
                trade.state = "CLOSED".into();
                (StatusCode::NO_CONTENT, None)
            }
        }
    })
    .await
}

/// `GET /v3/pay/transactions/out-trade-no/{out_trade_no}?mchid=…`: the trade as a transaction, or
/// `404 ORDER_NOT_EXIST`.
async fn query(
    State(state): State<Arc<FakeState>>,
    Path(out_trade_no): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let query = query.unwrap_or_default();
    let path = format!("/v3/pay/transactions/out-trade-no/{out_trade_no}?{query}");
    admit(&state, &headers, "GET", &path, b"", || {
        if query != format!("mchid={}", state.mchid) {
            let (status, answer) = error(StatusCode::BAD_REQUEST, "PARAM_ERROR", "参数错误");
            return (status, Some(answer));
        }
        let mut trades = state.trades.lock();
        let Some(trade) = trades.get_mut(&out_trade_no) else {
            let (status, answer) = error(StatusCode::NOT_FOUND, "ORDER_NOT_EXIST", "订单不存在");
            return (status, Some(answer));
        };
        trade.expire(Timestamp::now());
        (StatusCode::OK, Some(state.transaction(&out_trade_no, trade)))
    })
    .await
}

/// `POST /v3/refund/domestic/refunds`: the refund of a paid trade kept by `out_refund_no`. The same
/// number asked again (for the same trade and amount) answers the same refund; for anything else it is
/// `INVALID_REQUEST`. An unknown or unpaid trade is `404 RESOURCE_NOT_EXISTS`.
async fn refund(State(state): State<Arc<FakeState>>, headers: HeaderMap, body: Bytes) -> Response {
    let path = "/v3/refund/domestic/refunds";
    let mut settled = None;
    let response = admit(&state, &headers, "POST", path, &body, || {
        state.controls.count_refund_request();
        let (status, answer, now_settled) = open_refund(&state, &body);
        settled = now_settled;
        (status, Some(answer))
    })
    .await;
    if let Some(refund) = settled {
        state.notify_refund(&refund);
    }
    response
}

fn open_refund(state: &FakeState, body: &[u8]) -> (StatusCode, Value, Option<Refund>) {
    let bad = |code: &str, message: &str| {
        let (status, answer) = error(StatusCode::BAD_REQUEST, code, message);
        (status, answer, None)
    };
    let Ok(request) = serde_json::from_slice::<Value>(body) else {
        return bad("PARAM_ERROR", "参数错误");
    };
    let (Some(out_trade_no), Some(out_refund_no), Some(refund_fen), Some(total_fen)) = (
        request["out_trade_no"].as_str(),
        request["out_refund_no"].as_str(),
        request["amount"]["refund"].as_u64(),
        request["amount"]["total"].as_u64(),
    ) else {
        return bad("PARAM_ERROR", "缺少参数");
    };
    if request["amount"]["currency"] != "CNY" || refund_fen == 0 || refund_fen > total_fen {
        return bad("PARAM_ERROR", "金额参数错误");
    }
    let trade_total = state
        .trades
        .get(out_trade_no)
        .filter(|t| matches!(t.state.as_str(), "SUCCESS" | "REFUND"))
        .and_then(|t| t.request["amount"]["total"].as_u64());
    let Some(trade_total) = trade_total else {
        let (status, answer) = error(StatusCode::NOT_FOUND, "RESOURCE_NOT_EXISTS", "订单不存在");
        return (status, answer, None);
    };
    if trade_total != total_fen {
        return bad("INVALID_REQUEST", "订单金额不一致");
    }
    let mut refunds = state.refunds.lock();
    if let Some(kept) = refunds.get(out_refund_no) {
        if kept.out_trade_no != out_trade_no || kept.amount_fen != refund_fen {
            return bad("INVALID_REQUEST", "退款单号重复，参数不一致");
        }
        return (StatusCode::OK, state.refund_answer(kept, total_fen), None);
    }
    let mode = state.controls.refund_mode();
    if let RefundMode::Refuse(code) = &mode {
        if code != "CLOSED" {
            let (status, answer) = error(StatusCode::FORBIDDEN, code, "退款被拒绝");
            return (status, answer, None);
        }
    }
    let notify_url = request["notify_url"].as_str().map(str::to_owned);
    let refund = Refund::new(out_trade_no, out_refund_no, refund_fen, &mode, notify_url);
    refunds.insert(out_refund_no.to_owned(), refund.clone());
    let settled = (refund.status != "PROCESSING").then(|| refund.clone());
    if refund.status == "SUCCESS" {
        state.trades.update(out_trade_no, |t| t.state = "REFUND".into());
    }
    (StatusCode::OK, state.refund_answer(&refund, total_fen), settled)
}

/// `GET /v3/refund/domestic/refunds/{out_refund_no}`: the refund, one query further on; or `404
/// RESOURCE_NOT_EXISTS`.
async fn query_refund(
    State(state): State<Arc<FakeState>>,
    Path(out_refund_no): Path<String>,
    headers: HeaderMap,
) -> Response {
    let path = format!("/v3/refund/domestic/refunds/{out_refund_no}");
    let mut settled = None;
    let response = admit(&state, &headers, "GET", &path, b"", || {
        state.controls.count_refund_request();
        let Some((refund, now_settled)) = state.refunds.update(&out_refund_no, |r| {
            let now_settled = r.queried();
            (r.clone(), now_settled)
        }) else {
            let (status, answer) = error(StatusCode::NOT_FOUND, "RESOURCE_NOT_EXISTS", "退款单不存在");
            return (status, Some(answer));
        };
        if now_settled {
            state.trades.update(&refund.out_trade_no, |t| t.state = "REFUND".into());
            settled = Some(refund.clone());
        }
        let total = state
            .trades
            .get(&refund.out_trade_no)
            .and_then(|t| t.request["amount"]["total"].as_u64())
            .unwrap_or(refund.amount_fen);
        (StatusCode::OK, Some(state.refund_answer(&refund, total)))
    })
    .await;
    if let Some(refund) = settled {
        state.notify_refund(&refund);
    }
    response
}

impl FakeState {
    fn pay(&self, out_trade_no: &str) -> Option<Posted> {
        let mut trades = self.trades.lock();
        let trade = trades.get_mut(out_trade_no)?;
        trade.expire(Timestamp::now());
        if trade.state != "NOTPAY" {
            return None;
        }
        trade.state = "SUCCESS".into();
        trade.transaction_id = Some(format!("4200002{}", &uuid::Uuid::new_v4().simple().to_string()[..21]));
        let transaction = self.transaction(out_trade_no, trade);
        let body = WechatPaySimulator::body(
            &uuid::Uuid::new_v4().to_string(),
            &self.platform.apiv3_key,
            &transaction,
        );
        Some(self.platform.post(body, Timestamp::now().unix_seconds()))
    }

    async fn pay_and_notify(&self, out_trade_no: &str) -> Result<u16, String> {
        let posted = self.pay(out_trade_no).ok_or("no open trade")?;
        let url = self
            .trades
            .get(out_trade_no)
            .and_then(|t| t.request["notify_url"].as_str().map(str::to_owned))
            .ok_or("the trade has no notify_url")?;
        post_notification(url, posted).await
    }

    /// A refund as WeChat Pay answers it.
    fn refund_answer(&self, refund: &Refund, total_fen: u64) -> Value {
        let mut answer = json!({
            "refund_id": refund.refund_id, "out_refund_no": refund.out_refund_no,
            "transaction_id": self.trades.get(&refund.out_trade_no).and_then(|t| t.transaction_id),
            "out_trade_no": refund.out_trade_no, "channel": "ORIGINAL",
            "user_received_account": "招商银行信用卡0403", "create_time": "2026-11-25T16:00:00+08:00",
            "status": refund.status, "funds_account": "AVAILABLE",
            "amount": {"total": total_fen, "refund": refund.amount_fen, "payer_total": total_fen,
                       "payer_refund": refund.amount_fen, "settlement_refund": refund.amount_fen,
                       "settlement_total": total_fen, "discount_refund": 0, "currency": "CNY"},
        });
        if refund.status == "SUCCESS" {
            answer["success_time"] = json!("2026-11-25T16:00:05+08:00");
        }
        answer
    }

    /// The signed notification of a refund that settled.
    fn refund_notification(&self, refund: &Refund) -> Posted {
        let total = self
            .trades
            .get(&refund.out_trade_no)
            .and_then(|t| t.request["amount"]["total"].as_u64())
            .unwrap_or(refund.amount_fen);
        let resource = self.platform.refund_resource(
            &refund.out_trade_no,
            &refund.out_refund_no,
            &refund.refund_id,
            &refund.status,
            refund.amount_fen,
            total,
        );
        self.platform
            .refund_notification(&uuid::Uuid::new_v4().to_string(), &resource)
    }

    /// Posts the notification of a refund that settled to its `notify_url`, in the background, as
    /// WeChat Pay does (its answer unheeded: a test asserts on what the receiver did).
    fn notify_refund(&self, refund: &Refund) {
        let Some(url) = refund.notify_url.clone() else {
            return;
        };
        let posted = self.refund_notification(refund);
        tokio::spawn(post_notification(url, posted));
    }

    /// A trade as WeChat Pay's query answers it.
    fn transaction(&self, out_trade_no: &str, trade: &Trade) -> Value {
        let total = trade.request["amount"]["total"].as_u64().unwrap_or(0);
        let mut transaction = self.platform.transaction(out_trade_no, &trade.state, total);
        match &trade.transaction_id {
            Some(id) => transaction["transaction_id"] = json!(id),
            None => {
                for unpaid in ["transaction_id", "success_time", "payer", "bank_type"] {
                    transaction.as_object_mut().map(|t| t.remove(unpaid));
                }
            }
        }
        transaction
    }
}

fn open_trade(state: &FakeState, kind: &str, body: &[u8]) -> (StatusCode, Value) {
    let Ok(request) = serde_json::from_slice::<Value>(body) else {
        return error(StatusCode::BAD_REQUEST, "PARAM_ERROR", "参数错误");
    };
    let Some(out_trade_no) = request["out_trade_no"].as_str().map(str::to_owned) else {
        return error(StatusCode::BAD_REQUEST, "PARAM_ERROR", "缺少 out_trade_no");
    };
    if request["mchid"] != state.mchid.as_str() || (kind == "jsapi" && request["payer"]["openid"].as_str().is_none()) {
        return error(StatusCode::BAD_REQUEST, "PARAM_ERROR", "参数错误");
    }
    let mut trades = state.trades.lock();
    let trade = trades.entry(out_trade_no).or_insert_with(|| Trade {
        request: request.clone(),
        state: "NOTPAY".into(),
        prepay_id: format!("wx{}", uuid::Uuid::new_v4().simple()),
        transaction_id: None,
    });
    trade.expire(Timestamp::now());
    if trade.state == "SUCCESS" {
        return error(StatusCode::BAD_REQUEST, "ORDERPAID", "订单已支付");
    }
    if trade.state == "CLOSED" {
        return error(StatusCode::BAD_REQUEST, "ORDER_CLOSED", "订单已关闭");
    }
    if trade.request != request {
        return error(StatusCode::BAD_REQUEST, "INVALID_REQUEST", "201 商户订单号重复");
    }
    match kind {
        "native" => (
            StatusCode::OK,
            json!({ "code_url": format!("weixin://wxpay/bizpayurl?pr={}", &trade.prepay_id[2..12]) }),
        ),
        _ => (StatusCode::OK, json!({ "prepay_id": trade.prepay_id })),
    }
}

/// `GET /cashier/{out_trade_no}?back=…`: the cashier a scanned `code_url` leads to, for an open trade.
async fn cashier(
    State(state): State<Arc<FakeState>>,
    Path(out_trade_no): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let back = crate::controls::back_of(query);
    let open = state.trades.update(&out_trade_no, |t| {
        t.expire(Timestamp::now());
        (t.state == "NOTPAY").then(|| t.request["amount"]["total"].as_u64().unwrap_or(0))
    });
    match open.flatten() {
        Some(fen) => {
            let amount = format!("{}.{:02}", fen / 100, fen % 100);
            crate::controls::cashier_page("微信支付", &out_trade_no, &amount, &back)
        }
        None => crate::controls::paid_page("微信支付", Err("交易不存在或已关闭".into()), &back),
    }
}

/// `POST /cashier/{out_trade_no}/pay?back=…`: 确认支付 pays the trade and posts its signed notification.
async fn cashier_pay(
    State(state): State<Arc<FakeState>>,
    Path(out_trade_no): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let back = crate::controls::back_of(query);
    let outcome = state
        .pay_and_notify(&out_trade_no)
        .await
        .map(|status| status.to_string());
    crate::controls::paid_page("微信支付", outcome, &back)
}

/// Posts a signed notification to `url`; the receiver's HTTP status.
async fn post_notification(url: String, posted: Posted) -> Result<u16, String> {
    let mut request = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .body(posted.body);
    for (name, value) in posted.headers {
        request = request.header(name, value);
    }
    let response = request.send().await.map_err(|e| e.to_string())?;
    Ok(response.status().as_u16())
}

/// An answer signed as the platform signs: `Wechatpay-*` headers over `<timestamp>\n<nonce>\n<body>\n`
/// (an empty body for none).
fn signed_answer(state: &FakeState, status: StatusCode, answer: Option<&Value>) -> Response {
    let body = answer.map(Value::to_string).unwrap_or_default();
    let timestamp = Timestamp::now().unix_seconds().to_string();
    let nonce = uuid::Uuid::new_v4().simple().to_string();
    let signature = state
        .platform
        .key
        .sign(format!("{timestamp}\n{nonce}\n{body}\n").as_bytes());
    let body = if state.controls.tampering() {
        body.replace("weixin://", "weixin://attacker/")
    } else {
        body
    };
    let mut response = if answer.is_some() {
        (status, [("content-type", "application/json")], body).into_response()
    } else {
        status.into_response()
    };
    let headers = response.headers_mut();
    for (name, value) in [
        ("wechatpay-timestamp", timestamp),
        ("wechatpay-nonce", nonce),
        ("wechatpay-signature", signature),
        ("wechatpay-serial", state.platform.key_id.clone()),
    ] {
        if let Ok(value) = value.parse() {
            headers.insert(name, value);
        }
    }
    response
}

impl FakeWechatPay {
    /// Serves on a free loopback port as `platform` (its merchant id, key and APIv3 key) for the merchant
    /// whose public key (PEM or base64) checks requests.
    pub async fn start(platform: WechatPaySimulator, merchant_public_key: &str) -> std::io::Result<Self> {
        let merchant_key = infra::providers::rsa_public_key(merchant_public_key)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()))?;
        let state = Arc::new(FakeState {
            mchid: platform.mchid.clone(),
            merchant_key,
            platform,
            trades: Trades::default(),
            refunds: Trades::default(),
            prepay_calls: AtomicUsize::new(0),
            controls: Controls::default(),
        });
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let base_url = format!("http://{}", listener.local_addr()?);
        let app = Router::new()
            .route("/v3/pay/transactions/{kind}", post(prepay))
            .route("/v3/pay/transactions/out-trade-no/{out_trade_no}", get(query))
            .route("/v3/pay/transactions/out-trade-no/{out_trade_no}/close", post(close))
            .route("/v3/refund/domestic/refunds", post(refund))
            .route("/v3/refund/domestic/refunds/{out_refund_no}", get(query_refund))
            .route("/cashier/{out_trade_no}", get(cashier))
            .route("/cashier/{out_trade_no}/pay", post(cashier_pay))
            .with_state(state.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(FakeWechatPay { state, base_url })
    }

    /// The trade kept for `out_trade_no`.
    pub fn trade(&self, out_trade_no: &str) -> Option<Trade> {
        self.state.trades.get(out_trade_no)
    }

    /// Its switches (slow, failing, tampering) and counters.
    pub fn controls(&self) -> &Controls {
        &self.state.controls
    }

    /// The shopper pays the trade: it turns `SUCCESS`, and the notification WeChat Pay posts for it (its
    /// amount the trade's, its id fresh) is returned. `None` for a trade it does not keep or no longer open.
    pub fn pay(&self, out_trade_no: &str) -> Option<Posted> {
        self.state.pay(out_trade_no)
    }

    /// [`pay`](Self::pay), then posts the notification to the trade's `notify_url` as WeChat Pay does;
    /// the receiver's HTTP status.
    pub async fn pay_and_notify(&self, out_trade_no: &str) -> Result<u16, String> {
        self.state.pay_and_notify(out_trade_no).await
    }

    /// Every refund it keeps (one per refund number), in no order.
    pub fn refunds(&self) -> Vec<Refund> {
        self.state.refunds.all()
    }

    /// Settles a refund under way as refunded, without notifying (the notification is returned, for a
    /// test to deliver as it likes).
    pub fn settle_refund(&self, out_refund_no: &str) -> Option<Posted> {
        let refund = self.state.refunds.update(out_refund_no, |r| {
            r.status = "SUCCESS".into();
            r.clone()
        })?;
        self.state
            .trades
            .update(&refund.out_trade_no, |t| t.state = "REFUND".into());
        Some(self.state.refund_notification(&refund))
    }

    /// The signed `REFUND.<status>` notification of the refund kept under `out_refund_no`, as it stands
    /// (for tests that deliver it themselves, again and out of order).
    pub fn refund_notification(&self, out_refund_no: &str) -> Option<Posted> {
        let refund = self.state.refunds.get(out_refund_no)?;
        Some(self.state.refund_notification(&refund))
    }

    /// Moves a kept trade's `time_expire` (RFC 3339), as if it had been asked for so: for tests of the
    /// fake's own expiry.
    pub fn set_time_expire(&self, out_trade_no: &str, time_expire: &str) {
        self.state
            .trades
            .update(out_trade_no, |trade| trade.request["time_expire"] = json!(time_expire));
    }

    /// Prepay requests that passed the signature check.
    pub fn prepay_calls(&self) -> usize {
        self.state.prepay_calls.load(Ordering::SeqCst)
    }
}
