//! A circuit breaker for an outside service (the supplier, each payment provider): after
//! `failure_threshold` consecutive failed calls it fails fast for `cool_down`, then lets one trial call
//! through, whose success closes it and whose failure opens it again at once.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The breaker's state.
#[derive(Debug)]
enum State {
    /// Calls go through; consecutive failures so far.
    Closed(u32),
    /// Calls fail fast until this instant.
    Open(Instant),
    /// One trial call is under way; others fail fast.
    Trial,
}

/// One service's breaker.
#[derive(Debug)]
pub struct Breaker {
    /// Named in its log line.
    service: &'static str,
    failure_threshold: u32,
    cool_down: Duration,
    state: Mutex<State>,
}

impl Breaker {
    /// A closed breaker for `service`.
    pub fn new(service: &'static str, failure_threshold: u32, cool_down: Duration) -> Self {
        Breaker {
            service,
            failure_threshold,
            cool_down,
            state: Mutex::new(State::Closed(0)),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether a call may go out now (an open breaker past its cool-down lets one trial through).
    pub fn admit(&self) -> bool {
        let mut state = self.state();
        match *state {
            State::Closed(_) => true,
            State::Open(until) if Instant::now() >= until => {
                *state = State::Trial;
                true
            }
            State::Open(_) | State::Trial => false,
        }
    }

    /// Records a call's outcome.
    pub fn record(&self, ok: bool) {
        let mut state = self.state();
        *state = match (&*state, ok) {
            (_, true) => State::Closed(0),
            (State::Closed(n), false) if n + 1 < self.failure_threshold => State::Closed(n + 1),
            (_, false) => {
                tracing::error!(
                    service = self.service,
                    cool_down_s = self.cool_down.as_secs_f64(),
                    "circuit breaker open"
                );
                State::Open(Instant::now() + self.cool_down)
            }
        };
    }
}
