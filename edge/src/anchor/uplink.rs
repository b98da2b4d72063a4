//! The uplink: a connection of its own to the fleet broker (or the control broker), apart from the
//! command path, so that either may be down without stopping the other.
//!
//! Whenever it is connected it offers the pending anchors in order: at once on connecting, when a new
//! checkpoint is signed, and again every `republish` while some are not acknowledged (an upstream that
//! missed one asks for nothing: it simply does not acknowledge, and the next round starts from what it
//! did acknowledge). An acknowledgement counts only if it names a checkpoint of this log by size and
//! root; it is written to the witness file before it moves the queue. Behind the anchors the same
//! connection offers the archive its entry bundles ([`super::archive`]), acknowledged one by one on
//! `tiles/ack` and counted in the witness file the same way.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::Packet;
use rumqttc::v5::{AsyncClient, Event};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::backoff::Backoff;
use crate::health::Health;
use crate::mqtt::BrokerAddr;
use crate::witness::writer::Witness;
use if_protocol::messages::{Ack, Anchor, BundleAck};

use super::archive::{self, Offer, Progress};

/// Where anchors go and how often unacknowledged ones are offered again.
#[derive(Debug, Clone)]
pub struct Uplink {
    /// The broker.
    pub broker: BrokerAddr,
    /// The MQTT client id.
    pub client_id: String,
    /// The agent's `anchors` topic.
    pub topic: String,
    /// Its `anchors/ack` topic.
    pub ack_topic: String,
    /// Its `tiles` topic: entry bundles for the archive.
    pub tiles_topic: String,
    /// Its `tiles/ack` topic.
    pub tiles_ack_topic: String,
    /// `site/agent`.
    pub agent: String,
    /// Unacknowledged anchors go again after this long.
    pub republish: Duration,
    /// Reconnect delays.
    pub backoff: Backoff,
    /// TLS for an `mqtts://` broker.
    pub tls: Option<crate::tls::Tls>,
    /// Whether the log's entry bundles go upstream too.
    pub archive: bool,
    /// The collector's key: when pinned, only acknowledgements it signed count.
    pub collector: Option<ed25519_dalek::VerifyingKey>,
}

/// The connection as the driver last saw it: whether it is up, and how many times it connected.
type Link = (bool, u64);

/// Acknowledgements read and not yet acted on: a whole round's worth of anchors and bundles, so that a
/// round answered while the run loop still publishes it is taken in full. Past this, new ones are dropped
/// (the next round offers them again and the upstream acknowledges them again).
const ACKS_QUEUED: usize = super::MAX_ROUND + archive::MAX_ROUND;

/// An acknowledgement from upstream.
#[derive(Debug)]
enum Upstream {
    Anchor(Ack),
    Bundle(BundleAck),
}

/// Bundles offered to the archive and what came of them.
#[derive(Debug)]
struct Archiving {
    progress: Progress,
    offered: Vec<Offer>,
    offered_at: Option<Instant>,
    /// How long an offer waits for its acknowledgements before it goes again: the republish interval,
    /// doubled after each offer nobody acknowledged (an upstream without an archive costs an offer every
    /// few minutes, not a stream of them), back to the interval on an acknowledgement.
    wait: Duration,
    republish: Duration,
    /// The acknowledged checkpoint the last offer was made for.
    anchored: u64,
    /// The bundle last found too large to send, said once.
    too_large: Option<u64>,
}

/// The longest wait between offers of the same bundles.
const MAX_OFFER_WAIT: Duration = Duration::from_secs(300);

impl Archiving {
    fn new(republish: Duration, archived: u64) -> Self {
        Archiving {
            progress: Progress::new(archived),
            offered: Vec::new(),
            offered_at: None,
            wait: republish,
            republish,
            anchored: u64::MAX,
            too_large: None,
        }
    }

    /// Whether to read the bundles to offer now: at once after progress, a new connection or a new
    /// checkpoint acknowledged; otherwise when the last offer has waited long enough.
    fn due(&self, anchored: u64) -> bool {
        anchored != self.anchored || self.offered_at.is_none_or(|at| at.elapsed() >= self.wait)
    }

    /// Takes note of the bundles `sent` at `now`: the same ones sent again unacknowledged wait twice
    /// as long before the next offer, up to [`MAX_OFFER_WAIT`].
    fn sent(&mut self, sent: Vec<Offer>, now: Instant) {
        let key = |o: &[Offer]| o.iter().map(|o| (o.index, o.width, o.size)).collect::<Vec<_>>();
        if self.offered_at.is_some() && key(&sent) == key(&self.offered) {
            self.wait = (self.wait * 2).min(MAX_OFFER_WAIT);
        }
        self.offered = sent;
        self.offered_at = Some(now);
    }

    /// Takes note of progress: the next bundles go at once, and offers wait the republish interval again.
    fn progressed(&mut self) {
        self.offered_at = None;
        self.wait = self.republish;
    }
}

/// Runs until `stop` is cancelled; then offers what is pending once more, if connected, and returns.
pub async fn run(up: Uplink, witness: Witness, health: Arc<Health>, stop: tokio_util::sync::CancellationToken) {
    let mut options = match up.broker.client_options(up.client_id.clone(), up.tls.as_ref()) {
        Ok(o) => o,
        Err(e) => {
            // Checked with the config before the agent starts; an uplink that cannot be set up
            // leaves the anchors queued in the witness file.
            tracing::error!(code = %e.code(), "uplink: {}", e.detail());
            return;
        }
    };
    options.set_keep_alive(Duration::from_secs(10)).set_clean_start(true).set_connection_timeout(5);
    let (client, eventloop) = AsyncClient::new(options, 64);
    // The driver never waits on this loop (which may itself wait on the connection to take a publish):
    // the link state is a watch, and acknowledgements past a bounded queue are dropped.
    let (acks_tx, mut acks) = mpsc::channel(ACKS_QUEUED);
    let (link_tx, mut link) = watch::channel((false, 0));
    let to = Outputs { acks: acks_tx, link: link_tx };
    let acks_on =
        AckTopics { anchors: up.ack_topic.clone(), tiles: up.tiles_ack_topic.clone(), collector: up.collector };
    tokio::spawn(drive(eventloop, client.clone(), acks_on, up.backoff.clone(), to));
    // What the archive acknowledged, as the start read it from the witness file.
    let mut archiving = Archiving::new(up.republish, health.archived.load(Ordering::Relaxed));
    let mut connected = false;
    let mut connects = 0;
    let mut offered: Vec<Anchor> = Vec::new();
    let mut offered_at: Option<Instant> = None;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut last_round = false;
    loop {
        tokio::select! {
            () = stop.cancelled(), if !last_round => {
                last_round = true;
                offered_at = None;
            }
            changed = link.changed() => {
                if changed.is_err() {
                    return;
                }
                let (up, count) = *link.borrow_and_update();
                // A new connection is offered everything pending at once.
                if up && count != connects {
                    offered_at = None;
                    archiving.offered_at = None;
                }
                (connected, connects) = (up, count);
            }
            ack = acks.recv() => match ack {
                None => return,
                Some(first) => {
                    // Every acknowledgement queued meanwhile, at once: only the largest anchor of ours
                    // moves the queue, so a round's hundreds of them cost one commit, not one each.
                    let mut queued = vec![first];
                    while let Ok(more) = acks.try_recv() {
                        queued.push(more);
                    }
                    let (mut anchors, mut bundles) = (Vec::new(), Vec::new());
                    for ack in queued {
                        match ack {
                            Upstream::Anchor(a) => anchors.push(a),
                            Upstream::Bundle(b) => bundles.push(b),
                        }
                    }
                    if !anchors.is_empty() {
                        acknowledge(&witness, &health, &offered, anchors).await;
                    }
                    if !bundles.is_empty() {
                        archived(&witness, &health, &mut archiving, &bundles).await;
                    }
                }
            },
            _ = tick.tick() => {}
        }
        let (agent, round) = (up.agent.clone(), connected);
        let edge_done = archiving.progress.edge_done;
        let bundles_due = up.archive && round && archiving.due(health.anchored.load(Ordering::Relaxed));
        let read = witness.read_folded(move |log| {
            let (acked, waiting) = super::backlog(log)?;
            let pending = if round && waiting > 0 { super::pending(log, &agent)?.1 } else { Vec::new() };
            let bundles = if bundles_due { archive::pending(log, &agent, edge_done)? } else { Vec::new() };
            Ok((acked, waiting, pending, bundles))
        });
        let (acked, waiting, pending, bundles) = match read.await {
            Ok(read) => read,
            Err(e) => {
                tracing::warn!(code = %e.code(), "uplink: the log could not be read for upstream: {}", e.detail());
                continue;
            }
        };
        health.anchored.fetch_max(acked, Ordering::Relaxed);
        health.anchors_pending.store(waiting, Ordering::Relaxed);
        if connected && offer_anchors(&up, &client, &mut offered, &mut offered_at, pending).await && bundles_due {
            archiving.anchored = acked;
            offer_bundles(&up, &client, &mut archiving, bundles).await;
        }
        if last_round {
            return;
        }
    }
}

/// Publishes the anchors `pending` if they are newer than those `offered` or the last offer is due again;
/// false when a publish failed (the connection is gone: nothing more this round).
async fn offer_anchors(
    up: &Uplink,
    client: &AsyncClient,
    offered: &mut Vec<Anchor>,
    offered_at: &mut Option<Instant>,
    pending: Vec<Anchor>,
) -> bool {
    let due = offered_at.is_none_or(|at| at.elapsed() >= up.republish);
    let newer = pending.last().map(|a| a.size) > offered.last().map(|a| a.size);
    if pending.is_empty() || !(due || newer) {
        return true;
    }
    for a in &pending {
        let Ok(bytes) = serde_json::to_vec(a) else { continue };
        if client.publish(up.topic.clone(), QoS::AtLeastOnce, true, bytes).await.is_err() {
            return false;
        }
    }
    *offered = pending;
    *offered_at = Some(Instant::now());
    true
}

/// Publishes the entry bundles `pending`, and waits longer before offering the same ones again.
async fn offer_bundles(up: &Uplink, client: &AsyncClient, archiving: &mut Archiving, pending: Vec<Offer>) {
    let mut sent = Vec::with_capacity(pending.len());
    'offers: for o in pending {
        for bytes in &o.messages {
            if bytes.len() > archive::MAX_MESSAGE {
                // A packet past the broker's limit would cost the connection, and the anchors with it:
                // the archive waits at this bundle instead (one record larger than a message), and says so.
                if archiving.too_large != Some(o.index) {
                    tracing::warn!(
                        index = o.index,
                        bytes = bytes.len(),
                        limit = archive::MAX_MESSAGE,
                        "archive: a record is larger than an uplink message may be; the archive waits here"
                    );
                    archiving.too_large = Some(o.index);
                }
                break 'offers;
            }
            if client.publish(up.tiles_topic.clone(), QoS::AtLeastOnce, false, bytes.clone()).await.is_err() {
                break 'offers;
            }
        }
        sent.push(o);
    }
    archiving.sent(sent, Instant::now());
}

/// Takes the archive's acknowledgements of bundles; whole bundles acknowledged in order are written to
/// the witness file before they count.
async fn archived(witness: &Witness, health: &Health, archiving: &mut Archiving, acks: &[BundleAck]) {
    if !archiving.progress.take(&archiving.offered, acks) {
        return;
    }
    let records = archiving.progress.archived;
    match witness.with_store(move |s| s.set_archived(records)).await {
        Ok(()) => {
            health.archived.fetch_max(records, Ordering::Relaxed);
            archiving.progressed();
            tracing::debug!(records, "entry bundles acknowledged by the archive");
        }
        Err(e) => {
            // What counts is what the file holds: the next offer starts from there again.
            archiving.progress = Progress::new(health.archived.load(Ordering::Relaxed));
            tracing::warn!(error = %e, "an archive acknowledgement could not be recorded");
        }
    }
}

/// Moves the queue past the largest acknowledged anchor of `acks` that is one of ours.
async fn acknowledge(witness: &Witness, health: &Health, offered: &[Anchor], mut acks: Vec<Ack>) {
    // An acknowledgement of what is already acknowledged (a repeat, or a flood of one) writes nothing.
    let anchored = health.anchored.load(Ordering::Relaxed);
    acks.retain(|ack| ack.size > anchored);
    acks.sort_by_key(|ack| std::cmp::Reverse(ack.size));
    let ours = acks.iter().find_map(|ack| {
        let cp = offered.iter().find(|a| a.size == ack.size).and_then(|a| a.checkpoint().ok());
        let matched = cp.filter(|cp| ack.root_hash() == Some(cp.root));
        if matched.is_none() {
            tracing::debug!(size = ack.size, "an acknowledgement of no anchor of ours was ignored");
        }
        matched
    });
    let Some(cp) = ours else { return };
    let size = cp.size;
    match witness.with_store(move |s| s.set_anchored(size)).await {
        Ok(()) => {
            health.anchored.fetch_max(size, Ordering::Relaxed);
            tracing::debug!(size, "anchor acknowledged upstream");
        }
        Err(e) => tracing::warn!(error = %e, "an anchor acknowledgement could not be recorded"),
    }
}

/// An acknowledgement on `topic`: signed by the pinned collector key when there is one.
fn read_ack<T: serde::de::DeserializeOwned>(
    topic: &str,
    collector: Option<&ed25519_dalek::VerifyingKey>,
    payload: &[u8],
) -> Option<T> {
    let object = match collector {
        Some(key) => {
            let context = if_protocol::attest::topic_context(topic);
            let verified = if_protocol::attest::verify(key, if_protocol::attest::PUBLISH_DOMAIN, &context, payload);
            if verified.is_err() {
                tracing::debug!("an acknowledgement not signed by the collector's key was ignored");
            }
            verified.ok()?
        }
        None => payload.to_vec(),
    };
    serde_json::from_slice(&object).ok()
}

/// The topics acknowledgements arrive on, and the key they must be signed by, if pinned.
struct AckTopics {
    anchors: String,
    tiles: String,
    collector: Option<ed25519_dalek::VerifyingKey>,
}

/// What the driver tells the run loop.
struct Outputs {
    acks: mpsc::Sender<Upstream>,
    link: watch::Sender<Link>,
}

/// Polls the connection, subscribing to acknowledgements on every connect. Never waits on anything
/// but the connection, so PUBACKs keep coming while the run loop waits to publish.
async fn drive(
    mut eventloop: rumqttc::v5::EventLoop,
    client: AsyncClient,
    on: AckTopics,
    backoff: Backoff,
    to: Outputs,
) {
    let mut attempt = 0usize;
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                attempt = 0;
                tracing::info!("uplink connected");
                // Queued without waiting: a full request queue drains as soon as this loop polls again.
                for topic in [&on.anchors, &on.tiles] {
                    if client.try_subscribe(topic.clone(), QoS::AtLeastOnce).is_err() {
                        tracing::warn!("uplink: an acknowledgement subscription could not be queued");
                    }
                }
                to.link.send_modify(|(up, count)| (*up, *count) = (true, *count + 1));
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                let topic = p.topic.as_ref();
                let ack = if topic == on.anchors.as_bytes() {
                    read_ack(&on.anchors, on.collector.as_ref(), &p.payload).map(Upstream::Anchor)
                } else if topic == on.tiles.as_bytes() {
                    read_ack(&on.tiles, on.collector.as_ref(), &p.payload).map(Upstream::Bundle)
                } else {
                    None
                };
                if let Some(ack) = ack {
                    match to.acks.try_send(ack) {
                        Ok(()) => {}
                        Err(mpsc::error::TrySendError::Full(_)) => {
                            tracing::debug!("an acknowledgement was dropped; the next round brings it again");
                        }
                        Err(mpsc::error::TrySendError::Closed(_)) => return,
                    }
                }
            }
            Ok(_) => {}
            Err(e) => {
                if to.link.is_closed() {
                    return;
                }
                to.link.send_modify(|(up, _)| *up = false);
                let delay = backoff.delay(attempt);
                // Said once per outage (a refused handshake included), then quietly retried.
                if attempt == 0 {
                    tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "uplink down; anchors wait");
                } else {
                    tracing::debug!(error = %e, retry_in_ms = delay.as_millis() as u64, "uplink down");
                }
                attempt += 1;
                tokio::time::sleep(delay).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer(index: u64) -> Offer {
        Offer { index, size: 1024, width: 256, root: [0; 32], messages: Vec::new() }
    }

    #[tokio::test(start_paused = true)]
    async fn offers_nobody_acknowledges_go_less_and_less_often_and_at_once_after_progress() {
        let republish = Duration::from_secs(10);
        let mut a = Archiving::new(republish, 0);
        assert!(a.due(0), "the first offer goes at once");
        let mut waits = Vec::new();
        for _ in 0..8 {
            a.sent(vec![offer(0), offer(1)], Instant::now());
            waits.push(a.wait.as_secs());
            a.anchored = 0;
            assert!(!a.due(0), "not before its wait");
            tokio::time::advance(a.wait).await;
            assert!(a.due(0), "due once it waited");
        }
        assert_eq!(waits, [10, 20, 40, 80, 160, 300, 300, 300], "doubling, up to five minutes");
        assert!(a.due(1024), "a newly acknowledged checkpoint is offered at once");

        // Other bundles (the archive took some) are not a repeat, and progress resets the wait.
        a.sent(vec![offer(1), offer(2)], Instant::now());
        assert_eq!(a.wait, MAX_OFFER_WAIT, "a different offer keeps the wait it had");
        a.progressed();
        assert!(a.due(0) && a.wait == republish, "after progress, at once and then every republish");
    }
}
