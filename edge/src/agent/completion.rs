//! The completion loop: each command's outcome witnessed (EXECUTED or FAILED, in groups, with the
//! reply cached for redeliveries), the sender's admission settled, then the signed reply published to
//! the sender and to every waiting copy.

use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::mpsc;

use super::{Ctx, Done, lock};
use crate::reply::{DeadLetter, Reply};
use crate::stages::{Stage, Stages};
use crate::witness::record::{Entry, Kind};
use crate::witness::store::{Append, CachedReply, ReplyUpdate};

/// The completion loop: witness outcomes in groups, settle, then reply.
///
/// An outcome is a fact: the command ran. If its record cannot be written, the sender is still told
/// what happened, and the record is kept and written with the next group (or on the retry tick) once the
/// log can be written again; until then its RECEIVED stays open.
pub(super) async fn complete(ctx: Ctx, mut done: mpsc::UnboundedReceiver<Done>) {
    let mut unwritten: Vec<Append> = Vec::new();
    let mut retry = tokio::time::interval(Duration::from_millis(500));
    loop {
        let first = tokio::select! {
            d = done.recv() => d,
            _ = retry.tick(), if !unwritten.is_empty() => {
                write_outcomes(&ctx, &mut unwritten, Vec::new()).await;
                continue;
            }
        };
        let Some(first) = first else { break };
        let mut group = vec![first];
        while let Ok(d) = done.try_recv() {
            group.push(d);
        }
        let replies: Vec<Vec<u8>> =
            group.iter().map(|d| ctx.signer.reply(&d.digest, reply_for(d).to_bytes())).collect();
        let keep: Vec<(u64, bool)> = {
            let state = lock(&ctx.state);
            let a = &state.ingress.admission;
            group.iter().map(|d| (a.keep_from(&d.entry.sender), a.caches(&d.entry.sender, d.seq))).collect()
        };
        let outcomes = || -> Vec<Append> {
            group.iter().zip(&replies).zip(&keep).map(|((d, r), keep)| outcome_append(d, r, *keep)).collect()
        };
        if !write_outcomes(&ctx, &mut unwritten, outcomes()).await {
            // Made again rather than copied before every write: a write that fails is rare.
            unwritten.extend(outcomes());
        }
        if let Some(stages) = &ctx.stages {
            stages.mark(group.iter().map(|d| d.id), Stage::Witnessed, Stages::now());
        }
        let executed = group.iter().filter(|d| d.outcome.is_ok()).count();
        ctx.health.executed.fetch_add(executed as u64, Ordering::Relaxed);
        ctx.health.log_size.store(ctx.witness.stats().size.load(Ordering::Relaxed), Ordering::Relaxed);
        // A talent or grant change shows on the status topic at once, like a pushed document.
        let policy_changed =
            group.iter().any(|d| d.outcome.is_ok() && d.entry.capability == crate::policy::commands::POLICY_CAPABILITY);
        for (d, reply) in group.into_iter().zip(replies) {
            let id = d.id;
            answer(&ctx, d, reply).await;
            if let Some(stages) = &ctx.stages {
                stages.mark([id], Stage::Replied, Stages::now());
            }
        }
        if policy_changed {
            ctx.status_soon();
        }
    }
    if !unwritten.is_empty() {
        write_outcomes(&ctx, &mut unwritten, Vec::new()).await;
    }
}

/// Writes the outcomes still owed, then `batch`, in one commit; false when it failed, and then the owed
/// ones are kept for the next try (`batch` is the caller's to keep).
pub(super) async fn write_outcomes(ctx: &Ctx, unwritten: &mut Vec<Append>, batch: Vec<Append>) -> bool {
    let owed = unwritten.len();
    let mut all = unwritten.clone();
    all.extend(batch);
    match ctx.witness.append(all).await {
        Ok(_) => {
            unwritten.clear();
            true
        }
        Err(e) => {
            tracing::error!(error = %e, owed, "outcome records could not be written; retrying");
            false
        }
    }
}

/// Settles the admission state and publishes the reply (to the sender and any waiting copies).
pub(super) async fn answer(ctx: &Ctx, d: Done, bytes: Vec<u8>) {
    let waiting = {
        let mut state = lock(&ctx.state);
        let cached = CachedReply { digest: d.digest, reply: bytes.clone() };
        state.ingress.admission.settle(&d.entry.sender, d.seq, cached);
        state.waiting.remove(&(d.entry.sender.clone(), d.seq)).unwrap_or_default()
    };
    ctx.publish(&d.route, bytes.clone()).await;
    for route in waiting {
        ctx.publish(&route, bytes.clone()).await;
    }
    if let Some(err) = d.outcome.as_ref().err() {
        ctx.dead_letter(DeadLetter::new(err, Some(d.id), Some(&d.entry.sender), &[])).await;
    }
    // Answered: its room goes back for the next burst.
    drop(d.slot);
}

pub(super) fn reply_for(d: &Done) -> Reply {
    let mut r = match &d.outcome {
        Ok(v) => Reply::ok(d.id, &d.entry.sender, d.seq, v.clone()),
        Err(e) => Reply::error(e, Some(d.id), Some(&d.entry.sender), Some(d.seq)),
    };
    r.witness = Some(d.received);
    r
}

/// The outcome record of `d`, caching its reply (dropping the sender's below `keep_from`) when `cache`.
pub(super) fn outcome_append(d: &Done, reply: &[u8], (keep_from, cache): (u64, bool)) -> Append {
    let mut item = outcome(d.entry.clone(), &d.outcome, d.digest, d.received, d.now_ms);
    item.reply = cache.then(|| ReplyUpdate {
        sender: d.entry.sender.clone(),
        seq: d.seq,
        cached: CachedReply { digest: d.digest, reply: reply.to_vec() },
        keep_from,
    });
    item
}

/// A capability's answer, redacted, as the compact JSON text its reply and its record carry: encoded
/// once, and kilobytes smaller than the value's tree while it waits for its outcome record (a ping's
/// answer holds the whole health report).
pub(super) fn compact(
    outcome: Result<serde_json::Value, if_protocol::IfError>,
) -> Result<Box<serde_json::value::RawValue>, if_protocol::IfError> {
    let mut v = outcome?;
    crate::redact::redact_json(&mut v);
    serde_json::value::to_raw_value(&v).map_err(|e| {
        if_protocol::IfError::format(if_protocol::ErrorCode::SystemError, format_args!("encoding an answer: {e}"))
    })
}

/// The EXECUTED or FAILED record of the command `entry` describes ([`Entry::of_body`]), closing
/// RECEIVED record `received`.
pub(super) fn outcome(
    mut entry: Entry,
    outcome: &Result<Box<serde_json::value::RawValue>, if_protocol::IfError>,
    digest: [u8; 32],
    received: u64,
    now_ms: u64,
) -> Append {
    entry.wall_ms = now_ms;
    entry.digest = Some(digest);
    let kind = match outcome {
        Ok(v) => {
            entry.detail = truncate(v.get(), 512);
            Kind::Executed
        }
        Err(e) => {
            entry.code = Some(e.code().number());
            entry.detail = e.detail().to_string();
            Kind::Failed
        }
    };
    let mut item = Append::record(kind, entry);
    item.settles = Some(received);
    item
}

pub(super) fn truncate(s: &str, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}
