//! Batch verification of a burst of frames, with a fallback that finds the bad ones.
//!
//! When the agent drains several envelopes at once, one batch equation checks them all for roughly half
//! the cost of checking each. If the batch fails, every frame is checked on its own with `verify_strict`,
//! so one forged frame costs the burst its speed, never its correctness for the honest frames.
//!
//! The batch equation is the cofactored one; `verify_strict` is cofactorless and also refuses small-order
//! components. They agree on every signature an honest signer makes. Only the owner of a key can make a
//! signature that one accepts and the other refuses, so neither can be used to forge another talent's
//! command. Weak (small-order) keys never reach this point: [`crate::keys::verifying_key`] refuses them.

use alloc::vec::Vec;

use ed25519_dalek::{Signature, VerifyingKey};

use crate::error::{ErrorCode, IfError, Result};
use crate::frame::{SignedFrame, VerifiedFrame};
use crate::keys;

/// Verifies each `(frame, key)`; the result at index `i` is the outcome for `items[i]`.
pub fn verify_frames<'a>(items: &[(SignedFrame<'a>, VerifyingKey)]) -> Vec<Result<VerifiedFrame<'a>>> {
    let id_ok: Vec<bool> = items.iter().map(|(f, k)| keys::key_id(k) == *f.key_id()).collect();
    let candidates: Vec<usize> = (0..items.len()).filter(|&i| id_ok[i]).collect();
    if candidates.len() >= 2 && batch_ok(items, &candidates) {
        return items
            .iter()
            .zip(&id_ok)
            .map(|((frame, _), ok)| if *ok { Ok(frame.assume_verified()) } else { Err(wrong_key()) })
            .collect();
    }
    items.iter().map(|(frame, key)| frame.verify(key)).collect()
}

fn batch_ok(items: &[(SignedFrame<'_>, VerifyingKey)], which: &[usize]) -> bool {
    let messages: Vec<Vec<u8>> = which.iter().map(|&i| items[i].0.signed_parts().concat()).collect();
    let message_refs: Vec<&[u8]> = messages.iter().map(Vec::as_slice).collect();
    let sigs: Vec<Signature> = which.iter().map(|&i| *items[i].0.signature()).collect();
    let keys: Vec<VerifyingKey> = which.iter().map(|&i| items[i].1).collect();
    ed25519_dalek::verify_batch(&message_refs, &sigs, &keys).is_ok()
}

fn wrong_key() -> IfError {
    IfError::with(ErrorCode::InvalidSignature, "frame names a different key than the one given")
}
