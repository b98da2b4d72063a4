//! The policy state: changes take effect when applied, survive a restore, and refusals change nothing.

use super::trust::tests::{root, signed};
use super::*;

const NOW: u64 = 1_800_000_000;

fn manifest(by: &[u8]) -> Signed<Manifest> {
    let text = include_str!("../../../tests/fixtures/manifests/vmix.toml");
    let mut s = Signed::unsigned(file::parse_doc::<Manifest>(text, "vmix.toml").expect("parse"));
    for seed in by {
        s.sign(&trust::tests::key(*seed)).expect("sign");
    }
    s
}

#[test]
fn changes_take_effect_only_when_applied_and_survive_a_restore() {
    let allow = vec![Allowed::parse("if://capability/vmix.switcher@1.2.0").expect("allow")];
    let mut p = Policy { allow: allow.clone(), ..Policy::default() };
    let r = signed(root(1, &[1, 2], 1), &[1]);
    let change = p.offer_root(&r, NOW).expect("root").expect("a change");
    assert!(p.root().is_none(), "nothing changes before apply");
    let mut persisted = vec![(change.key.clone(), change.value.clone())];
    p.apply(change);
    assert!(p.offer_root(&r, NOW).expect("same").is_none(), "the same root is a no-op");
    let m = manifest(&[2]);
    let change = p.offer_manifest(&m, NOW).expect("manifest").expect("a change");
    persisted.push((change.key.clone(), change.value.clone()));
    p.apply(change);
    assert!(p.offer_manifest(&m, NOW).expect("same").is_none());

    let back = Policy::restore(persisted, allow).expect("restore");
    assert_eq!(back.root(), p.root());
    assert_eq!(back.manifest("if://capability/vmix.switcher").map(|m| m.version.to_string()), Some("1.2.0".into()));
    assert_eq!(back.status().manifests[0].version, "1.2.0");
}

#[test]
fn principals_are_found_by_key_id_and_role() {
    let mut p = Policy::default();
    let change = p.offer_root(&signed(root(1, &[1, 2], 1), &[1]), NOW).expect("root").expect("change");
    p.apply(change);
    let id = |seed: u8| keys::key_id(&trust::tests::key(seed).verifying_key());
    assert_eq!(p.principal(&id(1)).map(|(n, _, w)| (n, w)), Some(("key1".into(), Principal::PolicySigner)));
    assert!(p.principal(&id(2)).is_none(), "key 2 signs manifests only, not policy");
    assert!(p.principal(&id(3)).is_none());
}

#[test]
fn a_refusal_is_shown_with_its_code_and_changes_nothing() {
    let mut p = Policy::default();
    let e = p.offer_manifest(&manifest(&[1]), NOW).expect_err("no root");
    p.refused("vmix.toml", &e);
    assert!(p.manifests().next().is_none());
    let s = p.status();
    assert_eq!(s.refused[0].code, ErrorCode::InvalidSignature);
    assert_eq!(s.refused[0].source, "vmix.toml");
    assert!(Policy::restore(vec![("root".into(), vec![1, 2, 3])], Vec::new()).is_err(), "garbage is an error");
}
