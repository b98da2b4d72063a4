//! The systemd units in `packaging/` as systemd itself reads them: `systemd-analyze verify` finds
//! nothing to say about them, and `systemd-analyze security` rates their hardening (a regression in
//! the sandbox shows as a higher exposure). The units name the installed binaries; here they name the
//! ones just built, as verify checks that the programs exist.

use std::path::{Path, PathBuf};
use std::process::Command;

fn unit(name: &str, binary: &str, dir: &Path) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace");
    let text = std::fs::read_to_string(root.join("packaging").join(name)).expect("the unit");
    assert!(text.contains(&format!("/usr/bin/{binary} ")), "{name} runs /usr/bin/{binary}");
    let here = if_tests::bin(binary);
    let path = dir.join(name);
    std::fs::write(&path, text.replace(&format!("/usr/bin/{binary}"), here.to_str().expect("utf-8"))).expect("write");
    path
}

fn analyze(args: &[&str], unit: &Path) -> (bool, String) {
    let out = Command::new("systemd-analyze")
        .args(args)
        .arg(unit)
        .output()
        .expect("systemd-analyze runs (tools/test.sh installs systemd)");
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), said)
}

#[test]
fn the_units_verify_with_nothing_to_say() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, binary) in [("if-edge.service", "if-edge"), ("if-collector.service", "if-collector")] {
        let path = unit(name, binary, dir.path());
        let (ok, said) = analyze(&["verify"], &path);
        assert!(ok && said.trim().is_empty(), "{name}: {said}");
    }
}

#[test]
fn the_check_sees_a_mistyped_directive() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = unit("if-edge.service", "if-edge", dir.path());
    let text = std::fs::read_to_string(&path).expect("read");
    std::fs::write(&path, text.replace("WatchdogSec=", "WatchdogSecs=")).expect("write");
    let (_, said) = analyze(&["verify"], &path);
    assert!(said.contains("Unknown key 'WatchdogSecs'"), "{said}");
}

#[test]
fn the_agents_sandbox_keeps_its_exposure_low() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, binary, ceiling) in [("if-edge.service", "if-edge", 2.0), ("if-collector.service", "if-collector", 1.5)]
    {
        let path = unit(name, binary, dir.path());
        let (_, said) = analyze(&["security", "--offline=yes"], &path);
        let level = said
            .lines()
            .find_map(|l| l.split_once("Overall exposure level for ")?.1.split_once(": ")?.1.split_whitespace().next())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or_else(|| panic!("{name}: no exposure level in {said}"));
        println!("{name}: exposure {level}");
        assert!(level <= ceiling, "{name}: exposure {level} above {ceiling}:\n{said}");
    }
}
