//! Ingress: from raw MQTT payloads to a decision per payload, with no I/O.
//!
//! A burst of payloads goes through the first half of the life of a command: size cap and layout,
//! signature (one batch equation for the burst, one-by-one only when it fails), canonical decoding, the
//! audience (an envelope for another agent stops here, before it touches any state), the binding of key
//! to sender, the response topic (only under the sender's own reply topic), admission, and
//! authorization. The result is a [`Decision`] per payload, in
//! order. Writing the RECEIVED records, acknowledging and executing happen in the agent, which undoes the
//! admission of the accepted ones if the witness cannot be written.
//!
//! A payload is the binary frame, or (starting with `{`) its JSON view; both name the same signed bytes.

use std::sync::{Arc, Mutex, PoisonError};

use ed25519_dalek::VerifyingKey;
use if_protocol::envelope::EnvelopeBody;
use if_protocol::frame::{self, FrameBytes, MAX_FRAME_LEN, SignedFrame};
use if_protocol::{ErrorCode, IfError, batch, json};
use uuid::Uuid;

use crate::admit::{Admission, Admitted, Ticket};
use crate::budget::{Budgets, Charge};
use crate::capability::{Capability, Registry};
use crate::policy::Policy;
use crate::policy::authorize::{self, Principal};

/// Largest JSON view accepted (a JSON view is larger than its frame).
pub const MAX_JSON_LEN: usize = 4 * MAX_FRAME_LEN;

/// One publish as ingress sees it.
#[derive(Debug, Clone, Copy)]
pub struct Inbound<'a> {
    /// The payload.
    pub payload: &'a [u8],
    /// The MQTT 5 response topic it names, if any.
    pub response_topic: Option<&'a str>,
}

/// What to do with one payload.
#[derive(Debug)]
pub enum Decision {
    /// Refuse with this error; nothing runs.
    Reject(Box<Refused>),
    /// A redelivery of an answered envelope: publish this reply again; nothing runs.
    Duplicate {
        /// The cached reply.
        reply: Vec<u8>,
        /// Who sent it.
        sender: String,
        /// The envelope id.
        id: Uuid,
    },
    /// A copy of an envelope that was taken and is still running: answer it with the reply when it comes.
    InProgress {
        /// Who sent it.
        sender: String,
        /// Its sequence number.
        seq: u64,
    },
    /// Verified, admitted and authorized: witness, then run once.
    Accept(Box<Accepted>),
}

/// A refusal, with what is known of the envelope (only from verified bytes).
#[derive(Debug)]
pub struct Refused {
    /// Why.
    pub error: IfError,
    /// The envelope, if its signature verified.
    pub body: Option<EnvelopeBody>,
    /// SHA-256 of the frame, when there was a frame.
    pub digest: Option<[u8; 32]>,
}

/// An envelope ready for the witness.
#[derive(Debug)]
pub struct Accepted {
    /// The verified body.
    pub body: EnvelopeBody,
    /// SHA-256 of the frame.
    pub digest: [u8; 32],
    /// The admission to commit or undo.
    pub ticket: Box<Ticket>,
    /// What will run it.
    pub capability: Arc<dyn Capability>,
    /// Its cost, charged to its provider's budget (to persist, or refund if the record fails).
    pub charge: Option<Charge>,
    /// A dry run (falsify mode): witnessed as FALSIFY, and `capability` only reports.
    pub falsify: bool,
}

/// The state ingress decides with.
#[derive(Debug)]
pub struct Ingress {
    /// This agent's topics: its site and name are the audience an envelope must include, and its reply
    /// topics the only places a response topic may name.
    pub topics: if_protocol::topics::Topics,
    /// Replay and duplicate state.
    pub admission: Admission,
    /// Offered capabilities.
    pub registry: Registry,
    /// The trust root, manifests, talents and grants; shared with the policy capability. Lock order:
    /// the agent's state, then this.
    pub policy: Arc<Mutex<Policy>>,
    /// Spending per provider.
    pub budgets: Budgets,
}

enum Stage<'a> {
    Done(Decision),
    Signed { frame: Vec<u8>, key: VerifyingKey, talent: String, who: Principal, response: Option<&'a str> },
}

impl Ingress {
    /// Decides every publish of a burst, in order.
    pub fn decide(&mut self, inbound: &[Inbound<'_>], now_ms: u64) -> Vec<Decision> {
        let stages: Vec<Stage<'_>> = inbound.iter().map(|i| self.prepare(i)).collect();
        let signed: Vec<(usize, SignedFrame<'_>, VerifyingKey)> = stages
            .iter()
            .enumerate()
            .filter_map(|(i, s)| match s {
                Stage::Signed { frame, key, .. } => SignedFrame::parse(frame).ok().map(|f| (i, f, *key)),
                Stage::Done(_) => None,
            })
            .collect();
        let items: Vec<(SignedFrame<'_>, VerifyingKey)> = signed.iter().map(|(_, f, k)| (*f, *k)).collect();
        let mut verified: Vec<Option<Result<EnvelopeBody, IfError>>> = (0..stages.len()).map(|_| None).collect();
        for ((i, _, _), result) in signed.iter().zip(batch::verify_frames(&items)) {
            verified[*i] = Some(result.and_then(|v| v.decode()));
        }
        let mut out = Vec::with_capacity(stages.len());
        for (stage, body) in stages.into_iter().zip(verified) {
            out.push(match (stage, body) {
                (Stage::Done(d), _) => d,
                (Stage::Signed { frame, talent, who, response, .. }, Some(body)) => {
                    self.admit(&frame, &talent, who, response, body, now_ms)
                }
                (Stage::Signed { frame, .. }, None) => {
                    reject(IfError::with(ErrorCode::SystemError, "frame lost"), Some(&frame))
                }
            });
        }
        out
    }

    /// Size cap, JSON view, frame layout and key lookup.
    fn prepare<'a>(&self, inbound: &Inbound<'a>) -> Stage<'a> {
        let frame = match to_frame(inbound.payload) {
            Ok(f) => f,
            Err(e) => return Stage::Done(reject(e, None)),
        };
        let parsed = SignedFrame::parse(&frame).map(|f| *f.key_id());
        let key_id = match parsed {
            Ok(id) => id,
            Err(e) => return Stage::Done(reject(e, Some(&frame))),
        };
        let found = self.policy().principal(&key_id);
        let Some((talent, key, who)) = found else {
            let e =
                IfError::format(ErrorCode::UnknownKey, format_args!("no talent has key id {}", hex::encode(key_id)));
            return Stage::Done(reject(e, Some(&frame)));
        };
        Stage::Signed { key, talent, who, frame: frame.to_vec(), response: inbound.response_topic }
    }

    fn policy(&self) -> std::sync::MutexGuard<'_, Policy> {
        self.policy.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Key-to-sender binding, admission, authorization.
    fn admit(
        &mut self,
        frame: &[u8],
        talent: &str,
        who: Principal,
        response: Option<&str>,
        body: Result<EnvelopeBody, IfError>,
        now_ms: u64,
    ) -> Decision {
        let body = match body {
            Ok(b) => b,
            Err(e) => return reject(e, Some(frame)),
        };
        let digest = frame::digest(frame);
        if body.sender.as_str() != talent {
            let e = if self.policy().knows(&body.sender) {
                IfError::format(
                    ErrorCode::PermissionDenied,
                    format_args!("signed with the key of {talent}, not of sender {}", body.sender),
                )
            } else {
                IfError::format(
                    ErrorCode::TalentNotFound,
                    format_args!("sender {:?} is not a known talent", body.sender.as_str()),
                )
            };
            // The body's claims are not the signer's: the refusal is recorded and routed as unverified.
            return reject(e, Some(frame));
        }
        if !body.audience.includes(&self.topics.site, &self.topics.agent) {
            let e = IfError::format(
                ErrorCode::WrongAudience,
                format_args!(
                    "addressed to {}, not to {}/{}: refused before anything else",
                    body.audience, self.topics.site, self.topics.agent
                ),
            );
            return Decision::Reject(Box::new(Refused { error: e, body: Some(body), digest: Some(digest) }));
        }
        // A copy of an envelope already taken gets what the original got, whatever else it says.
        match self.admission.seen(&body, digest) {
            Some(Ok(Admitted::Duplicate(reply))) => {
                return Decision::Duplicate { reply, sender: body.sender.to_string(), id: body.id };
            }
            Some(Ok(Admitted::InProgress)) => {
                return Decision::InProgress { sender: body.sender.to_string(), seq: body.seq };
            }
            Some(Ok(Admitted::New(_))) | None => {}
            Some(Err(e)) => {
                return Decision::Reject(Box::new(Refused { error: e, body: Some(body), digest: Some(digest) }));
            }
        }
        if let Some(topic) = response.filter(|t| !self.topics.allows_reply(t, Some(talent))) {
            let e = IfError::format(
                ErrorCode::ResponseTopicDenied,
                format_args!(
                    "response topic {topic:?} is not under {}; answered there instead",
                    self.topics.reply_for(talent)
                ),
            );
            return Decision::Reject(Box::new(Refused { error: e, body: Some(body), digest: Some(digest) }));
        }
        if let Some(e) = self.before_admission(&body, talent, who, now_ms) {
            return Decision::Reject(Box::new(Refused { error: e, body: Some(body), digest: Some(digest) }));
        }
        let ticket = match self.admission.admit(&body, digest, now_ms) {
            Ok(Admitted::New(t)) => t,
            Ok(Admitted::Duplicate(reply)) => {
                return Decision::Duplicate { reply, sender: body.sender.to_string(), id: body.id };
            }
            Ok(Admitted::InProgress) => {
                return Decision::InProgress { sender: body.sender.to_string(), seq: body.seq };
            }
            Err(e) => return Decision::Reject(Box::new(Refused { error: e, body: Some(body), digest: Some(digest) })),
        };
        let falsify = match crate::falsify::requested(&body) {
            Ok(f) => f,
            Err(e) => {
                self.admission.rollback(&ticket);
                return Decision::Reject(Box::new(Refused { error: e, body: Some(body), digest: Some(digest) }));
            }
        };
        if falsify {
            let capability = self.dry_run(who, &body, now_ms);
            return Decision::Accept(Box::new(Accepted { body, digest, ticket, capability, charge: None, falsify }));
        }
        let authorized = authorize::authorize(&self.policy(), who, &body, now_ms / 1000);
        if let Err(e) = authorized {
            self.admission.rollback(&ticket);
            return Decision::Reject(Box::new(Refused { error: e, body: Some(body), digest: Some(digest) }));
        }
        let cost = self.policy().manifest(&body.capability).and_then(|m| m.action(&body.action)).map_or(0, |a| a.cost);
        let resolved = self.registry.resolve(&body).and_then(|capability| {
            let charge = self.budgets.charge(&body.capability, u64::from(cost), now_ms / 1000)?;
            Ok((capability, charge))
        });
        match resolved {
            Ok((capability, charge)) => {
                Decision::Accept(Box::new(Accepted { body, digest, ticket, capability, charge, falsify: false }))
            }
            Err(e) => {
                self.admission.rollback(&ticket);
                Decision::Reject(Box::new(Refused { error: e, body: Some(body), digest: Some(digest) }))
            }
        }
    }
}

impl Ingress {
    /// What refuses an envelope of a known sender before it takes a sequence number: sent before the
    /// sender's numbers were reset, or a policy command that would be refused when it runs (so a
    /// mistaken talent or grant command does not use up the policy key's number).
    fn before_admission(&self, body: &EnvelopeBody, talent: &str, who: Principal, now_ms: u64) -> Option<IfError> {
        let policy = self.policy();
        if let Some(floor) = policy.reset_floor(talent).filter(|f| body.issued_at_ms < *f) {
            return Some(IfError::format(
                ErrorCode::OutOfOrder,
                format_args!(
                    "issued at {}, before the sequence numbers of {talent} were reset at {floor}",
                    body.issued_at_ms
                ),
            ));
        }
        let policy_command = body.capability.as_str() == crate::policy::commands::POLICY_CAPABILITY
            && !crate::policy::commands::READ_ONLY.contains(&body.action.as_str());
        if who == Principal::PolicySigner && policy_command && !crate::falsify::requested(body).unwrap_or(false) {
            return policy.offer_command(body, talent, now_ms).err();
        }
        None
    }

    /// Every check a command would face, each failure collected, nothing charged or touched.
    fn dry_run(&self, who: Principal, body: &EnvelopeBody, now_ms: u64) -> Arc<dyn Capability> {
        let real = crate::falsify::stripped(body);
        let mut problems = Vec::new();
        if let Err(e) = authorize::authorize(&self.policy(), who, &real, now_ms / 1000) {
            problems.push(e);
        }
        let cost = self.policy().manifest(&real.capability).and_then(|m| m.action(&real.action)).map_or(0, |a| a.cost);
        if let Err(e) = self.budgets.check(&real.capability, u64::from(cost), now_ms / 1000) {
            problems.push(e);
        }
        let plan = match self.registry.resolve(&real) {
            Ok(c) => c.plan(&real),
            Err(e) => {
                problems.push(e);
                crate::capability::Plan::default()
            }
        };
        Arc::new(crate::falsify::DryRun::new(&real.capability, problems, plan))
    }
}

fn reject(error: IfError, frame: Option<&[u8]>) -> Decision {
    Decision::Reject(Box::new(Refused { error, body: None, digest: frame.map(frame::digest) }))
}

/// The frame a payload carries: the bytes themselves, or the frame its JSON view describes.
pub fn to_frame(payload: &[u8]) -> Result<FrameBytes, IfError> {
    if payload.is_empty() {
        return Err(IfError::with(ErrorCode::InvalidEnvelope, "empty payload"));
    }
    if payload.first() == Some(&b'{') {
        if payload.len() > MAX_JSON_LEN {
            return Err(IfError::format(
                ErrorCode::FrameTooLarge,
                format_args!("JSON view of {} bytes exceeds {MAX_JSON_LEN}", payload.len()),
            ));
        }
        let text = std::str::from_utf8(payload)
            .map_err(|_| IfError::with(ErrorCode::InvalidEnvelope, "JSON view is not UTF-8"))?;
        return json::json_to_frame(&json::parse(text)?);
    }
    if payload.len() > MAX_FRAME_LEN {
        return Err(IfError::format(
            ErrorCode::FrameTooLarge,
            format_args!("frame of {} bytes exceeds {MAX_FRAME_LEN}", payload.len()),
        ));
    }
    FrameBytes::from_slice(payload).map_err(|_| IfError::with(ErrorCode::FrameTooLarge, "frame exceeds the cap"))
}
