//! The full check of the witness log beside the serving agent: `edge.witness`, action `verify`.
//!
//! The agent's start checks only what follows its newest checkpoint ([`crate::witness::tail`]), so a
//! change below it is found here (or by `ifctl witness verify` on a stopped agent's file). The check runs
//! on a blocking thread over one snapshot of the log, so commands go on being committed beside it; the
//! command that asks is answered at once, and how far the check got, and what it found, is on the status
//! topic (`log_check`). One check runs at a time; asking again while one runs says how far it is.
//!
//! While a check runs its snapshot holds the pages of that moment, so the file may grow a little more
//! than it would until the check ends.

use std::sync::{Arc, PoisonError};

use ed25519_dalek::VerifyingKey;
use if_protocol::messages::status::{LogCheck, LogCheckState};
use if_protocol::{ErrorCode, IfError};

use crate::clock::Clock;
use crate::health::Health;
use crate::witness::verify::verify_log;
use crate::witness::writer::Witness;

/// Starts full checks and keeps the last one's state.
#[derive(Debug, Clone)]
pub struct LogChecker {
    witness: Witness,
    key: VerifyingKey,
    origin: String,
    health: Arc<Health>,
    changed: Arc<tokio::sync::Notify>,
}

impl LogChecker {
    /// Checks of `witness`, whose checkpoints `key` signs under `origin`, kept in `health` for the status;
    /// `changed` is told when a check starts and ends (the status is published again).
    pub fn new(
        witness: Witness,
        key: VerifyingKey,
        origin: String,
        health: Arc<Health>,
        changed: Arc<tokio::sync::Notify>,
    ) -> Self {
        LogChecker { witness, key, origin, health, changed }
    }

    fn state(&self) -> Option<LogCheck> {
        self.health.log_check.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Starts a check unless one runs; returns the state it is in now.
    pub async fn start(&self) -> Result<LogCheck, IfError> {
        if let Some(running) = self.state().filter(|s| s.state == LogCheckState::Running) {
            return Ok(running);
        }
        let reader = self.witness.with_store(|store| store.reader()).await?;
        let snapshot = reader.snapshot()?;
        let size = snapshot.size()?;
        let begun = LogCheck {
            state: LogCheckState::Running,
            size,
            checked: 0,
            started_ms: Clock::system_ms(),
            ended_ms: None,
            index: None,
            error: None,
        };
        {
            let mut state = self.health.log_check.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(running) = state.clone().filter(|s| s.state == LogCheckState::Running) {
                return Ok(running);
            }
            *state = Some(begun.clone());
        }
        self.changed.notify_one();
        let me = self.clone();
        let spawned = std::thread::Builder::new().name("witness-check".into()).spawn(move || {
            let set = |f: &dyn Fn(&mut LogCheck)| {
                if let Some(s) = me.health.log_check.lock().unwrap_or_else(PoisonError::into_inner).as_mut() {
                    f(s);
                }
            };
            let result = verify_log(&snapshot, Some(&me.key), Some(&me.origin), |n| set(&|s| s.checked = n));
            drop(snapshot);
            set(&|s| {
                s.ended_ms = Some(Clock::system_ms());
                match &result {
                    Ok(report) => {
                        s.state = LogCheckState::Passed;
                        s.size = report.size;
                        s.checked = report.size;
                    }
                    Err(fault) => {
                        s.state = LogCheckState::Failed;
                        s.index = Some(fault.index);
                        s.error = Some(fault.error.to_string());
                    }
                }
            });
            match &result {
                Ok(r) => tracing::info!(records = r.size, "witness log: the full check passed"),
                Err(f) => tracing::error!(index = f.index, error = %f.error, "witness log: the full check failed"),
            }
            me.changed.notify_one();
        });
        if let Err(e) = spawned {
            *self.health.log_check.lock().unwrap_or_else(PoisonError::into_inner) = None;
            return Err(IfError::format(ErrorCode::SystemError, format_args!("cannot start the log check: {e}")));
        }
        Ok(begun)
    }
}
