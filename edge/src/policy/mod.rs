//! Policy: what the agent trusts, and how that changes.
//!
//! The agent trusts one root ([`trust`]) and, through it, capability manifests ([`manifests`]). Both come
//! as signed files ([`file`]) at start or pushed at run time. Every offer is decided by pure rules into a
//! [`Change`] (or a refusal with its code); a change takes effect only after its POLICY record and the
//! new state are committed to the witness log in one transaction, and it is read back from the log at
//! the next start. A refusal changes nothing: the agent keeps what it trusted before.

pub mod file;
pub mod load;
pub mod manifests;
pub mod trust;

use std::collections::{BTreeMap, VecDeque};

use if_protocol::policy::{Manifest, Signed, TrustRoot};
use if_protocol::{ErrorCode, IfError};

use crate::witness::record::{Entry, Kind};
use crate::witness::store::Append;
use manifests::{Allowed, Verdict};

/// The log key of the trust root.
const ROOT_KEY: &str = "root";
/// The log key prefix of manifests, followed by the capability id.
const MANIFEST_PREFIX: &str = "manifest/";
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
}

#[derive(Debug, Clone)]
enum Doc {
    Root(Box<Signed<TrustRoot>>),
    Manifest(Box<Signed<Manifest>>),
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
    allow: Vec<Allowed>,
    refused: VecDeque<Refusal>,
}

fn stored(what: &str, e: impl std::fmt::Display) -> IfError {
    IfError::format(ErrorCode::InvalidProof, format_args!("policy in the witness log: {what}: {e}"))
}

impl Policy {
    /// The policy persisted in the log (its `(key, value)` entries), with the config's allow-list.
    pub fn restore(entries: Vec<(String, Vec<u8>)>, allow: Vec<Allowed>) -> Result<Policy, IfError> {
        let mut p = Policy { allow, ..Policy::default() };
        for (key, value) in entries {
            if key == ROOT_KEY {
                p.root = Some(postcard::from_bytes(&value).map_err(|e| stored(&key, e))?);
            } else if let Some(id) = key.strip_prefix(MANIFEST_PREFIX) {
                p.manifests.insert(id.to_string(), postcard::from_bytes(&value).map_err(|e| stored(&key, e))?);
            }
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
            })),
        }
    }

    /// Makes a committed change take effect.
    pub fn apply(&mut self, change: Change) {
        match change.doc {
            Doc::Root(r) => self.root = Some(*r),
            Doc::Manifest(m) => {
                self.manifests.insert(m.doc.id.to_string(), *m);
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
    pub fn status(&self) -> serde_json::Value {
        let manifests: Vec<serde_json::Value> = self
            .manifests
            .values()
            .map(|m| serde_json::json!({ "id": m.doc.id.as_str(), "version": m.doc.version.to_string() }))
            .collect();
        let refused: Vec<serde_json::Value> = self
            .refused
            .iter()
            .map(|r| {
                serde_json::json!({
                    "source": r.source,
                    "code": r.error.code(),
                    "name": r.error.code().name(),
                    "message": r.error.detail(),
                })
            })
            .collect();
        serde_json::json!({
            "trust_root": self.root().map(|r| r.version),
            "manifests": manifests,
            "refused": refused,
        })
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
            if let Doc::Manifest(m) = &c.doc {
                entry.capability = m.doc.id.to_string();
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
    }
    item
}

#[cfg(test)]
mod tests {
    use super::trust::tests::{root, signed};
    use super::*;

    const NOW: u64 = 1_800_000_000;

    fn manifest(by: &[u8]) -> Signed<Manifest> {
        let text = include_str!("../../../tests/fixtures/manifests/vmix.toml");
        let mut s = Signed::unsigned(file::parse_doc::<Manifest>(text, "vmix.toml").expect("parse"));
        for seed in by {
            s.sign(&trust::tests::key(*seed)).expect("sign");
        }
        s
    }

    #[test]
    fn changes_take_effect_only_when_applied_and_survive_a_restore() {
        let allow = vec![Allowed::parse("if://capability/vmix.switcher@1.2.0").expect("allow")];
        let mut p = Policy { allow: allow.clone(), ..Policy::default() };
        let r = signed(root(1, &[1, 2], 1), &[1]);
        let change = p.offer_root(&r, NOW).expect("root").expect("a change");
        assert!(p.root().is_none(), "nothing changes before apply");
        let mut persisted = vec![(change.key.clone(), change.value.clone())];
        p.apply(change);
        assert!(p.offer_root(&r, NOW).expect("same").is_none(), "the same root is a no-op");
        let m = manifest(&[2]);
        let change = p.offer_manifest(&m, NOW).expect("manifest").expect("a change");
        persisted.push((change.key.clone(), change.value.clone()));
        p.apply(change);
        assert!(p.offer_manifest(&m, NOW).expect("same").is_none());

        let back = Policy::restore(persisted, allow).expect("restore");
        assert_eq!(back.root(), p.root());
        assert_eq!(back.manifest("if://capability/vmix.switcher").map(|m| m.version.to_string()), Some("1.2.0".into()));
        assert_eq!(back.status()["manifests"][0]["version"], "1.2.0");
    }

    #[test]
    fn a_refusal_is_shown_with_its_code_and_changes_nothing() {
        let mut p = Policy::default();
        let e = p.offer_manifest(&manifest(&[1]), NOW).expect_err("no root");
        p.refused("vmix.toml", &e);
        assert!(p.manifests().next().is_none());
        let s = p.status();
        assert_eq!(s["refused"][0]["code"], "IF_ERR_001");
        assert_eq!(s["refused"][0]["source"], "vmix.toml");
        assert!(Policy::restore(vec![("root".into(), vec![1, 2, 3])], Vec::new()).is_err(), "garbage is an error");
    }
}
