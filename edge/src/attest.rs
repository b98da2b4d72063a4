//! The agent's signature on what it says: every reply (bound to the request it answers) and every JSON
//! message it publishes on its own topics (bound to the topic), made with its identity key.
//!
//! A client on the broker that holds no key can publish anything anywhere; with these signatures
//! `ifctl` tells the agent's answer from a forged one, and the agent tells its own retained status from
//! someone else's. The format is [`if_protocol::attest`]'s: the JSON object with a last `sig` member.

use std::fmt;
use std::sync::Arc;

use ed25519_dalek::{SigningKey, VerifyingKey};
use if_protocol::attest::{self, PUBLISH_DOMAIN, REPLY_DOMAIN};

/// The identity key, shared by everything that publishes. Never printed.
#[derive(Clone)]
pub struct Signer {
    key: Arc<SigningKey>,
    public: VerifyingKey,
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signer").field("public", &self.public).finish_non_exhaustive()
    }
}

impl Signer {
    /// Signs with `key`.
    pub fn new(key: SigningKey) -> Self {
        let public = key.verifying_key();
        Signer { key: Arc::new(key), public }
    }

    /// The public half, which clients pin.
    pub fn public(&self) -> &VerifyingKey {
        &self.public
    }

    /// `reply` (a JSON object) signed as the answer to the request whose digest is `request`: the
    /// SHA-256 of the frame it carried, or of the payload when it carried none.
    pub fn reply(&self, request: &[u8; 32], reply: Vec<u8>) -> Vec<u8> {
        self.sign(REPLY_DOMAIN, request, reply)
    }

    /// `message` (a JSON object) signed for publication on `topic`.
    pub fn publication(&self, topic: &str, message: Vec<u8>) -> Vec<u8> {
        self.sign(PUBLISH_DOMAIN, &attest::topic_context(topic), message)
    }

    /// The object of `payload` if it is a publication on `topic` signed by this very key.
    pub fn own_publication(&self, topic: &str, payload: &[u8]) -> Option<Vec<u8>> {
        attest::verify(&self.public, PUBLISH_DOMAIN, &attest::topic_context(topic), payload).ok()
    }

    fn sign(&self, domain: &[u8], context: &[u8; 32], message: Vec<u8>) -> Vec<u8> {
        match attest::sign(&self.key, domain, context, &message) {
            Ok(signed) => signed,
            Err(e) => {
                // Only a non-object can fail, and the agent builds every message as an object. Unsigned,
                // it is refused by every verifying reader, which is the safe way to fail.
                tracing::error!(code = %e.code(), "a message could not be signed: {}", e.detail());
                message
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_and_publications_verify_only_where_they_belong() {
        let s = Signer::new(SigningKey::from_bytes(&[3; 32]));
        let status = s.publication("if/v1/a/b/status", br#"{"state":"online"}"#.to_vec());
        assert_eq!(s.own_publication("if/v1/a/b/status", &status).as_deref(), Some(&br#"{"state":"online"}"#[..]));
        assert!(s.own_publication("if/v1/a/b/tally", &status).is_none(), "another topic");
        assert!(s.own_publication("if/v1/a/b/status", br#"{"state":"online"}"#).is_none(), "unsigned");
        let reply = s.reply(&[1; 32], br#"{"ok":true}"#.to_vec());
        assert!(attest::verify(s.public(), REPLY_DOMAIN, &[1; 32], &reply).is_ok());
        assert!(attest::verify(s.public(), REPLY_DOMAIN, &[2; 32], &reply).is_err(), "another request");
        assert!(!format!("{s:?}").contains("03030303"), "the secret never prints");
    }
}
