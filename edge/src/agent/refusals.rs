//! Answering a refusal: the signed reply (always for a verified sender, else only while the sampler
//! allows), the dead letter and the REJECTED record as sampled.

use if_protocol::ErrorCode;
use rumqttc::v5::mqttbytes::v5::Publish;

use super::{Ctx, lock};
use crate::ingress::Refused;
use crate::reply::{DeadLetter, Reply};
use crate::witness::record::Entry;
use crate::witness::store::Append;

/// Witnesses REJECTED records in the background: a refusal is already answered and runs nothing.
pub(super) fn witness_rejections(ctx: &Ctx, batch: Vec<Append>) {
    let witness = ctx.witness.clone();
    tokio::spawn(async move {
        if let Err(e) = witness.append(batch).await {
            tracing::warn!(error = %e, "REJECTED records could not be written");
        }
    });
}

pub(super) fn refused_entry(r: &Refused, now_ms: u64) -> Entry {
    let mut entry = r.body.as_ref().map(|b| Entry::of_body(b, now_ms)).unwrap_or_default();
    entry.wall_ms = now_ms;
    entry.code = Some(r.error.code().number());
    entry.detail = r.error.detail().to_string();
    entry.count = 1;
    entry.digest = r.digest;
    entry
}

/// Answers a refusal: the reply (always when a signature vouched for the sender, else only when
/// `one_by_one`) and, when `one_by_one`, the dead letter. Returns the signed reply it published, for
/// copies of the same frame that wait on it.
pub(super) async fn refuse(ctx: &Ctx, p: &Publish, r: &Refused, one_by_one: bool) -> Option<Vec<u8>> {
    let (id, sender, seq) = match &r.body {
        Some(b) => (Some(b.id), Some(b.sender.as_str()), Some(b.seq)),
        None => (None, None, None),
    };
    let route = ctx.route(p, sender).filter(|_| sender.is_some() || one_by_one);
    let mut answered = None;
    if let Some(route) = route {
        let mut reply = Reply::error(&r.error, id, sender, seq);
        // A sequence number refused as taken or too old: the sender may sign again above the newest.
        if let (Some(s), ErrorCode::ReplayDetected | ErrorCode::OutOfOrder) = (sender, r.error.code()) {
            reply.next_seq = lock(&ctx.state).ingress.admission.next_seq(s);
        }
        // Bound to the frame it answers, or to the payload when there was no frame.
        let request = r.digest.unwrap_or_else(|| if_protocol::frame::digest(&p.payload));
        let signed = ctx.signer.reply(&request, reply.to_bytes());
        ctx.publish(&route, signed.clone()).await;
        answered = Some(signed);
    }
    if one_by_one {
        ctx.dead_letter(DeadLetter::new(&r.error, id, sender, &p.payload)).await;
        tracing::debug!(error = %r.error, "refused");
    }
    answered
}
