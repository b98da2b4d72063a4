//! What the agent tells the studio besides replies: the retained status (periodic, and within a second of
//! each change), tally from the drivers, and the BREAKER and SECURITY records with the status that shows
//! them.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rumqttc::v5::mqttbytes::QoS;
use tokio::sync::mpsc;

use super::{Ctx, State, lock};
use crate::capability::Capability as _;
use crate::clock::Clock;
use crate::drivers::{DeviceEvent, DeviceReport, Tally};
use crate::health::Health;
use crate::lane::BreakerEvent;
use crate::witness::record::{Entry, Kind};
use crate::witness::store::Append;
use if_protocol::ErrorCode;
use if_protocol::messages::{self, status::Breaker};

/// The retained status again every `every` (uptime, log size, breakers and budgets move on), and
/// whenever asked ([`Ctx::status_soon`]), at most once a second.
pub(super) async fn status_updates(ctx: Ctx, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    loop {
        let disk = async {
            match &ctx.health.disk {
                Some(d) => d.changed.notified().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = tick.tick() => {}
            () = ctx.status_due.notified() => {}
            () = disk => {}
        }
        ctx.publish_status().await;
        ctx.notifier.status(&ctx.serving_line());
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// The retained `online` status: health, policy and budgets.
pub(super) fn online_status(health: &Health, state: &Mutex<State>) -> Vec<u8> {
    let mut status = health.snapshot();
    let state = lock(state);
    status.policy = Some(lock(&state.ingress.policy).status());
    status.budgets = state.ingress.budgets.status(Clock::system_ms() / 1000);
    status.breakers = state
        .lanes
        .iter()
        .map(|l| Breaker { capability: l.id().to_string(), state: l.breaker_state().name().to_string() })
        .collect();
    serde_json::to_vec(&status).unwrap_or_default()
}

/// Tally changes from drivers, on the tally topic (the latest retained, for panels that connect later),
/// and to the lamps and displays bound to follow them; a binding added or changed is shown within a
/// second from the latest tally of its switcher, without waiting for the next change.
pub(super) async fn tally_loop(ctx: Ctx, changes: Arc<crate::drivers::Latest<Tally>>) {
    let mut shown = super::bindings::Shown::default();
    let mut latest: std::collections::BTreeMap<String, Tally> = std::collections::BTreeMap::new();
    let mut bindings_seen = lock(&ctx.policy).bindings_changed();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            batch = changes.next() => {
                for t in batch {
                    let payload = messages::Tally::from_digits(&t.capability, &t.tally, Clock::system_ms())
                        .labelled(t.labels.clone(), t.activators.clone());
                    publish_bounded(&ctx, ctx.topics.tally.clone(), &payload).await;
                    super::bindings::follow(&ctx, &t, &mut shown).await;
                    latest.insert(t.capability.clone(), t);
                }
            }
            _ = tick.tick() => {
                let now = lock(&ctx.policy).bindings_changed();
                if now != bindings_seen {
                    bindings_seen = now;
                    for t in latest.values() {
                        super::bindings::follow(&ctx, t, &mut shown).await;
                    }
                }
            }
        }
    }
}

/// The largest feedback publication: well under the packaged broker's `max_packet_size` (128 KiB), and
/// under what `ifctl` reads. A larger one is not sent (it would cost the connection) and is logged.
const MAX_FEEDBACK: usize = 96 * 1024;

/// Signs `payload` for `topic` and publishes it retained, unless it is larger than [`MAX_FEEDBACK`].
async fn publish_bounded(ctx: &Ctx, topic: String, payload: &impl serde::Serialize) {
    let bytes = ctx.signer.publication(&topic, serde_json::to_vec(payload).unwrap_or_default());
    if bytes.len() > MAX_FEEDBACK {
        tracing::warn!(topic = %topic, bytes = bytes.len(), "feedback too large to publish; not sent");
        return;
    }
    let _ = ctx.client.publish(topic, QoS::AtLeastOnce, true, bytes).await;
}

/// Each router's routing on its own topic, `routing/{name}`, retained and signed, at most ten times a
/// second: a router that floods status blocks costs a bounded amount, and the latest routing of each
/// is always what is published.
pub(super) async fn routing_loop(ctx: Ctx, reports: Arc<crate::drivers::Latest<crate::drivers::Routing>>) {
    loop {
        for r in reports.next().await {
            let Ok(name) = if_protocol::envelope::capability_name(&r.capability) else { continue };
            let topic = ctx.topics.routing_of(name);
            let payload =
                messages::Routing { capability: r.capability.clone(), routes: r.routes, at_ms: Clock::system_ms() };
            publish_bounded(&ctx, topic, &payload).await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What devices report by themselves: each witnessed (GPI or DEVICE), and button edges published on the
/// `gpi` topic with the index of their record.
pub(super) async fn device_loop(ctx: Ctx, mut reports: mpsc::Receiver<DeviceReport>) {
    while let Some(r) = reports.recv().await {
        let (kind, action, detail) = match &r.event {
            DeviceEvent::Gpi { input, pressed } => {
                let edge = if *pressed { "pressed" } else { "released" };
                (Kind::Gpi, "gpi", format!("input {input} {edge}"))
            }
            DeviceEvent::Hello { board_id, boots } => {
                (Kind::Device, "node.hello", format!("board {board_id:#010x}, boot {boots}"))
            }
            DeviceEvent::Safe { reason } => (Kind::Device, "node.safe", format!("outputs safe: {reason}")),
        };
        let at = ctx.now_ms();
        let entry = Entry {
            wall_ms: at,
            capability: r.capability.clone(),
            action: action.into(),
            detail,
            count: 1,
            ..Entry::default()
        };
        let record = match ctx.witness.append(vec![Append::record(kind, entry)]).await {
            Ok(indices) => indices.first().copied(),
            Err(e) => {
                tracing::warn!(error = %e, capability = %r.capability, "a device event could not be witnessed");
                None
            }
        };
        if let DeviceEvent::Gpi { input, pressed } = r.event {
            let event = messages::Gpi { capability: r.capability.clone(), input, pressed, record, at_ms: at };
            let bytes = ctx.signer.publication(&ctx.topics.gpi, serde_json::to_vec(&event).unwrap_or_default());
            let _ = ctx.client.publish(ctx.topics.gpi.clone(), QoS::AtLeastOnce, false, bytes).await;
            // A press that could not be witnessed fires nothing: its cause would be missing from the log.
            // It runs on its own task, so a slow device never holds up the next event.
            if pressed && record.is_some() {
                let (ctx, node) = (ctx.clone(), r.capability.clone());
                tokio::spawn(async move { super::bindings::pressed(&ctx, &node, input, record).await });
            }
        }
    }
}

/// Another process with this agent's identity: a SECURITY record, and the status (which now shows it).
pub(super) async fn conflict_loop(ctx: Ctx, mut found: mpsc::UnboundedReceiver<crate::identity::Conflict>) {
    while let Some(c) = found.recv().await {
        let entry = Entry {
            wall_ms: ctx.now_ms(),
            action: "identity.conflict".into(),
            code: Some(ErrorCode::IdentityConflict.number()),
            detail: format!("{}; other instance {}", c.how, c.other.as_deref().unwrap_or("unknown")),
            count: 1,
            ..Entry::default()
        };
        if let Err(e) = ctx.witness.append(vec![Append::record(Kind::Security, entry)]).await {
            tracing::warn!(error = %e, "an identity conflict could not be witnessed");
        }
        ctx.status_soon();
    }
}

/// Breaker changes: a BREAKER record each, and the status published again.
pub(super) async fn breaker_loop(ctx: Ctx, mut changes: mpsc::UnboundedReceiver<BreakerEvent>) {
    while let Some(ev) = changes.recv().await {
        let c = &ev.change;
        let wait = c.wait_ms.map(|ms| format!("; probe in {ms} ms")).unwrap_or_default();
        let entry = Entry {
            wall_ms: ctx.now_ms(),
            capability: ev.capability.clone(),
            action: format!("breaker.{}", c.to.name()),
            detail: format!("{} -> {}: {}{wait}", c.from.name(), c.to.name(), c.reason),
            count: 1,
            ..Entry::default()
        };
        if let Err(e) = ctx.witness.append(vec![Append::record(Kind::Breaker, entry)]).await {
            tracing::warn!(error = %e, "a breaker change could not be witnessed");
        }
        ctx.status_soon();
    }
}
