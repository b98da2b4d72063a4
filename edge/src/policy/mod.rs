//! Policy: what the agent trusts, and how that changes.
//!
//! The agent trusts one root ([`trust`]) and, through it, capability manifests ([`manifests`]). Both come
//! as signed files ([`file`]) at start or pushed at run time. Every offer is decided by pure rules into a
//! [`Change`] (or a refusal with its code); a change takes effect only after its POLICY record and the
//! new state are committed to the witness log in one transaction, and it is read back from the log at
//! the next start. A refusal changes nothing: the agent keeps what it trusted before.

pub mod authorize;
pub mod bindings;
pub mod commands;
pub mod file;
pub mod load;
pub mod manifests;
pub mod push;
pub mod trust;

use std::collections::{BTreeMap, HashMap, VecDeque};

use ed25519_dalek::VerifyingKey;
use if_protocol::envelope::EnvelopeBody;
use if_protocol::keys::{self, KeyId};
use if_protocol::messages::status;
use if_protocol::policy::{Binding, Grant, Manifest, Signed, Talent, TalentStatus, TrustRoot};
use if_protocol::{ErrorCode, IfError};

use crate::witness::record::{Entry, Kind};
use crate::witness::store::Append;
use authorize::Principal;
use commands::Set;
use manifests::{Allowed, Verdict};

/// The log key of the trust root.
const ROOT_KEY: &str = "root";
/// The log key prefix of manifests, followed by the capability id.
const MANIFEST_PREFIX: &str = "manifest/";
/// The log key prefix of talents, followed by the name.
const TALENT_PREFIX: &str = "talent/";
/// The log key prefix of grants, followed by `<talent>/<capability id>`.
const GRANT_PREFIX: &str = "grant/";
/// The log key prefix of bindings, followed by the binding's name; the value is `Option<Binding>` (`None`
/// once removed).
const BINDING_PREFIX: &str = "binding/";
/// The log key prefix of sequence resets, followed by the sender's name; the value is the reset's time.
const RESET_PREFIX: &str = "reset/";
/// Refusals kept for the status topic.
const REFUSALS_KEPT: usize = 16;

/// A decided change of policy, to be committed with its POLICY record.
#[derive(Debug, Clone)]
pub struct Change {
    key: String,
    value: Vec<u8>,
    doc: Doc,
    /// What happened, for the log and the witness.
    pub summary: String,
    /// A sender whose replay window and cached replies go with this change: its sequence numbers start
    /// over (a reset, or a talent added again with a new key).
    pub forget: Option<String>,
}

impl Change {
    /// For a reset: envelopes issued before `at_least_ms` too are refused (the newest the sender had
    /// issued, whose clock may run ahead of the agent's), so none of them can run in the fresh window.
    pub fn raise_floor(&mut self, at_least_ms: u64) -> Result<(), IfError> {
        if let Doc::Reset(name, at) = &mut self.doc
            && at_least_ms > *at
        {
            *at = at_least_ms;
            self.value = encode(&at_least_ms)?;
            self.summary =
                format!("{}; envelopes issued up to {at_least_ms} too, the newest {name} had sent", self.summary);
        }
        Ok(())
    }
}

#[derive(Debug, Clone)]
enum Doc {
    Root(Box<Signed<TrustRoot>>),
    Manifest(Box<Signed<Manifest>>),
    Talent(Box<Talent>),
    Grant(Box<Grant>),
    /// A sender's sequence numbers start over at this time (unix ms): envelopes issued before are refused.
    Reset(String, u64),
    /// A binding set (`Some`) or removed (`None`).
    Binding(String, Option<Box<Binding>>),
}

/// Whose key a key id is.
#[derive(Debug, Clone)]
struct Holder {
    name: String,
    key: VerifyingKey,
    signer: bool,
}

/// A refused offer, as the status topic shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Where the document came from: a file name or a topic.
    pub source: String,
    /// The reason.
    pub error: IfError,
}

/// What the agent trusts now.
#[derive(Debug, Default)]
pub struct Policy {
    root: Option<Signed<TrustRoot>>,
    manifests: BTreeMap<String, Signed<Manifest>>,
    talents: BTreeMap<String, Talent>,
    /// By (talent, capability id).
    grants: BTreeMap<(String, String), Grant>,
    /// Every principal's decoded key by key id, rebuilt when the root or a talent changes, so the
    /// per-message lookup never decodes a key again.
    by_key: HashMap<KeyId, Holder>,
    allow: Vec<Allowed>,
    refused: VecDeque<Refusal>,
    /// When each reset sender's sequence numbers started over, unix ms.
    resets: BTreeMap<String, u64>,
    /// Bindings by name.
    bindings: BTreeMap<String, Binding>,
    /// Counts binding changes, so that followers can tell a new binding has to be shown.
    bindings_changed: u64,
}

fn stored(what: &str, e: impl std::fmt::Display) -> IfError {
    IfError::format(ErrorCode::InvalidProof, format_args!("policy in the witness log: {what}: {e}"))
}

impl Policy {
    /// The policy persisted in the log (its `(key, value)` entries), with the config's allow-list.
    pub fn restore(entries: Vec<(String, Vec<u8>)>, allow: Vec<Allowed>) -> Result<Policy, IfError> {
        let mut p = Policy { allow, ..Policy::default() };
        for (key, value) in entries {
            let doc = if key == ROOT_KEY {
                Doc::Root(Box::new(postcard::from_bytes(&value).map_err(|e| stored(&key, e))?))
            } else if key.starts_with(MANIFEST_PREFIX) {
                Doc::Manifest(Box::new(postcard::from_bytes(&value).map_err(|e| stored(&key, e))?))
            } else if key.starts_with(TALENT_PREFIX) {
                Doc::Talent(Box::new(postcard::from_bytes(&value).map_err(|e| stored(&key, e))?))
            } else if key.starts_with(GRANT_PREFIX) {
                Doc::Grant(Box::new(Grant::from_stored(&value).map_err(|e| stored(&key, e))?))
            } else if let Some(name) = key.strip_prefix(BINDING_PREFIX) {
                let b: Option<Binding> = postcard::from_bytes(&value).map_err(|e| stored(&key, e))?;
                Doc::Binding(name.to_string(), b.map(Box::new))
            } else if let Some(name) = key.strip_prefix(RESET_PREFIX) {
                Doc::Reset(name.to_string(), postcard::from_bytes(&value).map_err(|e| stored(&key, e))?)
            } else {
                return Err(stored(&key, "unknown kind of entry"));
            };
            p.apply_doc(doc);
        }
        Ok(p)
    }

    /// The trust root, if one is installed.
    pub fn root(&self) -> Option<&TrustRoot> {
        self.root.as_ref().map(|r| &r.doc)
    }

    /// The installed manifest of capability `id`.
    pub fn manifest(&self, id: &str) -> Option<&Manifest> {
        self.manifests.get(id).map(|m| &m.doc)
    }

    /// The talent of this name.
    pub fn talent(&self, name: &str) -> Option<&Talent> {
        self.talents.get(name)
    }

    /// The grant of `talent` on capability `id`.
    pub fn grant(&self, talent: &str, id: &str) -> Option<&Grant> {
        self.grants.get(&(talent.to_string(), id.to_string()))
    }

    /// The principal whose key has id `id`: its name, key and kind. Policy signers come first.
    pub fn principal(&self, id: &KeyId) -> Option<(String, VerifyingKey, Principal)> {
        let h = self.by_key.get(id)?;
        if h.signer {
            return Some((h.name.clone(), h.key, Principal::PolicySigner));
        }
        let t = self.talents.get(&h.name)?;
        Some((h.name.clone(), h.key, Principal::Talent(t.status)))
    }

    /// Rebuilds [`Policy::by_key`]: the root's policy signers first, then every talent.
    fn reindex(&mut self) {
        let mut by_key = HashMap::new();
        for t in self.talents.values() {
            if let Ok(key) = keys::verifying_key(&t.public_key.0) {
                by_key.insert(keys::key_id(&key), Holder { name: t.name.to_string(), key, signer: false });
            }
        }
        let signers = self.root.iter().flat_map(|r| r.doc.keys.iter()).filter(|k| k.roles.policy);
        for k in signers {
            if let Ok(key) = keys::verifying_key(&k.public_key.0) {
                by_key.insert(keys::key_id(&key), Holder { name: k.name.to_string(), key, signer: true });
            }
        }
        self.by_key = by_key;
    }

    /// When the sequence numbers of `sender` last started over (unix ms): envelopes it issued before then
    /// are refused.
    pub fn reset_floor(&self, sender: &str) -> Option<u64> {
        self.resets.get(sender).copied()
    }

    /// Whether a principal of this name exists.
    pub fn knows(&self, name: &str) -> bool {
        self.talents.contains_key(name) || self.root().is_some_and(|r| r.keys.iter().any(|k| k.name == name))
    }

    /// Decides a policy command signed by policy signer `signer`, at `now_ms`.
    pub fn offer_command(&self, body: &EnvelopeBody, signer: &str, now_ms: u64) -> Result<Change, IfError> {
        let name = match body.args.get("name") {
            Some(if_protocol::envelope::ArgValue::Text(t)) => t.as_str(),
            _ => "",
        };
        if matches!(body.action.as_str(), "binding.add" | "binding.remove") {
            return self.offer_binding(body, signer);
        }
        let current = self.talents.get(name);
        let set = commands::decide(body, current, now_ms / 1000)?;
        let mut forget = None;
        let (key, value, summary, doc) = match set {
            Set::Talent(t) => {
                let id = keys::key_id(&keys::verifying_key(&t.public_key.0)?);
                let taken = self.by_key.get(&id).is_some_and(|h| h.signer || h.name != t.name.as_str());
                if taken {
                    return Err(IfError::with(
                        ErrorCode::PermissionDenied,
                        "that public key already belongs to another principal",
                    ));
                }
                let verb = if t.status == TalentStatus::Revoked { "revoked" } else { "added" };
                let mut summary = format!("talent {} ({}) {verb} by {signer}", t.name, t.role);
                // Added again with another key: the old key's sequence numbers mean nothing to the new one.
                if current.is_some_and(|c| c.public_key != t.public_key) {
                    forget = Some(t.name.to_string());
                    summary += "; its sequence numbers start over with the new key";
                }
                (format!("{TALENT_PREFIX}{}", t.name), encode(&t)?, summary, Doc::Talent(Box::new(t)))
            }
            Set::Grant(g) => {
                let reach = match g.reach {
                    if_protocol::envelope::Reach::Agent => String::new(),
                    wide => format!(" reaching the {}", wide.name()),
                };
                let summary = format!(
                    "talent {} granted {} on {}{reach} by {signer}",
                    g.talent,
                    g.actions.iter().map(|a| a.as_str()).collect::<Vec<_>>().join(","),
                    g.capability
                );
                (format!("{GRANT_PREFIX}{}/{}", g.talent, g.capability), encode(&g)?, summary, Doc::Grant(g))
            }
            Set::Reset(who) => {
                if !self.knows(&who) {
                    return Err(IfError::format(ErrorCode::TalentNotFound, format_args!("no sender is named {who:?}")));
                }
                forget = Some(who.to_string());
                let summary = format!(
                    "sequence numbers of {who} reset by {signer}: its envelopes issued before {now_ms} are refused"
                );
                (format!("{RESET_PREFIX}{who}"), encode(&now_ms)?, summary, Doc::Reset(who.to_string(), now_ms))
            }
        };
        Ok(Change { key, value, doc, summary, forget })
    }

    /// Decides `binding.add` or `binding.remove`, signed by policy signer `signer`.
    fn offer_binding(&self, body: &EnvelopeBody, signer: &str) -> Result<Change, IfError> {
        let (key, value, summary, doc) = match bindings::decide(body)? {
            bindings::Set::Binding(b) => {
                let summary = format!("{} by {signer}", bindings::describe(&b));
                let key = format!("{BINDING_PREFIX}{}", b.name);
                (key, encode(&Some(&*b))?, summary, Doc::Binding(b.name.to_string(), Some(b)))
            }
            bindings::Set::Unbind(name) => {
                if !self.bindings.contains_key(name.as_str()) {
                    return Err(IfError::format(
                        ErrorCode::InvalidEnvelope,
                        format_args!("binding.remove: no binding is named {name:?}"),
                    ));
                }
                let summary = format!("binding {name} removed by {signer}");
                let key = format!("{BINDING_PREFIX}{name}");
                (key, encode(&None::<Binding>)?, summary, Doc::Binding(name.to_string(), None))
            }
        };
        Ok(Change { key, value, doc, summary, forget: None })
    }

    /// Every installed manifest.
    pub fn manifests(&self) -> impl Iterator<Item = &Manifest> {
        self.manifests.values().map(|m| &m.doc)
    }

    /// Decides a trust root offer: `None` when it is the root already installed.
    pub fn offer_root(&self, new: &Signed<TrustRoot>, now_s: u64) -> Result<Option<Change>, IfError> {
        match &self.root {
            Some(cur) if cur.doc == new.doc => return Ok(None),
            Some(cur) => trust::check_rotation(&cur.doc, new, now_s)?,
            None => trust::check_initial(new, now_s)?,
        }
        let verb = if self.root.is_some() { "rotated to" } else { "installed" };
        Ok(Some(Change {
            key: ROOT_KEY.into(),
            value: encode(new)?,
            summary: format!(
                "trust root {verb} v{} ({} keys, threshold {})",
                new.doc.version,
                new.doc.keys.len(),
                new.doc.threshold
            ),
            doc: Doc::Root(Box::new(new.clone())),
            forget: None,
        }))
    }

    /// Decides a manifest offer: `None` when it is the manifest already installed.
    pub fn offer_manifest(&self, new: &Signed<Manifest>, now_s: u64) -> Result<Option<Change>, IfError> {
        let id = new.doc.id.as_str();
        match manifests::check(self.root(), &self.allow, self.manifest(id), new, now_s)? {
            Verdict::Unchanged => Ok(None),
            Verdict::Install => Ok(Some(Change {
                key: format!("{MANIFEST_PREFIX}{id}"),
                value: encode(new)?,
                summary: format!(
                    "manifest {id}@{} installed (sha256 {})",
                    new.doc.version,
                    hex::encode(manifests::digest(&new.doc)?)
                ),
                doc: Doc::Manifest(Box::new(new.clone())),
                forget: None,
            })),
        }
    }

    /// Makes a committed change take effect.
    pub fn apply(&mut self, change: Change) {
        self.apply_doc(change.doc);
    }

    fn apply_doc(&mut self, doc: Doc) {
        match doc {
            Doc::Root(r) => {
                self.root = Some(*r);
                self.reindex();
            }
            Doc::Manifest(m) => {
                self.manifests.insert(m.doc.id.to_string(), *m);
            }
            Doc::Talent(t) => {
                self.talents.insert(t.name.to_string(), *t);
                self.reindex();
            }
            Doc::Grant(g) => {
                self.grants.insert((g.talent.to_string(), g.capability.to_string()), *g);
            }
            Doc::Reset(name, at_ms) => {
                self.resets.insert(name, at_ms);
            }
            Doc::Binding(name, Some(b)) => {
                self.bindings.insert(name, *b);
                self.bindings_changed += 1;
            }
            Doc::Binding(name, None) => {
                self.bindings.remove(&name);
                self.bindings_changed += 1;
            }
        }
    }

    /// Remembers a refusal for the status topic.
    pub fn refused(&mut self, source: &str, error: &IfError) {
        if self.refused.len() == REFUSALS_KEPT {
            self.refused.pop_front();
        }
        self.refused.push_back(Refusal { source: source.to_string(), error: error.clone() });
    }

    /// The policy part of the status message.
    pub fn status(&self) -> status::Policy {
        let manifests = self
            .manifests
            .values()
            .map(|m| status::Manifest {
                id: m.doc.id.to_string(),
                version: m.doc.version.to_string(),
                driver: m.doc.driver.to_string(),
                actions: m.doc.actions.iter().map(|a| a.name.to_string()).collect(),
            })
            .collect();
        let refused = self
            .refused
            .iter()
            .map(|r| status::Refused {
                source: r.source.clone(),
                code: r.error.code(),
                name: r.error.code().name().to_string(),
                message: r.error.detail().to_string(),
            })
            .collect();
        let active = self.talents.values().filter(|t| t.status == TalentStatus::Active).count();
        status::Policy {
            trust_root: self.root().map(|r| r.version),
            manifests,
            talents: active as u64,
            grants: self.grants.len() as u64,
            refused,
        }
    }
}

fn encode<T: serde::Serialize>(doc: &T) -> Result<Vec<u8>, IfError> {
    postcard::to_allocvec(doc).map_err(|e| IfError::format(ErrorCode::SystemError, format_args!("encode policy: {e}")))
}

/// The POLICY record (and state write) of a change, or the POLICY record of a refusal.
pub fn record(change: Result<&Change, &IfError>, source: &str, now_ms: u64) -> Append {
    let mut entry = Entry { wall_ms: now_ms, count: 1, action: "policy.load".into(), ..Entry::default() };
    match change {
        Ok(c) => {
            entry.detail = format!("{source}: {}", c.summary);
            match &c.doc {
                Doc::Manifest(m) => entry.capability = m.doc.id.to_string(),
                Doc::Grant(g) => entry.capability = g.capability.to_string(),
                Doc::Binding(_, Some(b)) => entry.capability = b.node.to_string(),
                Doc::Root(_) | Doc::Talent(_) | Doc::Reset(..) | Doc::Binding(_, None) => {}
            }
        }
        Err(e) => {
            entry.code = Some(e.code().number());
            entry.detail = format!("{source}: refused: {}", e.detail());
        }
    }
    let mut item = Append::record(Kind::Policy, entry);
    if let Ok(c) = change {
        item.policy = Some((c.key.clone(), c.value.clone()));
        item.forget.clone_from(&c.forget);
    }
    item
}

#[cfg(test)]
mod tests;
