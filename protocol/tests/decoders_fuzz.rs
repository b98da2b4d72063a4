//! proptest: every type round-trips, and random bytes into every decoder never panic.

mod common;

use if_protocol::envelope::{ArgValue, Args, Audience, EnvelopeBody, Hazards, Nonce, ProtocolVersion};
use if_protocol::link::{self, Accumulator, Lamp, LinkFrame, Message, NakReason, SafeReason};
use if_protocol::policy::{Grant, Manifest, Signed, Talent, TrustRoot};
use if_protocol::replay::ReplayWindow;
use if_protocol::witness::checkpoint::{Checkpoint, NoteVerifier};
use if_protocol::{frame, json};
use proptest::prelude::*;
use uuid::Uuid;

fn token() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_.-]{1,20}"
}

fn arg_value() -> impl Strategy<Value = ArgValue> {
    prop_oneof![
        any::<bool>().prop_map(ArgValue::Bool),
        any::<i64>().prop_map(ArgValue::Int),
        "[ -~]{0,40}".prop_map(|s| ArgValue::Text(s.as_str().try_into().expect("short"))),
    ]
}

fn body() -> impl Strategy<Value = EnvelopeBody> {
    (
        (any::<[u8; 16]>(), token(), any::<u64>(), any::<[u8; 16]>(), any::<u64>(), 1u32..=86_400),
        (
            token(),
            0u16..32,
            token(),
            token(),
            proptest::collection::vec((token(), arg_value()), 0..8),
            "[ -~]{1,60}",
            any::<[u8; 16]>(),
        ),
    )
        .prop_filter_map(
            "why must not be blank",
            |((id, sender, seq, nonce, at, ttl), (scope, hz, cap, action, args, why, trace))| {
                if why.trim().is_empty() {
                    return None;
                }
                let mut a = Args::new();
                for (k, v) in args {
                    a.insert(&k, v).ok()?;
                }
                Some(EnvelopeBody {
                    version: ProtocolVersion::CURRENT,
                    id: Uuid::from_bytes(id),
                    audience: match seq % 3 {
                        0 => Audience::Fleet,
                        1 => Audience::Site { site: sender.as_str().try_into().ok()? },
                        _ => Audience::agent(&sender, &action).ok()?,
                    },
                    sender: sender.as_str().try_into().ok()?,
                    seq,
                    nonce: Nonce(nonce),
                    issued_at_ms: at,
                    ttl_s: ttl,
                    scope: scope.as_str().try_into().ok()?,
                    hazards: Hazards::from_bits(hz)?,
                    capability: format!("if://capability/{cap}").as_str().try_into().ok()?,
                    action: action.as_str().try_into().ok()?,
                    args: a,
                    why: why.as_str().try_into().ok()?,
                    trace: Uuid::from_bytes(trace),
                })
            },
        )
}

fn lamp() -> impl Strategy<Value = Lamp> {
    (0u8..4).prop_map(|s| [Lamp::Off, Lamp::Red, Lamp::Green, Lamp::Amber][s as usize])
}

fn message() -> impl Strategy<Value = Message> {
    prop_oneof![
        Just(Message::Ack),
        Just(Message::Nak { reason: NakReason::InSafeState }),
        any::<u32>().prop_map(|uptime_ms| Message::Heartbeat { uptime_ms }),
        (any::<u32>(), any::<[u8; 3]>(), any::<u8>(), any::<u8>(), any::<u8>(), any::<u32>()).prop_map(
            |(board_id, firmware, lamps, relays, inputs, boots)| Message::Hello {
                board_id,
                firmware,
                lamps,
                relays,
                inputs,
                boots
            }
        ),
        (any::<u32>(), any::<u32>()).prop_map(|(session, boots)| Message::Welcome { session, boots }),
        (any::<u8>(), lamp()).prop_map(|(lamp, color)| Message::SetLamp { lamp, color }),
        (any::<u8>(), any::<bool>()).prop_map(|(relay, on)| Message::SetRelay { relay, on }),
        (any::<u8>(), any::<u16>()).prop_map(|(relay, ms)| Message::PulseRelay { relay, ms }),
        Just(Message::SafeState),
        Just(Message::Resume),
        (any::<u8>(), any::<bool>()).prop_map(|(input, pressed)| Message::Gpi { input, pressed }),
        Just(Message::SafeEntered { reason: SafeReason::LinkLost }),
        (proptest::collection::vec(lamp(), 0..16), any::<u16>(), any::<bool>())
            .prop_map(|(l, relays, safe)| { Message::Status { lamps: l.into_iter().collect(), relays, safe } }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn envelope_round_trips_through_frame_and_json(b in body(), seed in 1u8..=255) {
        let key = common::key(seed);
        let f = frame::sign_envelope(&key, &b).expect("valid body signs");
        let vk = key.verifying_key();
        prop_assert_eq!(&frame::open(&f, |_| Some(vk)).expect("opens"), &b);
        let view = json::frame_to_json(&f).expect("view");
        let text = serde_json::to_string(&view).expect("json");
        prop_assert_eq!(json::json_to_frame(&json::parse(&text).expect("parse")).expect("frame"), f);
    }

    #[test]
    fn link_frames_round_trip(seq in any::<u8>(), ack in any::<u8>(), msg in message()) {
        let f = LinkFrame { seq, ack, msg };
        let mut out = [0u8; link::MAX_ENCODED_LEN];
        let n = link::encode(&f, &mut out).expect("fits");
        prop_assert!(out[..n - 1].iter().all(|b| *b != 0), "no delimiter inside a frame");
        let mut acc = Accumulator::new();
        let mut got = Vec::new();
        acc.feed(&out[..n], |r| got.push(r));
        prop_assert_eq!(got, vec![Ok(f)]);
    }

    #[test]
    fn random_bytes_never_panic_any_decoder(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = frame::SignedFrame::parse(&bytes).map(|s| s.inspect_unverified());
        let _ = postcard::from_bytes::<EnvelopeBody>(&bytes);
        let _ = postcard::from_bytes::<Manifest>(&bytes);
        let _ = postcard::from_bytes::<Signed<TrustRoot>>(&bytes);
        let _ = postcard::from_bytes::<Signed<Talent>>(&bytes);
        let _ = postcard::from_bytes::<Signed<Grant>>(&bytes);
        let _ = postcard::from_bytes::<ReplayWindow>(&bytes);
        let _ = postcard::from_bytes::<LinkFrame>(&bytes);
        let mut scratch = bytes.clone();
        let _ = link::decode(&mut scratch);
        let mut acc = Accumulator::new();
        acc.feed(&bytes, |_| ());
        let text = String::from_utf8_lossy(&bytes);
        let _ = Checkpoint::parse_text(&text);
        let _ = NoteVerifier::parse(&text);
        let _ = json::parse(&text);
        let _ = serde_json::from_str::<Signed<Manifest>>(&text);
    }

    #[test]
    fn random_frames_with_valid_header_never_open(body in proptest::collection::vec(any::<u8>(), 0..400), sig in proptest::collection::vec(any::<u8>(), 64)) {
        let key = common::key(1);
        let mut f = frame::MAGIC.to_vec();
        f.push(frame::FRAME_VERSION);
        f.extend_from_slice(&if_protocol::keys::key_id(&key.verifying_key()));
        f.extend_from_slice(&(body.len() as u16).to_be_bytes());
        f.extend_from_slice(&body);
        f.extend_from_slice(&sig);
        let vk = key.verifying_key();
        prop_assert!(frame::open(&f, |_| Some(vk)).is_err());
    }

    #[test]
    fn replay_window_state_round_trips(width in 1u16..=1024, seqs in proptest::collection::vec(any::<u64>(), 0..20)) {
        let mut w = ReplayWindow::new(width).expect("width");
        for s in seqs { let _ = w.accept(s); }
        let bytes = postcard::to_allocvec(&w).expect("encode");
        let back: ReplayWindow = postcard::from_bytes(&bytes).expect("decode");
        prop_assert!(back.is_well_formed());
        prop_assert_eq!(back, w);
    }
}
