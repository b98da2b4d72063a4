//! Hostile and broken input against the real agent: every case gets its IF_ERR code on the reply and/or
//! the DLQ, nothing runs, the DLQ never echoes the payload, and the agent stays up throughout.

use std::time::Duration;

use if_protocol::envelope::EnvelopeBody;
use if_protocol::frame::{self, ENVELOPE_DOMAIN, HEADER_LEN};
use if_protocol::keys;
use if_tests::agent::Agent;
use if_tests::broker::Broker;
use if_tests::probe::{Msg, Probe};
use if_tests::talent::{Talent, now_ms};

const WAIT: Duration = Duration::from_secs(10);

struct Rig {
    _broker: Broker,
    agent: Agent,
    probe: Probe,
    desk: Talent,
    op: Talent,
    calls: u64,
}

impl Rig {
    /// Publishes `payload` with a fresh correlation and returns its reply and its dead letter, if any.
    fn ask(&mut self, payload: Vec<u8>) -> (Msg, Option<Msg>) {
        self.calls += 1;
        let corr = self.calls.to_be_bytes();
        let digest = hex(&frame::digest(&payload));
        self.probe.request(payload, &corr);
        let mut reply = None;
        let mut dlq = None;
        let end = std::time::Instant::now() + WAIT;
        while reply.is_none() || dlq.is_none() {
            let quiet = if reply.is_some() { Duration::from_millis(300) } else { WAIT };
            let Some(m) = self.probe.next(quiet) else { break };
            if m.topic == self.probe.topics.dlq {
                if m.json()["frame_sha256"] == digest.as_str() {
                    dlq = Some(m);
                }
            } else if m.correlation.as_deref() == Some(&corr[..]) {
                reply = Some(m);
            }
            if std::time::Instant::now() > end {
                break;
            }
        }
        (reply.expect("a reply on the response topic"), dlq)
    }

    /// Asserts that `payload` is refused with `code` on both the reply and the DLQ.
    fn refused(&mut self, case: &str, payload: Vec<u8>, code: &str) {
        let (reply, dlq) = self.ask(payload.clone());
        assert_eq!(reply.code().as_deref(), Some(code), "{case}: reply {}", reply.json());
        assert_eq!(reply.json()["ok"], false, "{case}");
        let dlq = dlq.unwrap_or_else(|| panic!("{case}: no dead letter"));
        assert_eq!(dlq.code().as_deref(), Some(code), "{case}: dlq {}", dlq.json());
        assert!(dlq.json()["name"].is_string() && dlq.json()["message"].is_string(), "{case}");
        assert_no_echo(case, &dlq, &payload);
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn assert_no_echo(case: &str, dlq: &Msg, payload: &[u8]) {
    if payload.len() >= 48 {
        let text = String::from_utf8_lossy(&dlq.payload);
        let b64 = if_protocol::json::frame_to_json(payload).ok().and_then(|v| v.body_bytes);
        assert!(b64.is_none_or(|b| !text.contains(&b)), "{case}: the DLQ carries the body");
        assert!(!dlq.payload.windows(48).any(|w| payload.windows(48).any(|p| p == w)), "{case}: payload echoed");
    }
}

/// A frame whose body is not canonical (one byte after the end) but correctly signed.
fn non_canonical(t: &Talent, body: &EnvelopeBody) -> Vec<u8> {
    let mut bytes = frame::encode_body(body).expect("encode").to_vec();
    bytes.push(0);
    let sig = keys::sign(&t.key, ENVELOPE_DOMAIN, &bytes).expect("sign");
    frame::assemble(&keys::key_id(&t.key.verifying_key()), &bytes, &sig).expect("assemble").to_vec()
}

#[test]
fn hostile_input_is_refused_with_its_code_and_nothing_runs() {
    let broker = Broker::start();
    let desk = Talent::new("desk");
    let op = Talent::new("op");
    let mut agent = Agent::init(&broker, &[&desk, &op]);
    // Every refusal here is looked at one by one: lift the per-second allowance (the flood test keeps it).
    agent.edit_config(|t| t.replace("rejected_per_s = 20", "rejected_per_s = 100000"));
    agent.start();
    let probe = Probe::connect(&broker, &agent.site, &agent.name);
    let mut rig = Rig { _broker: broker, agent, probe, desk, op, calls: 0 };
    let mut legit = 0;

    // A good frame first; then the same bytes twice more: one execution, the same reply every time.
    let first = rig.desk.sign(&rig.desk.ping(5000));
    let (r1, d1) = rig.ask(first.clone());
    assert_eq!(r1.json()["ok"], true, "{}", r1.json());
    assert!(d1.is_none());
    legit += 1;
    for case in ["duplicate", "replayed frame"] {
        let (again, dlq) = rig.ask(first.clone());
        assert_eq!(again.payload, r1.payload, "{case}: the original reply, byte for byte");
        assert_eq!(dlq.and_then(|d| d.code()).as_deref(), Some("IF_ERR_106"), "{case}");
    }

    // Same seq, different body: an attack.
    let other = rig.desk.sign(&rig.desk.ping(5000));
    rig.refused("same seq, other body", other, "IF_ERR_103");
    // Below the window (width 1024).
    rig.refused("below the window", rig.desk.sign(&rig.desk.ping(5000 - 1024)), "IF_ERR_104");
    // Ahead of the agent's clock in microseconds (plus the skew): it would lock the sender out.
    rig.refused("ahead of the clock", rig.desk.sign(&rig.desk.ping(u64::MAX)), "IF_ERR_110");
    // Time.
    let mut old = rig.desk.ping(5001);
    old.issued_at_ms = now_ms() - 120_000;
    rig.refused("expired", rig.desk.sign(&old), "IF_ERR_102");
    let mut future = rig.desk.ping(5002);
    future.issued_at_ms = now_ms() + 120_000;
    rig.refused("future-dated", rig.desk.sign(&future), "IF_ERR_105");
    // Who signed.
    let mut ghost = rig.desk.ping(5003);
    ghost.sender = "ghost".try_into().expect("short");
    rig.refused("unknown sender", rig.desk.sign(&ghost), "IF_ERR_203");
    let stranger = Talent::new("desk");
    rig.refused("wrong key", stranger.sign(&stranger.ping(5004)), "IF_ERR_004");
    rig.refused("another talent's key", rig.op.sign(&rig.desk.ping(5005)), "IF_ERR_003");
    // Capability and action.
    let mut cap = rig.desk.ping(5006);
    cap.capability = "if://capability/vmix.switcher".try_into().expect("short");
    rig.refused("unknown capability", rig.desk.sign(&cap), "IF_ERR_201");
    let mut act = rig.desk.ping(5007);
    act.action = "reboot".try_into().expect("short");
    rig.refused("unknown action", rig.desk.sign(&act), "IF_ERR_206");

    // Broken frames.
    let good = rig.desk.sign(&rig.desk.ping(5008));
    rig.refused("truncated", good[..good.len() - 1].to_vec(), "IF_ERR_101");
    let mut big = good.clone();
    big.resize(9000, 0);
    rig.refused("oversize", big, "IF_ERR_107");
    rig.refused("non-canonical", non_canonical(&rig.desk, &rig.desk.ping(5009)), "IF_ERR_108");
    rig.refused("empty", Vec::new(), "IF_ERR_101");
    rig.refused("JSON with wrong types", br#"{"key_id": 5, "body": [], "signature": true}"#.to_vec(), "IF_ERR_101");
    // A value in a malformed JSON view is never quoted back, not in the reply and not in the DLQ.
    let secret = "hunter2-studio-password";
    let (reply, dlq) = rig.ask(format!(r#"{{"key_id": "{secret}", "body": 7}}"#).into_bytes());
    assert_eq!(reply.code().as_deref(), Some("IF_ERR_101"));
    for m in std::iter::once(&reply).chain(dlq.as_ref()) {
        assert!(!String::from_utf8_lossy(&m.payload).contains(secret), "echoed: {}", m.json());
    }
    for i in 0..20u8 {
        let mut noise = vec![0u8; 50 + usize::from(i) * 13];
        rand::fill(&mut noise[..]);
        noise[0] = b'I' ^ i.max(1);
        rig.refused("random bytes", noise, "IF_ERR_101");
    }
    // One flipped byte in every field of the frame: header, each body byte, signature.
    let body_end = good.len() - 64;
    for i in 0..good.len() {
        let mut bad = good.clone();
        bad[i] ^= 0x01;
        let code = match i {
            0..5 | 13..15 => "IF_ERR_101",
            5..13 => "IF_ERR_004",
            _ if i < body_end => "IF_ERR_001",
            _ => "IF_ERR_001",
        };
        rig.refused(&format!("flipped byte {i} (body {HEADER_LEN}..{body_end})"), bad, code);
    }
    // The untouched frame still works, and so does its JSON view.
    let (ok, _) = rig.ask(good);
    assert_eq!(ok.json()["ok"], true);
    legit += 1;
    let view = if_protocol::json::frame_to_json(&rig.desk.sign(&rig.desk.ping(5010))).expect("view");
    let (ok, _) = rig.ask(serde_json::to_vec(&view).expect("json"));
    assert_eq!(ok.json()["ok"], true, "the JSON view is accepted: {}", ok.json());
    legit += 1;

    assert!(rig.agent.is_running(), "the agent stayed up");
    rig.agent.stop();
    assert_eq!(rig.agent.executed_pings(), legit, "only the legitimate commands ran");
    let verify = rig.agent.verify_witness();
    assert!(verify.status.success(), "{}", String::from_utf8_lossy(&verify.stderr));
    let log = rig.agent.log();
    assert!(!log.contains("panicked"), "no panic: {log}");
    assert!(!log.contains("hunter2"), "no sender text in the agent's log");
    let export = rig.agent.export();
    assert!(!serde_json::to_string(&export).expect("json").contains("hunter2"), "nor in the witness");
}
