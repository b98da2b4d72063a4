//! Signed documents pushed at run time on `if/v1/{site}/{agent}/policy`: a capability manifest or a new
//! trust root, as the same TOML text `ifctl manifest sign` and `ifctl trust rotate` write.
//!
//! A pushed document is self-authenticating: its signatures are checked against the trust root the agent
//! holds, and the rollback rule makes a replay harmless (the same document again is a no-op, an older one
//! is MANIFEST_ROLLBACK). Like a file at start, an accepted document takes effect only after its POLICY
//! record is durable, and a refused one changes nothing; the caller witnesses refusals as it samples
//! them (anyone on the broker can push garbage, and a flood must not fill the disk).

use std::sync::{Mutex, PoisonError};

use if_protocol::IfError;
use if_protocol::policy::{Manifest, Signed, TrustRoot};

use super::{Change, Doc, Policy, file, record};
use crate::witness::writer::Witness;

/// What a push did.
#[derive(Debug, Clone)]
pub enum Pushed {
    /// The agent already held this very document.
    Unchanged,
    /// It took effect.
    Changed {
        /// What changed.
        summary: String,
        /// The manifest installed, if it was one.
        manifest: Option<Box<Manifest>>,
    },
}

fn lock(policy: &Mutex<Policy>) -> std::sync::MutexGuard<'_, Policy> {
    policy.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Decides `text` (named `source`) against `policy`, witnesses the outcome, and applies it if accepted.
pub async fn offer(
    policy: &Mutex<Policy>,
    witness: &Witness,
    text: &str,
    source: &str,
    now_ms: u64,
) -> Result<Pushed, IfError> {
    let decided = decide(&lock(policy), text, source, now_ms / 1000);
    match decided {
        Ok(None) => Ok(Pushed::Unchanged),
        Ok(Some(change)) => {
            witness.append(vec![record(Ok(&change), source, now_ms)]).await?;
            let summary = change.summary.clone();
            let manifest = match &change.doc {
                Doc::Manifest(m) => Some(Box::new(m.doc.clone())),
                _ => None,
            };
            lock(policy).apply(change);
            Ok(Pushed::Changed { summary, manifest })
        }
        Err(e) => {
            lock(policy).refused(source, &e);
            Err(e)
        }
    }
}

/// A root has a `threshold`; anything else is read as a manifest.
fn decide(policy: &Policy, text: &str, source: &str, now_s: u64) -> Result<Option<Change>, IfError> {
    let is_root = text.parse::<toml::Table>().is_ok_and(|t| t.contains_key("threshold"));
    if is_root {
        // A first root vouches for itself, so anyone on the broker could push one: a first root comes
        // only from the agent's own file ([trust] root); a pushed root can only rotate the one it holds.
        if policy.root().is_none() {
            return Err(IfError::with(
                if_protocol::ErrorCode::PermissionDenied,
                "this agent holds no trust root, and a first root is never taken from the network: set [trust] root",
            ));
        }
        let root: Signed<TrustRoot> = file::parse_signed(text, source)?;
        policy.offer_root(&root, now_s)
    } else {
        let manifest: Signed<Manifest> = file::parse_signed(text, source)?;
        policy.offer_manifest(&manifest, now_s)
    }
}
