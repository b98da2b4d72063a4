//! Keys made by the real `ifctl keygen` sign frames that verify with the public key file, as an agent would
//! check them; a frame signed by another key does not.

use std::process::Command;

use if_protocol::{ErrorCode, envelope, frame, keys};
use uuid::Uuid;

fn body() -> envelope::EnvelopeBody {
    envelope::EnvelopeBody {
        version: envelope::ProtocolVersion::CURRENT,
        id: Uuid::from_bytes([1; 16]),
        audience: envelope::Audience::agent("studio-a", "edge-1").expect("names"),
        sender: "desk-a".try_into().expect("short"),
        seq: 1,
        nonce: envelope::Nonce([2; 16]),
        issued_at_ms: 1_790_000_000_000,
        ttl_s: 30,
        scope: "studio:control".try_into().expect("short"),
        hazards: envelope::Hazards::NONE,
        capability: "if://capability/edge.ping".try_into().expect("short"),
        action: "ping".try_into().expect("short"),
        args: envelope::Args::new(),
        why: "check the path".try_into().expect("short"),
        trace: Uuid::from_bytes([3; 16]),
    }
}

#[test]
fn keygen_keys_sign_frames_that_verify_against_the_pub_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    for name in ["desk-a", "intruder"] {
        let out = Command::new(if_tests::bin("ifctl"))
            .args(["keygen", "--name", name, "--out"])
            .arg(dir.path())
            .output()
            .expect("run ifctl");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let secret = if_edge::keyfile::read_secret(&dir.path().join("desk-a.key")).expect("secret");
    let public = if_edge::keyfile::read_public(&dir.path().join("desk-a.pub")).expect("public");
    let id = keys::key_id(&public);
    let resolve = |asked: &keys::KeyId| (*asked == id).then_some(public);

    let f = frame::sign_envelope(&secret, &body()).expect("sign");
    assert_eq!(frame::open(&f, resolve).expect("verifies"), body());

    let intruder = if_edge::keyfile::read_secret(&dir.path().join("intruder.key")).expect("secret");
    let forged = frame::sign_envelope(&intruder, &body()).expect("sign");
    assert_eq!(frame::open(&forged, resolve).expect_err("unknown key").code(), ErrorCode::UnknownKey);
}

#[test]
fn if_edge_binary_reports_its_protocol() {
    let out = Command::new(if_tests::bin("if-edge")).arg("--version").output().expect("run if-edge");
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("IF.connect 2.2"));
    let bad = Command::new(if_tests::bin("if-edge")).arg("frobnicate").output().expect("run if-edge");
    assert_eq!(bad.status.code(), Some(2));
}
