//! `ifctl message send`: sign an envelope, publish it, wait for the agent's reply.
//!
//! The reply comes back on a response topic unique to this call (MQTT 5 response topic plus correlation
//! data), so concurrent senders never see each other's answers. Anyone on the broker can publish there
//! too, so a reply counts only when the agent's pinned key signed it as the answer to exactly this
//! request; anything else on the topic is reported and ignored, and the wait goes on for the real one.
//! `--save` writes the exact frame bytes that were published; `--json @frame.json` publishes a frame
//! described by its JSON view instead of signing a new one.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use if_edge::reply::Reply;
use if_protocol::attest::{self, REPLY_DOMAIN};
use if_protocol::envelope::{ArgValue, Args, Audience, EnvelopeBody, Hazards, Nonce, ProtocolVersion};
use if_protocol::topics::Topics;
use if_protocol::{ErrorCode, IfError, frame, json};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{Packet, PublishProperties};
use rumqttc::v5::{AsyncClient, Event};
use uuid::Uuid;

/// Where to send and how long to wait.
#[derive(Debug, Clone)]
pub struct Target {
    /// `mqtt://HOST:PORT`.
    pub broker: String,
    /// Site.
    pub site: String,
    /// Agent.
    pub agent: String,
    /// How long to wait for the reply.
    pub timeout: Duration,
    /// TLS for an `mqtts://` broker.
    pub tls: Option<if_edge::tls::Tls>,
    /// The agent's pinned public key: only a reply it signed is believed.
    pub key: ed25519_dalek::VerifyingKey,
}

/// What to sign.
#[derive(Debug, Clone)]
pub struct Command {
    /// The talent's secret key file.
    pub key: PathBuf,
    /// The talent name.
    pub sender: String,
    /// `if://capability/...`.
    pub capability: String,
    /// The action.
    pub action: String,
    /// `k=v` arguments.
    pub args: Vec<String>,
    /// Reason.
    pub why: String,
    /// Trace token.
    pub trace: Option<Uuid>,
    /// Sequence number (default: the next of the key's counter, see [`crate::seq`]).
    pub seq: Option<u64>,
    /// Validity, seconds.
    pub ttl_s: u32,
    /// Scope.
    pub scope: String,
    /// Declared hazards by name.
    pub hazards: Vec<String>,
    /// Whom it is for, `SITE/AGENT`, `SITE/*` or `*`; `None`: the target agent alone.
    pub audience: Option<String>,
}

impl Command {
    /// `action` on `capability`, signed by `key` as `sender`, for `why`: valid 30 s, in the scope
    /// `studio:control`, with no arguments or hazards, for the target agent alone. Every verb starts here
    /// and sets what its flags say.
    pub fn new(key: PathBuf, sender: String, capability: &str, action: &str, why: &str) -> Self {
        Command {
            key,
            sender,
            capability: capability.into(),
            action: action.into(),
            args: Vec::new(),
            why: why.into(),
            trace: None,
            seq: None,
            ttl_s: 30,
            scope: "studio:control".into(),
            hazards: Vec::new(),
            audience: None,
        }
    }
}

impl Target {
    /// The audience of exactly this agent.
    pub fn audience(&self) -> Result<Audience, IfError> {
        Audience::agent(&self.site, &self.agent)
    }
}

fn invalid(what: impl std::fmt::Display) -> IfError {
    IfError::format(ErrorCode::InvalidEnvelope, format_args!("{what}"))
}

fn now_micros() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// Parses `k=v`: `true`/`false` are booleans, integers are integers, anything else is text.
pub fn parse_arg(kv: &str) -> Result<(String, ArgValue), IfError> {
    let (k, v) = kv.split_once('=').ok_or_else(|| invalid(format_args!("--arg {kv:?}: want KEY=VALUE")))?;
    let value = ArgValue::typed(v).map_err(|e| invalid(format_args!("--arg {k}: {}", e.detail())))?;
    Ok((k.to_string(), value))
}

fn text<const N: usize>(what: &str, v: &str) -> Result<heapless::String<N>, IfError> {
    v.try_into().map_err(|_| invalid(format_args!("{what} is longer than {N} bytes")))
}

/// Signs `cmd` into a frame for `target` (or the wider audience `cmd` names).
pub fn sign(cmd: &Command, target: &Target) -> Result<Vec<u8>, IfError> {
    sign_above(cmd, target, 0)
}

/// [`sign`], with a sequence number of at least `floor` when `cmd` names none.
fn sign_above(cmd: &Command, target: &Target, floor: u64) -> Result<Vec<u8>, IfError> {
    let audience = match &cmd.audience {
        Some(text) => Audience::parse(text)?,
        None => target.audience()?,
    };
    let key = if_edge::keyfile::read_secret(&cmd.key)?;
    let seq = match cmd.seq {
        Some(s) => s,
        None => crate::seq::take(&if_protocol::keys::key_id(&key.verifying_key()), floor)?,
    };
    let mut args = Args::new();
    for kv in &cmd.args {
        let (k, v) = parse_arg(kv)?;
        args.insert(&k, v)?;
    }
    let mut hazards = Hazards::NONE;
    for h in &cmd.hazards {
        hazards = hazards.union(Hazards::by_name(h).ok_or_else(|| invalid(format_args!("unknown hazard {h:?}")))?);
    }
    let mut nonce = [0u8; 16];
    rand::fill(&mut nonce[..]);
    let body = EnvelopeBody {
        version: ProtocolVersion::CURRENT,
        id: Uuid::new_v4(),
        audience,
        sender: text("sender", &cmd.sender)?,
        seq,
        nonce: Nonce(nonce),
        issued_at_ms: now_micros() / 1000,
        ttl_s: cmd.ttl_s,
        scope: text("scope", &cmd.scope)?,
        hazards,
        capability: text("capability", &cmd.capability)?,
        action: text("action", &cmd.action)?,
        args,
        why: text("why", &cmd.why)?,
        trace: cmd.trace.unwrap_or_else(Uuid::new_v4),
    };
    body.validate()?;
    Ok(frame::sign_envelope(&key, &body)?.to_vec())
}

/// Reads `@FILE` (or inline JSON) and returns the frame it describes.
pub fn frame_from_json(arg: &str) -> Result<Vec<u8>, IfError> {
    let text = match arg.strip_prefix('@') {
        Some(file) => if_edge::files::read_text(std::path::Path::new(file), if_edge::files::DOC_MAX)
            .map_err(|e| IfError::format(ErrorCode::ConfigInvalid, format_args!("{file}: {e}")))?,
        None => arg.to_string(),
    };
    Ok(json::json_to_frame(&json::parse(&text)?)?.to_vec())
}

/// Writes the frame to `path`.
pub fn save(path: &Path, frame: &[u8]) -> Result<(), IfError> {
    std::fs::write(path, frame)
        .map_err(|e| IfError::format(ErrorCode::ConfigInvalid, format_args!("{}: cannot write: {e}", path.display())))
}

/// The error when no genuine reply came in time: INVALID_SIGNATURE when forged ones came instead.
fn no_reply(target: &Target, forged: usize) -> IfError {
    let secs = target.timeout.as_secs();
    if forged > 0 {
        IfError::format(
            ErrorCode::InvalidSignature,
            format_args!(
                "no reply signed by {}/{} within {secs} s; {forged} forged one(s) ignored",
                target.site, target.agent
            ),
        )
    } else {
        IfError::format(ErrorCode::SystemError, format_args!("no reply within {secs} s"))
    }
}

/// Signs `cmd`, sends it and waits for the reply. A command whose sequence number was refused as taken
/// (`REPLAY_DETECTED`) or too old (`OUT_OF_ORDER`) ran nothing, so when `ifctl` chose the number it
/// signs the command again once, above the newest the agent has seen, sends it again and says so.
pub async fn send_command(target: &Target, cmd: &Command) -> Result<Reply, IfError> {
    let reply = send(target, sign(cmd, target)?).await?;
    let refused = reply.error_code().filter(|c| matches!(c, ErrorCode::ReplayDetected | ErrorCode::OutOfOrder));
    match refused {
        Some(code) if cmd.seq.is_none() => {
            let floor = reply.next_seq.unwrap_or(0);
            let frame = sign_above(cmd, target, floor)?;
            eprintln!("ifctl: {code}: nothing ran; signed again with a new sequence number and sent once more");
            send(target, frame).await
        }
        _ => Ok(reply),
    }
}

/// Publishes `frame` and waits for the reply.
pub async fn send(target: &Target, frame: Vec<u8>) -> Result<Reply, IfError> {
    let sender = json::frame_to_json(&frame).map(|v| v.body.sender.to_string()).unwrap_or_else(|_| "unknown".into());
    let topic = Topics::new(&target.site, &target.agent).cmd;
    request(target, &topic, &sender, frame).await
}

/// Publishes `payload` on `topic` with a response topic under `reply/{who}` and waits for the answer
/// signed by the agent for this payload (whose digest is the request's: a frame is its own digest).
pub async fn request(target: &Target, topic: &str, who: &str, payload: Vec<u8>) -> Result<Reply, IfError> {
    let request = frame::digest(&payload);
    let mut forged = 0usize;
    let call = Uuid::new_v4();
    let topics = Topics::new(&target.site, &target.agent);
    let reply_topic = format!("{}/{call}", topics.reply_for(who));
    let mut opts = if_edge::mqtt::tool_options(&target.broker, format!("ifctl-{call}"), target.tls.as_ref())?;
    let mut net = rumqttc::NetworkOptions::new();
    net.set_tcp_nodelay(true);
    opts.set_network_options(net);
    let (client, mut events) = AsyncClient::new(opts, 16);
    let unreachable = |e: &dyn std::fmt::Display| {
        IfError::format(ErrorCode::SystemError, format_args!("broker {}: {e}", target.broker))
    };
    let correlation = Bytes::copy_from_slice(call.as_bytes());
    let deadline = tokio::time::Instant::now() + target.timeout;
    let mut frame = Some(payload);
    loop {
        let event = tokio::time::timeout_at(deadline, events.poll())
            .await
            .map_err(|_| no_reply(target, forged))?
            .map_err(|e| unreachable(&e))?;
        match event {
            Event::Incoming(Packet::ConnAck(_)) => {
                client.subscribe(reply_topic.clone(), QoS::AtLeastOnce).await.map_err(|e| unreachable(&e))?;
            }
            Event::Incoming(Packet::SubAck(_)) => {
                if let Some(f) = frame.take() {
                    let props = PublishProperties {
                        response_topic: Some(reply_topic.clone()),
                        correlation_data: Some(correlation.clone()),
                        ..PublishProperties::default()
                    };
                    client
                        .publish_with_properties(topic.to_string(), QoS::AtLeastOnce, false, f, props)
                        .await
                        .map_err(|e| unreachable(&e))?;
                }
            }
            Event::Incoming(Packet::Publish(p)) if p.topic.as_ref() == reply_topic.as_bytes() => {
                let matches = p.properties.as_ref().and_then(|pp| pp.correlation_data.as_ref()) == Some(&correlation);
                if !matches {
                    continue;
                }
                match attest::verify(&target.key, REPLY_DOMAIN, &request, &p.payload) {
                    Ok(object) => {
                        let _ = client.disconnect().await;
                        return serde_json::from_slice(&object).map_err(|e| {
                            IfError::format(ErrorCode::SystemError, format_args!("reply is not JSON: {e}"))
                        });
                    }
                    Err(e) => {
                        forged += 1;
                        eprintln!(
                            "ifctl: ignored a reply that {}/{}'s key did not sign for this request ({}); waiting for \
                             the agent's own",
                            target.site,
                            target.agent,
                            e.detail()
                        );
                    }
                }
            }
            _ => {}
        }
    }
}
