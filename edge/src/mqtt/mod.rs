//! The MQTT side of the agent: connection options, the Will and the event loop driver (the topics are
//! the contract's, [`if_protocol::topics`]).
//!
//! The driver only moves packets: it polls rumqttc's event loop, forwards command publishes to the
//! pipeline, resubscribes and publishes the retained birth status after every (re)connect (rumqttc does
//! not resubscribe), and waits out connection errors on the jittered backoff schedule. It never blocks
//! on the pipeline: the broker may send at most `receive_maximum` unacknowledged commands, and the agent
//! acknowledges only after the RECEIVED record is durable, so the queue in between is bounded by the
//! protocol itself and the rest waits in the broker. A QoS 0 publish on `cmd` or `policy` (which no
//! acknowledgement would hold back) is dropped unread.

use std::sync::Arc;
use std::time::Duration;

use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{LastWill, Packet, Publish};
use rumqttc::v5::{AsyncClient, Event, EventLoop, MqttOptions};
use tokio::sync::{mpsc, watch};

use crate::attest::Signer;
use crate::backoff::Backoff;
use crate::health::Health;
use crate::tls::Tls;
use if_protocol::IfError;
use if_protocol::messages::{State, Status};
use if_protocol::topics::Topics;

pub mod addr;

pub use addr::{BrokerAddr, tool_options};

/// How the agent's session with its control broker is set up (from `[mqtt]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The MQTT client id.
    pub client_id: String,
    /// Where the broker is.
    pub broker: BrokerAddr,
    /// Keep-alive, seconds.
    pub keep_alive_s: u16,
    /// How long the broker keeps the session while the agent is away, seconds.
    pub session_expiry_s: u32,
    /// Most unacknowledged commands the broker may send at once.
    pub receive_maximum: u16,
    /// Most unacknowledged publishes the agent keeps in flight.
    pub outgoing_inflight: u16,
}

/// Largest MQTT packet the agent accepts; the broker drops bigger ones instead of sending them.
pub const MAX_PACKET: u32 = 64 * 1024;

/// The `offline` status of MQTT session `session` of this boot (unsigned).
pub fn offline(health: &Health, session: u64) -> Vec<u8> {
    let mut offline = Status::new(State::Offline, &health.agent, u64::from(health.boot), session);
    offline.instance = Some(health.instance_hex());
    serde_json::to_vec(&offline).unwrap_or_default()
}

/// The Will of MQTT session `session` of this boot: `offline`, retained, signed, naming the session it
/// ends, so a Will the broker sends late (after a newer session's birth) is told apart and ignored.
pub fn will(topics: &Topics, health: &Health, signer: &Signer, session: u64) -> LastWill {
    let payload = signer.publication(&topics.status, offline(health, session));
    LastWill::new(topics.status.clone(), payload, QoS::AtLeastOnce, true, None)
}

/// Connection options: persistent session, manual acks, receive maximum, Will `offline` of session 1, and
/// TLS for an `mqtts://` broker.
pub fn options(
    session: &Session,
    topics: &Topics,
    health: &Health,
    signer: &Signer,
    tls: Option<&Tls>,
) -> Result<MqttOptions, IfError> {
    let mut o = session.broker.client_options(session.client_id.clone(), tls)?;
    // Replies are small and latency matters more than packet count: no Nagle delay.
    let mut net = rumqttc::NetworkOptions::new();
    net.set_tcp_nodelay(true);
    o.set_network_options(net);
    o.set_keep_alive(Duration::from_secs(u64::from(session.keep_alive_s)))
        .set_clean_start(false)
        .set_session_expiry_interval(Some(session.session_expiry_s))
        .set_manual_acks(true)
        .set_receive_maximum(Some(session.receive_maximum))
        // rumqttc sizes its in-flight table by this bound up front; unset, it would be 65,535 slots.
        .set_outgoing_inflight_upper_limit(session.outgoing_inflight)
        .set_max_packet_size(Some(MAX_PACKET))
        .set_connection_timeout(5)
        .set_last_will(will(topics, health, signer, 1));
    Ok(o)
}

/// The birth message: the retained, signed `online` status as it is now.
pub type Birth = Arc<dyn Fn() -> Vec<u8> + Send + Sync>;

/// What the connection driver needs besides the event loop.
pub struct Link {
    /// The client the event loop serves.
    pub client: AsyncClient,
    /// The agent's topics.
    pub topics: Topics,
    /// Boot and session, for the Will and the birth.
    pub health: Arc<Health>,
    /// Signs the Will; checks that a status is the agent's own.
    pub signer: Signer,
    /// The birth.
    pub birth: Birth,
    /// Reconnect delays.
    pub schedule: Backoff,
    /// Where a conflict over this agent's identity is reported (to be witnessed).
    pub conflicts: mpsc::UnboundedSender<crate::identity::Conflict>,
    /// Cancelled when the agent stops: the connection then ends with the broker's, never reconnects.
    pub stopping: tokio_util::sync::CancellationToken,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link").field("topics", &self.topics).finish_non_exhaustive()
    }
}

/// Publishes the birth whenever asked, at most once a second, however often it is asked.
fn births(client: AsyncClient, topic: String, birth: Birth) -> Arc<tokio::sync::Notify> {
    let asked = Arc::new(tokio::sync::Notify::new());
    let wait = asked.clone();
    tokio::spawn(async move {
        loop {
            wait.notified().await;
            if client.publish(topic.clone(), QoS::AtLeastOnce, true, birth()).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
    asked
}

/// Drives the event loop until `inbound` is closed. Sends `true` on `serving` once the broker has
/// acknowledged the command subscription of a session, and `false` when the connection drops. Each new connection is a new session of this boot
/// (`health.session`), with its own Will. The agent watches its own status topic and its session (see
/// [`crate::identity`]): a status it did not sign, or a late Will, is answered with the birth again; a
/// second process with its identity is reported, and the agent then waits the longest reconnect delay.
pub async fn drive(
    mut eventloop: EventLoop,
    link: Link,
    inbound: mpsc::UnboundedSender<Publish>,
    serving: watch::Sender<bool>,
) {
    let Link { client, topics, health, signer, birth, schedule, conflicts, stopping } = link;
    let rebirth = births(client.clone(), topics.status.clone(), birth.clone());
    let mut identity = crate::identity::Watch::new(format!("{:016x}", health.instance));
    let mut attempt = 0usize;
    let mut subscribing = false;
    loop {
        let event = eventloop.poll().await;
        let now_ms = crate::clock::Clock::system_ms();
        if identity.conflict.is_some() && !identity.in_conflict(now_ms) {
            tracing::info!("no sign of another process with this identity for a while: the conflict is over");
            health.clear_conflict();
        }
        let action = match event {
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                attempt = 0;
                tracing::info!(session_present = ack.session_present, "connected to the broker");
                let (client, topics, birth) = (client.clone(), topics.clone(), birth());
                tokio::spawn(async move {
                    // rumqttc does not restore subscriptions: subscribe again on every connect.
                    let mut ok = client.subscribe(topics.cmd.clone(), QoS::AtLeastOnce).await.is_ok();
                    ok &= client.subscribe(topics.policy.clone(), QoS::AtLeastOnce).await.is_ok();
                    // At most once: nothing to acknowledge, and a missed one is repaired by the next.
                    ok &= client.subscribe(topics.status.clone(), QoS::AtMostOnce).await.is_ok();
                    ok &= client.publish(topics.status.clone(), QoS::AtLeastOnce, true, birth).await.is_ok();
                    if !ok {
                        tracing::warn!("could not queue the subscriptions or the birth message");
                    }
                });
                subscribing = true;
                crate::identity::Action::None
            }
            // The first acknowledgement after a connect is the command subscription's (it is sent first).
            Ok(Event::Incoming(Packet::SubAck(_))) if subscribing => {
                subscribing = false;
                let _ = serving.send(true);
                crate::identity::Action::None
            }
            Ok(Event::Incoming(Packet::Publish(p))) if p.topic.as_ref() == topics.status.as_bytes() => {
                if identity.should_check(now_ms) {
                    let own = signer
                        .own_publication(&topics.status, &p.payload)
                        .and_then(|o| serde_json::from_slice::<Status>(&o).ok());
                    let seen = own.as_ref().map_or(crate::identity::Seen::NotOwn, crate::identity::Seen::Own);
                    let current = (u64::from(health.boot), health.session.load(std::sync::atomic::Ordering::Relaxed));
                    identity.status(seen, current, now_ms)
                } else {
                    crate::identity::Action::Rebirth("a flood on the status topic")
                }
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                let ours = p.topic.as_ref() == topics.cmd.as_bytes() || p.topic.as_ref() == topics.policy.as_bytes();
                // At most once, a publish has no acknowledgement for the agent to hold back, so nothing
                // bounds how many the broker sends: only QoS 1 (held to receive_maximum) is read.
                if ours && p.qos == QoS::AtMostOnce {
                    health.rejected.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    tracing::debug!("a QoS 0 publish on a command topic was dropped unread");
                } else if ours && inbound.send(p).is_err() {
                    return;
                }
                crate::identity::Action::None
            }
            Ok(_) => crate::identity::Action::None,
            Err(e) => {
                let _ = serving.send(false);
                if inbound.is_closed() || stopping.is_cancelled() {
                    return;
                }
                let taken = matches!(
                    &e,
                    rumqttc::v5::ConnectionError::MqttState(rumqttc::v5::StateError::ServerDisconnect {
                        reason_code: rumqttc::v5::mqttbytes::v5::DisconnectReasonCode::SessionTakenOver,
                        ..
                    })
                );
                let action = if taken {
                    tracing::warn!("the broker gave this agent's MQTT session to another client");
                    identity.taken_over(now_ms)
                } else {
                    crate::identity::Action::None
                };
                report(&action, &health, &conflicts);
                let session = health.session.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                eventloop.options.set_last_will(will(&topics, &health, &signer, session));
                // While another process holds this identity, take the session back only now and then.
                let step = if identity.in_conflict(now_ms) { usize::MAX } else { attempt };
                let delay = schedule.delay(step);
                tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "broker connection lost");
                attempt += 1;
                tokio::time::sleep(delay).await;
                continue;
            }
        };
        match action {
            crate::identity::Action::Rebirth(why) => {
                tracing::debug!("{why}: the birth is published again");
                rebirth.notify_one();
            }
            other => report(&other, &health, &conflicts),
        }
    }
}

/// Says loudly that another process holds this identity: log, status, and the witness (by the agent).
fn report(
    action: &crate::identity::Action,
    health: &Health,
    conflicts: &mpsc::UnboundedSender<crate::identity::Conflict>,
) {
    if let crate::identity::Action::Conflict(c) = action {
        tracing::error!(
            code = %if_protocol::ErrorCode::IdentityConflict,
            other = c.other.as_deref().unwrap_or("unknown"),
            "another process is using this agent's identity ({}): is a copy of its configuration running \
             elsewhere? This agent goes on, and reconnects only after the longest delay while it lasts",
            c.how
        );
        health.set_conflict(c);
        let _ = conflicts.send(c.clone());
    }
}
