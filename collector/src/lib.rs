//! The collector: the fleet-side verifier and archive of agents' anchors (`if-collector`, and
//! `ifctl witness verify-anchors`, the same [`Args`]).
//!
//! It subscribes to `if/v1/+/+/anchors`, checks each anchor (the agent's signature by its pinned key,
//! the origin, and consistency with the last checkpoint it accepted from that agent), keeps what it
//! accepted in its own redb file, archives each accepted note to object storage, and acknowledges it on
//! `.../anchors/ack` so the agent's queue moves on. A checkpoint that contradicts an accepted one (a log
//! that shrank or forked) is published with both notes on `if/v1/{site}/{agent}/security`.
//!
//! With an archive, it also takes each agent's log as tlog-tiles entry bundles on `if/v1/+/+/tiles`
//! ([`tiles`]): each proven part of a checkpoint it accepted, written with the tiles above it and the
//! newest checkpoint they cover under `tlog/{site}/{agent}/`, and acknowledged on `.../tiles/ack`.
//!
//! Agents' keys are files `KEYS/{site}.{agent}.pub` (the agent's `agent.pub`). The archive is a local
//! directory by default; with the `s3` feature, any S3-compatible store by URL (`s3://bucket/prefix`).

pub mod judge;
pub mod store;
pub mod tiles;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use if_protocol::messages::{Ack, Anchor, Bundle, Evidence};
use if_protocol::topics::{self, Kind};
use if_protocol::{ErrorCode, IfError};
use object_store::{ObjectStore, ObjectStoreExt as _};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::Packet;
use rumqttc::v5::{AsyncClient, Event};

use judge::Verdict;

/// The collector's flags.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// The broker the anchors arrive on, mqtt://HOST:PORT.
    #[arg(long)]
    pub broker: String,
    /// Directory of agents' public keys, `{site}.{agent}.pub`.
    #[arg(long)]
    pub keys: PathBuf,
    /// The collector's own state (redb file; created if missing).
    #[arg(long)]
    pub store: PathBuf,
    /// Archive accepted notes here: a directory, or an object store URL.
    #[arg(long)]
    pub archive: Option<String>,
    /// Keep running until killed.
    #[arg(long)]
    pub follow: bool,
    /// Without --follow: stop after this many milliseconds without an anchor.
    #[arg(long, default_value_t = 2000)]
    pub wait_ms: u64,
    /// The collector's own secret key: acknowledgements and evidence are signed with it, so an agent
    /// that pins its public key (`[uplink] collector_key`) believes no other acknowledgement.
    #[arg(long, value_name = "FILE")]
    pub sign_key: Option<PathBuf>,
}

impl Args {
    /// The options these flags give, with TLS for an `mqtts://` broker.
    pub fn options(&self, tls: Option<if_edge::tls::Tls>, json: bool) -> Result<Options, IfError> {
        Ok(Options {
            signer: self
                .sign_key
                .as_deref()
                .map(if_edge::keyfile::read_secret)
                .transpose()?
                .map(if_edge::attest::Signer::new),
            broker: self.broker.clone(),
            tls,
            keys: self.keys.clone(),
            store: self.store.clone(),
            archive: self.archive.clone(),
            follow: self.follow,
            wait: Duration::from_millis(self.wait_ms),
            json,
        })
    }
}

/// What to verify and where to keep it.
#[derive(Debug, Clone)]
pub struct Options {
    /// `mqtt://HOST:PORT` or `mqtts://HOST:PORT`.
    pub broker: String,
    /// TLS for an `mqtts://` broker.
    pub tls: Option<if_edge::tls::Tls>,
    /// Directory of `{site}.{agent}.pub` files.
    pub keys: PathBuf,
    /// The collector's redb file.
    pub store: PathBuf,
    /// Where accepted notes are archived: a directory or an object store URL.
    pub archive: Option<String>,
    /// Keep running; otherwise stop once nothing has arrived for `wait`.
    pub follow: bool,
    /// How long to wait for anchors when not following.
    pub wait: Duration,
    /// JSON lines instead of text.
    pub json: bool,
    /// Signs acknowledgements and evidence for their topic, when given.
    pub signer: Option<if_edge::attest::Signer>,
}

fn failed(what: &str, e: impl std::fmt::Display) -> IfError {
    IfError::format(ErrorCode::SystemError, format_args!("{what}: {e}"))
}

/// The archive: a directory or an object store URL.
fn archive(spec: &str) -> Result<Box<dyn ObjectStore>, IfError> {
    let url = if spec.contains("://") {
        url::Url::parse(spec).map_err(|e| failed("--archive", e))?
    } else {
        std::fs::create_dir_all(spec).map_err(|e| failed("--archive", e))?;
        let dir = std::fs::canonicalize(spec).map_err(|e| failed("--archive", e))?;
        url::Url::from_directory_path(&dir).map_err(|()| failed("--archive", "not an absolute directory"))?
    };
    let (store, prefix) = object_store::parse_url(&url).map_err(|e| failed("--archive", e))?;
    Ok(Box::new(object_store::prefix::PrefixStore::new(store, prefix)))
}

/// The largest message the collector reads: an entry bundle of 256 records of the largest size.
pub const MAX_BUNDLE_MESSAGE: u32 = 4 << 20;

/// Messages read and not yet judged, in count and in bytes. Past either, a message is dropped: the
/// agent offers whatever is not acknowledged again, and the collector takes it then.
const INCOMING: usize = 1024;
const INCOMING_BYTES: usize = 64 << 20;

/// Runs the collector; an error when not following and some anchor contradicted an accepted one.
///
/// Two tasks: this one only polls the connection (so PUBACKs keep arriving and the acknowledgements
/// go out), and [`serve`] judges what arrived, in order, and publishes the answers. One task doing both
/// would wait forever on a full request queue that only it could drain.
pub async fn run(opts: Options) -> Result<(), IfError> {
    let store = store::Store::open(&opts.store)?;
    let archive = opts.archive.as_deref().map(archive).transpose()?;
    let id = format!("ifctl-collector-{}", uuid::Uuid::new_v4());
    let mut mqtt = if_edge::mqtt::tool_options(&opts.broker, id, opts.tls.as_ref())?;
    // An entry bundle is 256 records: tens of KiB as they are, a few MiB at the most.
    mqtt.set_max_packet_size(Some(MAX_BUNDLE_MESSAGE));
    let (client, mut events) = AsyncClient::new(mqtt, 256);
    let opts = Arc::new(opts);
    let (tx, rx) = tokio::sync::mpsc::channel(INCOMING);
    let room = Arc::new(tokio::sync::Semaphore::new(INCOMING_BYTES));
    let evidence = Arc::new(AtomicUsize::new(0));
    let mut judged = tokio::spawn(serve(opts.clone(), store, archive, client.clone(), rx, evidence.clone()));
    let mut quiet_until = tokio::time::Instant::now() + opts.wait;
    let mut unjudged = 0usize;
    loop {
        let polled = async {
            if opts.follow {
                Some(events.poll().await)
            } else {
                tokio::time::timeout_at(quiet_until, events.poll()).await.ok()
            }
        };
        let event = tokio::select! {
            // It ends only when this loop closes its queue; before that, only by a panic.
            done = &mut judged => return Err(ended(done)),
            event = polled => match event {
                Some(event) => event,
                None => break,
            },
        };
        match event {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                // From a task of its own: with answers queued, the request queue drains only while this
                // loop polls. A clean session has no subscriptions left: each connect makes them again.
                let client = client.clone();
                tokio::spawn(async move {
                    for kind in [Kind::Anchors, Kind::Tiles] {
                        if client.subscribe(topics::every("+", kind), QoS::AtLeastOnce).await.is_err() {
                            tracing::warn!("a subscription could not be made");
                        }
                    }
                });
            }
            Ok(Event::Incoming(Packet::SubAck(_))) => {
                // Never a panic over a closed stderr: the collector outlives whoever started it.
                use std::io::Write as _;
                let _ = writeln!(std::io::stderr(), "listening for anchors on {}", opts.broker);
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                quiet_until = tokio::time::Instant::now() + opts.wait;
                let bytes = u32::try_from(p.payload.len() + p.topic.len()).unwrap_or(u32::MAX);
                let queued = room.clone().try_acquire_many_owned(bytes).ok().map(|permit| tx.try_send((p, permit)));
                if !matches!(queued, Some(Ok(()))) {
                    unjudged += 1;
                    tracing::debug!("a message was dropped unread; its agent offers it again");
                }
            }
            Ok(_) => {}
            Err(e) => {
                let found = evidence.load(Ordering::Relaxed);
                if !opts.follow && found == 0 && tokio::time::Instant::now() >= quiet_until {
                    return Err(failed(&format!("broker {}", opts.broker), e));
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
    // Quiet: what was read is judged and answered, the connection polled meanwhile so the answers go
    // out, for as long again as the quiet took at the most; then the disconnect goes out too.
    drop(tx);
    let until = tokio::time::Instant::now() + opts.wait;
    let mut judging = true;
    loop {
        tokio::select! {
            done = &mut judged, if judging => {
                judging = false;
                if let Err(e) = done {
                    return Err(ended(Err(e)));
                }
                let _ = client.try_disconnect();
            }
            () = tokio::time::sleep_until(until) => break,
            polled = events.poll() => match polled {
                Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) => break,
                Ok(_) => {}
                Err(_) if !judging => break,
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            },
        }
    }
    if judging {
        judged.abort();
    }
    let evidence = evidence.load(Ordering::Relaxed);
    if evidence > 0 {
        return Err(IfError::format(
            ErrorCode::InvalidProof,
            format_args!("{evidence} anchor(s) contradicted accepted ones"),
        ));
    }
    // A one-off check that did not judge everything it read says so rather than pass.
    if unjudged > 0 || judging {
        return Err(IfError::format(
            ErrorCode::SystemError,
            format_args!(
                "not every anchor read was judged ({unjudged} dropped with the queue full{}); run again",
                if judging { ", and judging outlasted --wait-ms" } else { "" }
            ),
        ));
    }
    Ok(())
}

/// The judging task ended while messages could still arrive: a panic, which is said.
fn ended(done: Result<(), tokio::task::JoinError>) -> IfError {
    let why = match done {
        Err(e) if e.is_panic() => "it panicked",
        Err(_) => "it was cancelled",
        Ok(()) => "it stopped",
    };
    failed("the collector's judging task", why)
}

/// A message read, with its share of the queue's bytes.
type Incoming = (rumqttc::v5::mqttbytes::v5::Publish, tokio::sync::OwnedSemaphorePermit);

/// Judges each message read, in order, and publishes the answer; counts the anchors that were
/// evidence against their agent.
async fn serve(
    opts: Arc<Options>,
    store: store::Store,
    archive: Option<Box<dyn ObjectStore>>,
    client: AsyncClient,
    mut rx: tokio::sync::mpsc::Receiver<Incoming>,
    evidence: Arc<AtomicUsize>,
) {
    while let Some((p, _room)) = rx.recv().await {
        let topic = String::from_utf8_lossy(&p.topic).into_owned();
        if let Some((site, agent)) = topics::agent_of(&topic, Kind::Tiles) {
            let outcome = take_bundle(&opts, &store, archive.as_deref(), &client, site, agent, &p.payload).await;
            say(&opts, site, agent, &outcome);
            continue;
        }
        let Some((site, agent)) = topics::agent_of(&topic, Kind::Anchors) else { continue };
        let outcome = handle(&opts, &store, archive.as_deref(), &client, site, agent, &p.payload).await;
        if outcome.starts_with("EVIDENCE") {
            evidence.fetch_add(1, Ordering::Relaxed);
        }
        say(&opts, site, agent, &outcome);
    }
}

fn say(opts: &Options, site: &str, agent: &str, outcome: &str) {
    use std::io::Write as _;
    let line = if opts.json {
        let (verdict, detail) = outcome.split_once(' ').unwrap_or((outcome, ""));
        let v = serde_json::json!({ "agent": format!("{site}/{agent}"), "verdict": verdict.to_lowercase(), "detail": detail });
        v.to_string()
    } else {
        format!("{site}/{agent}: {outcome}")
    };
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
}

/// Judges one anchor and acts on the verdict; returns what happened, in a line.
async fn handle(
    opts: &Options,
    store: &store::Store,
    archive: Option<&dyn ObjectStore>,
    client: &AsyncClient,
    site: &str,
    agent: &str,
    payload: &[u8],
) -> String {
    let anchor: Anchor = match serde_json::from_slice(payload) {
        Ok(a) => a,
        Err(e) => return format!("refused: not an anchor ({e})"),
    };
    let id = format!("{site}.{agent}");
    let key_file = opts.keys.join(format!("{id}.pub"));
    let key = match if_edge::keyfile::read_public(&key_file) {
        Ok(k) => k,
        Err(e) => return format!("refused: no key for this agent ({})", e.detail()),
    };
    let name = format!("{site}/{agent}");
    let last = match store.last(&name) {
        Ok(l) => l,
        Err(e) => return format!("refused: {}", e.detail()),
    };
    let ack_topic = topics::of(site, agent, Kind::AnchorsAck);
    match judge::judge(&anchor, &id, &key, last.as_ref(), |size| store.seen(&name, size)) {
        Verdict::Accept(a) => {
            if let Err(e) = store.accept(&name, &a) {
                return format!("refused: {}", e.detail());
            }
            if let Some(archive) = archive {
                let path = object_store::path::Path::from(format!("anchors/{site}/{agent}/{:020}.note", a.size));
                if let Err(e) = archive.put(&path, a.note.clone().into_bytes().into()).await {
                    tracing::warn!(error = %e, "an accepted anchor could not be archived");
                }
            }
            acknowledge(opts, client, &ack_topic, a.size, &a.root).await;
            format!("ACCEPTED size {} (from {})", a.size, anchor.from)
        }
        Verdict::Again => {
            if let Ok(cp) = anchor.checkpoint() {
                acknowledge(opts, client, &ack_topic, cp.size, &cp.root).await;
            }
            format!("AGAIN size {}, already accepted", anchor.size)
        }
        Verdict::Refuse(why) => format!("REFUSED size {}: {why}", anchor.size),
        Verdict::Evidence { kind, why } => {
            let evidence = Evidence {
                kind: kind.to_string(),
                agent: name,
                why: why.clone(),
                accepted: last.map(|l| l.note),
                offered: anchor.note,
            };
            let topic = topics::of(site, agent, Kind::Security);
            let bytes = signed(opts, &topic, serde_json::to_vec(&evidence).unwrap_or_default());
            let _ = client.publish(topic, QoS::AtLeastOnce, false, bytes).await;
            format!("EVIDENCE {kind}: {why}")
        }
    }
}

/// Takes one entry bundle into the archive and acknowledges it; returns what happened, in a line.
async fn take_bundle(
    opts: &Options,
    store: &store::Store,
    archive: Option<&dyn ObjectStore>,
    client: &AsyncClient,
    site: &str,
    agent: &str,
    payload: &[u8],
) -> String {
    let Some(archive) = archive else { return "refused: an entry bundle, and no --archive to keep it".into() };
    let bundle: Bundle = match serde_json::from_slice(payload) {
        Ok(b) => b,
        Err(e) => return format!("refused: not an entry bundle ({e})"),
    };
    let name = format!("{site}/{agent}");
    let (ack, line) = match tiles::take(store, archive, &name, &bundle).await {
        tiles::Outcome::Archived { ack, published } => {
            let with = published.map(|s| format!(", checkpoint {s} published")).unwrap_or_default();
            let line = format!("ARCHIVED bundle {} of {} entries{with}", ack.index, ack.width);
            (ack, line)
        }
        tiles::Outcome::Again(ack) => {
            let line = format!("AGAIN bundle {}, already archived", ack.index);
            (ack, line)
        }
        tiles::Outcome::Part { index, have, width } => {
            return format!("PART of bundle {index}: {have} of {width} entries");
        }
        tiles::Outcome::Refused(why) => return format!("REFUSED bundle {}: {why}", bundle.index),
    };
    let topic = topics::of(site, agent, Kind::TilesAck);
    if let Ok(bytes) = serde_json::to_vec(&ack) {
        let _ = client.publish(topic.clone(), QoS::AtLeastOnce, false, signed(opts, &topic, bytes)).await;
    }
    line
}

/// `message` signed for `topic` by the collector's key, when it has one.
fn signed(opts: &Options, topic: &str, message: Vec<u8>) -> Vec<u8> {
    match &opts.signer {
        Some(s) => s.publication(topic, message),
        None => message,
    }
}

async fn acknowledge(opts: &Options, client: &AsyncClient, topic: &str, size: u64, root: &[u8; 32]) {
    let ack = Ack::of(size, root);
    if let Ok(bytes) = serde_json::to_vec(&ack) {
        let _ = client.publish(topic.to_string(), QoS::AtLeastOnce, false, signed(opts, topic, bytes)).await;
    }
}
