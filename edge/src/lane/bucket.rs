//! The token bucket of a device lane: at most `burst` commands at once, then `rps` a second.
//!
//! Pure: time comes in as milliseconds from any fixed origin, so the arithmetic is tested without clocks.

/// A token bucket, full when made.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    per_ms: f64,
    burst: f64,
    tokens: f64,
    last_ms: u64,
}

impl TokenBucket {
    /// `rps` tokens a second up to `burst`, full at `now_ms`.
    pub fn new(rps: f32, burst: u32, now_ms: u64) -> Self {
        let burst = f64::from(burst.max(1));
        TokenBucket { per_ms: f64::from(rps.max(f32::MIN_POSITIVE)) / 1000.0, burst, tokens: burst, last_ms: now_ms }
    }

    fn refill(&mut self, now_ms: u64) {
        let elapsed = now_ms.saturating_sub(self.last_ms) as f64;
        self.tokens = (self.tokens + elapsed * self.per_ms).min(self.burst);
        self.last_ms = self.last_ms.max(now_ms);
    }

    /// Takes a token, or says how many milliseconds until one is there.
    pub fn take(&mut self, now_ms: u64) -> Result<(), u64> {
        self.refill(now_ms);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Ok(());
        }
        Err(((1.0 - self.tokens) / self.per_ms).ceil().max(1.0) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_rate() {
        let mut b = TokenBucket::new(10.0, 5, 0);
        for _ in 0..5 {
            b.take(0).expect("the burst");
        }
        assert_eq!(b.take(0), Err(100), "the next token comes 100 ms later at 10/s");
        assert_eq!(b.take(60), Err(40));
        b.take(100).expect("one token after 100 ms");
        assert!(b.take(100).is_err());
    }

    #[test]
    fn the_rate_over_a_second_never_exceeds_burst_plus_rps() {
        let mut b = TokenBucket::new(10.0, 5, 0);
        let taken = (0..=1000).filter(|ms| b.take(*ms).is_ok()).count();
        assert_eq!(taken, 5 + 10, "5 at once, then 10 in the second");
    }

    #[test]
    fn idle_time_refills_only_up_to_the_burst() {
        let mut b = TokenBucket::new(100.0, 3, 0);
        let taken = (0..10).filter(|_| b.take(60_000).is_ok()).count();
        assert_eq!(taken, 3);
    }
}
