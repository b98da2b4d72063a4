//! What a topic filter holds: the retained messages, and any that arrive while listening, over one
//! short-lived MQTT connection. `ifctl status` and `ifctl tally` read their agents' topics this way and
//! check every message themselves; nothing read here is believed before that.

use std::time::Duration;

use if_protocol::attest::{self, PUBLISH_DOMAIN};
use if_protocol::{ErrorCode, IfError};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::Packet;
use rumqttc::v5::{AsyncClient, Event};

/// One message on an agent's topic, checked against the agent's key.
#[derive(Debug)]
pub enum Checked<T> {
    /// Signed by the agent's key for this topic.
    Genuine(T),
    /// Not signed by it (or signed for another topic).
    Forged,
    /// Signed by it, but not a `T` this ifctl reads (a newer agent's), with why.
    Unreadable(String),
}

/// `payload` on `topic`, checked against `key` and read as a `T`.
pub fn check<T: serde::de::DeserializeOwned>(
    key: &ed25519_dalek::VerifyingKey,
    topic: &str,
    payload: &[u8],
) -> Checked<T> {
    match attest::verify(key, PUBLISH_DOMAIN, &attest::topic_context(topic), payload) {
        Err(_) => Checked::Forged,
        Ok(object) => match serde_json::from_slice::<T>(&object) {
            Ok(v) => Checked::Genuine(v),
            Err(e) => Checked::Unreadable(e.to_string()),
        },
    }
}

/// Subscribes to `filter` on `broker` and hands every message (topic, payload) to `each` until `wait`
/// has passed since the call. `who` names the client (`ifctl-{who}-UUID`). No connection within `wait`
/// is `IF_ERR_500`.
pub async fn listen(
    broker: &str,
    tls: Option<&if_edge::tls::Tls>,
    who: &str,
    filter: String,
    wait: Duration,
    mut each: impl FnMut(&str, &[u8]),
) -> Result<(), IfError> {
    let unreachable =
        |e: &dyn std::fmt::Display| IfError::format(ErrorCode::SystemError, format_args!("broker {broker}: {e}"));
    let id = format!("ifctl-{who}-{}", uuid::Uuid::new_v4());
    let (client, mut events) = AsyncClient::new(if_edge::mqtt::tool_options(broker, id, tls)?, 64);
    let mut connected = false;
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let event = match tokio::time::timeout_at(deadline, events.poll()).await {
            Err(_) if connected => break,
            Err(_) => return Err(unreachable(&"no connection in time")),
            Ok(e) => e.map_err(|e| unreachable(&e))?,
        };
        match event {
            Event::Incoming(Packet::ConnAck(_)) => {
                connected = true;
                client.subscribe(filter.clone(), QoS::AtMostOnce).await.map_err(|e| unreachable(&e))?;
            }
            Event::Incoming(Packet::Publish(p)) => each(&String::from_utf8_lossy(&p.topic), &p.payload),
            _ => {}
        }
    }
    let _ = client.disconnect().await;
    Ok(())
}
