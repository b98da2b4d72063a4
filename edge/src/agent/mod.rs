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
//! This file holds start-up and the ingress loop; `completion` the completion loop, `refusals` how a
//! refusal is answered, `pushes` the policy topic, and `feedback` status, tally, breakers and
//! identity conflicts.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use if_protocol::envelope::EnvelopeBody;
use if_protocol::{ErrorCode, IfError};
use rumqttc::v5::AsyncClient;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{Publish, PublishProperties};
use tokio::sync::{mpsc, watch};

mod completion;
mod feedback;
mod pushes;
mod refusals;

use completion::complete;
use feedback::{breaker_loop, conflict_loop, online_status, status_updates, tally_loop};
use pushes::{device_lane, policy_loop};
use refusals::{refuse, refused_entry, witness_rejections};

use crate::admit::{Admission, Limits};
use crate::attest::Signer;
use crate::budget::Budgets;
use crate::capability::{Capability, Health, Ping, Registry};
use crate::clock::Clock;
use crate::config::Loaded;
use crate::drivers::DriverContext;
use crate::ingress::{Accepted, Decision, Inbound, Ingress, Refused};
use crate::lane::{BreakerEvent, Lane};
use crate::mqtt;
use crate::policy::Policy;
use crate::policy::apply::PolicyCommands;
use crate::rejections::Rejections;
use crate::reply::{DeadLetter, Reply};
use crate::vault::Vault;
use crate::witness::record::{Entry, Kind};
use crate::witness::store::{Append, CheckpointSigner, Interrupted, Pending, Store};
use crate::witness::verify::{self, BOOT_KEY_PREFIX};
use crate::witness::writer::Witness;
use if_protocol::topics::Topics;

/// Most distinct routes a running command's copies are answered on.
const WAITING_ROUTES: usize = 8;

/// Most publishes decided as one burst.
const MAX_BURST: usize = 256;

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

/// A command that ran, on its way to the witness and the sender.
#[derive(Debug)]
struct Done {
    body: EnvelopeBody,
    digest: [u8; 32],
    received: u64,
    route: Route,
    outcome: Result<serde_json::Value, IfError>,
    now_ms: u64,
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

/// Runs the agent until `shutdown` completes.
pub async fn run(loaded: Loaded, shutdown: impl std::future::Future<Output = ()>) -> Result<(), IfError> {
    let config = &loaded.config;
    crate::preflight::check(config, &loaded.file)?;
    let key = crate::keyfile::read_secret(&config.agent.key)?;
    let signer = Signer::new(key.clone());
    let (control_tls, uplink_tls) = config.tls()?;
    let origin = config.origin();
    let mut store = open_store(&config.witness.path, config.witness.cache_mb)?;
    verify::verify(&mut store, Some(&key.verifying_key()), Some(&origin)).map_err(|f| {
        IfError::format(
            ErrorCode::InvalidProof,
            format_args!("witness log fails its start-up check at record {}: {}", f.index, f.error.detail()),
        )
    })?;
    let mut clock = Clock::new(store.last_wall_ms());
    let boot_detail = format!(
        "if-edge {} {BOOT_KEY_PREFIX}{} origin {origin}",
        env!("CARGO_PKG_VERSION"),
        B64.encode(key.verifying_key().as_bytes())
    );
    let interrupted = store.boot(clock.now_ms(), &boot_detail, |index, p| {
        signer.reply(&p.digest, Reply::interrupted(&p.entry, index).to_bytes())
    })?;
    let mut policy = crate::policy::load::at_start(&mut store, &config.trust, clock.now_ms())?;
    let limits = Limits {
        width: config.admission.replay_window,
        skew_ms: config.admission.clock_skew_ms,
        nonce_cap: config.admission.nonce_cache,
    };
    let admission = Admission::new(limits, store.replay_windows()?, store.replies()?);
    let witness_budgets = store.budgets()?;
    let agent_name = format!("{}/{}", config.agent.site, config.agent.name);
    let mut health = Health::new(agent_name.clone(), store.boot_counter(), store.size());
    health.status_interval_s = config.mqtt.status_interval_s;
    let health = Arc::new(health);
    let (anchored, waiting) = crate::anchor::backlog(&store.snapshot()?)?;
    health.anchored.store(anchored, Ordering::Relaxed);
    health.anchors_pending.store(waiting, Ordering::Relaxed);
    tracing::info!(agent = %agent_name, log_size = store.size(), interrupted = interrupted.len(), "witness log ready");
    let checkpointing = CheckpointSigner { key, origin, every: config.witness.checkpoint_every };
    let witness = Witness::spawn(store, Some(checkpointing), 4096)?;
    let clock = Arc::new(Mutex::new(clock));

    let mut registry = Registry::default();
    registry.add(Arc::new(Ping::new(health.clone())) as Arc<dyn Capability>);
    let vault = Vault::new(std::env::var_os("CREDENTIALS_DIRECTORY").map(PathBuf::from), config.vault.dir.clone());
    let (breaker_tx, breaker_rx) = mpsc::unbounded_channel();
    let (tally_tx, tally_rx) = mpsc::unbounded_channel();
    let drivers = DriverContext { tally: tally_tx };
    let mut lanes = Vec::new();
    let mut not_offered = Vec::new();
    for m in policy.manifests() {
        match device_lane(m, &vault, &drivers, &breaker_tx) {
            Ok(lane) => {
                registry.add(lane.clone() as Arc<dyn Capability>);
                lanes.push(lane);
            }
            Err(e) => not_offered.push((format!("{} driver", m.id), e)),
        }
    }
    for (source, e) in &not_offered {
        policy.refused(source, e);
    }
    let policy = Arc::new(Mutex::new(policy));
    let policy_handle = policy.clone();
    registry.add(Arc::new(crate::witness::query::WitnessQuery::new(witness.clone())) as Arc<dyn Capability>);
    let (forget_tx, forgets) = mpsc::unbounded_channel();
    let commands = PolicyCommands::new(policy.clone(), witness.clone(), clock.clone(), forget_tx);
    registry.add(Arc::new(commands) as Arc<dyn Capability>);
    let budgets = Budgets::new(config.budget_limits(), witness_budgets);
    let state = Arc::new(Mutex::new(State {
        ingress: Ingress {
            topics: Topics::new(&config.agent.site, &config.agent.name),
            admission,
            registry,
            policy,
            budgets,
        },
        waiting: HashMap::new(),
        lanes,
    }));

    let topics = Topics::new(&config.agent.site, &config.agent.name);
    let (client, eventloop) =
        AsyncClient::new(mqtt::options(config, &topics, &health, &signer, control_tls.as_ref())?, 1024);
    let ctx = Ctx {
        client: client.clone(),
        signer: signer.clone(),
        topics: topics.clone(),
        witness: witness.clone(),
        health: health.clone(),
        state: state.clone(),
        clock,
        policy: policy_handle,
        vault,
        drivers,
        breakers: breaker_tx,
        sampler: Arc::new(Mutex::new(Rejections::new(config.witness.rejected_per_s))),
        status_due: Arc::new(tokio::sync::Notify::new()),
    };
    let (inbound_tx, inbound_rx) = mpsc::unbounded_channel();
    let (connected_tx, _connected) = watch::channel(false);
    let (birth_health, birth_state, birth_signer, birth_topic) =
        (health.clone(), state.clone(), signer.clone(), topics.status.clone());
    let birth: mqtt::Birth =
        Arc::new(move || birth_signer.publication(&birth_topic, online_status(&birth_health, &birth_state)));
    let (conflicts_tx, conflicts_rx) = mpsc::unbounded_channel();
    let link = mqtt::Link {
        client,
        topics: topics.clone(),
        health: health.clone(),
        signer: signer.clone(),
        birth,
        schedule: config.backoff(),
        conflicts: conflicts_tx,
    };
    let driver = tokio::spawn(mqtt::drive(eventloop, link, inbound_tx, connected_tx));
    tell_interrupted(&ctx, interrupted);
    let (done_tx, done_rx) = mpsc::unbounded_channel();
    let completion = tokio::spawn(complete(ctx.clone(), done_rx));
    let (policy_tx, policy_rx) = mpsc::unbounded_channel();
    let pushes = tokio::spawn(policy_loop(ctx.clone(), policy_rx));
    let breakers = tokio::spawn(breaker_loop(ctx.clone(), breaker_rx));
    let tallies = tokio::spawn(tally_loop(ctx.clone(), tally_rx));
    let conflicts = tokio::spawn(conflict_loop(ctx.clone(), conflicts_rx));
    let ticker = tokio::spawn(checkpoints(
        witness.clone(),
        Duration::from_secs(u64::from(config.witness.checkpoint_interval_s)),
    ));
    let (stop_uplink, uplink_stop) = tokio::sync::watch::channel(false);
    let uplink = tokio::spawn(crate::anchor::uplink::run(
        crate::anchor::uplink::Uplink {
            broker: config.uplink_broker(),
            client_id: format!("{}-uplink", config.client_id()),
            topic: topics.anchors.clone(),
            ack_topic: topics.anchors_ack.clone(),
            agent: format!("{}/{}", config.agent.site, config.agent.name),
            republish: Duration::from_secs(u64::from(config.uplink.republish_s)),
            backoff: config.backoff(),
            tls: uplink_tls,
            collector: config.uplink.collector_key.as_deref().map(crate::keyfile::read_public).transpose()?,
        },
        witness.clone(),
        health.clone(),
        uplink_stop,
    ));
    let health_updates =
        tokio::spawn(status_updates(ctx.clone(), Duration::from_secs(u64::from(config.mqtt.status_interval_s))));

    tokio::select! {
        () = ingress_loop(ctx.clone(), Inputs { inbound: inbound_rx, forgets, policy: policy_tx, done: done_tx }) => {}
        () = shutdown => tracing::info!("shutting down"),
    }
    ticker.abort();
    health_updates.abort();
    pushes.abort();
    breakers.abort();
    tallies.abort();
    conflicts.abort();
    let _ = tokio::time::timeout(Duration::from_secs(3), completion).await;
    let _ = tokio::time::timeout(Duration::from_secs(3), witness.checkpoint()).await;
    // The last checkpoint goes upstream too, if the uplink is there to take it.
    let _ = stop_uplink.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(2), uplink).await;
    let session = ctx.health.session.load(Ordering::Relaxed);
    let offline = ctx.signer.publication(&ctx.topics.status, mqtt::offline(&ctx.health, session));
    let _ = ctx.client.publish(ctx.topics.status.clone(), QoS::AtLeastOnce, true, offline).await;
    let _ = ctx.client.disconnect().await;
    let _ = tokio::time::timeout(Duration::from_secs(2), driver).await;
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

fn open_store(path: &Path, cache_mb: u32) -> Result<Store, IfError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| {
            IfError::format(ErrorCode::WitnessUnavailable, format_args!("{}: cannot create: {e}", dir.display()))
        })?;
    }
    Store::open(path, usize::try_from(cache_mb).unwrap_or(16) << 20)
}

async fn checkpoints(witness: Witness, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    loop {
        tick.tick().await;
        let _ = witness.checkpoint().await;
    }
}

/// What the ingress loop reads from and hands on to.
struct Inputs {
    /// Commands and pushed documents, as they arrive.
    inbound: mpsc::UnboundedReceiver<Publish>,
    /// Policy changes that forget a sender's window, committed here between bursts.
    forgets: mpsc::UnboundedReceiver<crate::policy::apply::Forget>,
    /// Pushed documents go on to the policy loop.
    policy: mpsc::UnboundedSender<Publish>,
    /// Commands that ran go on to the completion loop.
    done: mpsc::UnboundedSender<Done>,
}

async fn ingress_loop(ctx: Ctx, inputs: Inputs) {
    let Inputs { mut inbound, mut forgets, policy, done } = inputs;
    let mut summary = tokio::time::interval(Duration::from_secs(1));
    loop {
        let first = tokio::select! {
            p = inbound.recv() => match p { Some(p) => p, None => return },
            Some(f) = forgets.recv() => {
                forget(&ctx, f).await;
                continue;
            }
            _ = summary.tick() => {
                let counted = lock(&ctx.sampler).summary(ctx.now_ms());
                if let Some(entry) = counted {
                    ctx.dead_letter(DeadLetter::summary(&entry)).await;
                    witness_rejections(&ctx, vec![Append::record(Kind::Rejected, entry)]);
                }
                continue;
            }
        };
        let mut burst = Vec::new();
        let mut next = Some(first);
        while let Some(p) = next.take() {
            if p.topic.as_ref() == ctx.topics.policy.as_bytes() {
                let _ = policy.send(p);
            } else {
                burst.push(p);
            }
            if burst.len() < MAX_BURST {
                next = inbound.try_recv().ok();
            }
        }
        if !burst.is_empty() {
            handle_burst(&ctx, burst, &done).await;
        }
    }
}

async fn handle_burst(ctx: &Ctx, burst: Vec<Publish>, done: &mpsc::UnboundedSender<Done>) {
    let now_ms = ctx.now_ms();
    let decisions = {
        let inbound: Vec<Inbound<'_>> = burst
            .iter()
            .map(|p| Inbound {
                payload: p.payload.as_ref(),
                response_topic: p.properties.as_ref().and_then(|pp| pp.response_topic.as_deref()),
            })
            .collect();
        let mut state = lock(&ctx.state);
        let decisions = state.ingress.decide(&inbound, now_ms);
        // Register copies of running envelopes under the same lock the completion loop settles under.
        for (p, d) in burst.iter().zip(&decisions) {
            if let Decision::InProgress { sender, seq } = d
                && let Some(route) = ctx.route(p, Some(sender))
            {
                // Copies of one running command are answered at most WAITING_ROUTES times, each route once.
                let routes = state.waiting.entry((sender.clone(), *seq)).or_default();
                let known = routes.iter().any(|r| r.topic == route.topic && r.correlation == route.correlation);
                if !known && routes.len() < WAITING_ROUTES {
                    routes.push(route);
                }
            }
        }
        decisions
    };
    let mut accepted = Vec::new();
    let mut rejected = Vec::new();
    for (p, d) in burst.into_iter().zip(decisions) {
        match d {
            Decision::Accept(a) => accepted.push((p, a)),
            Decision::Reject(r) => {
                let always = r.error.code() == ErrorCode::ReplayDetected && r.body.is_some();
                let one_by_one = ctx.sampled(r.error.code(), always);
                refuse(ctx, &p, &r, one_by_one).await;
                ctx.ack(&p).await;
                ctx.health.rejected.fetch_add(1, Ordering::Relaxed);
                if one_by_one {
                    rejected.push(Append::record(Kind::Rejected, refused_entry(&r, now_ms)));
                }
            }
            Decision::Duplicate { reply, sender, id } => {
                if let Some(route) = ctx.route(&p, Some(&sender)) {
                    ctx.publish(&route, reply).await;
                }
                if ctx.sampled(ErrorCode::Duplicate, false) {
                    let e =
                        IfError::with(ErrorCode::Duplicate, "redelivery answered with the original reply; nothing ran");
                    ctx.dead_letter(DeadLetter::new(&e, Some(id), Some(&sender), &p.payload)).await;
                }
                ctx.ack(&p).await;
            }
            Decision::InProgress { .. } => ctx.ack(&p).await,
        }
    }
    if !rejected.is_empty() {
        witness_rejections(ctx, rejected);
    }
    if !accepted.is_empty() {
        receive(ctx, accepted, done, now_ms).await;
    }
}

/// Commits a change that forgets a sender's window, then applies it: between bursts, so no RECEIVED
/// written later carries the window it removed.
async fn forget(ctx: &Ctx, f: crate::policy::apply::Forget) {
    let mut change = f.change;
    let newest = change.forget.as_deref().and_then(|s| lock(&ctx.state).ingress.admission.newest_issued(s));
    let raised = match newest {
        Some(ms) => change.raise_floor(ms.saturating_add(1)),
        None => Ok(()),
    };
    let item = crate::policy::apply::command_record(&change, &f.body, f.now_ms);
    let result = match raised {
        Ok(()) => ctx.witness.append(vec![item]).await.map(|_| change.summary.clone()),
        Err(e) => Err(e),
    };
    if result.is_ok() {
        let mut state = lock(&ctx.state);
        if let Some(sender) = &change.forget {
            state.ingress.admission.forget(sender);
        }
        lock(&ctx.policy).apply(change);
    }
    let _ = f.done.send(result);
}

fn body_entry(b: &EnvelopeBody, now_ms: u64) -> Entry {
    Entry {
        wall_ms: now_ms,
        envelope: Some(b.id),
        sender: b.sender.to_string(),
        seq: Some(b.seq),
        capability: b.capability.to_string(),
        action: b.action.to_string(),
        why: b.why.to_string(),
        trace: Some(b.trace),
        count: 1,
        ..Entry::default()
    }
}

/// Writes RECEIVED for every accepted envelope in one commit, acknowledges, and starts them.
async fn receive(ctx: &Ctx, accepted: Vec<(Publish, Box<Accepted>)>, done: &mpsc::UnboundedSender<Done>, now_ms: u64) {
    let batch: Vec<Append> = accepted
        .iter()
        .map(|(p, a)| {
            let mut entry = body_entry(&a.body, now_ms);
            entry.digest = Some(a.digest);
            let route = ctx.route(p, Some(&a.body.sender));
            let kind = if a.falsify { Kind::Falsify } else { Kind::Received };
            let mut item = Append::record(kind, entry.clone());
            if let Some(c) = &a.charge {
                item.entry.detail = c.describe();
                item.budget = Some((c.provider.clone(), c.after));
            }
            item.replay = Some((a.ticket.sender.clone(), a.ticket.window.clone()));
            item.pending = Some(Pending {
                sender: a.ticket.sender.clone(),
                seq: a.ticket.seq,
                digest: a.digest,
                entry,
                reply_topic: route.as_ref().map(|r| r.topic.clone()),
                correlation: route.and_then(|r| r.correlation).map(|c| c.to_vec()),
            });
            item
        })
        .collect();
    match ctx.witness.append(batch).await {
        Ok(indices) => {
            for ((p, a), received) in accepted.into_iter().zip(indices) {
                ctx.ack(&p).await;
                let route = ctx.route(&p, Some(&a.body.sender));
                start(ctx, *a, received, route, done.clone());
            }
        }
        Err(e) => {
            {
                let mut state = lock(&ctx.state);
                for (_, a) in accepted.iter().rev() {
                    state.ingress.admission.rollback(&a.ticket);
                    if let Some(c) = &a.charge {
                        state.ingress.budgets.refund(c);
                    }
                }
            }
            let code = if e.code() == ErrorCode::StorageFull { e.code() } else { ErrorCode::WitnessUnavailable };
            let e = IfError::format(code, format_args!("nothing was executed: {}", e.detail()));
            for (p, a) in accepted {
                let refused = Refused { error: e.clone(), body: Some(a.body), digest: Some(a.digest) };
                let one_by_one = ctx.sampled(e.code(), false);
                refuse(ctx, &p, &refused, one_by_one).await;
                ctx.ack(&p).await;
            }
        }
    }
}

/// Runs one accepted command on its own task.
fn start(ctx: &Ctx, a: Accepted, received: u64, route: Option<Route>, done: mpsc::UnboundedSender<Done>) {
    let clock = ctx.clock.clone();
    let fallback = Route { topic: ctx.topics.reply_for(&a.body.sender), correlation: None };
    tokio::spawn(async move {
        let outcome = a.capability.execute(&a.body).await.map(|mut v| {
            crate::redact::redact_json(&mut v);
            v
        });
        let now_ms = lock(&clock).now_ms();
        let route = route.unwrap_or(fallback);
        let _ = done.send(Done { body: a.body, digest: a.digest, received, route, outcome, now_ms });
    });
}
