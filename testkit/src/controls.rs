//! What every fake provider shares: the switches a test turns (slow, failing, tampering, how refunds
//! go), the requests it counts, the trades it keeps by `out_trade_no` and the refunds by refund number.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

/// How a fake answers a new refund.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum RefundMode {
    /// Refunded at once.
    #[default]
    Succeed,
    /// Under way (WeChat Pay `PROCESSING`; Alipay without a fund change) until it has been queried this
    /// many times, then refunded.
    Processing {
        /// Queries answered "under way" before the refund succeeds.
        queries: u32,
    },
    /// Refused for good with this code (WeChat Pay: a refund `CLOSED` for `CLOSED`, else this error
    /// code; Alipay: this `sub_code`).
    Refuse(String),
}

/// A refund as a fake keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refund {
    /// The trade refunded.
    pub out_trade_no: String,
    /// The merchant's refund number.
    pub out_refund_no: String,
    /// The amount, in fen.
    pub amount_fen: u64,
    /// `PROCESSING`, `SUCCESS` or `CLOSED`.
    pub status: String,
    /// The provider's refund id.
    pub refund_id: String,
    /// Queries answered while it was under way.
    pub queries: u32,
    /// Queries it stays under way for.
    pub(crate) pending_for: u32,
    /// Where its notifications go (WeChat Pay).
    pub notify_url: Option<String>,
}

impl Refund {
    /// A new refund as `mode` makes it.
    pub(crate) fn new(
        out_trade_no: &str,
        out_refund_no: &str,
        amount_fen: u64,
        mode: &RefundMode,
        notify_url: Option<String>,
    ) -> Refund {
        let (status, pending_for) = match mode {
            RefundMode::Succeed => ("SUCCESS", 0),
            RefundMode::Processing { queries } => ("PROCESSING", *queries),
            RefundMode::Refuse(_) => ("CLOSED", 0),
        };
        Refund {
            out_trade_no: out_trade_no.to_owned(),
            out_refund_no: out_refund_no.to_owned(),
            amount_fen,
            status: status.to_owned(),
            refund_id: format!("50000{}", &uuid::Uuid::new_v4().as_u128().to_string()[..24]),
            queries: 0,
            pending_for,
            notify_url,
        }
    }

    /// One query of it: under way until its queries are spent, then refunded. Whether that made it
    /// succeed now.
    pub(crate) fn queried(&mut self) -> bool {
        if self.status != "PROCESSING" {
            return false;
        }
        self.queries += 1;
        if self.queries > self.pending_for {
            self.status = "SUCCESS".into();
            return true;
        }
        false
    }
}

/// A fake's switches and counters.
#[derive(Debug, Default)]
pub struct Controls {
    requests: AtomicUsize,
    closes: AtomicUsize,
    delay_ms: AtomicU64,
    failing: AtomicBool,
    tamper: AtomicBool,
    refund_mode: Mutex<RefundMode>,
    refund_requests: AtomicUsize,
}

impl Controls {
    /// What every request goes through first: counted, then held for the delay set. Whether the fake
    /// must answer it with its system error.
    pub(crate) async fn admit(&self) -> bool {
        self.requests.fetch_add(1, Ordering::SeqCst);
        let delay = self.delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        self.failing.load(Ordering::SeqCst)
    }

    /// Counts a close that passed the signature check.
    pub(crate) fn count_close(&self) {
        self.closes.fetch_add(1, Ordering::SeqCst);
    }

    /// Whether signed answers are to be changed after signing.
    pub(crate) fn tampering(&self) -> bool {
        self.tamper.load(Ordering::SeqCst)
    }

    /// Every request received, answered or not.
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    /// Close requests that passed the signature check.
    pub fn closes(&self) -> usize {
        self.closes.load(Ordering::SeqCst)
    }

    /// Answers after `delay` (zero: at once).
    pub fn set_delay(&self, delay: Duration) {
        self.delay_ms
            .store(u64::try_from(delay.as_millis()).unwrap_or(u64::MAX), Ordering::SeqCst);
    }

    /// Answers the provider's system error while set.
    pub fn set_failing(&self, failing: bool) {
        self.failing.store(failing, Ordering::SeqCst);
    }

    /// Changes its answers after signing them while set.
    pub fn set_tampering(&self, tamper: bool) {
        self.tamper.store(tamper, Ordering::SeqCst);
    }

    /// How new refunds go from now on.
    pub fn set_refund_mode(&self, mode: RefundMode) {
        *self.refund_mode.lock().unwrap_or_else(|p| p.into_inner()) = mode;
    }

    /// How a new refund goes.
    pub(crate) fn refund_mode(&self) -> RefundMode {
        self.refund_mode.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Counts a refund request (or refund query) that passed the signature check.
    pub(crate) fn count_refund_request(&self) {
        self.refund_requests.fetch_add(1, Ordering::SeqCst);
    }

    /// Refund requests and refund queries that passed the signature check.
    pub fn refund_requests(&self) -> usize {
        self.refund_requests.load(Ordering::SeqCst)
    }
}

/// Trades kept by `out_trade_no`.
#[derive(Debug)]
pub struct Trades<T>(Mutex<HashMap<String, T>>);

impl<T> Default for Trades<T> {
    fn default() -> Self {
        Trades(Mutex::new(HashMap::new()))
    }
}

impl<T: Clone> Trades<T> {
    /// Every trade, locked (a poisoned lock is taken over: a panicking test thread leaves them whole).
    pub(crate) fn lock(&self) -> MutexGuard<'_, HashMap<String, T>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The trade kept for `out_trade_no`.
    pub fn get(&self, out_trade_no: &str) -> Option<T> {
        self.lock().get(out_trade_no).cloned()
    }

    /// Changes the trade kept for `out_trade_no`, if any.
    pub(crate) fn update<R>(&self, out_trade_no: &str, change: impl FnOnce(&mut T) -> R) -> Option<R> {
        self.lock().get_mut(out_trade_no).map(change)
    }

    /// Every one kept, in no order.
    pub fn all(&self) -> Vec<T> {
        self.lock().values().cloned().collect()
    }
}

/// Where the cashier's pages send the shopper back to (`?back=` of the query), `/` when not given.
pub(crate) fn back_of(query: Option<String>) -> String {
    form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .find(|(k, _)| k == "back")
        .map_or_else(|| "/".to_owned(), |(_, v)| v.into_owned())
}

/// Text made safe inside HTML.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The fake providers' cashier page: what a shopper sees after scanning the QR code or opening the
/// link, with 确认支付 (a form posting to `/cashier/{out_trade_no}/pay`, which pays the trade) and 取消
/// (back to `back`). Development only.
pub(crate) fn cashier_page(provider: &str, out_trade_no: &str, amount: &str, back: &str) -> axum::response::Response {
    use axum::response::IntoResponse;
    let pay_action = format!(
        "/cashier/{}/pay?back={}",
        form_urlencoded::byte_serialize(out_trade_no.as_bytes()).collect::<String>(),
        form_urlencoded::byte_serialize(back.as_bytes()).collect::<String>()
    );
    axum::response::Html(format!(
        r#"<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8"><title>{provider} 收银台（模拟）</title>
<style>body{{font-family:sans-serif;max-width:28em;margin:3em auto;text-align:center}}
button,a.button{{font-size:1.1em;padding:.6em 1.6em;margin:.5em;border-radius:.4em;border:1px solid #888;cursor:pointer}}
#pay{{background:#1aad19;color:#fff;border-color:#1aad19}}</style></head>
<body><h1>{provider} 收银台</h1><p class="note">本地开发用的模拟收银台，不会扣款。</p>
<p>商户订单号 <code id="trade">{trade}</code></p><p>应付金额 <strong id="amount">¥{amount}</strong></p>
<form method="post" action="{action}"><button id="pay" type="submit">确认支付</button></form>
<a class="button" id="cancel" href="{back}">取消</a></body></html>"#,
        provider = escape(provider),
        trade = escape(out_trade_no),
        amount = escape(amount),
        action = escape(&pay_action),
        back = escape(back),
    ))
    .into_response()
}

/// The page after 确认支付: paid (its notification sent), or why not (`409`).
pub(crate) fn paid_page(provider: &str, outcome: Result<String, String>, back: &str) -> axum::response::Response {
    use axum::response::IntoResponse;
    let (status, title, detail) = match outcome {
        Ok(answer) => (
            axum::http::StatusCode::OK,
            "支付成功",
            format!("已通知商户（商户应答：{answer}）"),
        ),
        Err(why) => (axum::http::StatusCode::CONFLICT, "无法支付", why),
    };
    let body = format!(
        r#"<!doctype html><html lang="zh-CN"><head><meta charset="utf-8"><title>{title}</title></head>
<body style="font-family:sans-serif;max-width:28em;margin:3em auto;text-align:center">
<h1 id="result">{title}</h1><p>{provider}：{detail}</p><a href="{back}">返回商户</a></body></html>"#,
        title = title,
        provider = escape(provider),
        detail = escape(&detail),
        back = escape(back),
    );
    (status, axum::response::Html(body)).into_response()
}
