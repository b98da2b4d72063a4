//! One schedule of waits for everything that tries again: the broker reconnects, the uplink, the device
//! reconnects, a lane's retries and its breaker's open waits.
//!
//! A schedule is a list of delays, the last one repeating, each jittered by up to [`JITTER`] either way
//! so that a rack of agents (or a lane of devices) that lost the same switch does not come back in step.
//! The jitter is drawn in one place ([`factor`]) and applied in one place ([`Backoff::jittered`]); the
//! pure functions take the factor as an argument, so tests pin it.

use std::time::Duration;

/// How far a wait may move either way, as a fraction of it.
pub const JITTER: f64 = 0.2;

/// A random jitter factor in `1 - JITTER ..= 1 + JITTER`.
pub fn factor() -> f64 {
    rand::random_range((1.0 - JITTER)..=(1.0 + JITTER))
}

/// Delays in order, the last repeating.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backoff {
    steps: Vec<Duration>,
}

impl Backoff {
    /// A schedule of whole seconds (as configuration and manifests give it); a zero reads as one second
    /// and an empty list as `[1]`, so nothing ever retries in a tight loop.
    pub fn from_secs(secs: &[u32]) -> Self {
        let steps: Vec<Duration> = secs.iter().map(|s| Duration::from_secs(u64::from((*s).max(1)))).collect();
        Backoff::new(steps)
    }

    /// A schedule of these delays (an empty list reads as one second).
    pub fn new(mut steps: Vec<Duration>) -> Self {
        if steps.is_empty() {
            steps.push(Duration::from_secs(1));
        }
        Backoff { steps }
    }

    /// The delays, in order.
    pub fn steps(&self) -> &[Duration] {
        &self.steps
    }

    /// The unjittered wait before attempt `attempt` (from 0): the schedule's entry, or its last.
    pub fn base(&self, attempt: usize) -> Duration {
        self.steps.get(attempt).or(self.steps.last()).copied().unwrap_or(Duration::from_secs(1))
    }

    /// The longest wait of the schedule.
    pub fn longest(&self) -> Duration {
        self.steps.iter().max().copied().unwrap_or(Duration::from_secs(1))
    }

    /// The wait before attempt `attempt`, moved by `factor` (clamped to the jitter's bounds).
    pub fn jittered(&self, attempt: usize, factor: f64) -> Duration {
        self.base(attempt).mul_f64(factor.clamp(1.0 - JITTER, 1.0 + JITTER))
    }

    /// The wait before attempt `attempt`, with a random jitter.
    pub fn delay(&self, attempt: usize) -> Duration {
        self.jittered(attempt, factor())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schedule_is_followed_and_its_last_entry_repeats() {
        let b = Backoff::from_secs(&[1, 2, 5, 10, 30]);
        for (attempt, base) in [(0, 1.0), (2, 5.0), (4, 30.0), (40, 30.0), (usize::MAX, 30.0)] {
            assert_eq!(b.base(attempt).as_secs_f64(), base);
            let d = b.delay(attempt).as_secs_f64();
            assert!(d >= base * (1.0 - JITTER) && d <= base * (1.0 + JITTER), "attempt {attempt}: {d}");
        }
        assert_eq!(b.longest(), Duration::from_secs(30));
    }

    #[test]
    fn jitter_is_clamped_and_no_wait_is_zero() {
        let b = Backoff::from_secs(&[10]);
        assert_eq!(b.jittered(0, 9.0), Duration::from_secs(12));
        assert_eq!(b.jittered(0, 0.0), Duration::from_secs(8));
        assert_eq!(Backoff::from_secs(&[0]).base(0), Duration::from_secs(1));
        assert_eq!(Backoff::from_secs(&[]).steps(), [Duration::from_secs(1)]);
        for _ in 0..1000 {
            let f = factor();
            assert!((1.0 - JITTER..=1.0 + JITTER).contains(&f));
        }
    }
}
