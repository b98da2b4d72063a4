//! Bindings at work (`policy::bindings`): a button that fires a cue, lamps that follow tally.
//!
//! A bound press becomes a command of the binding's talent and goes the way a signed one does after its
//! signature: authorization against the talent's grants now (a revoked talent or a narrowed grant stops
//! the button too), the manifest's hazards, the budget, RECEIVED durable before anything runs, the
//! capability's lane, and EXECUTED or FAILED. A refusal is witnessed (REJECTED) with its code and
//! nothing runs. It is not a network message, so no replay window or reply is involved; its `why` names
//! the binding and the GPI record that caused it.
//!
//! A lamp binding sends the node's `lamp` action through its lane whenever the followed input's tally
//! colour changes (red on program, green on preview). Those are not witnessed one by one: the binding
//! that causes them is (POLICY), and the node's driver re-applies the lamps after any resync. A tally
//! display binding sends its output's `display` action likewise (left-hand lamp red on program,
//! right-hand green on preview, the text with them, and its label), and the output sends every display
//! again on its refresh. A camera binding sends the camera's `tally` action (its lamp on while the
//! input is on program).

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use if_protocol::audience::Audience;
use if_protocol::envelope::{ArgValue, Args, EnvelopeBody, Nonce, ProtocolVersion};
use if_protocol::link::Lamp;
use if_protocol::policy::{Binding, Rule};
use if_protocol::{ErrorCode, IfError};
use sha2::{Digest as _, Sha256};
use uuid::Uuid;

use super::{Ctx, lock};
use crate::budget::Charge;
use crate::capability::Capability;
use crate::drivers::Tally;
use crate::policy::authorize::{Principal, authorize};
use crate::witness::record::{Entry, Kind};
use crate::witness::store::{Append, Pending};
use std::sync::Arc;

/// How long a bound command stays valid (it runs at once or not at all).
const TTL_S: u32 = 10;

/// Runs every binding of input `input` on `node`, pressed; `record` is the GPI record of the press.
pub(super) async fn pressed(ctx: &Ctx, node: &str, input: u8, record: Option<u64>) {
    let bound = lock(&ctx.policy).presses(node, input);
    for b in bound {
        run(ctx, &b, record).await;
    }
}

fn body_of(ctx: &Ctx, b: &Binding, record: Option<u64>, now_ms: u64) -> Result<EnvelopeBody, IfError> {
    let Rule::Press { input, talent, capability, action, args, scope, hazards } = &b.rule else {
        return Err(IfError::with(ErrorCode::SystemError, "not a button binding"));
    };
    let cause = record.map_or_else(String::new, |r| format!(" (GPI record {r})"));
    let why = format!("binding {}: input {input} pressed on {}{cause}", b.name, b.node);
    Ok(EnvelopeBody {
        version: ProtocolVersion::CURRENT,
        id: Uuid::new_v4(),
        audience: Audience::agent(&ctx.topics.site, &ctx.topics.agent)?,
        sender: talent.clone(),
        seq: 0,
        nonce: Nonce(rand::random()),
        issued_at_ms: now_ms,
        ttl_s: TTL_S,
        scope: scope.clone(),
        hazards: *hazards,
        capability: capability.clone(),
        action: action.clone(),
        args: args.clone(),
        why: why.as_str().try_into().map_err(|_| IfError::with(ErrorCode::InvalidEnvelope, "why is too long"))?,
        trace: Uuid::new_v4(),
    })
}

/// The checks a signed command faces after its signature, for the binding's talent now.
fn admit(ctx: &Ctx, body: &EnvelopeBody, now_ms: u64) -> Result<(Arc<dyn Capability>, Option<Charge>), IfError> {
    let mut state = lock(&ctx.state);
    let cost = {
        let policy = lock(&ctx.policy);
        let talent = policy.talent(&body.sender).ok_or_else(|| {
            IfError::format(ErrorCode::TalentNotFound, format_args!("talent {} is not known", body.sender))
        })?;
        authorize(&policy, Principal::Talent(talent.status), body, now_ms / 1000)?;
        policy.manifest(&body.capability).and_then(|m| m.action(&body.action)).map_or(0, |a| a.cost)
    };
    let capability = state.ingress.registry.resolve(body)?;
    let charge = state.ingress.budgets.charge(&body.capability, u64::from(cost), now_ms / 1000)?;
    Ok((capability, charge))
}

async fn run(ctx: &Ctx, b: &Binding, record: Option<u64>) {
    let now_ms = ctx.now_ms();
    let body = match body_of(ctx, b, record, now_ms) {
        Ok(body) => body,
        Err(e) => return tracing::warn!(binding = %b.name, error = %e, "a bound press could not be made"),
    };
    let (capability, charge) = match admit(ctx, &body, now_ms) {
        Ok(admitted) => admitted,
        Err(e) => return refused(ctx, b, &body, &e, now_ms).await,
    };
    let digest: [u8; 32] = Sha256::digest(postcard::to_allocvec(&body).unwrap_or_default()).into();
    let mut entry = Entry::of_body(&body, now_ms);
    entry.digest = Some(digest);
    let mut item = Append::record(Kind::Received, entry.clone());
    if let Some(c) = &charge {
        item.entry.detail = c.describe();
        item.budget = Some((c.provider.clone(), c.after));
    }
    let sender = body.sender.to_string();
    item.pending = Some(Pending { sender, seq: 0, digest, entry, reply_topic: None, correlation: None });
    let received = match ctx.witness.append(vec![item]).await {
        Ok(indices) => indices.first().copied().unwrap_or_default(),
        Err(e) => {
            if let Some(c) = &charge {
                lock(&ctx.state).ingress.budgets.refund(c);
            }
            return tracing::error!(binding = %b.name, error = %e, "a bound press was not run: nothing was executed");
        }
    };
    let outcome = super::completion::compact(capability.execute(&body).await);
    if outcome.is_ok() {
        ctx.health.executed.fetch_add(1, Ordering::Relaxed);
    }
    let item = super::completion::outcome(Entry::of_body(&body, 0), &outcome, digest, received, ctx.now_ms());
    if let Err(e) = ctx.witness.append(vec![item]).await {
        tracing::error!(binding = %b.name, error = %e, "the outcome of a bound press could not be witnessed");
    }
    match outcome {
        Ok(_) => tracing::info!(binding = %b.name, "{} on {} ran", body.action, body.capability),
        Err(e) => tracing::warn!(binding = %b.name, error = %e, "{} on {} failed", body.action, body.capability),
    }
}

async fn refused(ctx: &Ctx, b: &Binding, body: &EnvelopeBody, e: &IfError, now_ms: u64) {
    tracing::warn!(binding = %b.name, error = %e, "a bound press was refused; nothing ran");
    let mut entry = Entry::of_body(body, now_ms);
    entry.code = Some(e.code().number());
    entry.detail = format!("binding {}: {}", b.name, e.detail());
    if let Err(w) = ctx.witness.append(vec![Append::record(Kind::Rejected, entry)]).await {
        tracing::warn!(error = %w, "a refused bound press could not be witnessed");
    }
}

/// The colour a lamp following input `input` (from 1) shows for vMix tally digits `digits`.
pub(super) fn color(digits: &str, input: u32) -> Lamp {
    match digits.chars().nth(input.saturating_sub(1) as usize) {
        _ if input == 0 => Lamp::Off,
        Some('1') => Lamp::Red,
        Some('2') => Lamp::Green,
        _ => Lamp::Off,
    }
}

/// What a tally display shows: (left, text, right) colours and its text.
type Umd = (&'static str, &'static str, &'static str, String);

/// The arguments each follower's device last took, by (device, action, lamp or display), so that only
/// changes are sent.
pub(super) type Shown = HashMap<(String, &'static str, u16), Args>;

/// What a tally display following input `input` shows for tally `t`: the binding's label, else the
/// switcher's title of the input, else `Input N`.
pub(super) fn umd(t: &Tally, input: u32, label: &str) -> Umd {
    let text = match (label, t.labels.get(&input)) {
        ("", Some(title)) if !title.is_empty() => title.clone(),
        ("", _) => format!("Input {input}"),
        (label, _) => label.to_string(),
    };
    match color(&t.tally, input) {
        Lamp::Red => ("red", "red", "off", text),
        Lamp::Green => ("off", "green", "green", text),
        _ => ("off", "off", "off", text),
    }
}

fn text_arg(v: &str) -> Result<ArgValue, IfError> {
    v.try_into().map(ArgValue::Text).map_err(|_| IfError::with(ErrorCode::InvalidEnvelope, "a label that long"))
}

/// The command a following binding sends for tally `t`: its action, its lamp or display (0 for a
/// camera), and its arguments; `None` for a binding that does not follow tally.
fn command_for(rule: &Rule, t: &Tally) -> Result<Option<(&'static str, u16, Args)>, IfError> {
    let mut args = Args::new();
    let (action, index) = match rule {
        Rule::Tally { lamp, input, .. } => {
            args.insert("lamp", ArgValue::Int(i64::from(*lamp)))?;
            args.insert("color", text_arg(color(&t.tally, *input).name())?)?;
            ("lamp", u16::from(*lamp))
        }
        Rule::Camera { input, .. } => {
            args.insert("on", ArgValue::Bool(color(&t.tally, *input) == Lamp::Red))?;
            ("tally", 0)
        }
        Rule::Umd { display, input, label, .. } => {
            let (left, text_tally, right, text) = umd(t, *input, label);
            args.insert("index", ArgValue::Int(i64::from(*display)))?;
            args.insert("left", text_arg(left)?)?;
            args.insert("text_tally", text_arg(text_tally)?)?;
            args.insert("right", text_arg(right)?)?;
            args.insert("text", text_arg(&text)?)?;
            ("display", *display)
        }
        Rule::Press { .. } => return Ok(None),
    };
    Ok(Some((action, index, args)))
}

/// Sets every lamp, camera lamp and tally display that follows `t`'s switcher, where it changed.
pub(super) async fn follow(ctx: &Ctx, t: &Tally, shown: &mut Shown) {
    let following = lock(&ctx.policy).following(&t.capability);
    for b in following {
        let (action, index, args) = match command_for(&b.rule, t) {
            Ok(Some(c)) => c,
            Ok(None) => continue,
            Err(e) => {
                tracing::warn!(binding = %b.name, error = %e, "a binding could not follow tally");
                continue;
            }
        };
        let key = (b.node.to_string(), action, index);
        if shown.get(&key) == Some(&args) {
            continue;
        }
        match send(ctx, &b.node, action, args.clone(), "a binding follows tally").await {
            Ok(()) => {
                shown.insert(key, args);
            }
            Err(e) => tracing::warn!(binding = %b.name, error = %e, "a binding could not follow tally"),
        }
    }
}

/// `action` with `args` on `capability`, through its lane, as the agent's own tally follower.
async fn send(ctx: &Ctx, capability: &str, action: &str, args: Args, why: &str) -> Result<(), IfError> {
    let too_long = |_| IfError::new(ErrorCode::InvalidEnvelope);
    let body = EnvelopeBody {
        version: ProtocolVersion::CURRENT,
        id: Uuid::new_v4(),
        audience: Audience::agent(&ctx.topics.site, &ctx.topics.agent)?,
        sender: "tally".try_into().map_err(too_long)?,
        seq: 0,
        nonce: Nonce(rand::random()),
        issued_at_ms: ctx.now_ms(),
        ttl_s: TTL_S,
        scope: "tally".try_into().map_err(too_long)?,
        hazards: if_protocol::envelope::Hazards::NONE,
        capability: capability.try_into().map_err(too_long)?,
        action: action.try_into().map_err(too_long)?,
        args,
        why: why.try_into().map_err(too_long)?,
        trace: Uuid::nil(),
    };
    let lane = lock(&ctx.state).ingress.registry.resolve(&body)?;
    lane.execute(&body).await.map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lamp_is_red_on_program_green_on_preview_and_off_otherwise() {
        assert_eq!(color("0120", 2), Lamp::Red);
        assert_eq!(color("0120", 3), Lamp::Green);
        assert_eq!(color("0120", 1), Lamp::Off);
        assert_eq!(color("0120", 9), Lamp::Off, "an input the switcher does not have");
        assert_eq!(color("1", 0), Lamp::Off, "inputs count from 1");
    }

    #[test]
    fn a_display_is_red_on_the_left_on_program_green_on_the_right_on_preview_and_reads_its_label() {
        let t = Tally {
            capability: "if://capability/vmix".into(),
            tally: "0120".into(),
            labels: [(1, "Host".to_string()), (3, String::new())].into_iter().collect(),
            activators: Default::default(),
        };
        assert_eq!(umd(&t, 2, "CAM 2"), ("red", "red", "off", "CAM 2".to_string()));
        assert_eq!(umd(&t, 3, ""), ("off", "green", "green", "Input 3".to_string()));
        assert_eq!(umd(&t, 1, ""), ("off", "off", "off", "Host".to_string()), "the switcher's title");
        assert_eq!(umd(&t, 1, "CAM 1"), ("off", "off", "off", "CAM 1".to_string()), "the binding's label first");
        let vmix: if_protocol::envelope::CapabilityId = "if://capability/vmix".try_into().expect("short");
        let camera = command_for(&Rule::Camera { source: vmix.clone(), input: 2 }, &t).expect("args");
        assert_eq!(
            camera.map(|(a, i, args)| (a, i, args.get("on").cloned())),
            Some(("tally", 0, Some(ArgValue::Bool(true))))
        );
        let lamp = command_for(&Rule::Tally { lamp: 4, source: vmix, input: 3 }, &t).expect("args");
        assert_eq!(
            lamp.map(|(a, i, args)| (a, i, args.get("color").cloned())),
            Some(("lamp", 4, Some(text_arg("green").expect("short"))))
        );
    }
}
