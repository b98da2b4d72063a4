//! The circuit breaker of a device lane.
//!
//! Closed: commands go to the device; `threshold` consecutive failures or timeouts (a device that answers,
//! even with an error, is alive and resets the count) open it. Open: commands fail fast with
//! CIRCUIT_BREAKER_OPEN until the wait from the manifest's backoff schedule (jittered) has passed; then the
//! lane turns it half-open and sends exactly one probe (the driver's `health`). Half-open: commands still
//! fail fast; the probe's success closes it, its failure opens it again with the next, longer wait.
//!
//! Pure: time is milliseconds from a fixed origin and the jitter factor is passed in, so every transition
//! is tested without clocks. Each transition returns a [`Change`] for the witness and the status topic.

use crate::backoff::Backoff;
use if_protocol::{ErrorCode, IfError};

/// The breaker's state as shown to operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Commands go through.
    Closed,
    /// Commands fail fast.
    Open,
    /// One probe is out; commands fail fast.
    HalfOpen,
}

impl State {
    /// `closed`, `open`, `half_open`.
    pub fn name(self) -> &'static str {
        match self {
            State::Closed => "closed",
            State::Open => "open",
            State::HalfOpen => "half_open",
        }
    }
}

/// A transition, for the BREAKER record and the status topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// Before.
    pub from: State,
    /// After.
    pub to: State,
    /// Why.
    pub reason: String,
    /// When open: milliseconds until the probe.
    pub wait_ms: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Inner {
    Closed { failures: u32 },
    Open { until_ms: u64, round: usize },
    HalfOpen { round: usize },
}

/// A breaker.
#[derive(Debug, Clone)]
pub struct Breaker {
    threshold: u32,
    schedule: Backoff,
    inner: Inner,
}

impl Breaker {
    /// Opens after `threshold` consecutive failures; the `round`-th open wait is the schedule's.
    pub fn new(threshold: u32, schedule: Backoff) -> Self {
        Breaker { threshold: threshold.max(1), schedule, inner: Inner::Closed { failures: 0 } }
    }

    /// The state now.
    pub fn state(&self) -> State {
        match self.inner {
            Inner::Closed { .. } => State::Closed,
            Inner::Open { .. } => State::Open,
            Inner::HalfOpen { .. } => State::HalfOpen,
        }
    }

    /// Whether a command may go to the device at `now_ms`; else CIRCUIT_BREAKER_OPEN with the wait left.
    pub fn check(&self, now_ms: u64) -> Result<(), IfError> {
        match self.inner {
            Inner::Closed { .. } => Ok(()),
            Inner::Open { until_ms, .. } => Err(IfError::format(
                ErrorCode::CircuitBreakerOpen,
                format_args!("the device failed repeatedly; next probe in {} ms", until_ms.saturating_sub(now_ms)),
            )),
            Inner::HalfOpen { .. } => {
                Err(IfError::with(ErrorCode::CircuitBreakerOpen, "the device is being probed; try again shortly"))
            }
        }
    }

    /// The outcome of a command sent while closed. `counts` is whether it was a failure or timeout of
    /// the device itself (not an answer such as a rejection).
    pub fn record(&mut self, counts: bool, now_ms: u64, jitter: f64) -> Option<Change> {
        let Inner::Closed { failures } = self.inner else { return None };
        if !counts {
            self.inner = Inner::Closed { failures: 0 };
            return None;
        }
        let failures = failures + 1;
        if failures < self.threshold {
            self.inner = Inner::Closed { failures };
            return None;
        }
        Some(self.open(State::Closed, 0, now_ms, jitter, format!("{failures} consecutive failures")))
    }

    /// Whether the open wait is over and the probe should go now.
    pub fn probe_due(&self, now_ms: u64) -> bool {
        matches!(self.inner, Inner::Open { until_ms, .. } if now_ms >= until_ms)
    }

    /// Milliseconds until the probe is due, while open.
    pub fn probe_in(&self, now_ms: u64) -> Option<u64> {
        match self.inner {
            Inner::Open { until_ms, .. } => Some(until_ms.saturating_sub(now_ms)),
            _ => None,
        }
    }

    /// Open -> half-open: the one probe goes out.
    pub fn start_probe(&mut self) -> Option<Change> {
        let Inner::Open { round, .. } = self.inner else { return None };
        self.inner = Inner::HalfOpen { round };
        Some(Change { from: State::Open, to: State::HalfOpen, reason: "probing the device".into(), wait_ms: None })
    }

    /// The probe's result: closed, or open again with the next wait.
    pub fn probe_result(&mut self, ok: bool, now_ms: u64, jitter: f64) -> Option<Change> {
        let Inner::HalfOpen { round } = self.inner else { return None };
        if ok {
            self.inner = Inner::Closed { failures: 0 };
            return Some(Change {
                from: State::HalfOpen,
                to: State::Closed,
                reason: "probe succeeded".into(),
                wait_ms: None,
            });
        }
        Some(self.open(State::HalfOpen, round + 1, now_ms, jitter, "probe failed".into()))
    }

    fn open(&mut self, from: State, round: usize, now_ms: u64, jitter: f64, reason: String) -> Change {
        let wait_ms = u64::try_from(self.schedule.jittered(round, jitter).as_millis()).unwrap_or(u64::MAX);
        self.inner = Inner::Open { until_ms: now_ms + wait_ms, round };
        Change { from, to: State::Open, reason, wait_ms: Some(wait_ms) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_n_consecutive_failures_and_an_answer_resets_the_count() {
        let mut b = Breaker::new(3, Backoff::from_secs(&[1, 2, 5]));
        assert_eq!(b.record(true, 0, 1.0), None);
        assert_eq!(b.record(true, 0, 1.0), None);
        assert_eq!(b.record(false, 0, 1.0), None, "the device answered: the count starts again");
        assert_eq!(b.record(true, 0, 1.0), None);
        assert_eq!(b.record(true, 0, 1.0), None);
        let c = b.record(true, 10, 1.0).expect("third in a row opens");
        assert_eq!((c.from, c.to, c.wait_ms), (State::Closed, State::Open, Some(1000)));
        let e = b.check(500).expect_err("fails fast");
        assert_eq!(e.code(), ErrorCode::CircuitBreakerOpen);
        assert!(e.detail().contains("510 ms"), "{}", e.detail());
    }

    #[test]
    fn exactly_one_probe_then_closed_or_a_longer_wait() {
        let mut b = Breaker::new(1, Backoff::from_secs(&[1, 2, 5]));
        b.record(true, 0, 1.0).expect("opens");
        assert!(!b.probe_due(999));
        assert!(b.probe_due(1000));
        assert_eq!(b.start_probe().map(|c| c.to), Some(State::HalfOpen));
        assert_eq!(b.start_probe(), None, "only one probe per half-open window");
        assert!(b.check(1000).is_err(), "commands still fail fast while probing");
        let again = b.probe_result(false, 1100, 1.0).expect("opens again");
        assert_eq!(again.wait_ms, Some(2000), "the next wait is longer");
        b.start_probe();
        let c = b.probe_result(true, 3200, 1.0).expect("closes");
        assert_eq!((c.from, c.to), (State::HalfOpen, State::Closed));
        b.check(3200).expect("commands go again");
    }

    #[test]
    fn the_last_wait_repeats_and_jitter_stays_bounded() {
        let mut b = Breaker::new(1, Backoff::from_secs(&[1, 2]));
        b.record(true, 0, 1.0);
        for round in 0..5 {
            b.start_probe();
            let c = b.probe_result(false, 0, 1.2).expect("open");
            assert_eq!(c.wait_ms, Some(2400), "round {round}: the last entry, jittered +20%");
        }
        let mut j = Breaker::new(1, Backoff::from_secs(&[10]));
        assert_eq!(j.record(true, 0, 9.0).and_then(|c| c.wait_ms), Some(12_000), "jitter is clamped");
    }
}
