//! The ingress loop: bursts of publishes in, decided together, their RECEIVED records written in one
//! group commit, acknowledged, and each accepted command started once on its own task. Refusals are
//! answered at once; a policy change that forgets a sender's replay window is committed here, between
//! two bursts, so no RECEIVED written after it carries the window it removed.
//!
//! Two bursts overlap: burst N+1 is verified and admitted while burst N's RECEIVED commit is on the
//! disk, and goes to the writer only once N's commit has returned. If N's commit fails, N+1 is rolled
//! back with it (N+1 first, then N, the reverse of admission) and both are refused: nothing admitted
//! after a lost commit runs, and admission order is the order of the log. N+1's refusals were decided
//! against N's admissions and stand if N's commit fails: a sender refused a sequence number as taken
//! may sign again above the newest, as its reply says.
//!
//! At most [`MAX_RUNNING`] accepted commands are inside the agent at once, from their admission until
//! their reply is out: a burst is taken only when there is room for a whole one. Past that the agent
//! acknowledges nothing more, and the broker holds the rest (it sends at most `receive_maximum`
//! unacknowledged), so a flood costs the agent a bounded amount of memory, not one per command queued.

use std::sync::atomic::Ordering;
use std::time::Duration;

use if_protocol::{ErrorCode, IfError};
use rumqttc::v5::mqttbytes::v5::Publish;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

use super::refusals::{refuse, refused_entry, witness_rejections};
use super::{Ctx, Done, MAX_BURST, Route, WAITING_ROUTES, lock};
use crate::builtin::policy::Forget;
use crate::ingress::{Accepted, Decision, Inbound, Refused};
use crate::reply::DeadLetter;
use crate::stages::{Stage, Stages};
use crate::witness::record::{Entry, Kind};
use crate::witness::store::{Append, Pending};
use crate::witness::writer::Commit;

/// What the ingress loop reads from and hands on to.
pub(super) struct Inputs {
    /// Policy changes that forget a sender's window, committed here between bursts.
    pub(super) forgets: mpsc::UnboundedReceiver<Forget>,
    /// Pushed documents go on to the policy loop.
    pub(super) policy: mpsc::UnboundedSender<Publish>,
    /// Commands that ran go on to the completion loop.
    pub(super) done: mpsc::UnboundedSender<Done>,
    /// Cancelled at shutdown: the loop then takes nothing more, settles the commit in progress, and ends.
    pub(super) stop: tokio_util::sync::CancellationToken,
}

/// Most accepted commands inside the agent at once, from admission until their reply is out.
pub(super) const MAX_RUNNING: usize = 1024;

/// The room for [`MAX_RUNNING`] commands.
pub(super) fn room() -> std::sync::Arc<Semaphore> {
    std::sync::Arc::new(Semaphore::new(MAX_RUNNING))
}

/// Accepted commands whose RECEIVED records are on their way to the disk, with a permit of the room
/// for each of them.
struct Admitted {
    commands: Vec<(Publish, Box<Accepted>)>,
    room: Option<OwnedSemaphorePermit>,
}

impl Admitted {
    fn none() -> Admitted {
        Admitted { commands: Vec::new(), room: None }
    }

    fn is_empty(&self) -> bool {
        self.commands.is_empty()
    }
}

/// A burst's RECEIVED commit in progress, with the commands that wait on it.
struct Committing {
    accepted: Admitted,
    commit: Commit,
}

/// The next publish, once there is room for a whole burst behind it.
async fn next_with_room(
    inbound: &mut mpsc::UnboundedReceiver<Publish>,
    room: &std::sync::Arc<Semaphore>,
) -> Option<(Publish, OwnedSemaphorePermit)> {
    let permit = room.clone().acquire_many_owned(MAX_BURST as u32).await.ok()?;
    inbound.recv().await.map(|p| (p, permit))
}

/// Resolves when the commit in progress returns; never while there is none.
async fn committed(committing: &mut Option<Committing>) -> Result<Vec<u64>, IfError> {
    match committing {
        Some(c) => (&mut c.commit).await,
        None => std::future::pending().await,
    }
}

/// Waits for the commit in progress, if any, and settles it; hands back `behind` unless it failed.
async fn finish(
    ctx: &Ctx,
    committing: &mut Option<Committing>,
    behind: Admitted,
    done: &mpsc::UnboundedSender<Done>,
) -> Admitted {
    match committing.take() {
        Some(c) => {
            let result = c.commit.await;
            settle(ctx, c.accepted, result, behind, done).await
        }
        None => behind,
    }
}

/// Takes commands and pushed documents from `inbound` until it closes (the connection driver ended) or
/// `stop` is cancelled; either way the commit in progress is settled before it returns. `inbound` stays
/// the caller's, so the connection outlives the loop.
pub(super) async fn ingress_loop(ctx: Ctx, inbound: &mut mpsc::UnboundedReceiver<Publish>, inputs: Inputs) {
    let Inputs { mut forgets, policy, done, stop } = inputs;
    let mut summary = tokio::time::interval(Duration::from_secs(1));
    let mut committing: Option<Committing> = None;
    loop {
        let first = tokio::select! {
            // In this order: a returned commit is acted on before anything new is taken.
            biased;
            result = committed(&mut committing) => {
                if let Some(c) = committing.take() {
                    settle(&ctx, c.accepted, result, Admitted::none(), &done).await;
                }
                continue;
            }
            () = stop.cancelled() => break,
            Some(f) = forgets.recv() => {
                finish(&ctx, &mut committing, Admitted::none(), &done).await;
                forget(&ctx, f).await;
                continue;
            }
            _ = summary.tick() => {
                let counted = lock(&ctx.sampler).summary(ctx.now_ms());
                if let Some(entry) = counted {
                    ctx.dead_letter(DeadLetter::summary(&entry)).await;
                    witness_rejections(&ctx, vec![Append::record(Kind::Rejected, entry)]);
                }
                continue;
            }
            p = next_with_room(inbound, &ctx.running) => match p {
                Some(p) => p,
                None => break,
            },
        };
        let (first, mut room) = first;
        let mut burst = Vec::new();
        let mut next = Some(first);
        while let Some(p) = next.take() {
            if p.topic.as_ref() == ctx.topics.policy.as_bytes() {
                let _ = policy.send(p);
            } else {
                burst.push(p);
            }
            if burst.len() < MAX_BURST {
                next = inbound.try_recv().ok();
            }
        }
        if burst.is_empty() {
            continue;
        }
        let taken = ctx.stages.is_some().then(Stages::now);
        let now_ms = ctx.now_ms();
        // Decided while the previous burst's commit is on the disk; written only after it returned.
        let commands = handle_burst(&ctx, burst, now_ms).await;
        // The room of the refused goes back at once.
        let accepted = Admitted { room: room.split(commands.len()), commands };
        drop(room);
        let decided = ctx.stages.is_some().then(Stages::now);
        let accepted = finish(&ctx, &mut committing, accepted, &done).await;
        if !accepted.is_empty() {
            if let Some(stages) = &ctx.stages {
                let ids = || accepted.commands.iter().map(|(_, a)| a.body.id);
                stages.mark(ids(), Stage::Taken, taken.unwrap_or_default());
                stages.mark(ids(), Stage::Decided, decided.unwrap_or_default());
                stages.mark(ids(), Stage::Submitted, Stages::now());
            }
            let commit = ctx.witness.submit(received_records(&ctx, &accepted, now_ms)).await;
            committing = Some(Committing { accepted, commit });
        }
    }
    finish(&ctx, &mut committing, Admitted::none(), &done).await;
}

/// Decides a burst: answers its refusals, duplicates and copies at once, and returns what was admitted.
async fn handle_burst(ctx: &Ctx, burst: Vec<Publish>, now_ms: u64) -> Vec<(Publish, Box<Accepted>)> {
    let decisions = {
        let inbound: Vec<Inbound<'_>> = burst
            .iter()
            .map(|p| Inbound {
                payload: p.payload.as_ref(),
                response_topic: p.properties.as_ref().and_then(|pp| pp.response_topic.as_deref()),
            })
            .collect();
        let mut state = lock(&ctx.state);
        let decisions = state.ingress.decide(&inbound, now_ms);
        // Register copies of running envelopes under the same lock the completion loop settles under.
        for (p, d) in burst.iter().zip(&decisions) {
            if let Decision::InProgress { sender, seq } = d
                && let Some(route) = ctx.route(p, Some(sender))
            {
                // Copies of one running command are answered at most WAITING_ROUTES times, each route once.
                let routes = state.waiting.entry((sender.clone(), *seq)).or_default();
                let known = routes.iter().any(|r| r.topic == route.topic && r.correlation == route.correlation);
                if !known && routes.len() < WAITING_ROUTES {
                    routes.push(route);
                }
            }
        }
        decisions
    };
    let mut accepted = Vec::new();
    let mut rejected = Vec::new();
    for (p, d) in burst.into_iter().zip(decisions) {
        match d {
            Decision::Accept(a) => accepted.push((p, a)),
            Decision::Reject(r) => {
                let always = r.error.code() == ErrorCode::ReplayDetected && r.body.is_some();
                let one_by_one = ctx.sampled(r.error.code(), always);
                refuse(ctx, &p, &r, one_by_one).await;
                ctx.ack(&p).await;
                ctx.health.rejected.fetch_add(1, Ordering::Relaxed);
                if one_by_one {
                    rejected.push(Append::record(Kind::Rejected, refused_entry(&r, now_ms)));
                }
            }
            Decision::Duplicate { reply, sender, id } => {
                if let Some(route) = ctx.route(&p, Some(&sender)) {
                    ctx.publish(&route, reply).await;
                }
                if ctx.sampled(ErrorCode::Duplicate, false) {
                    let e =
                        IfError::with(ErrorCode::Duplicate, "redelivery answered with the original reply; nothing ran");
                    ctx.dead_letter(DeadLetter::new(&e, Some(id), Some(&sender), &p.payload)).await;
                }
                ctx.ack(&p).await;
            }
            Decision::InProgress { .. } => ctx.ack(&p).await,
        }
    }
    if !rejected.is_empty() {
        witness_rejections(ctx, rejected);
    }
    accepted
}

/// Commits a change that forgets a sender's window, then applies it: between bursts, so no RECEIVED
/// written later carries the window it removed.
async fn forget(ctx: &Ctx, f: Forget) {
    let mut change = f.change;
    let newest = change.forget.as_deref().and_then(|s| lock(&ctx.state).ingress.admission.newest_issued(s));
    let raised = match newest {
        Some(ms) => change.raise_floor(ms.saturating_add(1)),
        None => Ok(()),
    };
    let item = crate::builtin::policy::command_record(&change, &f.body, f.now_ms);
    let result = match raised {
        Ok(()) => ctx.witness.append(vec![item]).await.map(|_| change.summary.clone()),
        Err(e) => Err(e),
    };
    if result.is_ok() {
        let mut state = lock(&ctx.state);
        if let Some(sender) = &change.forget {
            state.ingress.admission.forget(sender);
        }
        lock(&ctx.policy).apply(change);
    }
    let _ = f.done.send(result);
}

/// The RECEIVED (or FALSIFY) record of every admitted envelope, with its replay window, budget charge
/// and pending reply route, for one commit.
fn received_records(ctx: &Ctx, accepted: &Admitted, now_ms: u64) -> Vec<Append> {
    accepted
        .commands
        .iter()
        .map(|(p, a)| {
            let mut entry = Entry::of_body(&a.body, now_ms);
            entry.digest = Some(a.digest);
            let route = ctx.route(p, Some(&a.body.sender));
            let kind = if a.falsify { Kind::Falsify } else { Kind::Received };
            let mut item = Append::record(kind, entry.clone());
            if let Some(c) = &a.charge {
                item.entry.detail = c.describe();
                item.budget = Some((c.provider.clone(), c.after));
            }
            item.replay = Some((a.ticket.sender.clone(), a.ticket.window.clone()));
            item.pending = Some(Pending {
                sender: a.ticket.sender.clone(),
                seq: a.ticket.seq,
                digest: a.digest,
                entry,
                reply_topic: route.as_ref().map(|r| r.topic.clone()),
                correlation: route.and_then(|r| r.correlation).map(|c| c.to_vec()),
            });
            item
        })
        .collect()
}

/// Acts on a returned commit: acknowledges and starts its commands, and hands back `behind` (admitted
/// after them, not yet written). When the commit failed, `behind` and then the commands are rolled
/// back and refused, and nothing is handed back.
async fn settle(
    ctx: &Ctx,
    accepted: Admitted,
    result: Result<Vec<u64>, IfError>,
    behind: Admitted,
    done: &mpsc::UnboundedSender<Done>,
) -> Admitted {
    match result {
        Ok(indices) => {
            if let Some(stages) = &ctx.stages {
                stages.mark(accepted.commands.iter().map(|(_, a)| a.body.id), Stage::Durable, Stages::now());
            }
            let Admitted { commands, mut room } = accepted;
            for ((p, a), received) in commands.into_iter().zip(indices) {
                ctx.ack(&p).await;
                let route = ctx.route(&p, Some(&a.body.sender));
                if let Some(stages) = &ctx.stages {
                    stages.mark([a.body.id], Stage::Started, Stages::now());
                }
                let slot = room.as_mut().and_then(|r| r.split(1));
                start(ctx, *a, received, route, slot, done.clone());
            }
            behind
        }
        Err(e) => {
            let code = if e.code() == ErrorCode::StorageFull { e.code() } else { ErrorCode::WitnessUnavailable };
            let e = IfError::format(code, format_args!("nothing was executed: {}", e.detail()));
            // Undone in the reverse of admission: the later burst first.
            let refused: Vec<_> = accepted.commands.into_iter().chain(behind.commands).collect();
            let copies: Vec<_> = {
                let mut state = lock(&ctx.state);
                refused
                    .iter()
                    .rev()
                    .map(|(_, a)| {
                        state.ingress.admission.rollback(&a.ticket);
                        if let Some(c) = &a.charge {
                            state.ingress.budgets.refund(c);
                        }
                        state.waiting.remove(&(a.ticket.sender.clone(), a.ticket.seq)).unwrap_or_default()
                    })
                    .collect()
            };
            for ((p, a), copies) in refused.into_iter().zip(copies.into_iter().rev()) {
                let refused = Refused { error: e.clone(), body: Some(a.body), digest: Some(a.digest) };
                let one_by_one = ctx.sampled(e.code(), false);
                let reply = refuse(ctx, &p, &refused, one_by_one).await;
                ctx.ack(&p).await;
                // Copies of a refused command that were waiting on it get the same answer.
                if let Some(reply) = reply {
                    for route in copies {
                        ctx.publish(&route, reply.clone()).await;
                    }
                }
            }
            Admitted::none()
        }
    }
}

/// Hands one accepted command to its capability now (so a device gets commands in the order they were
/// admitted), and awaits its outcome on a task of its own.
fn start(
    ctx: &Ctx,
    a: Accepted,
    received: u64,
    route: Option<Route>,
    slot: Option<OwnedSemaphorePermit>,
    done: mpsc::UnboundedSender<Done>,
) {
    let clock = ctx.clock.clone();
    let fallback = Route { topic: ctx.topics.reply_for(&a.body.sender), correlation: None };
    let (id, seq, digest) = (a.body.id, a.body.seq, a.digest);
    let entry = Entry::of_body(&a.body, 0);
    let running = a.capability.take(a.body);
    let stages = ctx.stages.clone();
    tokio::spawn(async move {
        let outcome = running.await;
        if let Some(stages) = &stages {
            stages.mark([id], Stage::Ran, Stages::now());
        }
        let outcome = super::completion::compact(outcome);
        let now_ms = lock(&clock).now_ms();
        let route = route.unwrap_or(fallback);
        let _ = done.send(Done { id, seq, entry, digest, received, route, outcome, now_ms, slot });
    });
}
