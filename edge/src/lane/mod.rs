//! Device lanes: one per device, between the pipeline and the driver.
//!
//! A lane takes commands that were already verified, authorized and witnessed RECEIVED, and gives each
//! to the driver at most once: through a bounded queue (full -> QUEUE_FULL at once, nothing silently
//! dropped), a token bucket ([`bucket`]) so the device never sees more than `burst` at once and `rps` a
//! second, and a circuit breaker ([`breaker`]) that fails fast while the device is down and probes it with
//! exactly one `health` call per half-open window. Emergency actions (camera STOP, safe state) take the
//! priority lane: straight to the driver, ahead of the queue, past the bucket and without waiting for a
//! queued command's answer; never past policy or the witness, which come before the lane. A command whose answer does not come within the manifest's `timeout_ms` is
//! DEVICE_TIMEOUT and is never sent again by the lane: its effect on the device is unknown.

pub mod breaker;
pub mod bucket;

use crate::backoff::{self, Backoff};
use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use if_protocol::envelope::EnvelopeBody;
use if_protocol::policy::Manifest;
use if_protocol::{ErrorCode, IfError};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::capability::{Capability, Outcome, OutcomeFuture, Plan};
use crate::drivers::Driver;
use breaker::{Breaker, Change, State};
use bucket::TokenBucket;

/// Most times a command that reached nothing (DEVICE_UNREACHABLE) is tried again, on the backoff schedule.
const MAX_RETRIES: usize = 2;

/// A breaker change of one lane, for the BREAKER record and the status topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BreakerEvent {
    /// The capability (device).
    pub capability: String,
    /// The change.
    pub change: Change,
}

/// How a lane drives its device: from the manifest.
#[derive(Debug, Clone)]
pub struct LaneSpec {
    /// The capability id.
    pub id: String,
    /// Actions offered.
    pub actions: HashSet<String>,
    /// Actions that take the priority lane.
    pub emergency: HashSet<String>,
    /// Token bucket rate.
    pub rps: f32,
    /// Token bucket size.
    pub burst: u32,
    /// Breaker waits, and the waits between retries of a command that reached nothing.
    pub backoff: Backoff,
    /// Consecutive failures that open the breaker.
    pub breaker_failures: u32,
    /// Commands that may wait.
    pub queue_depth: usize,
    /// The device's answer must come within this.
    pub timeout: Duration,
}

impl LaneSpec {
    /// The lane a manifest describes.
    pub fn from_manifest(m: &Manifest) -> Self {
        let l = &m.limits;
        LaneSpec {
            id: m.id.to_string(),
            actions: m.actions.iter().map(|a| a.name.to_string()).collect(),
            emergency: m.actions.iter().filter(|a| a.emergency).map(|a| a.name.to_string()).collect(),
            rps: l.rps,
            burst: l.burst,
            backoff: Backoff::from_secs(&l.backoff),
            breaker_failures: l.breaker_failures,
            queue_depth: usize::try_from(l.queue_depth).unwrap_or(1).max(1),
            timeout: Duration::from_millis(u64::from(l.timeout_ms.max(1))),
        }
    }
}

struct Job {
    body: EnvelopeBody,
    answer: oneshot::Sender<Outcome>,
}

/// Shared by the worker and the prober.
#[derive(Debug)]
struct Gate {
    epoch: Instant,
    breaker: Mutex<Breaker>,
    events: mpsc::UnboundedSender<BreakerEvent>,
    /// Wakes the prober when the breaker opens.
    opened: tokio::sync::Notify,
    id: String,
}

impl Gate {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn breaker(&self) -> std::sync::MutexGuard<'_, Breaker> {
        self.breaker.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn publish(&self, change: Option<Change>) {
        if let Some(change) = change {
            tracing::warn!(capability = %self.id, from = change.from.name(), to = change.to.name(), "breaker: {}", change.reason);
            if change.to == State::Open {
                self.opened.notify_one();
            }
            let _ = self.events.send(BreakerEvent { capability: self.id.clone(), change });
        }
    }
}

/// A lane: a [`Capability`] the registry offers in place of the bare driver.
pub struct Lane {
    spec: LaneSpec,
    queue: mpsc::Sender<Job>,
    priority: mpsc::Sender<Job>,
    gate: Arc<Gate>,
    driver: Arc<dyn Driver>,
}

impl std::fmt::Debug for Lane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lane").field("id", &self.spec.id).field("driver", &self.driver).finish()
    }
}

impl Lane {
    /// Starts the lane's worker and prober on the current runtime.
    pub fn start(spec: LaneSpec, driver: Arc<dyn Driver>, events: mpsc::UnboundedSender<BreakerEvent>) -> Lane {
        let (queue, queue_rx) = mpsc::channel(spec.queue_depth);
        let (priority, priority_rx) = mpsc::channel(spec.queue_depth);
        let gate = Arc::new(Gate {
            epoch: Instant::now(),
            breaker: Mutex::new(Breaker::new(spec.breaker_failures, spec.backoff.clone())),
            events,
            opened: tokio::sync::Notify::new(),
            id: spec.id.clone(),
        });
        let bucket = TokenBucket::new(spec.rps, spec.burst, 0);
        let retries: Vec<Duration> = spec.backoff.steps().iter().take(MAX_RETRIES).copied().collect();
        tokio::spawn(work(driver.clone(), gate.clone(), bucket, queue_rx, spec.timeout, retries));
        tokio::spawn(emergencies(driver.clone(), gate.clone(), priority_rx, spec.timeout));
        tokio::spawn(probe(driver.clone(), Arc::downgrade(&gate), spec.timeout));
        Lane { spec, queue, priority, gate, driver }
    }

    /// The breaker's state.
    pub fn breaker_state(&self) -> State {
        self.gate.breaker().state()
    }
}

impl Capability for Lane {
    fn id(&self) -> &str {
        &self.spec.id
    }

    fn offers(&self, action: &str) -> bool {
        self.spec.actions.contains(action)
    }

    fn execute<'a>(&'a self, body: &'a EnvelopeBody) -> OutcomeFuture<'a> {
        Box::pin(async move {
            let (answer, wait) = oneshot::channel();
            let emergency = self.spec.emergency.contains(body.action.as_str());
            let lane = if emergency { &self.priority } else { &self.queue };
            lane.try_send(Job { body: body.clone(), answer }).map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => IfError::format(
                    ErrorCode::QueueFull,
                    format_args!("{} has {} commands waiting", self.spec.id, self.spec.queue_depth),
                ),
                mpsc::error::TrySendError::Closed(_) => {
                    IfError::with(ErrorCode::SystemError, "the device lane stopped")
                }
            })?;
            wait.await.map_err(|_| IfError::with(ErrorCode::SystemError, "the device lane stopped"))?
        })
    }

    fn plan(&self, body: &EnvelopeBody) -> Plan {
        let mut plan = self.driver.plan(body);
        let emergency = self.spec.emergency.contains(body.action.as_str());
        if let Err(e) = self.gate.breaker().check(self.gate.now_ms()) {
            plan.problems.insert(0, e);
        } else if !emergency && self.queue.capacity() == 0 {
            plan.problems.insert(
                0,
                IfError::format(
                    ErrorCode::QueueFull,
                    format_args!("{} has {} commands waiting", self.spec.id, self.spec.queue_depth),
                ),
            );
        }
        plan
    }
}

/// The worker: queued jobs one at a time, one token each, each through the breaker.
async fn work(
    driver: Arc<dyn Driver>,
    gate: Arc<Gate>,
    mut bucket: TokenBucket,
    mut queue: mpsc::Receiver<Job>,
    timeout: Duration,
    retries: Vec<Duration>,
) {
    while let Some(job) = queue.recv().await {
        while let Err(wait_ms) = bucket.take(gate.now_ms()) {
            tokio::time::sleep(Duration::from_millis(wait_ms)).await;
        }
        run(&*driver, &gate, job, timeout, &retries).await;
    }
}

/// The priority lane: emergency jobs go to the driver at once, even while a queued command is still
/// waiting for its answer (a STOP must not wait for a preset recall to finish).
async fn emergencies(driver: Arc<dyn Driver>, gate: Arc<Gate>, mut priority: mpsc::Receiver<Job>, timeout: Duration) {
    while let Some(job) = priority.recv().await {
        // An emergency is tried once: a STOP late by seconds is worse than a STOP that failed.
        run(&*driver, &gate, job, timeout, &[]).await;
    }
}

/// One command: breaker check, the driver with a timeout, the breaker's count, the answer.
async fn run(driver: &dyn Driver, gate: &Gate, job: Job, timeout: Duration, retries: &[Duration]) {
    let mut attempt = 0;
    let outcome = loop {
        if let Err(e) = gate.breaker().check(gate.now_ms()) {
            break Err(e);
        }
        let outcome = match tokio::time::timeout(timeout, driver.apply(&job.body)).await {
            Ok(outcome) => outcome,
            Err(_) => Err(IfError::format(
                ErrorCode::DeviceTimeout,
                format_args!("no answer within {} ms; the command is not sent again", timeout.as_millis()),
            )),
        };
        let code = outcome.as_ref().err().map(IfError::code);
        let counts = matches!(code, Some(ErrorCode::DeviceUnreachable | ErrorCode::DeviceTimeout));
        let change = gate.breaker().record(counts, gate.now_ms(), backoff::factor());
        let opened = change.is_some();
        gate.publish(change);
        // Unreachable means nothing reached the device: safe to try again after the next wait of the
        // schedule, while the breaker stays closed. Anything else is final.
        match retries.get(attempt) {
            Some(wait) if code == Some(ErrorCode::DeviceUnreachable) && !opened => {
                attempt += 1;
                tokio::time::sleep(wait.mul_f64(backoff::factor())).await;
            }
            _ => break outcome,
        }
    };
    let _ = job.answer.send(outcome);
}

/// The prober: when the open wait is over, exactly one `health` call, then closed or open again.
async fn probe(driver: Arc<dyn Driver>, gate: std::sync::Weak<Gate>, timeout: Duration) {
    loop {
        let Some(g) = gate.upgrade() else { return };
        let wait = g.breaker().probe_in(g.now_ms());
        match wait {
            None => {
                // Closed: sleep until it opens (rechecking now and then that the lane still exists).
                tokio::select! {
                    () = g.opened.notified() => {}
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
            Some(ms) if ms > 0 => {
                drop(g);
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
            Some(_) => {
                let started = g.breaker().start_probe();
                g.publish(started);
                let ok = matches!(tokio::time::timeout(timeout, driver.health()).await, Ok(Ok(())));
                let result = g.breaker().probe_result(ok, g.now_ms(), backoff::factor());
                g.publish(result);
            }
        }
    }
}

#[cfg(test)]
mod tests;
