//! A talent for tests: a key pair on disk (made as `ifctl keygen` makes it) and envelopes it signs.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use ed25519_dalek::SigningKey;
use if_protocol::envelope::{Args, Audience, EnvelopeBody, Hazards, Nonce, ProtocolVersion};
use if_protocol::frame;
use uuid::Uuid;

/// A talent and its sequence counter.
#[derive(Debug)]
pub struct Talent {
    /// The talent name.
    pub name: String,
    /// Its signing key.
    pub key: SigningKey,
    /// `NAME.pub`.
    pub public: PathBuf,
    /// `NAME.key`.
    pub secret: PathBuf,
    seq: AtomicU64,
    _dir: tempfile::TempDir,
}

/// Unix milliseconds now.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

impl Talent {
    /// A new key pair.
    pub fn new(name: &str) -> Talent {
        let dir = tempfile::tempdir().expect("tempdir");
        let (paths, _) = if_edge::keyfile::generate(dir.path(), name).expect("generate key");
        let key = if_edge::keyfile::read_secret(&paths.secret).expect("read key");
        Talent { name: name.into(), key, public: paths.public, secret: paths.secret, seq: AtomicU64::new(0), _dir: dir }
    }

    /// A ping envelope with the next sequence number, issued now.
    pub fn next_ping(&self) -> EnvelopeBody {
        self.ping(self.seq.fetch_add(1, Ordering::Relaxed) + 1)
    }

    /// A ping envelope with sequence number `seq`, issued now, for agent `studio-a/edge-1` (the agent
    /// [`crate::agent::Agent::init`] makes).
    pub fn ping(&self, seq: u64) -> EnvelopeBody {
        let mut nonce = [0u8; 16];
        rand::fill(&mut nonce[..]);
        EnvelopeBody {
            version: ProtocolVersion::CURRENT,
            id: Uuid::new_v4(),
            audience: Audience::agent("studio-a", "edge-1").expect("names"),
            sender: self.name.as_str().try_into().expect("short name"),
            seq,
            nonce: Nonce(nonce),
            issued_at_ms: now_ms(),
            ttl_s: 60,
            scope: "studio:control".try_into().expect("short"),
            hazards: Hazards::NONE,
            capability: "if://capability/edge.ping".try_into().expect("short"),
            action: "ping".try_into().expect("short"),
            args: Args::new(),
            why: "end-to-end test".try_into().expect("short"),
            trace: Uuid::new_v4(),
        }
    }

    /// The signed frame of `body`.
    pub fn sign(&self, body: &EnvelopeBody) -> Vec<u8> {
        frame::sign_envelope(&self.key, body).expect("sign").to_vec()
    }
}
