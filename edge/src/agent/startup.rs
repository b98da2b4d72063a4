//! Start-up: everything the agent checks and builds before it takes work, in order. The witness log is
//! checked and a BOOT record (with INTERRUPTED records for commands a crash cut short) written; policy is
//! read from the log and the configured files; admission, budgets, lanes and the built-in capabilities
//! are set up; the MQTT client is made. Nothing here touches the network: the connection starts once
//! [`super::run`] spawns its driver.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use if_protocol::topics::Topics;
use if_protocol::{ErrorCode, IfError};
use rumqttc::v5::{AsyncClient, EventLoop};
use tokio::sync::mpsc;

use super::pushes::device_lane;
use super::{Ctx, State, feedback};
use crate::admit::{Admission, Limits};
use crate::anchor::uplink::Uplink;
use crate::attest::Signer;
use crate::budget::Budgets;
use crate::builtin::log_check::LogChecker;
use crate::builtin::policy::Forget;
use crate::builtin::{Ping, PolicyCommands, WitnessQuery};
use crate::capability::{Capability, Registry};
use crate::clock::Clock;
use crate::config::Loaded;
use crate::drivers::{DeviceReport, DriverContext, Tally};
use crate::health::Health;
use crate::identity::Conflict;
use crate::ingress::Ingress;
use crate::lane::BreakerEvent;
use crate::mqtt;
use crate::rejections::Rejections;
use crate::reply::Reply;
use crate::vault::Vault;
use crate::witness::store::{CheckpointSigner, Interrupted, Store};
use crate::witness::verify::BOOT_KEY_PREFIX;
use crate::witness::writer::Witness;

/// What start-up hands to the running agent.
pub(super) struct Started {
    /// The shared context of every loop.
    pub ctx: Ctx,
    /// The MQTT event loop and what its driver needs.
    pub eventloop: EventLoop,
    pub link: mqtt::Link,
    /// Commands a crash cut short, whose senders are told.
    pub interrupted: Vec<Interrupted>,
    /// Policy changes that forget a sender's window, for the ingress loop.
    pub forgets: mpsc::UnboundedReceiver<Forget>,
    /// Breaker changes from the lanes.
    pub breakers: mpsc::UnboundedReceiver<BreakerEvent>,
    /// Tally changes from the drivers.
    pub tallies: Arc<crate::drivers::Latest<Tally>>,
    /// Routers' routing.
    pub routing: Arc<crate::drivers::Latest<crate::drivers::Routing>>,
    /// What devices reported by themselves (buttons, a rack node's boot or safe state).
    pub device_events: mpsc::Receiver<DeviceReport>,
    /// Conflicts over the agent's identity, from the MQTT driver.
    pub conflicts: mpsc::UnboundedReceiver<Conflict>,
    /// The uplink for anchors.
    pub uplink: Uplink,
    /// Cancelled once the agent says goodbye: the connection driver then does not reconnect.
    pub stopping: tokio_util::sync::CancellationToken,
    /// Seconds between checkpoints with new records.
    pub checkpoint_every: Duration,
    /// How much of the log to keep once the archive holds it.
    pub keep: crate::witness::prune::Keep,
    /// Seconds between periodic statuses.
    pub status_every: Duration,
}

/// Checks and builds everything; the first error stops the start, with nothing executed.
pub(super) fn start(loaded: &Loaded) -> Result<Started, IfError> {
    let config = &loaded.config;
    crate::preflight::check(config, &loaded.file)?;
    let key = crate::keyfile::read_secret(&config.agent.key)?;
    let signer = Signer::new(key.clone());
    let (control_tls, uplink_tls) = config.tls()?;
    let origin = config.origin();
    let mut store = open_store(&config.witness.path, config.witness.cache_mb)?;
    let checked = crate::witness::tail::check(&store.snapshot()?, &key.verifying_key(), &origin).map_err(|f| {
        IfError::format(
            ErrorCode::InvalidProof,
            format_args!("witness log fails its start-up check at record {}: {}", f.index, f.error.detail()),
        )
    })?;
    tracing::info!(
        from_checkpoint = checked.from,
        records_read = checked.read,
        log_size = checked.size,
        "witness log checked from its newest checkpoint"
    );
    let mut clock = Clock::new(store.last_wall_ms());
    let boot_detail = format!(
        "if-edge {} {BOOT_KEY_PREFIX}{} origin {origin}",
        env!("CARGO_PKG_VERSION"),
        B64.encode(key.verifying_key().as_bytes())
    );
    let interrupted = crate::witness::boot::start(&mut store, clock.now_ms(), &boot_detail, |index, p| {
        signer.reply(&p.digest, Reply::interrupted(&p.entry, index).to_bytes())
    })?;
    let mut policy = crate::policy::load::at_start(&mut store, config.trust.sources(), clock.now_ms())?;
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
    let room = crate::witness::disk::Room {
        budget: config.witness.disk_budget_mb.map(|m| m << 20),
        floor: config.witness.min_free_mb << 20,
    };
    let disk = Arc::new(crate::witness::disk::DiskStats::new(room));
    store.set_disk(disk.clone());
    health.disk = Some(disk);
    let health = Arc::new(health);
    {
        let log = store.snapshot()?;
        let (anchored, waiting) = crate::anchor::backlog(&log)?;
        health.archived.store(log.archived()?, Ordering::Relaxed);
        health.log_from.store(log.first_kept()?, Ordering::Relaxed);
        health.anchored.store(anchored, Ordering::Relaxed);
        health.anchors_pending.store(waiting, Ordering::Relaxed);
    }
    tracing::info!(agent = %agent_name, log_size = store.size(), interrupted = interrupted.len(), "witness log ready");
    let verifying = key.verifying_key();
    let checkpointing = CheckpointSigner { key, origin: origin.clone(), every: config.witness.checkpoint_every };
    let witness = Witness::spawn(store, Some(checkpointing), 4096)?;
    let clock = Arc::new(Mutex::new(clock));

    let status_due = Arc::new(tokio::sync::Notify::new());
    let mut registry = Registry::default();
    registry.add(Arc::new(Ping::new(health.clone())) as Arc<dyn Capability>);
    let vault = Vault::new(std::env::var_os("CREDENTIALS_DIRECTORY").map(PathBuf::from), config.vault.dir.clone());
    let (breaker_tx, breakers) = mpsc::unbounded_channel();
    let tallies = Arc::new(crate::drivers::Latest::default());
    let (events_tx, device_events) = mpsc::channel(crate::drivers::DEVICE_EVENTS);
    let routing = Arc::new(crate::drivers::Latest::default());
    let drivers = DriverContext { tally: tallies.clone(), events: events_tx, routing: routing.clone() };
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
    let checker = LogChecker::new(witness.clone(), verifying, origin.clone(), health.clone(), status_due.clone());
    registry.add(Arc::new(WitnessQuery::new(witness.clone(), checker)) as Arc<dyn Capability>);
    let (forget_tx, forgets) = mpsc::unbounded_channel();
    let commands = PolicyCommands::new(policy.clone(), witness.clone(), clock.clone(), forget_tx);
    registry.add(Arc::new(commands) as Arc<dyn Capability>);
    let budgets = Budgets::new(config.budget_limits(), witness_budgets);
    let topics = Topics::new(&config.agent.site, &config.agent.name);
    let state = Arc::new(Mutex::new(State {
        ingress: Ingress { topics: topics.clone(), admission, registry, policy: policy.clone(), budgets },
        waiting: HashMap::new(),
        lanes,
    }));

    let (client, eventloop) =
        AsyncClient::new(mqtt::options(&config.session(), &topics, &health, &signer, control_tls.as_ref())?, 1024);
    let ctx = Ctx {
        client: client.clone(),
        signer: signer.clone(),
        topics: topics.clone(),
        witness: witness.clone(),
        health: health.clone(),
        state: state.clone(),
        clock,
        policy,
        vault,
        drivers,
        breakers: breaker_tx,
        sampler: Arc::new(Mutex::new(Rejections::new(config.witness.rejected_per_s))),
        status_due,
        notifier: crate::notify::Notifier::from_env(),
        running: super::pipeline::room(),
        stages: crate::stages::Stages::from_env(),
    };
    let (birth_health, birth_state, birth_signer, birth_topic) =
        (health.clone(), state, signer.clone(), topics.status.clone());
    let birth: mqtt::Birth =
        Arc::new(move || birth_signer.publication(&birth_topic, feedback::online_status(&birth_health, &birth_state)));
    let (conflicts_tx, conflicts) = mpsc::unbounded_channel();
    let stopping = tokio_util::sync::CancellationToken::new();
    let link = mqtt::Link {
        client,
        topics: topics.clone(),
        health,
        signer,
        birth,
        schedule: config.backoff(),
        conflicts: conflicts_tx,
        stopping: stopping.clone(),
    };
    let uplink = Uplink {
        broker: config.uplink_broker(),
        client_id: format!("{}-uplink", config.client_id()),
        topic: topics.anchors.clone(),
        ack_topic: topics.anchors_ack.clone(),
        tiles_topic: topics.tiles.clone(),
        tiles_ack_topic: topics.tiles_ack.clone(),
        agent: format!("{}/{}", config.agent.site, config.agent.name),
        republish: Duration::from_secs(u64::from(config.uplink.republish_s)),
        backoff: config.backoff(),
        tls: uplink_tls,
        archive: config.uplink.archive,
        collector: config.uplink.collector_key.as_deref().map(crate::keyfile::read_public).transpose()?,
    };
    Ok(Started {
        ctx,
        eventloop,
        link,
        interrupted,
        forgets,
        breakers,
        tallies,
        routing,
        device_events,
        conflicts,
        uplink,
        stopping,
        checkpoint_every: Duration::from_secs(u64::from(config.witness.checkpoint_interval_s)),
        keep: crate::witness::prune::Keep { records: config.witness.keep_records, days: config.witness.keep_days },
        status_every: Duration::from_secs(u64::from(config.mqtt.status_interval_s)),
    })
}

fn open_store(path: &Path, cache_mb: u32) -> Result<Store, IfError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| {
            IfError::format(ErrorCode::WitnessUnavailable, format_args!("{}: cannot create: {e}", dir.display()))
        })?;
    }
    Store::open(path, usize::try_from(cache_mb).unwrap_or(16) << 20)
}
