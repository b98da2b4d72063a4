//! Wall-clock time that never runs backwards past what the witness log has already recorded.
//!
//! Edge boxes often have no battery-backed clock. If the system clock reads earlier than the last
//! witnessed time, the agent keeps using the witnessed time (so TTL checks and record order stay sane) and
//! says so once per step back.

use std::time::{SystemTime, UNIX_EPOCH};

/// A clock with a floor.
#[derive(Debug, Clone)]
pub struct Clock {
    floor_ms: u64,
    warned: bool,
}

impl Clock {
    /// A clock that never reads earlier than `floor_ms` (the log's last wall time).
    pub fn new(floor_ms: u64) -> Self {
        Clock { floor_ms, warned: false }
    }

    /// The system clock now, unix ms.
    pub fn system_ms() -> u64 {
        SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    /// Now, unix ms: the system clock, or the floor if the system clock went back before it.
    pub fn now_ms(&mut self) -> u64 {
        self.at(Clock::system_ms())
    }

    /// [`Clock::now_ms`] for a given system reading.
    pub fn at(&mut self, system_ms: u64) -> u64 {
        if system_ms >= self.floor_ms {
            self.floor_ms = system_ms;
            self.warned = false;
            return system_ms;
        }
        if !self.warned {
            self.warned = true;
            tracing::warn!(
                behind_ms = self.floor_ms - system_ms,
                "system clock is earlier than the last witnessed time; using the witnessed time"
            );
        }
        self.floor_ms
    }
}

#[cfg(test)]
mod tests {
    use super::Clock;

    #[test]
    fn never_goes_back() {
        let mut c = Clock::new(1000);
        assert_eq!(c.at(500), 1000);
        assert_eq!(c.at(1500), 1500);
        assert_eq!(c.at(1200), 1500);
        assert_eq!(c.at(1600), 1600);
    }
}
