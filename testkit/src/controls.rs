//! What every fake provider shares: the switches a test turns (slow, failing, tampering), the requests
//! it counts, and the trades it keeps by `out_trade_no`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

/// A fake's switches and counters.
#[derive(Debug, Default)]
pub struct Controls {
    requests: AtomicUsize,
    closes: AtomicUsize,
    delay_ms: AtomicU64,
    failing: AtomicBool,
    tamper: AtomicBool,
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
}
