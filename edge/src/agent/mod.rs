//! The running agent: wires the config, the witness, ingress, capabilities and MQTT together.
//!
//! Two loops share one lock-protected [`State`]: the *ingress* loop takes bursts of publishes, decides
//! them, writes the RECEIVED records (one group commit for the burst), acknowledges, and starts each
//! accepted command once; the *completion* loop writes each outcome (EXECUTED or FAILED, with the reply
//! cached for redeliveries), then publishes the reply. Refusals are answered at once, counted, and
//! witnessed as sampled REJECTED records. When the witness cannot be written, accepted commands are
//! answered IF_ERR_501 WITNESS_UNAVAILABLE, their admission is undone, and nothing runs.
//!
//! Every topic the agent reads is bounded against a flood from anyone on the broker: refusals on `cmd`
//! and `policy` share one sampler ([`Rejections`]): past `rejected_per_s` a second, a refusal gets no
//! REJECTED record, no dead letter and (when no signature vouched for its sender) no reply, only a count
//! in the one summary record and summary dead letter of that second. Pushed documents are read at most
//! 5 a second; status republishes after changes are coalesced to one a second.
//!
//! Layout: [`run`] here (start, serve, stop in order) with the context every loop shares; `startup`
//! builds everything before the agent takes work, `pipeline` is the ingress loop, `completion` the
//! completion loop, `refusals` how a refusal is answered, `pushes` the policy topic, and `feedback`
//! status, tally, breakers and identity conflicts.
//!
//! Shutdown goes in order: the ingress loop stops taking commands; the commands already running finish
//! and their outcomes are witnessed and answered (for at most [`DRAIN`]); the feedback loops are
//! cancelled and joined; a last checkpoint is signed and offered upstream; the retained `offline` is
//! published; and the witness writer is joined, so when [`run`] returns every record is on disk and the
//! file is closed.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use if_protocol::{ErrorCode, IfError};
use rumqttc::v5::AsyncClient;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{Publish, PublishProperties};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

mod bindings;
mod completion;
mod feedback;
mod pipeline;
mod pushes;
mod refusals;
mod startup;

use feedback::online_status;

use crate::attest::Signer;
use crate::clock::Clock;
use crate::config::Loaded;
use crate::drivers::DriverContext;
use crate::health::Health;
use crate::ingress::Ingress;
use crate::lane::{BreakerEvent, Lane};
use crate::mqtt;
use crate::policy::Policy;
use crate::rejections::Rejections;
use crate::reply::DeadLetter;
use crate::vault::Vault;
use crate::witness::store::Interrupted;
use crate::witness::writer::Witness;
use if_protocol::topics::Topics;

/// Most distinct routes a running command's copies are answered on.
const WAITING_ROUTES: usize = 8;

/// Most publishes decided as one burst.
const MAX_BURST: usize = 256;

/// How long commands already running at shutdown may take to finish and be witnessed.
const DRAIN: Duration = Duration::from_secs(3);

/// How long each later step of a shutdown may take (the disk or the broker may be gone).
const STEP: Duration = Duration::from_secs(2);

/// Where a reply goes: the MQTT 5 response topic with its correlation data, or the sender's topic.
#[derive(Debug, Clone)]
struct Route {
    topic: String,
    correlation: Option<Bytes>,
}

/// State shared by the two loops.
#[derive(Debug)]
struct State {
    ingress: Ingress,
    /// Copies of running envelopes, answered with the original's reply.
    waiting: HashMap<(String, u64), Vec<Route>>,
    /// The device lanes, for their breakers' state.
    lanes: Vec<Arc<Lane>>,
}

/// A command that ran, on its way to the witness and the sender. It carries what the outcome record and
/// the reply need (the envelope's fields at their own size), not the envelope: thousands of these wait
/// in the completion queue under a flood, and an envelope's fixed-capacity arguments are kilobytes.
#[derive(Debug)]
struct Done {
    /// The envelope's id.
    id: uuid::Uuid,
    /// Its sequence number.
    seq: u64,
    /// The command as its records describe it (sender, capability, action, why, trace).
    entry: crate::witness::record::Entry,
    digest: [u8; 32],
    received: u64,
    route: Route,
    /// The capability's answer as compact JSON ([`completion::compact`]), or why it failed.
    outcome: Result<Box<serde_json::value::RawValue>, IfError>,
    now_ms: u64,
    /// Its share of the room for running commands, given back once it is answered.
    slot: Option<tokio::sync::OwnedSemaphorePermit>,
}

#[derive(Debug, Clone)]
struct Ctx {
    client: AsyncClient,
    signer: Signer,
    topics: Topics,
    witness: Witness,
    health: Arc<Health>,
    state: Arc<Mutex<State>>,
    clock: Arc<Mutex<Clock>>,
    policy: Arc<Mutex<Policy>>,
    vault: Vault,
    drivers: DriverContext,
    breakers: mpsc::UnboundedSender<BreakerEvent>,
    /// Which refusals are witnessed, dead-lettered and answered one by one (shared by every topic).
    sampler: Arc<Mutex<Rejections>>,
    /// Asks for the status to be published again soon (at most once a second).
    status_due: Arc<tokio::sync::Notify>,
    /// The service manager, when one supervises the agent.
    notifier: crate::notify::Notifier,
    /// Room for the commands inside the agent at once (`pipeline::MAX_RUNNING`).
    running: Arc<tokio::sync::Semaphore>,
    /// Each command's stage times, when the path benchmark asks for them.
    stages: Option<Arc<crate::stages::Stages>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Ctx {
    fn now_ms(&self) -> u64 {
        lock(&self.clock).now_ms()
    }

    async fn publish(&self, route: &Route, payload: Vec<u8>) {
        let props = PublishProperties {
            correlation_data: route.correlation.clone(),
            content_type: Some("application/json".into()),
            ..PublishProperties::default()
        };
        let r = self.client.publish_with_properties(route.topic.clone(), QoS::AtLeastOnce, false, payload, props).await;
        if r.is_err() {
            tracing::warn!(topic = %route.topic, "reply could not be queued");
        }
    }

    /// Asks for the status to be published again: at once, or a second after the last time if that was
    /// less than a second ago; any number of asks in between make one publish.
    fn status_soon(&self) {
        self.status_due.notify_one();
    }

    /// Whether this refusal is witnessed, dead-lettered and answered one by one (see [`Rejections`]).
    fn sampled(&self, code: ErrorCode, always: bool) -> bool {
        lock(&self.sampler).admit(code.number(), always, self.now_ms())
    }

    /// What the agent serves, in a line for the service manager.
    fn serving_line(&self) -> String {
        let capabilities = lock(&self.state).ingress.registry.len();
        let log = self.health.log_size.load(Ordering::Relaxed);
        format!("serving {capabilities} capabilities, log {log} records")
    }

    /// Publishes the retained `online` status as it is now.
    async fn publish_status(&self) {
        let status = self.signer.publication(&self.topics.status, online_status(&self.health, &self.state));
        let _ = self.client.publish(self.topics.status.clone(), QoS::AtLeastOnce, true, status).await;
    }

    async fn dead_letter(&self, letter: DeadLetter) {
        let bytes = self.signer.publication(&self.topics.dlq, letter.to_bytes());
        let r = self.client.publish(self.topics.dlq.clone(), QoS::AtLeastOnce, false, bytes).await;
        if r.is_err() {
            tracing::warn!("dead letter could not be queued");
        }
    }

    async fn ack(&self, p: &Publish) {
        if self.client.ack(p).await.is_err() {
            tracing::warn!("acknowledgement could not be queued");
        }
    }

    /// The reply route of a publish: its response topic when the agent may answer there (under the
    /// sender's reply topic, see [`Topics::allows_reply`]), else the sender's reply topic; with no
    /// known sender and no allowed response topic, nowhere.
    fn route(&self, p: &Publish, sender: Option<&str>) -> Option<Route> {
        let props = p.properties.as_ref();
        // A copy: the publish's own bytes would keep its whole receive buffer alive while it waits.
        let correlation = props.and_then(|pp| pp.correlation_data.as_deref()).map(Bytes::copy_from_slice);
        match props.and_then(|pp| pp.response_topic.clone()) {
            Some(topic) if self.topics.allows_reply(&topic, sender) => Some(Route { topic, correlation }),
            _ => sender.map(|s| Route { topic: self.topics.reply_for(s), correlation }),
        }
    }
}

/// Runs the agent until `shutdown` completes (or its connection driver gives up), then stops it in
/// order (see the module documentation).
pub async fn run(loaded: Loaded, shutdown: impl std::future::Future<Output = ()>) -> Result<(), IfError> {
    let up = startup::start(&loaded)?;
    let ctx = up.ctx.clone();
    let (inbound_tx, mut inbound) = mpsc::unbounded_channel();
    let (serving_tx, mut serving) = watch::channel(false);
    let driver = tokio::spawn(mqtt::drive(up.eventloop, up.link, inbound_tx, serving_tx));
    tell_interrupted(&ctx, up.interrupted);

    let (done, done_rx) = mpsc::unbounded_channel();
    let completion = tokio::spawn(completion::complete(ctx.clone(), done_rx));
    let feedback = TaskTracker::new();
    let cancel = CancellationToken::new();
    let (policy, policy_rx) = mpsc::unbounded_channel();
    feedback.spawn(cancel.clone().run_until_cancelled_owned(pushes::policy_loop(ctx.clone(), policy_rx)));
    feedback.spawn(cancel.clone().run_until_cancelled_owned(feedback::breaker_loop(ctx.clone(), up.breakers)));
    feedback.spawn(cancel.clone().run_until_cancelled_owned(feedback::tally_loop(ctx.clone(), up.tallies)));
    feedback.spawn(cancel.clone().run_until_cancelled_owned(feedback::routing_loop(ctx.clone(), up.routing)));
    feedback.spawn(cancel.clone().run_until_cancelled_owned(feedback::device_loop(ctx.clone(), up.device_events)));
    feedback.spawn(cancel.clone().run_until_cancelled_owned(feedback::conflict_loop(ctx.clone(), up.conflicts)));
    feedback.spawn(cancel.clone().run_until_cancelled_owned(feedback::status_updates(ctx.clone(), up.status_every)));
    feedback.spawn(cancel.clone().run_until_cancelled_owned(checkpoints(ctx.witness.clone(), up.checkpoint_every)));
    if up.keep.prunes() {
        feedback.spawn(cancel.clone().run_until_cancelled_owned(prune(
            ctx.witness.clone(),
            up.keep,
            ctx.health.clone(),
        )));
    }
    // Ready once the command subscription is acknowledged: from then on a command is taken.
    let ready = ctx.clone();
    feedback.spawn(cancel.clone().run_until_cancelled_owned(async move {
        if serving.wait_for(|s| *s).await.is_ok() {
            ready.notifier.ready(&ready.serving_line());
        }
    }));
    if let Some(every) = ctx.notifier.watchdog_every() {
        feedback.spawn(cancel.clone().run_until_cancelled_owned(crate::notify::watchdog(ctx.notifier, every)));
    }
    feedback.close();
    let uplink_stop = CancellationToken::new();
    let uplink = tokio::spawn(crate::anchor::uplink::run(
        up.uplink,
        ctx.witness.clone(),
        ctx.health.clone(),
        uplink_stop.clone(),
    ));

    let stop = CancellationToken::new();
    let inputs = pipeline::Inputs { forgets: up.forgets, policy, done, stop: stop.clone() };
    {
        let ingress = pipeline::ingress_loop(ctx.clone(), &mut inbound, inputs);
        tokio::pin!(ingress);
        tokio::select! {
            () = &mut ingress => tracing::warn!("the connection driver stopped"),
            () = shutdown => {
                tracing::info!("shutting down");
                // The burst being written is acknowledged and started (or refused) before the loop ends.
                stop.cancel();
                if tokio::time::timeout(STEP, &mut ingress).await.is_err() {
                    tracing::warn!("the last RECEIVED commit did not return in time; the next start records it INTERRUPTED");
                }
            }
        }
    }
    ctx.notifier.stopping();
    // The ingress loop is gone, and with it the last sender of finished commands but theirs: the
    // completion loop ends once the running commands are witnessed and answered. Commands that arrive
    // meanwhile stay unread and unacknowledged in `inbound`: the broker keeps them for the next run.
    if tokio::time::timeout(DRAIN, completion).await.is_err() {
        tracing::warn!("commands still running at shutdown were left; the next start records them INTERRUPTED");
    }
    cancel.cancel();
    feedback.wait().await;
    if tokio::time::timeout(STEP, ctx.witness.checkpoint()).await.is_err() {
        tracing::warn!("the last checkpoint could not be written in time; the next start signs it");
    }
    // The last checkpoint goes upstream too, if the uplink is there to take it.
    uplink_stop.cancel();
    let uplink_abort = uplink.abort_handle();
    if tokio::time::timeout(STEP, uplink).await.is_err() {
        uplink_abort.abort();
    }
    // With the broker away, rumqttc's request queue may be full: nothing here waits on it for long.
    let session = ctx.health.session.load(Ordering::Relaxed);
    let offline = ctx.signer.publication(&ctx.topics.status, mqtt::offline(&ctx.health, session));
    let publish = ctx.client.publish(ctx.topics.status.clone(), QoS::AtLeastOnce, true, offline);
    let _ = tokio::time::timeout(STEP, publish).await;
    up.stopping.cancel();
    let _ = tokio::time::timeout(STEP, ctx.client.disconnect()).await;
    let _ = tokio::time::timeout(STEP, driver).await;
    drop(inbound);
    if tokio::time::timeout(STEP, ctx.witness.close()).await.is_err() {
        tracing::error!("the witness writer did not stop in time; the file is closed when the process ends");
    }
    if let Some(Err(e)) = ctx.stages.as_deref().map(crate::stages::Stages::write) {
        tracing::warn!(error = %e, "the stage times could not be written");
    }
    Ok(())
}

/// Tells each sender whose command a restart interrupted; the same reply answers any redelivery.
fn tell_interrupted(ctx: &Ctx, interrupted: Vec<Interrupted>) {
    let ctx = ctx.clone();
    tokio::spawn(async move {
        for i in interrupted {
            let p = &i.pending;
            let route = match &p.reply_topic {
                Some(topic) => Route { topic: topic.clone(), correlation: p.correlation.clone().map(Bytes::from) },
                None => Route { topic: ctx.topics.reply_for(&p.sender), correlation: None },
            };
            ctx.publish(&route, i.reply.clone()).await;
        }
    });
}

/// A checkpoint every `every` when there are new records.
/// How often the retention is applied.
const PRUNE_EVERY: Duration = Duration::from_secs(5);
/// Records pruned in one transaction: commands wait for one step, never for a whole prune.
const PRUNE_STEP: u64 = 4096;

/// Prunes what the archive acknowledged and the retention lets go ([`crate::witness::prune`]).
async fn prune(witness: Witness, keep: crate::witness::prune::Keep, health: Arc<crate::health::Health>) {
    let mut tick = tokio::time::interval(PRUNE_EVERY);
    loop {
        tick.tick().await;
        let now = crate::clock::Clock::system_ms();
        // Read as the folds left the tables, and nothing is written unless something can go: a round with
        // nothing to prune costs the appends no fold.
        let read =
            witness.read_folded(move |log| Ok((crate::witness::prune::limit(log, &keep, now)?, log.first_kept()?)));
        let Ok((target, kept)) = read.await else { continue };
        if target <= kept {
            continue;
        }
        let mut moved = None;
        loop {
            let told = health.clone();
            let step = move |s: &mut crate::witness::store::Store| {
                let pruned = s.prune(target, PRUNE_STEP);
                // Said before the writer takes its next batch: a status that shows the room pruning made
                // (the disk gauge measures at that batch) shows the new boundary with it.
                if let Ok(Some(p)) = &pruned {
                    told.log_from.store(p.below, std::sync::atomic::Ordering::Relaxed);
                }
                pruned
            };
            match witness.with_store(step).await {
                Ok(Some(p)) => {
                    moved = Some(p.below);
                    if p.below >= target {
                        break;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(code = %e.code(), "witness log: pruning stopped: {}", e.detail());
                    break;
                }
            }
        }
        if let Some(first_kept) = moved {
            tracing::info!(first_kept, "witness log: records archived upstream pruned here");
        }
    }
}

async fn checkpoints(witness: Witness, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    loop {
        tick.tick().await;
        let _ = witness.checkpoint().await;
    }
}
