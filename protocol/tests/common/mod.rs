//! Helpers shared by the protocol test suites.
#![allow(dead_code)]

use ed25519_dalek::SigningKey;
use if_protocol::envelope::{ArgValue, Args, Audience, EnvelopeBody, Hazards, Nonce, ProtocolVersion};
use uuid::Uuid;

pub fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

pub fn body() -> EnvelopeBody {
    let mut args = Args::new();
    args.insert("Input", ArgValue::Int(3)).expect("arg");
    args.insert("Duration", ArgValue::Int(500)).expect("arg");
    args.insert("Mix", ArgValue::Text("main".try_into().expect("short"))).expect("arg");
    args.insert("Preview", ArgValue::Bool(true)).expect("arg");
    EnvelopeBody {
        version: ProtocolVersion::CURRENT,
        id: Uuid::from_bytes([7; 16]),
        audience: Audience::agent("studio-a", "edge-1").expect("names"),
        sender: "desk-a".try_into().expect("short"),
        seq: 300,
        nonce: Nonce([9; 16]),
        issued_at_ms: 1_790_000_000_000,
        ttl_s: 60,
        scope: "studio:control".try_into().expect("short"),
        hazards: Hazards::ON_AIR,
        capability: "if://capability/vmix.switcher".try_into().expect("short"),
        action: "cut".try_into().expect("short"),
        args,
        why: "cut to camera 3 for the interview".try_into().expect("short"),
        trace: Uuid::from_bytes([5; 16]),
    }
}
