//! An MQTT 5 client in the test process: publishes payloads to an agent and collects what comes back on
//! its reply topics and its dead-letter queue.
//!
//! The probe keeps a persistent session and resends its own unacknowledged publishes after a reconnect,
//! as any QoS 1 publisher does, so it also works across a broker restart.

use std::collections::HashMap;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use if_protocol::topics::Topics;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{Packet, PublishProperties};
use rumqttc::v5::{AsyncClient, Event, MqttOptions};

use crate::broker::Broker;

/// A message the probe received.
#[derive(Debug, Clone)]
pub struct Msg {
    /// Its topic.
    pub topic: String,
    /// Its payload.
    pub payload: Vec<u8>,
    /// Its correlation data, if any.
    pub correlation: Option<Vec<u8>>,
    /// Its MQTT 5 response topic, if any.
    pub response_topic: Option<String>,
}

impl Msg {
    /// The payload as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.payload).expect("payload is JSON")
    }

    /// The `error.code` of a reply or the `code` of a dead letter, e.g. `IF_ERR_103`.
    pub fn code(&self) -> Option<String> {
        let v = self.json();
        v.get("error").and_then(|e| e.get("code")).or_else(|| v.get("code")).and_then(|c| c.as_str()).map(String::from)
    }
}

/// The client.
#[derive(Debug)]
pub struct Probe {
    rt: tokio::runtime::Runtime,
    client: AsyncClient,
    rx: mpsc::Receiver<Msg>,
    subacks: mpsc::Receiver<()>,
    /// The agent's topics.
    pub topics: Topics,
    /// Where replies to [`Probe::request`] of a payload with no readable sender go.
    pub response_topic: String,
    id: String,
}

impl Probe {
    /// Connects to `broker`, subscribes to the agent's replies and DLQ, and waits for the subscription.
    pub fn connect(broker: &Broker, site: &str, agent: &str) -> Probe {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime");
        let topics = Topics::new(site, agent);
        let id = format!("probe-{}", uuid::Uuid::new_v4().simple());
        let response_topic = format!("{}/{id}", topics.reply_for("probe"));
        let mut o = MqttOptions::new(id.clone(), "127.0.0.1", broker.port);
        o.set_keep_alive(Duration::from_secs(5))
            .set_clean_start(false)
            .set_session_expiry_interval(Some(3600))
            .set_max_packet_size(Some(256 * 1024))
            .set_outgoing_inflight_upper_limit(1000);
        let mut net = rumqttc::NetworkOptions::new();
        net.set_tcp_nodelay(true);
        o.set_network_options(net);
        let (client, mut events) = AsyncClient::new(o, 100_000);
        let (tx, rx) = mpsc::channel();
        let (sub_tx, sub_rx) = mpsc::channel();
        let subs = vec![format!("{}/#", topics.reply_for("").trim_end_matches('/')), topics.dlq.clone()];
        let sub_client = client.clone();
        rt.spawn(async move {
            loop {
                match events.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        for s in &subs {
                            let _ = sub_client.subscribe(s.clone(), QoS::AtLeastOnce).await;
                        }
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        let _ = sub_tx.send(());
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let props = p.properties.unwrap_or_default();
                        let msg = Msg {
                            topic: String::from_utf8_lossy(&p.topic).into_owned(),
                            payload: p.payload.to_vec(),
                            correlation: props.correlation_data.map(|b| b.to_vec()),
                            response_topic: props.response_topic,
                        };
                        if tx.send(msg).is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                }
            }
        });
        for _ in 0..2 {
            sub_rx.recv_timeout(Duration::from_secs(10)).expect("probe subscribed");
        }
        Probe { rt, client, rx, subacks: sub_rx, topics, response_topic, id }
    }

    /// This probe's response topic for envelopes of `sender`: under the sender's reply topic, the only
    /// place the agent answers a verified envelope.
    pub fn reply_topic_for(&self, sender: &str) -> String {
        format!("{}/{}", self.topics.reply_for(sender), self.id)
    }

    /// Subscribes to one more topic filter (QoS 1) and waits for the broker's SUBACK.
    pub fn subscribe(&self, filter: &str) {
        let (c, f) = (self.client.clone(), filter.to_string());
        self.rt.block_on(async move { c.subscribe(f, QoS::AtLeastOnce).await }).expect("queue subscribe");
        self.subacks.recv_timeout(Duration::from_secs(10)).expect("subscribed");
    }

    /// The next message on `topic` within `timeout`; messages on other topics are dropped.
    pub fn next_on(&self, topic: &str, timeout: Duration) -> Option<Msg> {
        let end = Instant::now() + timeout;
        loop {
            let m = self.next(end.saturating_duration_since(Instant::now()))?;
            if m.topic == topic {
                return Some(m);
            }
        }
    }

    /// Publishes a raw payload to the agent's command topic (QoS 1), with no response topic.
    pub fn publish(&self, payload: Vec<u8>) {
        let (c, t) = (self.client.clone(), self.topics.cmd.clone());
        self.rt.block_on(async move { c.publish(t, QoS::AtLeastOnce, false, payload).await }).expect("queue publish");
    }

    /// Publishes a raw payload to any topic (QoS 1), retained or not.
    pub fn publish_to(&self, topic: &str, payload: Vec<u8>, retain: bool) {
        let (c, t) = (self.client.clone(), topic.to_string());
        self.rt.block_on(async move { c.publish(t, QoS::AtLeastOnce, retain, payload).await }).expect("queue publish");
    }

    /// Publishes with this probe's response topic for the payload's sender (as far as it can be read)
    /// and `correlation`.
    pub fn request(&self, payload: Vec<u8>, correlation: &[u8]) {
        let sender = if_edge::ingress::to_frame(&payload)
            .ok()
            .and_then(|f| if_protocol::json::frame_to_json(&f).ok())
            .map(|v| v.body.sender.to_string());
        let response = sender.map_or_else(|| self.response_topic.clone(), |s| self.reply_topic_for(&s));
        self.request_to(&self.topics.cmd, payload, Some(&response), Some(correlation));
    }

    /// Publishes a raw payload at most once (QoS 0) on `topic`.
    pub fn publish_qos0(&self, topic: &str, payload: Vec<u8>) {
        let (c, t) = (self.client.clone(), topic.to_string());
        self.rt.block_on(async move { c.publish(t, QoS::AtMostOnce, false, payload).await }).expect("queue publish");
    }

    /// Publishes on `topic` (QoS 1) with a response topic and correlation data, when given.
    pub fn request_to(&self, topic: &str, payload: Vec<u8>, response: Option<&str>, correlation: Option<&[u8]>) {
        let props = PublishProperties {
            response_topic: response.map(String::from),
            correlation_data: correlation.map(Bytes::copy_from_slice),
            ..PublishProperties::default()
        };
        let (c, t) = (self.client.clone(), topic.to_string());
        self.rt
            .block_on(async move { c.publish_with_properties(t, QoS::AtLeastOnce, false, payload, props).await })
            .expect("queue publish");
    }

    /// The next message, if one comes within `timeout`.
    pub fn next(&self, timeout: Duration) -> Option<Msg> {
        self.rx.recv_timeout(timeout).ok()
    }

    /// Everything that arrives until nothing has come for `quiet`.
    pub fn drain(&self, quiet: Duration) -> Vec<Msg> {
        let mut out = Vec::new();
        while let Some(m) = self.next(quiet) {
            out.push(m);
        }
        out
    }

    /// Waits until `want` replies (non-DLQ messages) arrived or `timeout` passed; returns every message.
    pub fn until_replies(&self, want: usize, timeout: Duration) -> Vec<Msg> {
        let end = Instant::now() + timeout;
        let mut out = Vec::new();
        let mut replies = 0;
        while replies < want {
            let left = end.saturating_duration_since(Instant::now());
            let Some(m) = self.next(left.max(Duration::from_millis(1))) else { break };
            if m.topic != self.topics.dlq {
                replies += 1;
            }
            out.push(m);
            if Instant::now() > end {
                break;
            }
        }
        out
    }

    /// Splits messages into replies and dead letters.
    pub fn split(&self, msgs: Vec<Msg>) -> (Vec<Msg>, Vec<Msg>) {
        msgs.into_iter().partition(|m| m.topic != self.topics.dlq)
    }
}

/// Counts messages by their code (`OK` for successful replies).
pub fn codes(msgs: &[Msg]) -> HashMap<String, usize> {
    let mut out = HashMap::new();
    for m in msgs {
        *out.entry(m.code().unwrap_or_else(|| "OK".into())).or_insert(0) += 1;
    }
    out
}
