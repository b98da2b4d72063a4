//! Signed frames: round trips, tampering with every byte, non-canonical bodies, the size cap, the JSON view.

mod common;

use ed25519_dalek::SigningKey;
use if_protocol::ErrorCode;
use if_protocol::envelope::{Arg, ArgValue, Audience, EnvelopeBody, Hazards, Reach};
use if_protocol::frame::{self, ENVELOPE_DOMAIN, HEADER_LEN, MAX_FRAME_LEN, SIGNATURE_LEN, SignedFrame};
use if_protocol::{json, keys};

fn open_with(frame_bytes: &[u8], key: &SigningKey) -> Result<EnvelopeBody, if_protocol::IfError> {
    let vk = key.verifying_key();
    frame::open(frame_bytes, |_| Some(vk))
}

fn keyring(frame_bytes: &[u8], key: &SigningKey) -> Result<EnvelopeBody, if_protocol::IfError> {
    let vk = key.verifying_key();
    let id = keys::key_id(&vk);
    frame::open(frame_bytes, |asked| (*asked == id).then_some(vk))
}

/// Signs arbitrary body bytes (as a key holder could) and lays out a frame.
fn frame_for_bytes(key: &SigningKey, body: &[u8]) -> Vec<u8> {
    let sig = keys::sign(key, ENVELOPE_DOMAIN, body).expect("sign");
    frame::assemble(&keys::key_id(&key.verifying_key()), body, &sig).expect("assemble").to_vec()
}

#[test]
fn signed_frame_round_trips() {
    let key = common::key(1);
    let body = common::body();
    let f = frame::sign_envelope(&key, &body).expect("sign");
    assert_eq!(open_with(&f, &key).expect("opens"), body);
    assert_eq!(keyring(&f, &key).expect("opens"), body);
    let keys: Vec<_> = body.args.iter().map(|a| a.key.as_str()).collect();
    assert_eq!(keys, ["Duration", "Input", "Mix", "Preview"], "args are kept sorted");
}

#[test]
fn every_flipped_byte_is_rejected_with_a_signature_or_envelope_code() {
    let key = common::key(1);
    let f = frame::sign_envelope(&key, &common::body()).expect("sign").to_vec();
    let body_end = f.len() - SIGNATURE_LEN;
    for i in 0..f.len() {
        for mask in [0x01u8, 0x80, 0xff] {
            let mut bad = f.clone();
            bad[i] ^= mask;
            let err = open_with(&bad, &key).expect_err("tampered frame must not open");
            let field = match i {
                0..4 => "magic",
                4 => "version",
                5..13 => "key id",
                13..15 => "body length",
                _ if i < body_end => "body",
                _ => "signature",
            };
            let expected: &[ErrorCode] = match field {
                "key id" | "body" | "signature" => &[ErrorCode::InvalidSignature],
                _ => &[ErrorCode::InvalidEnvelope],
            };
            assert!(expected.contains(&err.code()), "byte {i} ({field}) ^ {mask:#x}: {err}");
        }
    }
    // With a key ring, a changed key id finds no key at all.
    let mut bad = f.clone();
    bad[6] ^= 1;
    assert_eq!(keyring(&bad, &key).expect_err("unknown id").code(), ErrorCode::UnknownKey);
}

#[test]
fn wrong_key_is_rejected() {
    let f = frame::sign_envelope(&common::key(1), &common::body()).expect("sign");
    let other = common::key(2).verifying_key();
    let e = frame::open(&f, |_| Some(other)).expect_err("other key");
    assert_eq!(e.code(), ErrorCode::InvalidSignature);
}

#[test]
fn oversize_is_rejected_before_decoding() {
    // Garbage that is too long: the cap answers before the magic is even looked at.
    let e = SignedFrame::parse(&vec![0xAA; MAX_FRAME_LEN + 1]).expect_err("oversize");
    assert_eq!(e.code(), ErrorCode::FrameTooLarge);
    // A real frame padded past the cap.
    let mut f = frame::sign_envelope(&common::key(1), &common::body()).expect("sign").to_vec();
    f.resize(MAX_FRAME_LEN + 1, 0);
    assert_eq!(open_with(&f, &common::key(1)).expect_err("oversize").code(), ErrorCode::FrameTooLarge);
    // Too short to hold header and signature.
    let e = SignedFrame::parse(&[0u8; HEADER_LEN + SIGNATURE_LEN - 1]).expect_err("short");
    assert_eq!(e.code(), ErrorCode::InvalidEnvelope);
}

/// Byte offset of `ttl_s` in the encoded body: the encoded length of the fields before it.
fn ttl_offset(b: &EnvelopeBody) -> usize {
    let prefix = (&b.version, &b.id, &b.audience, &b.sender, b.seq, &b.nonce, b.issued_at_ms);
    postcard::to_allocvec(&prefix).expect("encode").len()
}

#[test]
fn padded_varint_is_non_canonical() {
    let key = common::key(1);
    let body = common::body();
    let canonical = frame::encode_body(&body).expect("encode").to_vec();
    let at = ttl_offset(&body);
    assert_eq!(canonical[at], 60, "ttl_s = 60 is one varint byte");
    // 60 written as two varint bytes: 0xbc (60 | continuation) then 0x00.
    let mut padded = canonical[..at].to_vec();
    padded.extend_from_slice(&[0xbc, 0x00]);
    padded.extend_from_slice(&canonical[at + 1..]);
    assert_eq!(postcard::from_bytes::<EnvelopeBody>(&padded).expect("postcard accepts padding"), body);
    let e = open_with(&frame_for_bytes(&key, &padded), &key).expect_err("padded");
    assert_eq!(e.code(), ErrorCode::NonCanonical, "{e}");
}

#[test]
fn trailing_bytes_are_non_canonical() {
    let key = common::key(1);
    let mut bytes = frame::encode_body(&common::body()).expect("encode").to_vec();
    bytes.push(0);
    let e = open_with(&frame_for_bytes(&key, &bytes), &key).expect_err("trailing");
    assert_eq!(e.code(), ErrorCode::NonCanonical);
}

#[test]
fn unsorted_args_are_non_canonical() {
    let key = common::key(1);
    let b = common::body();
    let mut args: Vec<Arg> = b.args.iter().cloned().collect();
    args.reverse();
    let fields =
        (&b.version, &b.id, &b.audience, &b.sender, b.seq, &b.nonce, b.issued_at_ms, b.ttl_s, &b.scope, &b.hazards);
    let mut bytes = postcard::to_allocvec(&fields).expect("encode");
    bytes.extend(postcard::to_allocvec(&(&b.capability, &b.action, &args, &b.why, &b.trace)).expect("encode"));
    let e = open_with(&frame_for_bytes(&key, &bytes), &key).expect_err("unsorted");
    assert_eq!(e.code(), ErrorCode::NonCanonical, "{e}");
}

#[test]
fn invalid_bodies_are_refused_by_signer_and_verifier() {
    let key = common::key(1);
    type Edit = Box<dyn Fn(&mut EnvelopeBody)>;
    let cases: Vec<(&str, Edit)> = vec![
        ("empty why", Box::new(|b| b.why.clear())),
        ("crlf in why", Box::new(|b| b.why = "cut\r\nFUNCTION Fade".try_into().expect("short"))),
        ("bad capability prefix", Box::new(|b| b.capability = "vmix.switcher".try_into().expect("short"))),
        ("space in sender", Box::new(|b| b.sender = "desk a".try_into().expect("short"))),
        ("empty action", Box::new(|b| b.action.clear())),
        ("zero ttl", Box::new(|b| b.ttl_s = 0)),
        ("ttl over a day", Box::new(|b| b.ttl_s = 86_401)),
        ("old version", Box::new(|b| b.version.minor = 0)),
        (
            "space in audience",
            Box::new(|b| b.audience = Audience::Site { site: "studio a".try_into().expect("short") }),
        ),
        (
            "newline in arg",
            Box::new(|b| b.args.insert("Value", ArgValue::Text("a\nb".try_into().expect("short"))).expect("arg")),
        ),
    ];
    for (name, edit) in cases {
        let mut b = common::body();
        edit(&mut b);
        let e = frame::sign_envelope(&key, &b).expect_err(name);
        assert_eq!(e.code(), ErrorCode::InvalidEnvelope, "{name}: {e}");
        // A key holder who skips validation still cannot get it past the verifier.
        let bytes = frame::encode_body(&b).expect("encode");
        let e = open_with(&frame_for_bytes(&key, &bytes), &key).expect_err(name);
        assert_eq!(e.code(), ErrorCode::InvalidEnvelope, "{name}: {e}");
    }
}

#[test]
fn unknown_hazard_bits_do_not_decode() {
    let key = common::key(1);
    let b = common::body();
    let canonical = frame::encode_body(&b).expect("encode").to_vec();
    let prefix = (&b.version, &b.id, &b.audience, &b.sender, b.seq, &b.nonce, b.issued_at_ms, b.ttl_s, &b.scope);
    let at = postcard::to_allocvec(&prefix).expect("encode").len();
    assert_eq!(canonical[at], Hazards::ON_AIR.bits() as u8);
    let mut bytes = canonical.clone();
    bytes[at] = 0x40; // bit 6: no such hazard
    let e = open_with(&frame_for_bytes(&key, &bytes), &key).expect_err("unknown hazard");
    assert_eq!(e.code(), ErrorCode::InvalidEnvelope);
}

#[test]
fn time_window() {
    let b = common::body();
    let t = b.issued_at_ms;
    assert!(b.check_time(t, 0).is_ok());
    assert!(b.check_time(t + 60_000, 0).is_ok(), "valid through its last millisecond");
    assert_eq!(b.check_time(t + 60_001, 0).expect_err("late").code(), ErrorCode::ExpiredMessage);
    assert!(b.check_time(t + 65_000, 5_000).is_ok(), "skew extends the window");
    assert_eq!(b.check_time(t - 1, 0).expect_err("early").code(), ErrorCode::FutureDated);
    assert!(b.check_time(t - 2_000, 2_000).is_ok());
    assert!(b.check_time(0, u64::MAX).is_ok(), "no overflow at the edges");
}

#[test]
fn json_view_round_trips_byte_for_byte() {
    let key = common::key(1);
    let f = frame::sign_envelope(&key, &common::body()).expect("sign");
    let view = json::frame_to_json(&f).expect("view");
    let text = serde_json::to_string_pretty(&view).expect("json");
    for needle in [
        "\"hazards\": [\n      \"on_air\"",
        "\"Input\": 3",
        "\"Preview\": true",
        "\"version\": \"2.2\"",
        "\"audience\": \"studio-a/edge-1\"",
        "07070707-0707-0707-0707-070707070707",
    ] {
        assert!(text.contains(needle), "missing {needle} in\n{text}");
    }
    let back = json::json_to_frame(&json::parse(&text).expect("parse")).expect("frame");
    assert_eq!(back, f, "frame -> JSON -> frame changes nothing");

    // Without body_bytes the body is re-encoded canonically: still the same frame.
    let mut bare = json::parse(&text).expect("parse");
    bare.body_bytes = None;
    assert_eq!(json::json_to_frame(&bare).expect("frame"), f);

    // Editing the readable body of a signed view is caught.
    let edited = text.replace("\"Input\": 3", "\"Input\": 4");
    let e = json::json_to_frame(&json::parse(&edited).expect("parse")).expect_err("edited");
    assert_eq!(e.code(), ErrorCode::NonCanonical);
    // And without body_bytes, the edit produces a frame whose signature fails.
    let mut edited = json::parse(&edited).expect("parse");
    edited.body_bytes = None;
    let forged = json::json_to_frame(&edited).expect("frame");
    assert_eq!(open_with(&forged, &key).expect_err("forged").code(), ErrorCode::InvalidSignature);
}

#[test]
fn json_view_rejects_bad_input() {
    let f = frame::sign_envelope(&common::key(1), &common::body()).expect("sign");
    let text = serde_json::to_string(&json::frame_to_json(&f).expect("view")).expect("json");
    for (name, bad) in [
        ("unknown field", text.replacen("\"key_id\"", "\"extra\":1,\"key_id\"", 1)),
        ("unknown hazard", text.replace("\"on_air\"", "\"explosive\"")),
        ("duplicate arg", text.replace("\"Input\":3", "\"Input\":3,\"Input\":4")),
        ("float arg", text.replace("\"Input\":3", "\"Input\":3.5")),
        ("not json", "{".to_string()),
    ] {
        assert_ne!(bad, text, "{name}: the edit must change the text");
        let e = json::parse(&bad).expect_err(name);
        assert_eq!(e.code(), ErrorCode::InvalidEnvelope, "{name}: {e}");
    }
}

#[test]
fn batch_verification_finds_the_bad_frames() {
    let keys: Vec<SigningKey> = (1..=8).map(common::key).collect();
    let mut frames: Vec<Vec<u8>> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| {
            let mut b = common::body();
            b.seq = i as u64;
            frame::sign_envelope(k, &b).expect("sign").to_vec()
        })
        .collect();
    let len = frames[3].len();
    frames[3][len - 1] ^= 1; // bad signature
    let items: Vec<_> = frames
        .iter()
        .zip(&keys)
        .enumerate()
        .map(|(i, (f, k))| {
            let vk = if i == 5 { keys[0].verifying_key() } else { k.verifying_key() }; // wrong key for 5
            (SignedFrame::parse(f).expect("layout"), vk)
        })
        .collect();
    let results = if_protocol::batch::verify_frames(&items);
    for (i, r) in results.iter().enumerate() {
        if i == 3 || i == 5 {
            assert_eq!(r.as_ref().expect_err("bad").code(), ErrorCode::InvalidSignature, "frame {i}");
        } else {
            assert_eq!(r.as_ref().expect("good").decode().expect("decode").seq, i as u64);
        }
    }
    // All good: one batch, all verified.
    let good: Vec<_> = items.iter().enumerate().filter(|(i, _)| *i != 3 && *i != 5).map(|(_, x)| *x).collect();
    assert!(if_protocol::batch::verify_frames(&good).iter().all(Result::is_ok));
}

#[test]
fn the_audience_is_signed_and_read_in_its_three_forms() {
    let key = common::key(1);
    for (text, reach) in [("studio-a/edge-1", Reach::Agent), ("studio-a/*", Reach::Site), ("*", Reach::Fleet)] {
        let mut b = common::body();
        b.audience = Audience::parse(text).expect(text);
        assert_eq!(b.audience.to_string(), text);
        assert_eq!(b.audience.reach(), reach);
        let f = frame::sign_envelope(&key, &b).expect("sign");
        let view = serde_json::to_string(&json::frame_to_json(&f).expect("view")).expect("json");
        assert!(view.contains(&format!("\"audience\":\"{text}\"")), "{view}");
        assert_eq!(open_with(&f, &key).expect("opens").audience, b.audience);
    }
    let one = Audience::parse("studio-a/edge-1").expect("agent");
    assert!(one.includes("studio-a", "edge-1"));
    assert!(!one.includes("studio-a", "edge-2") && !one.includes("studio-b", "edge-1"));
    assert!(Audience::parse("studio-a/*").expect("site").includes("studio-a", "edge-9"));
    assert!(!Audience::parse("studio-a/*").expect("site").includes("studio-b", "edge-9"));
    assert!(Audience::Fleet.includes("any", "one"));
    for bad in ["", "studio-a", "a/b/c", "/edge-1", "studio a/edge-1", "*/edge-1"] {
        assert_eq!(Audience::parse(bad).expect_err(bad).code(), ErrorCode::InvalidEnvelope, "{bad}");
    }
}

#[test]
fn a_frame_of_version_2_1_is_refused_before_its_signature_is_looked_at() {
    let key = common::key(1);
    let mut f = frame::sign_envelope(&key, &common::body()).expect("sign").to_vec();
    f[4] = frame::FRAME_VERSION_2_1;
    let e = SignedFrame::parse(&f).expect_err("2.1");
    assert_eq!(e.code(), ErrorCode::InvalidEnvelope);
    assert!(e.detail().contains("names no audience") && e.detail().contains("sign it again"), "{e}");
    f[4] = 0x23;
    assert!(SignedFrame::parse(&f).expect_err("unknown").detail().contains("0x23"));
}
