//! `ifctl demo`, the README's first command, run as a user runs it: the real binary, its embedded
//! broker, simulators and agent; every step of its story must behave as expected and the witness log
//! must verify.

use std::process::Command;

#[test]
fn the_demo_tells_its_whole_story_and_the_witness_log_verifies() {
    let dir = tempfile::tempdir().expect("tempdir");
    let site = dir.path().join("site");
    let out = Command::new(if_tests::bin("ifctl")).args(["demo", "--dir"]).arg(&site).output().expect("run the demo");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{:?}\n{text}\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    for step in [
        "ok   the director cuts vMix",
        "ok   a route salvo on the Videohub",
        "ok   camera 1 recalls preset 2",
        "ok   the same signed cut is sent again",
        "ok   a cut in the director's name, signed with another key",
        "ok   a cut that does not declare the on-air hazard",
        "ok   vMix stops answering",
        "ok   vMix answers again",
        " 9. ok   a button on the rack node cuts vMix through a binding, as the director",
        "10. ok   the rack's lamps follow vMix tally, with no command sent",
        "11. ok   the agent stopped; its witness log verifies",
    ] {
        assert!(text.contains(step), "{step:?} in:\n{text}");
    }
    assert!(text.contains("demo: 10 of 10 steps behaved as expected; the witness log verifies"), "{text}");
    assert!(text.contains(r#"the UMD received display 2 "CAM 2" red (TSL v5)"#), "tally reached the UMDs: {text}");
    assert!(!text.contains(". FAIL "), "no step failed: {text}");
    // What the hardware saw: one cut (the replay and the refused ones never reached vMix).
    let vmix = std::fs::read_to_string(site.join("vmix.received")).expect("vMix record");
    assert_eq!(
        vmix.lines().filter(|l| l.starts_with("FUNCTION Cut")).count(),
        2,
        "the director's and the button's: {vmix}"
    );
}

#[test]
fn without_the_rack_nodes_firmware_the_demo_says_it_left_that_part_out() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new(if_tests::bin("ifctl"))
        .args(["demo", "--firmware", "/nonexistent/if-rack-node", "--dir"])
        .arg(dir.path().join("site"))
        .output()
        .expect("run the demo");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("rack node skipped: the firmware is not built (cargo build -p if-rack-node"), "{text}");
    assert!(text.contains("demo: 8 of 8 steps behaved as expected"), "{text}");
    assert!(!text.contains("a button on the rack node"), "{text}");
}

#[test]
fn the_demo_refuses_a_directory_that_is_not_empty() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("keep.txt"), "mine").expect("write");
    let out = Command::new(if_tests::bin("ifctl")).args(["demo", "--dir"]).arg(dir.path()).output().expect("run");
    assert_eq!(out.status.code(), Some(15), "IF_ERR_503's exit status");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with("IF_ERR_503 CONFIG_INVALID:") && err.contains("is not empty"), "{err}");
    assert_eq!(std::fs::read_to_string(dir.path().join("keep.txt")).expect("kept"), "mine", "nothing was touched");
}

#[test]
fn the_demo_as_json_is_one_object_per_step_then_the_summary() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new(if_tests::bin("ifctl"))
        .args(["--json", "demo", "--dir"])
        .arg(dir.path().join("site"))
        .output()
        .expect("run the demo");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
        .collect();
    let steps: Vec<u64> = lines.iter().filter_map(|l| l["step"].as_u64()).collect();
    assert_eq!(steps, (1..=11).collect::<Vec<_>>(), "{lines:#?}");
    assert!(lines.iter().filter(|l| l["step"].is_u64()).all(|l| l["ok"] == true && l["what"].is_string()));
    let last_step = lines.iter().find(|l| l["step"] == 11).expect("the witness step");
    assert_eq!(last_step["checkpoint"]["origin"], "local/if-edge/demo.edge-1", "{last_step}");
    assert_eq!(lines.last(), Some(&serde_json::json!({ "steps": 10, "ok": 10, "witness_verified": true })));
}
