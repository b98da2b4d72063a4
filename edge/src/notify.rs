//! The systemd notify protocol, for a service manager that supervises the agent (`Type=notify`):
//! `READY=1` once the agent serves, `WATCHDOG=1` from its event loop, `STATUS=` lines a person can read,
//! and `STOPPING=1` when it begins to stop. Without `NOTIFY_SOCKET` in the environment nothing is sent.
//!
//! The watchdog is pinged at half of `WATCHDOG_USEC` by a task on the agent's own runtime: when that
//! runtime wedges, the pings stop and the service manager restarts the agent.

use std::time::Duration;

use sd_notify::NotifyState;

/// Sends notifications when a service manager listens; does nothing otherwise.
#[derive(Debug, Clone, Copy)]
pub struct Notifier {
    enabled: bool,
}

impl Notifier {
    /// A notifier for this process's environment.
    pub fn from_env() -> Self {
        Notifier { enabled: std::env::var_os("NOTIFY_SOCKET").is_some() }
    }

    /// How often to ping the watchdog: half of `WATCHDOG_USEC`, when the manager set one for this process.
    pub fn watchdog_every(&self) -> Option<Duration> {
        self.enabled.then(sd_notify::watchdog_enabled).flatten().map(|d| d / 2).filter(|d| !d.is_zero())
    }

    /// The agent serves: `READY=1` with what it serves.
    pub fn ready(&self, status: &str) {
        self.send(&[NotifyState::Ready, NotifyState::Status(status)]);
    }

    /// A `STATUS=` line.
    pub fn status(&self, status: &str) {
        self.send(&[NotifyState::Status(status)]);
    }

    /// `WATCHDOG=1`.
    pub fn watchdog(&self) {
        self.send(&[NotifyState::Watchdog]);
    }

    /// The agent begins to stop: `STOPPING=1`.
    pub fn stopping(&self) {
        self.send(&[NotifyState::Stopping, NotifyState::Status("stopping: finishing running commands")]);
    }

    fn send(&self, states: &[NotifyState<'_>]) {
        if self.enabled
            && let Err(e) = sd_notify::notify(states)
        {
            tracing::debug!(error = %e, "the service manager could not be notified");
        }
    }
}

/// Pings the watchdog every `every` for as long as it runs.
pub async fn watchdog(notifier: Notifier, every: Duration) {
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        notifier.watchdog();
    }
}
