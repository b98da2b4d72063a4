//! C2SP signed-note checkpoints: sign, verify, and every way a note can be wrong.

use ed25519_dalek::SigningKey;
use if_protocol::ErrorCode;
use if_protocol::witness::checkpoint::{Checkpoint, NoteVerifier, note_key_id, sign_checkpoint, sign_note};
use if_protocol::witness::merkle;

fn key() -> SigningKey {
    SigningKey::from_bytes(&[42; 32])
}

fn checkpoint() -> Checkpoint {
    Checkpoint {
        origin: "example.org/if-edge/studio-a-edge-1".try_into().expect("short"),
        size: 1234,
        root: merkle::leaf_hash(b"root"),
    }
}

fn verifier() -> NoteVerifier {
    NoteVerifier::new("studio-a-edge-1", key().verifying_key()).expect("name")
}

#[test]
fn signs_and_opens() {
    let note = sign_checkpoint(&checkpoint(), "studio-a-edge-1", &key()).expect("sign");
    let lines: Vec<&str> = note.split('\n').collect();
    assert_eq!(lines[0], "example.org/if-edge/studio-a-edge-1");
    assert_eq!(lines[1], "1234");
    assert_eq!(lines[3], "", "blank line before the signatures");
    assert!(lines[4].starts_with("\u{2014} studio-a-edge-1 "), "{}", lines[4]);
    let cp = verifier().open_checkpoint(&note, "example.org/if-edge/studio-a-edge-1").expect("opens");
    assert_eq!(cp, checkpoint());
}

#[test]
fn key_id_follows_the_spec() {
    use sha2::{Digest, Sha256};
    let vk = key().verifying_key();
    let mut h = Sha256::new();
    h.update(b"studio-a-edge-1\n\x01");
    h.update(vk.as_bytes());
    assert_eq!(note_key_id("studio-a-edge-1", &vk), h.finalize()[..4]);
}

#[test]
fn verifier_key_string_round_trips_and_checks_its_id() {
    let v = verifier();
    let text = v.to_vkey();
    assert!(text.starts_with("studio-a-edge-1+"));
    assert_eq!(NoteVerifier::parse(&text).expect("parse"), v);
    let mut parts: Vec<String> = text.splitn(3, '+').map(str::to_string).collect();
    parts[1] = "00000000".into();
    assert_eq!(NoteVerifier::parse(&parts.join("+")).expect_err("wrong id").code(), ErrorCode::InvalidProof);
    assert!(NoteVerifier::parse("only+two").is_err());
    assert!(NoteVerifier::new("has space", key().verifying_key()).is_err());
    assert!(NoteVerifier::new("has+plus", key().verifying_key()).is_err());
}

#[test]
fn other_signatures_are_ignored_and_ours_is_found() {
    let other = SigningKey::from_bytes(&[7; 32]);
    let text = checkpoint().to_text().expect("text");
    let theirs = sign_note(&text, "collector", &other).expect("sign");
    let ours = sign_note(&text, "studio-a-edge-1", &key()).expect("sign");
    let our_line = ours.rsplit_once("\n\n").expect("split").1;
    let both = format!("{theirs}{our_line}");
    assert_eq!(verifier().open(&both).expect("found"), text.as_str());
    let e = verifier().open(&theirs).expect_err("no signature by us");
    assert_eq!(e.code(), ErrorCode::InvalidProof);
}

#[test]
fn every_tampering_is_rejected() {
    let note = sign_checkpoint(&checkpoint(), "studio-a-edge-1", &key()).expect("sign").to_string();
    let origin = "example.org/if-edge/studio-a-edge-1";
    let cases = [
        ("size changed", note.replacen("1234", "1235", 1)),
        ("origin changed", note.replacen("studio-a-edge-1\n", "studio-b-edge-1\n", 1)),
        ("signature changed", {
            let mut b = note.clone().into_bytes();
            let at = b.len() - 5;
            b[at] = if b[at] == b'A' { b'B' } else { b'A' };
            String::from_utf8(b).expect("ascii")
        }),
        ("no blank line", note.replacen("\n\n", "\n", 1)),
        ("no final newline", note.trim_end().to_string()),
        ("plain dash", note.replace('\u{2014}', "-")),
        ("too long", format!("{}{note}", "x".repeat(2000))),
    ];
    for (name, bad) in cases {
        assert_ne!(bad, note, "{name}");
        assert!(verifier().open_checkpoint(&bad, origin).is_err(), "{name} must be rejected");
    }
    let e = verifier().open_checkpoint(&note, "example.org/if-edge/other").expect_err("origin");
    assert_eq!(e.code(), ErrorCode::InvalidProof);
}

#[test]
fn checkpoint_text_rules() {
    let ok = checkpoint().to_text().expect("text");
    assert_eq!(Checkpoint::parse_text(&ok).expect("parse"), checkpoint());
    let with_ext = format!("{ok}extension line\n");
    assert_eq!(Checkpoint::parse_text(&with_ext).expect("extensions ignored"), checkpoint());
    for bad in [
        ok.replacen("1234", "01234", 1),
        ok.replacen("1234", "-1", 1),
        ok.replacen("1234", "99999999999999999999999", 1),
        ok.trim_end().to_string(),
        "\n1\nAAAA\n".to_string(),
        format!("{ok}\n"),
    ] {
        assert!(Checkpoint::parse_text(&bad).is_err(), "{bad:?}");
    }
}

#[test]
fn parse_note_reads_the_checkpoint_of_a_signed_note_or_of_bare_text_without_checking_signatures() {
    let note = sign_checkpoint(&checkpoint(), "studio-a-edge-1", &key()).expect("sign");
    assert_eq!(Checkpoint::parse_note(&note).expect("signed note"), checkpoint());
    let bare = checkpoint().to_text().expect("text");
    assert_eq!(Checkpoint::parse_note(&bare).expect("bare text"), checkpoint());
    let forged = note.replace("\n1234\n", "\n1235\n");
    assert_eq!(Checkpoint::parse_note(&forged).expect("unchecked").size, 1235, "signatures are not its job");
    assert_eq!(
        Checkpoint::parse_note("example.org/x\nnot a size\n\nsig").expect_err("bad").code(),
        ErrorCode::InvalidProof
    );
}
