//! Which refusals get their own REJECTED record, so that a flood of bad input cannot fill the disk.
//!
//! Up to `per_s` refusals per second are witnessed one by one. Past that, refusals are only counted, by
//! code, and one REJECTED record per second says how many of each there were. A conflicting body under
//! an already taken (sender, seq) is a security event and is always recorded: it needs a valid signature
//! of a known talent, so it cannot come from anonymous input.

use std::collections::BTreeMap;

use crate::witness::record::Entry;

/// The sampler.
#[derive(Debug)]
pub struct Rejections {
    per_s: u32,
    second: u64,
    written: u32,
    suppressed: BTreeMap<u16, u64>,
}

impl Rejections {
    /// At most `per_s` individual records per second.
    pub fn new(per_s: u32) -> Self {
        Rejections { per_s, second: 0, written: 0, suppressed: BTreeMap::new() }
    }

    /// Whether this refusal gets its own record (`always` for security events); otherwise it is counted.
    pub fn admit(&mut self, code: u16, always: bool, now_ms: u64) -> bool {
        let second = now_ms / 1000;
        if second != self.second {
            self.second = second;
            self.written = 0;
        }
        if always || self.written < self.per_s {
            self.written = self.written.saturating_add(1);
            return true;
        }
        *self.suppressed.entry(code).or_insert(0) += 1;
        false
    }

    /// The summary record of what was counted since the last call, if anything was.
    pub fn summary(&mut self, now_ms: u64) -> Option<Entry> {
        if self.suppressed.is_empty() {
            return None;
        }
        let total: u64 = self.suppressed.values().sum();
        let parts: Vec<String> = self.suppressed.iter().map(|(c, n)| format!("IF_ERR_{c:03} x{n}")).collect();
        let code = self.suppressed.iter().max_by_key(|(_, n)| **n).map(|(c, _)| *c);
        self.suppressed.clear();
        Some(Entry {
            wall_ms: now_ms,
            code,
            detail: format!("{total} refusals summarized: {}", parts.join(", ")),
            count: u32::try_from(total).unwrap_or(u32::MAX),
            ..Entry::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::Rejections;

    #[test]
    fn a_flood_becomes_one_record_per_second() {
        let mut r = Rejections::new(3);
        let written = (0..1000).filter(|i| r.admit(if i % 2 == 0 { 101 } else { 107 }, false, 5_000)).count();
        assert_eq!(written, 3);
        let s = r.summary(5_999).expect("summary");
        assert_eq!(s.count, 997);
        assert!(s.detail.contains("IF_ERR_101 x498") && s.detail.contains("IF_ERR_107 x499"), "{}", s.detail);
        assert!(r.summary(6_000).is_none());
        assert!(r.admit(101, false, 6_000), "a new second starts a new allowance");
        assert!((0..10).all(|_| r.admit(103, true, 6_000)), "security events are always written");
    }
}
