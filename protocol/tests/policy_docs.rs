//! Policy documents: signatures over canonical bytes, threshold counting, text and binary forms.

use ed25519_dalek::SigningKey;
use if_protocol::ErrorCode;
use if_protocol::bytes::FixedBytes;
use if_protocol::envelope::Hazards;
use if_protocol::policy::{
    ActionSpec, Emergency, Grant, KeyRoles, Limits, Manifest, Semver, Signed, TrustKey, TrustRoot, canonical_bytes,
};

fn k(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

fn manifest() -> Manifest {
    Manifest {
        id: "if://capability/vmix.switcher".try_into().expect("short"),
        version: Semver { major: 1, minor: 2, patch: 0 },
        driver: "vmix-tcp".try_into().expect("short"),
        endpoint: "tcp://10.0.0.5:8099".try_into().expect("short"),
        requires_secrets: heapless::Vec::new(),
        scopes: heapless::Vec::from_slice(&["studio:control".try_into().expect("short")]).expect("fits"),
        limits: Limits {
            rps: 10.0,
            burst: 5,
            backoff: heapless::Vec::from_slice(&[1, 2, 5, 10, 30]).expect("fits"),
            breaker_failures: 3,
            queue_depth: 32,
            timeout_ms: 2000,
        },
        actions: heapless::Vec::from_slice(&[ActionSpec {
            name: "cut".try_into().expect("short"),
            hazards: Hazards::ON_AIR,
            cost: 0,
            emergency: Emergency::No,
        }])
        .expect("fits"),
        expires: 1_900_000_000,
    }
}

#[test]
fn threshold_counts_each_trusted_key_once() {
    let mut doc = Signed::unsigned(manifest());
    doc.sign(&k(1)).expect("sign");
    doc.sign(&k(1)).expect("sign again replaces");
    assert_eq!(doc.signatures.len(), 1);
    // A second copy of the same signature pushed by hand still counts once.
    let dup = doc.signatures[0].clone();
    doc.signatures.push(dup).expect("room");
    let trusted = [k(1).verifying_key(), k(2).verifying_key(), k(3).verifying_key()];
    assert_eq!(doc.count_valid(&trusted).expect("count"), 1);
    assert_eq!(doc.verify_threshold(&trusted, 2).expect_err("1 of 2").code(), ErrorCode::InvalidSignature);
    doc.sign(&k(2)).expect("sign");
    doc.verify_threshold(&trusted, 2).expect("2 of 3");
    // A key listed twice among the trusted counts once too.
    let twice = [k(1).verifying_key(), k(1).verifying_key()];
    assert_eq!(doc.count_valid(&twice).expect("count"), 1);
}

#[test]
fn signatures_by_untrusted_keys_count_for_nothing() {
    let mut doc = Signed::unsigned(manifest());
    doc.sign(&k(9)).expect("sign");
    assert_eq!(doc.count_valid(&[k(1).verifying_key()]).expect("count"), 0);
    assert!(doc.verify_threshold(&[k(1).verifying_key()], 0).is_err(), "a zero threshold never passes");
}

#[test]
fn any_change_of_meaning_breaks_the_signature_and_reformatting_does_not() {
    let mut doc = Signed::unsigned(manifest());
    doc.sign(&k(1)).expect("sign");
    let trusted = [k(1).verifying_key()];
    let text = serde_json::to_string_pretty(&doc).expect("json");
    assert!(text.contains("\"version\": \"1.2.0\"") && text.contains("\"on_air\""), "{text}");
    let compact: Signed<Manifest> = serde_json::from_str(&serde_json::to_string(&doc).expect("json")).expect("parse");
    compact.verify_threshold(&trusted, 1).expect("reformatted text keeps its signature");

    let mut changed = doc.clone();
    changed.doc.limits.rps = 100.0;
    assert!(changed.verify_threshold(&trusted, 1).is_err());
    let mut changed = doc.clone();
    changed.doc.actions[0].hazards = Hazards::NONE;
    assert!(changed.verify_threshold(&trusted, 1).is_err());
}

#[test]
fn domains_separate_document_kinds() {
    // The same signer, the same bytes, a different kind: the signature must not carry over.
    let root = TrustRoot {
        version: 1,
        expires: 1_900_000_000,
        threshold: 1,
        keys: heapless::Vec::from_slice(&[TrustKey {
            name: "ops".try_into().expect("short"),
            public_key: FixedBytes(*k(1).verifying_key().as_bytes()),
            roles: KeyRoles { manifests: true, policy: true },
        }])
        .expect("fits"),
    };
    let mut signed_root = Signed::unsigned(root);
    signed_root.sign(&k(1)).expect("sign");
    let grant = Grant {
        talent: "desk-a".try_into().expect("short"),
        capability: "if://capability/vmix.switcher".try_into().expect("short"),
        scopes: heapless::Vec::new(),
        actions: heapless::Vec::new(),
        hazards: Hazards::NONE,
        expires: None,
        reach: Default::default(),
    };
    let as_grant = Signed { doc: grant, signatures: signed_root.signatures.clone() };
    assert_eq!(as_grant.count_valid(&[k(1).verifying_key()]).expect("count"), 0);
    assert!(canonical_bytes(&signed_root.doc).is_ok());
}

#[test]
fn semver_text() {
    assert_eq!(Semver::parse("1.2.3"), Some(Semver { major: 1, minor: 2, patch: 3 }));
    for bad in ["1.2", "1.2.3.4", "01.2.3", "1.x.3", "", "1.2.3-beta"] {
        assert_eq!(Semver::parse(bad), None, "{bad}");
    }
    assert!(Semver::parse("1.10.0") > Semver::parse("1.9.9"));
}

#[test]
fn an_emergency_is_written_as_a_boolean_or_keep_queue_and_signs_as_the_boolean_did() {
    // Fields are encoded one after another, so equal field bytes keep every earlier signature valid.
    let bytes = |e: Emergency| postcard::to_slice(&e, &mut [0u8; 4]).map(|b| b.to_vec()).expect("encode");
    let boolean = |b: bool| postcard::to_slice(&b, &mut [0u8; 4]).map(|b| b.to_vec()).expect("encode");
    assert_eq!(bytes(Emergency::No), boolean(false));
    assert_eq!(bytes(Emergency::EndsQueue), boolean(true));
    assert_eq!(bytes(Emergency::KeepsQueue), vec![2]);
    for e in [Emergency::No, Emergency::EndsQueue, Emergency::KeepsQueue] {
        assert_eq!(postcard::from_bytes::<Emergency>(&bytes(e)).expect("decode"), e);
        let text = serde_json::to_string(&e).expect("text");
        assert_eq!(serde_json::from_str::<Emergency>(&text).expect("parse"), e, "{text}");
    }
    assert_eq!(serde_json::to_string(&Emergency::EndsQueue).expect("text"), "true");
    assert_eq!(serde_json::to_string(&Emergency::KeepsQueue).expect("text"), "\"keep-queue\"");
    assert!(postcard::from_bytes::<Emergency>(&[3]).is_err());
    let bad = serde_json::from_str::<Emergency>("\"sometimes\"").expect_err("refused");
    assert!(bad.to_string().contains("keep-queue"), "{bad}");

    // A manifest signed with `emergency = true` verifies with the action read back as ending the queue.
    let mut m = manifest();
    m.actions[0].emergency = Emergency::EndsQueue;
    let mut doc = Signed::unsigned(m);
    doc.sign(&k(1)).expect("sign");
    let text = serde_json::to_string(&doc).expect("json").replace("\"emergency\":true", "\"emergency\":\"keep-queue\"");
    let changed: Signed<Manifest> = serde_json::from_str(&text).expect("parse");
    assert_eq!(changed.doc.actions[0].emergency, Emergency::KeepsQueue);
    assert!(changed.count_valid(&[k(1).verifying_key()]).expect("count") == 0, "a change of meaning");
}
