//! The uplink: a connection of its own to the fleet broker (or the control broker), apart from the
//! command path, so that either may be down without stopping the other.
//!
//! Whenever it is connected it offers the pending anchors in order: at once on connecting, when a new
//! checkpoint is signed, and again every `republish` while some are not acknowledged (an upstream that
//! missed one asks for nothing: it simply does not acknowledge, and the next round starts from what it
//! did acknowledge). An acknowledgement counts only if it names a checkpoint of this log by size and
//! root; it is written to the witness file before it moves the queue.

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
use if_protocol::messages::{Ack, Anchor};

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
    /// `site/agent`.
    pub agent: String,
    /// Unacknowledged anchors go again after this long.
    pub republish: Duration,
    /// Reconnect delays.
    pub backoff: Backoff,
    /// TLS for an `mqtts://` broker.
    pub tls: Option<crate::tls::Tls>,
    /// The collector's key: when pinned, only acknowledgements it signed count.
    pub collector: Option<ed25519_dalek::VerifyingKey>,
}

/// The connection as the driver last saw it: whether it is up, and how many times it connected.
type Link = (bool, u64);

/// Acknowledgements read and not yet acted on: a whole round's worth, so that a round answered while the
/// run loop still publishes it is taken in full. Past this, new ones are dropped (the next round offers
/// the anchors again and the upstream acknowledges them again).
const ACKS_QUEUED: usize = super::MAX_ROUND;

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
    tokio::spawn(drive(eventloop, client.clone(), (up.ack_topic.clone(), up.collector), up.backoff.clone(), to));
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
                }
                (connected, connects) = (up, count);
            }
            ack = acks.recv() => match ack {
                None => return,
                Some(first) => {
                    // Every acknowledgement queued meanwhile, at once: only the largest of ours moves the
                    // queue, so a round's hundreds of them cost one commit, not one each.
                    let mut queued = vec![first];
                    while let Ok(more) = acks.try_recv() {
                        queued.push(more);
                    }
                    acknowledge(&witness, &health, &offered, queued).await;
                }
            },
            _ = tick.tick() => {}
        }
        let (agent, round) = (up.agent.clone(), connected);
        let read = witness.read(move |log| {
            let (acked, waiting) = super::backlog(log)?;
            let pending = if round && waiting > 0 { super::pending(log, &agent)?.1 } else { Vec::new() };
            Ok((acked, waiting, pending))
        });
        let Ok((acked, waiting, pending)) = read.await else { continue };
        health.anchored.fetch_max(acked, Ordering::Relaxed);
        health.anchors_pending.store(waiting, Ordering::Relaxed);
        if !connected || waiting == 0 {
            if last_round {
                return;
            }
            continue;
        }
        let due = offered_at.is_none_or(|at| at.elapsed() >= up.republish);
        let newer = pending.last().map(|a| a.size) > offered.last().map(|a| a.size);
        if pending.is_empty() || !(due || newer) {
            if last_round {
                return;
            }
            continue;
        }
        for a in &pending {
            let Ok(bytes) = serde_json::to_vec(a) else { continue };
            if client.publish(up.topic.clone(), QoS::AtLeastOnce, true, bytes).await.is_err() {
                break;
            }
        }
        offered = pending;
        offered_at = Some(Instant::now());
        if last_round {
            return;
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
fn read_ack(topic: &str, collector: Option<&ed25519_dalek::VerifyingKey>, payload: &[u8]) -> Option<Ack> {
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

/// What the driver tells the run loop.
struct Outputs {
    acks: mpsc::Sender<Ack>,
    link: watch::Sender<Link>,
}

/// Polls the connection, subscribing to acknowledgements on every connect. Never waits on anything
/// but the connection, so PUBACKs keep coming while the run loop waits to publish.
async fn drive(
    mut eventloop: rumqttc::v5::EventLoop,
    client: AsyncClient,
    (ack_topic, collector): (String, Option<ed25519_dalek::VerifyingKey>),
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
                if client.try_subscribe(ack_topic.clone(), QoS::AtLeastOnce).is_err() {
                    tracing::warn!("uplink: the acknowledgement subscription could not be queued");
                }
                to.link.send_modify(|(up, count)| (*up, *count) = (true, *count + 1));
            }
            Ok(Event::Incoming(Packet::Publish(p))) if p.topic.as_ref() == ack_topic.as_bytes() => {
                if let Some(ack) = read_ack(&ack_topic, collector.as_ref(), &p.payload) {
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
