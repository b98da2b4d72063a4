//! Device lanes: one per device, between the pipeline and the driver.
//!
//! A lane takes commands that were already verified, authorized and witnessed RECEIVED, and gives each
//! to the driver at most once: through a bounded queue (full -> QUEUE_FULL at once, nothing silently
//! dropped), a token bucket ([`bucket`]) so the device never sees more than `burst` at once and `rps` a
//! second, and a circuit breaker ([`breaker`]) that fails fast while the device is down and probes it with
//! exactly one `health` call per half-open window. Emergency actions (camera STOP, safe state) take the
//! priority lane: straight to the driver, ahead of the queue, past the bucket and without waiting for a
//! queued command's answer; never past policy or the witness, which come before the lane. An operator who
//! presses STOP means "no more motion": an emergency also ends every command queued before it that has not
//! been sent (waiting in the queue, for a token or for a retry), each answered `SUPERSEDED` at once,
//! unless its manifest says `emergency = "keep-queue"`. A command whose answer does not come within the
//! manifest's `timeout_ms` is DEVICE_TIMEOUT and is never sent again by the lane: its effect on the
//! device is unknown. A device that executes more than one command at once (a VISCA camera's two
//! sockets) is given up to that many, in order, each with its own token.

pub mod breaker;
pub mod bucket;

use crate::backoff::{self, Backoff};
use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
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
use futures_util::StreamExt as _;
use futures_util::stream::FuturesUnordered;

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
    /// Emergency actions that end what was queued before them.
    pub ends_queue: HashSet<String>,
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
            emergency: m.actions.iter().filter(|a| a.emergency.is_emergency()).map(|a| a.name.to_string()).collect(),
            ends_queue: m.actions.iter().filter(|a| a.emergency.ends_queue()).map(|a| a.name.to_string()).collect(),
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
    /// The lane's generation when it was queued: an emergency that ends the queue starts a new one, and
    /// a job of an older generation is never sent. Emergencies carry `u64::MAX`.
    generation: u64,
}

/// The queued jobs, in order. Not a channel, so that an emergency can empty it at once, answering each.
#[derive(Default)]
struct Queue {
    jobs: Mutex<VecDeque<Job>>,
    ready: tokio::sync::Notify,
    closed: AtomicBool,
}

impl Queue {
    fn jobs(&self) -> std::sync::MutexGuard<'_, VecDeque<Job>> {
        self.jobs.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The next job, waiting for one; `None` once the lane is gone.
    async fn next(&self) -> Option<Job> {
        loop {
            if self.closed.load(Ordering::Acquire) {
                return None;
            }
            if let Some(job) = self.jobs().pop_front() {
                return Some(job);
            }
            self.ready.notified().await;
        }
    }
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
    /// Bumped by each emergency that ends the queue.
    generation: AtomicU64,
    /// The last emergency action that ended the queue, for the answers of what it ended.
    ended_by: Mutex<String>,
    /// Wakes a worker waiting for a token or a retry when an emergency ends the queue.
    ended: tokio::sync::Notify,
    /// Jobs in flight waiting to be tried again: while any is, the worker takes no later job.
    retrying: std::sync::atomic::AtomicUsize,
}

impl Gate {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn breaker(&self) -> std::sync::MutexGuard<'_, Breaker> {
        self.breaker.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The answer of a job an emergency ended, or `None` if it may still be sent.
    fn superseded(&self, job: &Job) -> Option<IfError> {
        (job.generation < self.generation.load(Ordering::Acquire)).then(|| {
            let by = self.ended_by.lock().unwrap_or_else(PoisonError::into_inner).clone();
            IfError::format(
                ErrorCode::Superseded,
                format_args!("`{by}` on {} ended the queue before this command was sent; it was never sent", self.id),
            )
        })
    }

    /// Waits `d`, or less if an emergency ends the queue meanwhile (or already has, for `job`).
    async fn pause(&self, d: Duration, job: &Job) {
        let ended = self.ended.notified();
        tokio::pin!(ended);
        ended.as_mut().enable();
        if self.superseded(job).is_some() {
            return;
        }
        tokio::select! {
            () = tokio::time::sleep(d) => {}
            () = ended => {}
        }
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
    queue: Arc<Queue>,
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
        let queue = Arc::new(Queue::default());
        let (priority, priority_rx) = mpsc::channel(spec.queue_depth);
        let gate = Arc::new(Gate {
            epoch: Instant::now(),
            breaker: Mutex::new(Breaker::new(spec.breaker_failures, spec.backoff.clone())),
            events,
            opened: tokio::sync::Notify::new(),
            id: spec.id.clone(),
            generation: AtomicU64::new(0),
            ended_by: Mutex::new(String::new()),
            ended: tokio::sync::Notify::new(),
            retrying: std::sync::atomic::AtomicUsize::new(0),
        });
        let bucket = TokenBucket::new(spec.rps, spec.burst, 0);
        let retries: Vec<Duration> = spec.backoff.steps().iter().take(MAX_RETRIES).copied().collect();
        tokio::spawn(work(driver.clone(), gate.clone(), bucket, queue.clone(), spec.timeout, retries));
        tokio::spawn(emergencies(driver.clone(), gate.clone(), priority_rx, spec.timeout));
        tokio::spawn(probe(driver.clone(), Arc::downgrade(&gate), spec.timeout));
        Lane { spec, queue, priority, gate, driver }
    }

    /// The breaker's state.
    pub fn breaker_state(&self) -> State {
        self.gate.breaker().state()
    }

    fn queue_full(&self) -> IfError {
        IfError::format(
            ErrorCode::QueueFull,
            format_args!("{} has {} commands waiting", self.spec.id, self.spec.queue_depth),
        )
    }

    /// Queues a job, or refuses it at once when `queue_depth` are waiting.
    fn enqueue(&self, body: &EnvelopeBody, answer: oneshot::Sender<Outcome>) -> Result<(), IfError> {
        let mut jobs = self.queue.jobs();
        if jobs.len() >= self.spec.queue_depth {
            return Err(self.queue_full());
        }
        let generation = self.gate.generation.load(Ordering::Acquire);
        jobs.push_back(Job { body: body.clone(), answer, generation });
        drop(jobs);
        self.queue.ready.notify_one();
        Ok(())
    }

    /// An emergency that ends the queue: a new generation (so the job the worker holds, waiting for a
    /// token or a retry, is never sent), and every queued job answered `SUPERSEDED` now.
    fn end_queue(&self, action: &str) {
        *self.gate.ended_by.lock().unwrap_or_else(PoisonError::into_inner) = action.to_string();
        // Under the queue's lock: a job queued meanwhile is either ended here or of the new generation.
        let ended: Vec<Job> = {
            let mut jobs = self.queue.jobs();
            self.gate.generation.fetch_add(1, Ordering::AcqRel);
            jobs.drain(..).collect()
        };
        self.gate.ended.notify_waiters();
        if !ended.is_empty() {
            tracing::warn!(capability = %self.spec.id, action, ended = ended.len(), "emergency: the queue is ended");
        }
        for job in ended {
            let answer = self.gate.superseded(&job).unwrap_or_else(|| IfError::new(ErrorCode::Superseded));
            let _ = job.answer.send(Err(answer));
        }
    }
}

impl Lane {
    /// Queues the command now (an emergency on the priority lane, ending the queue where it should), or
    /// refuses it; returns where its outcome comes.
    fn submit(&self, body: &EnvelopeBody) -> Result<oneshot::Receiver<Outcome>, IfError> {
        let (answer, wait) = oneshot::channel();
        let action = body.action.as_str();
        if self.spec.emergency.contains(action) {
            // Room for the emergency first: one that is refused ends nothing.
            let slot = self.priority.try_reserve().map_err(|e| match e {
                mpsc::error::TrySendError::Full(()) => self.queue_full(),
                mpsc::error::TrySendError::Closed(()) => {
                    IfError::with(ErrorCode::SystemError, "the device lane stopped")
                }
            })?;
            if self.spec.ends_queue.contains(action) {
                self.end_queue(action);
            }
            slot.send(Job { body: body.clone(), answer, generation: u64::MAX });
        } else {
            self.enqueue(body, answer)?;
        }
        Ok(wait)
    }
}

/// The outcome of a submitted command.
async fn answered(taken: Result<oneshot::Receiver<Outcome>, IfError>) -> Outcome {
    taken?.await.map_err(|_| IfError::with(ErrorCode::SystemError, "the device lane stopped"))?
}

impl Drop for Lane {
    fn drop(&mut self) {
        self.queue.closed.store(true, Ordering::Release);
        self.queue.ready.notify_one();
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
        let taken = self.submit(body);
        Box::pin(answered(taken))
    }

    fn take(self: Arc<Self>, body: EnvelopeBody) -> OutcomeFuture<'static> {
        Box::pin(answered(self.submit(&body)))
    }

    fn plan(&self, body: &EnvelopeBody) -> Plan {
        let mut plan = self.driver.plan(body);
        let emergency = self.spec.emergency.contains(body.action.as_str());
        if let Err(e) = self.gate.breaker().check(self.gate.now_ms()) {
            plan.problems.insert(0, e);
        } else if !emergency && self.queue.jobs().len() >= self.spec.queue_depth {
            plan.problems.insert(0, self.queue_full());
        }
        plan
    }
}

/// The worker: queued jobs in order, one token each, each through the breaker, with at most
/// [`Driver::in_flight`] of them given to the driver and not yet answered (one for most devices). A job
/// is taken from the queue only when there is room for it, so what waits is still in the queue for an
/// emergency to end, and none while a job in flight waits to be tried again (it goes first). A job an emergency ended while it waited for its token is answered, not sent, and
/// costs no token.
///
/// The jobs in flight are futures of this one task, not tasks of their own: each is polled once before
/// the next is taken, so the driver is handed them in the order they were queued.
async fn work(
    driver: Arc<dyn Driver>,
    gate: Arc<Gate>,
    mut bucket: TokenBucket,
    queue: Arc<Queue>,
    timeout: Duration,
    retries: Vec<Duration>,
) {
    let room = driver.in_flight().max(1);
    let mut running = FuturesUnordered::new();
    loop {
        while running.len() >= room || (!running.is_empty() && gate.retrying.load(Ordering::Acquire) > 0) {
            running.next().await;
        }
        let Some(job) = beside(&mut running, queue.next()).await else { break };
        while gate.superseded(&job).is_none() {
            match bucket.take(gate.now_ms()) {
                Ok(()) => break,
                Err(wait_ms) => beside(&mut running, gate.pause(Duration::from_millis(wait_ms), &job)).await,
            }
        }
        running.push(run(&*driver, &gate, job, timeout, &retries, false));
    }
    while running.next().await.is_some() {}
}

/// Waits for `f` while the jobs in flight go on.
async fn beside<F: std::future::Future>(running: &mut FuturesUnordered<impl std::future::Future>, f: F) -> F::Output {
    tokio::pin!(f);
    loop {
        tokio::select! {
            biased;
            Some(_) = running.next(), if !running.is_empty() => {}
            out = &mut f => return out,
        }
    }
}

/// The priority lane: emergency jobs go to the driver at once, even while a queued command is still
/// waiting for its answer (a STOP must not wait for a preset recall to finish).
async fn emergencies(driver: Arc<dyn Driver>, gate: Arc<Gate>, mut priority: mpsc::Receiver<Job>, timeout: Duration) {
    while let Some(job) = priority.recv().await {
        // An emergency is tried once: a STOP late by seconds is worse than a STOP that failed.
        run(&*driver, &gate, job, timeout, &[], true).await;
    }
}

/// One command: breaker check, the driver with a timeout (an emergency through
/// [`Driver::apply_now`]), the breaker's count, the answer.
async fn run(driver: &dyn Driver, gate: &Gate, job: Job, timeout: Duration, retries: &[Duration], urgent: bool) {
    let mut attempt = 0;
    let outcome = loop {
        if let Some(ended) = gate.superseded(&job) {
            break Err(ended);
        }
        if let Err(e) = gate.breaker().check(gate.now_ms()) {
            break Err(e);
        }
        let sent = if urgent { driver.apply_now(&job.body) } else { driver.apply(&job.body) };
        let outcome = match tokio::time::timeout(timeout, sent).await {
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
                // While it waits, no later job is taken: it must not reach the device first.
                gate.retrying.fetch_add(1, Ordering::AcqRel);
                gate.pause(wait.mul_f64(backoff::factor()), &job).await;
                gate.retrying.fetch_sub(1, Ordering::AcqRel);
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
