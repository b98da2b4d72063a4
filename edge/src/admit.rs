//! Admission: is this envelope new, a redelivery of one already taken, or a replay?
//!
//! Checked in this order, after the signature and before authorization:
//! 1. A (sender, seq) already answered: the same frame digest gets the cached reply (DUPLICATE, nothing
//!    runs); another digest is an attack (REPLAY_DETECTED). The same holds for one still running.
//! 2. TTL and clock skew (EXPIRED_MESSAGE, FUTURE_DATED).
//! 3. The clock bound: a seq above the agent's clock in microseconds plus the skew is SEQUENCE_AHEAD,
//!    so no envelope can push its sender's window out of reach of every later number.
//! 4. The sender's replay window (REPLAY_DETECTED inside it, OUT_OF_ORDER below it).
//! 5. The nonce cache: a nonce reused under another seq is REPLAY_DETECTED.
//!
//! Admitting changes state at once, so later envelopes of the same burst see it; a [`Ticket`] undoes it
//! when the RECEIVED record cannot be written. The windows reach disk only inside the witness
//! transaction, never on their own. The nonce cache is bounded: when full, the oldest entries go first
//! and the replay window alone still refuses their sequence numbers.

use std::collections::{HashMap, VecDeque};

use if_protocol::envelope::EnvelopeBody;
use if_protocol::replay::{self, Refusal, ReplayWindow};
use if_protocol::{ErrorCode, IfError};

use crate::witness::store::CachedReply;

/// Admission settings.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Replay window width.
    pub width: u16,
    /// Allowed clock skew, ms.
    pub skew_ms: u64,
    /// Most nonces remembered.
    pub nonce_cap: usize,
}

/// The outcome of admitting one envelope.
#[derive(Debug)]
pub enum Admitted {
    /// New: go on to authorization and the witness.
    New(Box<Ticket>),
    /// Already answered: publish this reply again, run nothing.
    Duplicate(Vec<u8>),
    /// Already taken and still running: its reply will follow, run nothing.
    InProgress,
}

/// What admitting a new envelope changed, to commit or undo.
#[derive(Debug, Clone)]
pub struct Ticket {
    /// The sender.
    pub sender: String,
    /// Its sequence number.
    pub seq: u64,
    /// The frame digest.
    pub digest: [u8; 32],
    /// The sender's window after accepting `seq` (written with the RECEIVED record).
    pub window: ReplayWindow,
    previous: Option<ReplayWindow>,
    nonce: [u8; 16],
}

/// Per-sender replay state, the reply cache and the nonce cache.
#[derive(Debug)]
pub struct Admission {
    limits: Limits,
    windows: HashMap<String, ReplayWindow>,
    replies: HashMap<(String, u64), CachedReply>,
    running: HashMap<(String, u64), [u8; 32]>,
    nonces: HashMap<(String, [u8; 16]), u64>,
    nonce_order: VecDeque<((String, [u8; 16]), u64)>,
    /// Commands still running when their sender's numbers were reset: their replies are not cached, so
    /// the sender's new numbers never meet an old reply.
    forgotten: std::collections::HashSet<(String, u64)>,
    /// The latest `issued_at_ms` admitted from each sender this run: a reset refuses up to it.
    newest: HashMap<String, u64>,
}

impl Admission {
    /// Admission state resumed from the witness log.
    pub fn new(
        limits: Limits,
        windows: HashMap<String, ReplayWindow>,
        replies: HashMap<(String, u64), CachedReply>,
    ) -> Self {
        Admission {
            limits,
            windows,
            replies,
            running: HashMap::new(),
            nonces: HashMap::new(),
            nonce_order: VecDeque::new(),
            forgotten: std::collections::HashSet::new(),
            newest: HashMap::new(),
        }
    }

    /// What is already known of (sender, seq): answered (the reply, for the same digest), still running,
    /// or taken by another body (a conflict); `None` when it is new to the agent. Changes nothing.
    pub fn seen(&self, body: &EnvelopeBody, digest: [u8; 32]) -> Option<Result<Admitted, IfError>> {
        let key = (body.sender.to_string(), body.seq);
        if let Some(cached) = self.replies.get(&key) {
            if cached.digest == digest {
                return Some(Ok(Admitted::Duplicate(cached.reply.clone())));
            }
            return Some(Err(conflict(body.seq)));
        }
        let running = self.running.get(&key)?;
        Some(if *running == digest { Ok(Admitted::InProgress) } else { Err(conflict(body.seq)) })
    }

    /// Admits `body` (whose frame hashes to `digest`) at time `now_ms`.
    pub fn admit(&mut self, body: &EnvelopeBody, digest: [u8; 32], now_ms: u64) -> Result<Admitted, IfError> {
        if let Some(known) = self.seen(body, digest) {
            return known;
        }
        let key = (body.sender.to_string(), body.seq);
        body.check_time(now_ms, self.limits.skew_ms)?;
        let limit = replay::seq_limit(now_ms, self.limits.skew_ms);
        if body.seq > limit {
            return Err(IfError::format(
                ErrorCode::SequenceAhead,
                format_args!(
                    "seq {} is above {limit}, this agent's clock in microseconds plus the allowed skew; nothing changed",
                    body.seq
                ),
            ));
        }
        let previous = self.windows.get(key.0.as_str()).cloned();
        let mut window = match &previous {
            Some(w) => w.clone(),
            None => ReplayWindow::new(self.limits.width)?,
        };
        window.accept(body.seq).map_err(|r| refusal(r, body.seq, window.top()))?;
        let nonce_key = (key.0.clone(), body.nonce.0);
        if self.nonces.get(&nonce_key).is_some_and(|expiry| *expiry >= now_ms) {
            return Err(IfError::format(
                ErrorCode::ReplayDetected,
                format_args!("nonce of seq {} was used before", body.seq),
            ));
        }
        self.expire_nonces(now_ms);
        let expiry = body.issued_at_ms.saturating_add(u64::from(body.ttl_s) * 1000).saturating_add(self.limits.skew_ms);
        self.nonces.insert(nonce_key.clone(), expiry);
        self.nonce_order.push_back((nonce_key, expiry));
        self.windows.insert(key.0.clone(), window.clone());
        self.running.insert(key.clone(), digest);
        let newest = self.newest.entry(key.0.clone()).or_insert(0);
        *newest = (*newest).max(body.issued_at_ms);
        Ok(Admitted::New(Box::new(Ticket {
            sender: key.0,
            seq: body.seq,
            digest,
            window,
            previous,
            nonce: body.nonce.0,
        })))
    }

    /// Undoes an admission whose RECEIVED record was not written (undo a burst in reverse order).
    pub fn rollback(&mut self, ticket: &Ticket) {
        match &ticket.previous {
            Some(w) => self.windows.insert(ticket.sender.clone(), w.clone()),
            None => self.windows.remove(&ticket.sender),
        };
        self.running.remove(&(ticket.sender.clone(), ticket.seq));
        self.nonces.remove(&(ticket.sender.clone(), ticket.nonce));
    }

    /// Records the reply of a finished command and drops cached replies that fell below the window.
    /// Returns the lowest seq still cached for the sender.
    pub fn settle(&mut self, sender: &str, seq: u64, cached: CachedReply) -> u64 {
        let key = (sender.to_string(), seq);
        self.running.remove(&key);
        if !self.forgotten.remove(&key) {
            self.replies.insert(key, cached);
        }
        let keep_from = self.keep_from(sender);
        if keep_from > 0 {
            self.replies.retain(|(s, q), _| s != sender || *q >= keep_from);
        }
        keep_from
    }

    /// Forgets everything about `sender`'s sequence numbers: its window and its cached replies.
    pub fn forget(&mut self, sender: &str) {
        let running = self.running.keys().filter(|(s, _)| s == sender).cloned();
        self.forgotten.extend(running.collect::<Vec<_>>());
        self.windows.remove(sender);
        self.replies.retain(|(s, _), _| s != sender);
    }

    /// The latest `issued_at_ms` admitted from `sender` since the agent started.
    pub fn newest_issued(&self, sender: &str) -> Option<u64> {
        self.newest.get(sender).copied()
    }

    /// Whether the reply of (sender, seq) is to be cached: not when its sender's numbers were reset while
    /// it ran.
    pub fn caches(&self, sender: &str, seq: u64) -> bool {
        !self.forgotten.contains(&(sender.to_string(), seq))
    }

    /// The lowest seq that is sure to be new for `sender`: one above the newest it sent, if any.
    pub fn next_seq(&self, sender: &str) -> Option<u64> {
        self.windows.get(sender).and_then(ReplayWindow::top).map(|t| t.saturating_add(1))
    }

    /// The lowest seq of `sender` inside its replay window.
    pub fn keep_from(&self, sender: &str) -> u64 {
        self.windows
            .get(sender)
            .and_then(|w| w.top().map(|top| top.saturating_sub(u64::from(w.width()) - 1)))
            .unwrap_or(0)
    }

    /// Number of cached replies (for status).
    pub fn cached_replies(&self) -> usize {
        self.replies.len()
    }

    fn expire_nonces(&mut self, now_ms: u64) {
        while let Some((key, expiry)) = self.nonce_order.front() {
            if *expiry >= now_ms && self.nonce_order.len() < self.limits.nonce_cap {
                break;
            }
            if self.nonces.get(key) == Some(expiry) {
                self.nonces.remove(key);
            }
            self.nonce_order.pop_front();
        }
    }
}

fn conflict(seq: u64) -> IfError {
    IfError::format(
        ErrorCode::ReplayDetected,
        format_args!("seq {seq} was already taken with a different body; refused and recorded as a security event"),
    )
}

fn refusal(r: Refusal, seq: u64, top: Option<u64>) -> IfError {
    match r {
        Refusal::Duplicate => IfError::format(r.code(), format_args!("seq {seq} was already accepted")),
        Refusal::TooOld => IfError::format(
            r.code(),
            format_args!("seq {seq} is below the replay window (newest accepted {})", top.unwrap_or(0)),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use if_protocol::envelope::{Args, Hazards, Nonce, ProtocolVersion};
    use uuid::Uuid;

    const NOW: u64 = 1_800_000_000_000;

    fn body(seq: u64, nonce: u8) -> EnvelopeBody {
        EnvelopeBody {
            version: ProtocolVersion::CURRENT,
            id: Uuid::from_u128(u128::from(seq)),
            audience: if_protocol::envelope::Audience::Fleet,
            sender: "desk".try_into().expect("fits"),
            seq,
            nonce: Nonce([nonce; 16]),
            issued_at_ms: NOW,
            ttl_s: 30,
            scope: "studio:control".try_into().expect("fits"),
            hazards: Hazards::NONE,
            capability: "if://capability/edge.ping".try_into().expect("fits"),
            action: "ping".try_into().expect("fits"),
            args: Args::new(),
            why: "test".try_into().expect("fits"),
            trace: Uuid::nil(),
        }
    }

    fn admission(width: u16) -> Admission {
        Admission::new(Limits { width, skew_ms: 1000, nonce_cap: 8 }, HashMap::new(), HashMap::new())
    }

    fn code(r: Result<Admitted, IfError>) -> ErrorCode {
        r.expect_err("must be refused").code()
    }

    #[test]
    fn new_then_running_then_cached() {
        let mut a = admission(64);
        assert!(matches!(a.admit(&body(5, 1), [1; 32], NOW), Ok(Admitted::New(_))));
        assert!(matches!(a.admit(&body(5, 1), [1; 32], NOW), Ok(Admitted::InProgress)));
        assert_eq!(code(a.admit(&body(5, 1), [2; 32], NOW)), ErrorCode::ReplayDetected);
        a.settle("desk", 5, CachedReply { digest: [1; 32], reply: b"r".to_vec() });
        assert!(matches!(a.admit(&body(5, 1), [1; 32], NOW), Ok(Admitted::Duplicate(r)) if r == b"r"));
        assert_eq!(code(a.admit(&body(5, 1), [3; 32], NOW)), ErrorCode::ReplayDetected);
    }

    #[test]
    fn time_window_and_nonce_refusals() {
        let mut a = admission(4);
        let mut old = body(1, 1);
        old.issued_at_ms = NOW - 40_000;
        assert_eq!(code(a.admit(&old, [1; 32], NOW)), ErrorCode::ExpiredMessage);
        let mut future = body(1, 1);
        future.issued_at_ms = NOW + 5_000;
        assert_eq!(code(a.admit(&future, [1; 32], NOW)), ErrorCode::FutureDated);
        assert!(matches!(a.admit(&body(10, 1), [1; 32], NOW), Ok(Admitted::New(_))));
        assert_eq!(code(a.admit(&body(6, 2), [2; 32], NOW)), ErrorCode::OutOfOrder);
        assert_eq!(code(a.admit(&body(9, 1), [3; 32], NOW)), ErrorCode::ReplayDetected, "nonce reuse");
        assert!(matches!(a.admit(&body(9, 3), [3; 32], NOW), Ok(Admitted::New(_))));
    }

    #[test]
    fn a_seq_ahead_of_the_clock_is_refused_and_changes_nothing() {
        let mut a = admission(64);
        let limit = replay::seq_limit(NOW, 1000);
        assert_eq!(code(a.admit(&body(u64::MAX, 1), [1; 32], NOW)), ErrorCode::SequenceAhead);
        assert_eq!(code(a.admit(&body(limit + 1, 1), [1; 32], NOW)), ErrorCode::SequenceAhead);
        assert!(a.windows.is_empty() && a.nonces.is_empty(), "nothing was recorded");
        assert!(matches!(a.admit(&body(limit, 2), [2; 32], NOW), Ok(Admitted::New(_))), "the bound itself is fine");
        assert_eq!(a.next_seq("desk"), Some(limit + 1));
        assert!(a.admit(&body(3, 3), [3; 32], NOW + 1).is_err(), "3 is far below the window now");
        assert_eq!(a.next_seq("nobody"), None);
    }

    #[test]
    fn a_window_seen_seq_without_cached_reply_is_a_replay() {
        let mut a = admission(64);
        let Ok(Admitted::New(t)) = a.admit(&body(3, 1), [1; 32], NOW) else { panic!("new") };
        a.running.clear();
        assert_eq!(t.seq, 3);
        assert_eq!(code(a.admit(&body(3, 2), [1; 32], NOW)), ErrorCode::ReplayDetected);
    }

    #[test]
    fn rollback_in_reverse_restores_everything() {
        let mut a = admission(64);
        let Ok(Admitted::New(t1)) = a.admit(&body(1, 1), [1; 32], NOW) else { panic!("new") };
        let Ok(Admitted::New(t2)) = a.admit(&body(2, 2), [2; 32], NOW) else { panic!("new") };
        a.rollback(&t2);
        a.rollback(&t1);
        assert!(a.windows.is_empty() && a.running.is_empty() && a.nonces.is_empty());
        assert!(matches!(a.admit(&body(1, 1), [1; 32], NOW), Ok(Admitted::New(_))));
    }

    #[test]
    fn settle_prunes_replies_below_the_window() {
        let mut a = admission(4);
        for seq in 1..=10u64 {
            let Ok(Admitted::New(_)) = a.admit(&body(seq, seq as u8), [seq as u8; 32], NOW) else { panic!("new") };
            a.settle("desk", seq, CachedReply { digest: [seq as u8; 32], reply: vec![] });
        }
        assert_eq!(a.cached_replies(), 4);
        assert_eq!(a.keep_from("desk"), 7);
        assert_eq!(code(a.admit(&body(2, 2), [2; 32], NOW)), ErrorCode::OutOfOrder);
    }

    #[test]
    fn the_nonce_cache_is_bounded() {
        let mut a = admission(1024);
        for seq in 1..=100u64 {
            let _ = a.admit(&body(seq, seq as u8), [0; 32], NOW);
        }
        assert!(a.nonces.len() <= 8 && a.nonce_order.len() <= 8, "{}", a.nonces.len());
    }
}
