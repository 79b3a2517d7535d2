//! A fake Alipay OpenAPI gateway over real HTTP on loopback, for tests and the local server. Like the
//! real one it checks every request's RSA2 signature with the app's public key (a wrong one gets a signed
//! `error_response` with `isv.invalid-signature`), keeps trades by `out_trade_no` (a paid one answers
//! `ACQ.TRADE_HAS_SUCCESS`), closes and answers queries of them (`alipay.trade.close`,
//! `alipay.trade.query`), closes a trade itself at its `time_expire`, and signs each answer's
//! `<method>_response` text with Alipay's key; it can be made slow, failing (`20000`) or to tamper with
//! its signed answers. It refunds a paid trade (`alipay.trade.refund`): one refund per `out_request_no`
//! however often it is asked (asked again, no money moves: `fund_change` `N`), at once, under way until
//! queried enough (`alipay.trade.fastpay.refund.query` without `refund_status`), or refused with a
//! `sub_code`, as its [`RefundMode`] says.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use serde_json::{json, Value};

use crate::controls::{Controls, Refund, RefundMode, Trades};
use crate::providers::AlipaySimulator;

/// A trade as the fake keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trade {
    /// The request's parameters, `biz_content` parsed.
    pub biz: Value,
    /// Every parameter of the request that opened it.
    pub params: Vec<(String, String)>,
    /// `WAIT_BUYER_PAY`, `TRADE_SUCCESS` or `TRADE_CLOSED`.
    pub state: String,
    /// Alipay's trade number.
    pub trade_no: String,
}

impl Trade {
    /// Closes an unpaid trade whose `time_expire` (China time) has passed, as Alipay does.
    fn expire(&mut self) {
        // Both in `yyyy-MM-dd HH:mm:ss`, China time: their text orders as the times do.
        let now = infra::providers::alipay::china_time(domain::Timestamp::now());
        let expired = self.biz["time_expire"].as_str().is_some_and(|at| now.as_str() >= at);
        if self.state == "WAIT_BUYER_PAY" && expired {
            self.state = "TRADE_CLOSED".into();
        }
    }
}

struct FakeState {
    app_id: String,
    app_key: infra::providers::RsaPublicKey,
    /// Alipay: its key signs answers and notifications.
    alipay: AlipaySimulator,
    trades: Trades<Trade>,
    refunds: Trades<Refund>,
    controls: Controls,
}

/// A running fake; its server stops with the runtime.
#[derive(Clone)]
pub struct FakeAlipay {
    state: Arc<FakeState>,
    /// The gateway URL, `http://127.0.0.1:<port>/gateway.do`.
    pub gateway: String,
}

/// A request's parameters (form or query), and whether they are signed by the app as Alipay checks:
/// its `app_id`, `sign_type` RSA2, and the RSA2 signature over the rest.
struct Signed {
    params: Vec<(String, String)>,
    verified: bool,
}

impl Signed {
    fn parse(state: &FakeState, encoded: &[u8]) -> Signed {
        let params: Vec<(String, String)> = form_urlencoded::parse(encoded)
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let mut signed = Signed {
            params,
            verified: false,
        };
        let text = infra::providers::alipay::request_signing_string(&signed.params);
        signed.verified = signed.param("app_id") == state.app_id
            && signed.param("sign_type") == "RSA2"
            && infra::providers::rsa_sha256_verifies(&state.app_key, text.as_bytes(), &signed.param("sign"));
        signed
    }

    /// A parameter's value, empty when absent.
    fn param(&self, name: &str) -> String {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    }
}

async fn handle(State(state): State<Arc<FakeState>>, body: Bytes) -> Response {
    let failing = state.controls.admit().await;
    let request = Signed::parse(&state, &body);
    let (params, param) = (&request.params, |name: &str| request.param(name));
    let method = param("method");
    let (key, response) = if failing {
        (
            method.replace('.', "_") + "_response",
            json!({"code": "20000", "msg": "Service Currently Unavailable", "sub_code": "isp.unknow-error"}),
        )
    } else if !request.verified {
        (
            "error_response".to_owned(),
            json!({"code": "40002", "msg": "Invalid Arguments", "sub_code": "isv.invalid-signature", "sub_msg": "验签出错"}),
        )
    } else {
        (method.replace('.', "_") + "_response", answer(&state, &method, params))
    };
    let text = response.to_string();
    let sign = state.alipay.key.sign(text.as_bytes());
    let text = if state.controls.tampering() {
        text.replace("https://qr.alipay.com/", "https://qr.attacker.example/")
    } else {
        text
    };
    let body = format!(r#"{{"{key}":{text},"sign":"{sign}"}}"#);
    ([("content-type", "application/json;charset=utf-8")], body).into_response()
}

impl FakeState {
    fn pay(&self, out_trade_no: &str) -> Option<String> {
        let mut trades = self.trades.lock();
        let trade = trades.get_mut(out_trade_no)?;
        trade.expire();
        if trade.state != "WAIT_BUYER_PAY" {
            return None;
        }
        trade.state = "TRADE_SUCCESS".into();
        let total = trade.biz["total_amount"].as_str()?.to_owned();
        let notify_id = uuid::Uuid::new_v4().simple().to_string();
        let mut params = self.alipay.params(&notify_id, out_trade_no, "TRADE_SUCCESS", &total);
        for (name, value) in params.iter_mut() {
            if name == "trade_no" {
                value.clone_from(&trade.trade_no);
            }
        }
        Some(AlipaySimulator::form(&self.alipay.sign(params)))
    }

    async fn pay_and_notify(&self, out_trade_no: &str) -> Result<String, String> {
        let body = self.pay(out_trade_no).ok_or("no open trade")?;
        let url = self
            .trades
            .get(out_trade_no)
            .and_then(|t| t.params.iter().find(|(k, _)| k == "notify_url").map(|(_, v)| v.clone()))
            .ok_or("the trade has no notify_url")?;
        let response = reqwest::Client::new()
            .post(url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        response.text().await.map_err(|e| e.to_string())
    }
}

/// `GET /gateway.do?…` with a signed `alipay.trade.page.pay` link: the trade opened (as Alipay opens it
/// when the shopper follows the link) and its cashier shown; a link whose signature does not verify is
/// refused.
async fn page_pay(State(state): State<Arc<FakeState>>, RawQuery(query): RawQuery) -> Response {
    let request = Signed::parse(&state, query.unwrap_or_default().as_bytes());
    let (params, param) = (&request.params, |name: &str| request.param(name));
    let back = Some(param("return_url"))
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "/".into());
    let refuse = |why: &str| crate::controls::paid_page("支付宝", Err(why.to_owned()), &back);
    if param("method") != "alipay.trade.page.pay" || !request.verified {
        return refuse("验签出错");
    }
    let biz: Value = serde_json::from_str(&param("biz_content")).unwrap_or(Value::Null);
    let (Some(out_trade_no), Some(total)) = (
        biz["out_trade_no"].as_str().map(str::to_owned),
        biz["total_amount"].as_str().map(str::to_owned),
    ) else {
        return refuse("参数无效");
    };
    let open = {
        let mut trades = state.trades.lock();
        let trade = trades.entry(out_trade_no.clone()).or_insert_with(|| Trade {
            biz: biz.clone(),
            params: params.clone(),
            state: "WAIT_BUYER_PAY".into(),
            trade_no: format!("2026{}", &uuid::Uuid::new_v4().as_u128().to_string()[..24]),
        });
        trade.expire();
        trade.state == "WAIT_BUYER_PAY"
    };
    if !open {
        return refuse("交易不存在或已关闭");
    }
    crate::controls::cashier_page("支付宝", &out_trade_no, &total, &back)
}

/// `POST /cashier/{out_trade_no}/pay?back=…`: 确认支付 pays the trade and posts its signed notification.
async fn cashier_pay(
    State(state): State<Arc<FakeState>>,
    axum::extract::Path(out_trade_no): axum::extract::Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let back = crate::controls::back_of(query);
    let outcome = state.pay_and_notify(&out_trade_no).await;
    crate::controls::paid_page("支付宝", outcome, &back)
}

fn business_failed(sub_code: &str, sub_msg: &str) -> Value {
    json!({"code": "40004", "msg": "Business Failed", "sub_code": sub_code, "sub_msg": sub_msg})
}

fn answer(state: &FakeState, method: &str, params: &[(String, String)]) -> Value {
    let biz: Value = params
        .iter()
        .find(|(k, _)| k == "biz_content")
        .and_then(|(_, v)| serde_json::from_str(v).ok())
        .unwrap_or(Value::Null);
    let Some(out_trade_no) = biz["out_trade_no"].as_str().map(str::to_owned) else {
        return business_failed("ACQ.INVALID_PARAMETER", "参数无效");
    };
    let mut trades = state.trades.lock();
    if let Some(trade) = trades.get_mut(&out_trade_no) {
        trade.expire();
    }
    match method {
        "alipay.trade.precreate" => {
            let trade = trades.entry(out_trade_no.clone()).or_insert_with(|| Trade {
                biz: biz.clone(),
                params: params.to_vec(),
                state: "WAIT_BUYER_PAY".into(),
                trade_no: format!("2026{}", &uuid::Uuid::new_v4().as_u128().to_string()[..24]),
            });
            trade.expire();
            match trade.state.as_str() {
                "TRADE_SUCCESS" => business_failed("ACQ.TRADE_HAS_SUCCESS", "交易已被支付"),
                "TRADE_CLOSED" => business_failed("ACQ.TRADE_HAS_CLOSE", "交易已经关闭"),
                _ => json!({"code": "10000", "msg": "Success", "out_trade_no": out_trade_no,
                            "qr_code": format!("https://qr.alipay.com/bax{}", &uuid::Uuid::new_v4().simple().to_string()[..20])}),
            }
        }
        "alipay.trade.close" => {
            state.controls.count_close();
            let Some(trade) = trades.get_mut(&out_trade_no) else {
                return business_failed("ACQ.TRADE_NOT_EXIST", "交易不存在");
            };
            if trade.state != "WAIT_BUYER_PAY" {
                return business_failed("ACQ.TRADE_STATUS_ERROR", "交易状态不合法");
            }
            trade.state = "TRADE_CLOSED".into();
            json!({"code": "10000", "msg": "Success", "trade_no": trade.trade_no, "out_trade_no": out_trade_no})
        }
        "alipay.trade.query" => {
            let Some(trade) = trades.get(&out_trade_no) else {
                return business_failed("ACQ.TRADE_NOT_EXIST", "交易不存在");
            };
            let mut answer = json!({"code": "10000", "msg": "Success", "trade_no": trade.trade_no,
                                    "out_trade_no": out_trade_no, "trade_status": trade.state,
                                    "total_amount": trade.biz["total_amount"]});
            if trade.state == "TRADE_SUCCESS" {
                answer["send_pay_date"] = json!("2026-11-25 15:00:04");
                answer["buyer_pay_amount"] = trade.biz["total_amount"].clone();
            }
            answer
        }
        "alipay.trade.refund" => {
            state.controls.count_refund_request();
            let Some(trade) = trades.get_mut(&out_trade_no) else {
                return business_failed("ACQ.TRADE_NOT_EXIST", "交易不存在");
            };
            refund(state, trade, &out_trade_no, &biz)
        }
        "alipay.trade.fastpay.refund.query" => {
            state.controls.count_refund_request();
            let Some(trade) = trades.get_mut(&out_trade_no) else {
                return business_failed("ACQ.TRADE_NOT_EXIST", "交易不存在");
            };
            let number = biz["out_request_no"].as_str().unwrap_or(&out_trade_no).to_owned();
            let mut answer = json!({"code": "10000", "msg": "Success", "trade_no": trade.trade_no,
                                    "out_trade_no": out_trade_no, "out_request_no": number});
            let refund = state.refunds.update(&number, |r| {
                r.queried();
                r.clone()
            });
            if let Some(refund) = refund.filter(|r| r.out_trade_no == out_trade_no && r.status == "SUCCESS") {
                trade.state = "TRADE_CLOSED".into();
                answer["refund_status"] = json!("REFUND_SUCCESS");
                answer["refund_amount"] = json!(yuan(refund.amount_fen));
                answer["total_amount"] = trade.biz["total_amount"].clone();
            }
            answer
        }
        _ => business_failed("isv.invalid-method", "不存在的方法名"),
    }
}

fn yuan(fen: u64) -> String {
    format!("{}.{:02}", fen / 100, fen % 100)
}

/// `alipay.trade.refund` of a kept trade: the same `out_request_no` asked again is the same refund (no
/// fund change); a new one for a paid trade is made as the fake's [`RefundMode`] says.
fn refund(state: &FakeState, trade: &mut Trade, out_trade_no: &str, biz: &Value) -> Value {
    let total = trade.biz["total_amount"]
        .as_str()
        .and_then(|t| domain::Money::parse(t).ok());
    let amount = biz["refund_amount"].as_str().and_then(|t| domain::Money::parse(t).ok());
    let (Some(total), Some(amount), Some(number)) = (total, amount, biz["out_request_no"].as_str()) else {
        return business_failed("ACQ.INVALID_PARAMETER", "参数无效");
    };
    let answer = |fund_change: &str| {
        json!({"code": "10000", "msg": "Success", "trade_no": trade.trade_no, "out_trade_no": out_trade_no,
               "buyer_logon_id": "159****5620", "fund_change": fund_change, "refund_fee": amount.to_string()})
    };
    if let Some(kept) = state.refunds.get(number) {
        if kept.out_trade_no != out_trade_no || kept.amount_fen != amount.to_fen() {
            return business_failed("ACQ.REFUND_AMT_NOT_EQUAL_TOTAL", "退款金额与原请求不一致");
        }
        return answer("N");
    }
    if trade.state != "TRADE_SUCCESS" {
        return business_failed("ACQ.TRADE_STATUS_ERROR", "交易状态不合法");
    }
    if amount > total || amount.to_fen() == 0 {
        return business_failed("ACQ.REFUND_AMT_NOT_EQUAL_TOTAL", "退款金额超限");
    }
    let mode = state.controls.refund_mode();
    if let RefundMode::Refuse(code) = &mode {
        return business_failed(code, "退款被拒绝");
    }
    let refund = Refund::new(out_trade_no, number, amount.to_fen(), &mode, None);
    let done = refund.status == "SUCCESS";
    state.refunds.lock().insert(number.to_owned(), refund);
    if done {
        trade.state = "TRADE_CLOSED".into();
        answer("Y")
    } else {
        answer("N")
    }
}

impl FakeAlipay {
    /// Serves on a free loopback port as `alipay` (its key, for its app id) for the app whose public key
    /// (PEM or base64) checks requests.
    pub async fn start(alipay: AlipaySimulator, app_public_key: &str) -> std::io::Result<Self> {
        let app_key = infra::providers::rsa_public_key(app_public_key)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()))?;
        let state = Arc::new(FakeState {
            app_id: alipay.app_id.clone(),
            app_key,
            alipay,
            trades: Trades::default(),
            refunds: Trades::default(),
            controls: Controls::default(),
        });
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let gateway = format!("http://{}/gateway.do", listener.local_addr()?);
        let app = Router::new()
            .route("/gateway.do", post(handle).get(page_pay))
            .route("/cashier/{out_trade_no}/pay", post(cashier_pay))
            .with_state(state.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(FakeAlipay { state, gateway })
    }

    /// The trade kept for `out_trade_no`.
    pub fn trade(&self, out_trade_no: &str) -> Option<Trade> {
        self.state.trades.get(out_trade_no)
    }

    /// Its switches (slow, failing with `20000`, tampering) and counters.
    pub fn controls(&self) -> &Controls {
        &self.state.controls
    }

    /// The shopper pays the trade: it turns `TRADE_SUCCESS`, and the notification Alipay posts for it
    /// (form-urlencoded, signed, its amount the trade's) is returned. `None` for a trade it does not keep
    /// or no longer open.
    pub fn pay(&self, out_trade_no: &str) -> Option<String> {
        self.state.pay(out_trade_no)
    }

    /// [`pay`](Self::pay), then posts the notification to the trade's `notify_url` as Alipay does; the
    /// receiver's plain-text answer (`success` when taken).
    pub async fn pay_and_notify(&self, out_trade_no: &str) -> Result<String, String> {
        self.state.pay_and_notify(out_trade_no).await
    }

    /// Every refund it keeps (one per `out_request_no`), in no order.
    pub fn refunds(&self) -> Vec<Refund> {
        self.state.refunds.all()
    }

    /// Moves a kept trade's `time_expire` (`yyyy-MM-dd HH:mm:ss`, China time), as if it had been asked
    /// for so: for tests of the fake's own expiry.
    pub fn set_time_expire(&self, out_trade_no: &str, time_expire: &str) {
        self.state
            .trades
            .update(out_trade_no, |trade| trade.biz["time_expire"] = json!(time_expire));
    }
}
