//! The agent's live figures, shared by `edge.ping`, the retained status and the Will: one place that
//! counts, so every reader sees the same numbers.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use if_protocol::messages::status::{self, State, Status};

/// Live figures the agent shares with `edge.ping` and its status message.
#[derive(Debug)]
pub struct Health {
    /// `<site>/<agent>`.
    pub agent: String,
    /// The boot counter.
    pub boot: u32,
    /// Seconds between periodic status messages: a reader takes an `online` older than a few of these as
    /// stale (a replayed old status, or an agent gone without its Will).
    pub status_interval_s: u32,
    /// A random number of this process, so two processes with one identity (a copied config) are told
    /// apart on the status topic.
    pub instance: u64,
    started: Instant,
    /// Records in the witness log.
    pub log_size: AtomicU64,
    /// The first record kept (older ones archived and pruned).
    pub log_from: AtomicU64,
    /// Commands executed this run.
    pub executed: AtomicU64,
    /// Inputs refused this run.
    pub rejected: AtomicU64,
    /// The MQTT session of this boot, from 1: with `boot`, it tells a late Will from a live session.
    pub session: AtomicU64,
    /// The largest checkpoint the upstream acknowledged.
    pub anchored: AtomicU64,
    /// Checkpoints signed but not yet acknowledged upstream.
    pub anchors_pending: AtomicU64,
    /// Records whose entry bundles the archive acknowledged.
    pub archived: AtomicU64,
    /// The witness file against its disk budget, when the store reports it.
    pub disk: Option<std::sync::Arc<crate::witness::disk::DiskStats>>,
    /// The full check of the log last asked for this run ([`crate::builtin::log_check`]).
    pub log_check: std::sync::Mutex<Option<status::LogCheck>>,
    /// Another process using this identity, once noticed (shown on every status from then on).
    conflict: std::sync::Mutex<Option<status::Conflict>>,
}

impl Health {
    /// Figures for a run that starts now.
    pub fn new(agent: String, boot: u32, log_size: u64) -> Self {
        Health {
            agent,
            boot,
            instance: rand::random(),
            status_interval_s: 30,
            started: Instant::now(),
            log_size: AtomicU64::new(log_size),
            log_from: AtomicU64::new(0),
            executed: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            session: AtomicU64::new(1),
            anchored: AtomicU64::new(0),
            anchors_pending: AtomicU64::new(0),
            archived: AtomicU64::new(0),
            disk: None,
            log_check: std::sync::Mutex::new(None),
            conflict: std::sync::Mutex::new(None),
        }
    }

    /// The conflict is over: the status no longer shows it.
    pub fn clear_conflict(&self) {
        *self.conflict.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = None;
    }

    /// Records a conflict over this agent's identity for the status topic.
    pub fn set_conflict(&self, c: &crate::identity::Conflict) {
        let v = status::Conflict {
            code: if_protocol::ErrorCode::IdentityConflict,
            how: c.how.clone(),
            other_instance: c.other.clone(),
            since_ms: crate::clock::Clock::system_ms(),
        };
        *self.conflict.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(v);
    }

    /// The process's instance number as the status shows it.
    pub fn instance_hex(&self) -> String {
        format!("{:016x}", self.instance)
    }

    /// The `online` status as it is now, without policy, budgets and breakers (the agent adds those).
    pub fn snapshot(&self) -> Status {
        let mut s = Status::new(State::Online, &self.agent, u64::from(self.boot), self.session.load(Ordering::Relaxed));
        s.version = Some(env!("CARGO_PKG_VERSION").into());
        s.instance = Some(self.instance_hex());
        s.at_ms = Some(crate::clock::Clock::system_ms());
        s.interval_s = Some(u64::from(self.status_interval_s));
        s.uptime_s = Some(self.started.elapsed().as_secs());
        s.log_size = Some(self.log_size.load(Ordering::Relaxed));
        s.log_from = Some(self.log_from.load(Ordering::Relaxed));
        s.executed = Some(self.executed.load(Ordering::Relaxed));
        s.rejected = Some(self.rejected.load(Ordering::Relaxed));
        s.anchors = Some(status::Anchoring {
            acked: self.anchored.load(Ordering::Relaxed),
            pending: self.anchors_pending.load(Ordering::Relaxed),
            archived: self.archived.load(Ordering::Relaxed),
        });
        s.disk = self.disk.as_ref().map(|d| d.status());
        s.log_check = self.log_check.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        s.conflict = self.conflict.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        s
    }
}
