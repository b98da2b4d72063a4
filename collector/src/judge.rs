//! What an upstream verifier makes of one anchor, as a pure function of the anchor, the agent's key and
//! what it accepted before: accept it, take it as a repeat, refuse it, or hold it up as evidence that
//! the agent's log shrank or forked.

use if_protocol::messages::Anchor;
use if_protocol::witness::Hash;
use if_protocol::witness::checkpoint::{Checkpoint, NoteVerifier};
use if_protocol::witness::proof::verify_consistency;

/// The last checkpoint accepted from one agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// Tree size.
    pub size: u64,
    /// Root hash.
    pub root: Hash,
    /// The signed note, verbatim (the evidence, should a later one contradict it).
    pub note: String,
}

/// The decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// A new checkpoint that extends the last accepted one (or the first seen): store and acknowledge.
    Accept(Accepted),
    /// One already accepted: acknowledge again, change nothing.
    Again,
    /// Not acceptable, but no proof of wrongdoing (a bad signature proves only that someone else sent it;
    /// a proof from another size cannot be checked): not acknowledged.
    Refuse(String),
    /// A signed checkpoint that contradicts an accepted one: the log shrank (`shrink`) or forked (`fork`).
    Evidence {
        /// `shrink` or `fork`.
        kind: &'static str,
        /// Why.
        why: String,
    },
}

/// Judges `anchor` from agent `site.agent` with its public `key`, given the last accepted checkpoint
/// and `seen(size)`, the root accepted earlier at that size.
pub fn judge(
    anchor: &Anchor,
    agent_id: &str,
    key: &ed25519_dalek::VerifyingKey,
    last: Option<&Accepted>,
    seen: impl Fn(u64) -> Option<Hash>,
) -> Verdict {
    let cp = match verified(anchor, agent_id, key) {
        Ok(cp) => cp,
        Err(why) => return Verdict::Refuse(why),
    };
    let new = Accepted { size: cp.size, root: cp.root, note: anchor.note.clone() };
    let Some(last) = last else { return Verdict::Accept(new) };
    let fork = |why: String| Verdict::Evidence { kind: "fork", why };
    if cp.size <= last.size {
        let earlier = if cp.size == last.size { Some(last.root) } else { seen(cp.size) };
        return match earlier {
            Some(root) if root == cp.root => Verdict::Again,
            Some(_) => fork(format!("a second root for size {} signed by the agent", cp.size)),
            None => Verdict::Evidence {
                kind: "shrink",
                why: format!("a checkpoint of size {} after one of size {}", cp.size, last.size),
            },
        };
    }
    if anchor.from != last.size {
        return Verdict::Refuse(format!(
            "its proof starts at size {}, the last accepted is {}",
            anchor.from, last.size
        ));
    }
    let proof = match anchor.proof_hashes() {
        Ok(p) => p,
        Err(e) => return Verdict::Refuse(e.detail().to_string()),
    };
    match verify_consistency(last.size, cp.size, &last.root, &cp.root, &proof) {
        Ok(()) => Verdict::Accept(new),
        Err(e) => fork(format!("size {} does not extend size {}: {}", cp.size, last.size, e.detail())),
    }
}

/// The checkpoint, if the note is signed by `key` and names this agent's log.
fn verified(anchor: &Anchor, agent_id: &str, key: &ed25519_dalek::VerifyingKey) -> Result<Checkpoint, String> {
    let unverified = anchor.checkpoint().map_err(|e| format!("not a checkpoint: {}", e.detail()))?;
    let origin = unverified.origin.as_str();
    if !origin.ends_with(&format!("/if-edge/{agent_id}")) {
        return Err(format!("origin {origin:?} is not this agent's log"));
    }
    let verifier = NoteVerifier::new(origin, *key).map_err(|e| e.detail().to_string())?;
    let text = verifier.open(&anchor.note).map_err(|e| format!("signature: {}", e.detail()))?;
    let cp = Checkpoint::parse_text(text).map_err(|e| format!("not a checkpoint: {}", e.detail()))?;
    if cp.size != anchor.size {
        return Err(format!("it claims size {} but its checkpoint says {}", anchor.size, cp.size));
    }
    Ok(cp)
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD as B64;
    use ed25519_dalek::SigningKey;
    use if_edge::witness::proof::{consistency, subtree_root};
    use if_protocol::witness::checkpoint::sign_checkpoint;
    use if_protocol::witness::merkle::leaf_hash;

    use super::*;

    const ORIGIN: &str = "local/if-edge/s.a";

    fn log(n: usize, tag: &str) -> Vec<Hash> {
        (0..n).map(|i| leaf_hash(format!("{tag}{i}").as_bytes())).collect()
    }

    fn anchor(key: &SigningKey, leaves: &[Hash], size: usize, from: usize) -> Anchor {
        let cp = Checkpoint {
            origin: ORIGIN.try_into().expect("short"),
            size: size as u64,
            root: subtree_root(&leaves[..size]),
        };
        let note = sign_checkpoint(&cp, ORIGIN, key).expect("sign").as_str().to_string();
        let proof = consistency(from, &leaves[..size]).iter().map(|h| B64.encode(h)).collect();
        Anchor { agent: "s/a".into(), size: size as u64, from: from as u64, note, proof }
    }

    fn accept(v: Verdict) -> Accepted {
        match v {
            Verdict::Accept(a) => a,
            other => panic!("not accepted: {other:?}"),
        }
    }

    #[test]
    fn extensions_are_accepted_repeats_are_again_and_contradictions_are_evidence() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let vk = key.verifying_key();
        let good = log(20, "x");
        let first = accept(judge(&anchor(&key, &good, 5, 0), "s.a", &vk, None, |_| None));
        let second = accept(judge(&anchor(&key, &good, 12, 5), "s.a", &vk, Some(&first), |_| None));
        let seen = |s: u64| match s {
            5 => Some(first.root),
            12 => Some(second.root),
            _ => None,
        };
        assert_eq!(judge(&anchor(&key, &good, 5, 0), "s.a", &vk, Some(&second), seen), Verdict::Again);

        let mut forked = good.clone();
        forked[2] = leaf_hash(b"rewritten");
        let v = judge(&anchor(&key, &forked, 16, 12), "s.a", &vk, Some(&second), seen);
        assert!(matches!(v, Verdict::Evidence { kind: "fork", .. }), "{v:?}");
        let v = judge(&anchor(&key, &forked, 12, 5), "s.a", &vk, Some(&second), seen);
        assert!(matches!(v, Verdict::Evidence { kind: "fork", .. }), "same size, other root: {v:?}");
        let v = judge(&anchor(&key, &good, 8, 5), "s.a", &vk, Some(&second), seen);
        assert!(matches!(v, Verdict::Evidence { kind: "shrink", .. }), "{v:?}");
    }

    #[test]
    fn a_foreign_signature_another_origin_or_an_unmatched_proof_is_refused_without_evidence() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let other = SigningKey::from_bytes(&[8; 32]);
        let good = log(20, "x");
        let first = accept(judge(&anchor(&key, &good, 5, 0), "s.a", &key.verifying_key(), None, |_| None));
        let forged = anchor(&other, &good, 9, 5);
        let v = judge(&forged, "s.a", &key.verifying_key(), Some(&first), |_| None);
        assert!(matches!(v, Verdict::Refuse(ref w) if w.contains("signature")), "{v:?}");
        let v = judge(&anchor(&key, &good, 9, 5), "s.b", &key.verifying_key(), Some(&first), |_| None);
        assert!(matches!(v, Verdict::Refuse(ref w) if w.contains("origin")), "{v:?}");
        let v = judge(&anchor(&key, &good, 9, 7), "s.a", &key.verifying_key(), Some(&first), |_| None);
        assert!(matches!(v, Verdict::Refuse(ref w) if w.contains("starts at size 7")), "{v:?}");
    }
}
