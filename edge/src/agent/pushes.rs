//! Signed documents pushed on the `policy` topic, read at most [`PUSHES_PER_S`] a second and one at a time,
//! and the device lane a newly installed manifest brings.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use if_protocol::{ErrorCode, IfError};
use rumqttc::v5::mqttbytes::v5::Publish;
use tokio::sync::mpsc;

use super::{Ctx, lock};
use crate::capability::Capability;
use crate::drivers::DriverContext;
use crate::lane::{BreakerEvent, Lane, LaneSpec};
use crate::reply::{DeadLetter, Reply};
use crate::vault::Vault;

/// The reply topic pushed policy documents are answered under: `reply/policy`.
pub(super) const PUSH_SENDER: &str = "policy";

/// Pushed documents read per second (a burst of [`PUSH_BURST`] at once); more are refused unread.
pub(super) const PUSHES_PER_S: f32 = 5.0;

/// Pushed documents read at once.
pub(super) const PUSH_BURST: u32 = 20;

/// Pushed policy documents, one at a time: witness, apply, acknowledge, answer, publish the new status.
/// At most [`PUSHES_PER_S`] a second are read; refusals are sampled like those on `cmd`.
pub(super) async fn policy_loop(ctx: Ctx, mut pushed: mpsc::UnboundedReceiver<Publish>) {
    let mut bucket = crate::lane::bucket::TokenBucket::new(PUSHES_PER_S, PUSH_BURST, ctx.now_ms());
    while let Some(p) = pushed.recv().await {
        let source = format!("pushed on {}", ctx.topics.policy);
        let response = p.properties.as_ref().and_then(|pp| pp.response_topic.as_deref());
        let outcome = match std::str::from_utf8(&p.payload) {
            _ if bucket.take(ctx.now_ms()).is_err() => Err(IfError::format(
                ErrorCode::RateLimitExceeded,
                format_args!("more than {PUSHES_PER_S} pushed documents a second; not read"),
            )),
            _ if response.is_some_and(|t| !ctx.topics.allows_reply(t, Some(PUSH_SENDER))) => Err(IfError::format(
                ErrorCode::ResponseTopicDenied,
                format_args!(
                    "a pushed document is answered under {} only; not offered",
                    ctx.topics.reply_for(PUSH_SENDER)
                ),
            )),
            Ok(text) => crate::policy::push::offer(&ctx.policy, &ctx.witness, text, &source, ctx.now_ms()).await,
            Err(_) => Err(IfError::with(ErrorCode::InvalidEnvelope, "a pushed policy document must be UTF-8 TOML")),
        };
        ctx.ack(&p).await;
        let reply = match &outcome {
            Ok(pushed) => {
                let summary = match pushed {
                    crate::policy::push::Pushed::Unchanged => "unchanged: the agent holds this document".to_string(),
                    crate::policy::push::Pushed::Changed { summary, manifest } => {
                        if let Some(m) = manifest {
                            offer_driver(&ctx, m);
                        }
                        ctx.status_soon();
                        summary.clone()
                    }
                };
                tracing::info!("{summary}");
                Some(Reply::result(&serde_json::json!({ "policy": summary })))
            }
            Err(e) => {
                ctx.health.rejected.fetch_add(1, Ordering::Relaxed);
                // Nothing vouches for who pushed it: past the allowance, only the count remains.
                if ctx.sampled(e.code(), false) {
                    tracing::error!(code = %e.code(), "pushed policy document refused: {}", e.detail());
                    let record = crate::policy::record(Err(e), &source, ctx.now_ms());
                    if let Err(w) = ctx.witness.append(vec![record]).await {
                        tracing::warn!(error = %w, "the refusal of a pushed document could not be witnessed");
                    }
                    ctx.dead_letter(DeadLetter::new(e, None, None, &p.payload)).await;
                    ctx.status_soon();
                    Some(Reply::error(e, None, None, None))
                } else {
                    None
                }
            }
        };
        if let (Some(route), Some(reply)) = (ctx.route(&p, Some(PUSH_SENDER)), reply) {
            let request = if_protocol::frame::digest(&p.payload);
            ctx.publish(&route, ctx.signer.reply(&request, reply.to_bytes())).await;
        }
    }
}

/// The lane of a manifest's device: its driver (with the secrets it lists) behind the manifest's limits.
pub(super) fn device_lane(
    m: &if_protocol::policy::Manifest,
    vault: &Vault,
    drivers: &DriverContext,
    breakers: &mpsc::UnboundedSender<BreakerEvent>,
) -> Result<Arc<Lane>, IfError> {
    let driver = crate::drivers::build(m, vault, drivers).inspect_err(|e| {
        tracing::error!(capability = %m.id, code = %e.code(), "not offered: {}", e.detail());
    })?;
    Ok(Arc::new(Lane::start(LaneSpec::from_manifest(m), driver, breakers.clone())))
}

/// Offers the device of a manifest installed at run time.
pub(super) fn offer_driver(ctx: &Ctx, m: &if_protocol::policy::Manifest) {
    match device_lane(m, &ctx.vault, &ctx.drivers, &ctx.breakers) {
        Ok(lane) => {
            let mut state = lock(&ctx.state);
            state.ingress.registry.add(lane.clone() as Arc<dyn Capability>);
            state.lanes.retain(|l| l.id() != lane.id());
            state.lanes.push(lane);
        }
        Err(e) => lock(&ctx.policy).refused(&format!("{} driver", m.id), &e),
    }
}
