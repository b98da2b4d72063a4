//! The Debian package, built by `packaging/build-deb.sh` from the binaries under test: every file in it
//! with its mode, the conffile, the control fields; and, when the suite runs as root (as CI does),
//! installed with `dpkg -i`, the installed agent started against a test broker, a changed config kept
//! across a reinstall, then removed and purged. The arm64 package likewise from the Arm build, its
//! binaries Arm's and run from the unpacked package under `qemu-aarch64`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use if_tests::broker::Broker;

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace").to_path_buf()
}

/// Builds the package from the binaries under test; returns its path.
fn build() -> PathBuf {
    let bins = if_tests::bin("if-edge").parent().expect("target dir").to_path_buf();
    for b in ["ifctl", "if-collector"] {
        if_tests::bin(b);
    }
    // The suite's binaries are unoptimised: gzip packs them in a fraction of xz's time.
    let out = run(Command::new(root().join("packaging/build-deb.sh")).arg(&bins).env("DEB_COMPRESS", "gzip"));
    root().join(out.trim())
}

/// The release binaries for Arm that `tools/test.sh` builds, checked against cargo's dep-info.
const ARM_BUILD: &str = "cargo build --release --target aarch64-unknown-linux-gnu -p if-edge -p if-tools \
                         -p if-collector --bin if-edge --bin ifctl --bin if-collector";

/// Builds the arm64 package from the Arm build, as a cross build does (Debian's cross strip, and the
/// Arm binaries run under qemu-aarch64 to write their man pages and completions).
fn build_arm64() -> PathBuf {
    let mut bins = PathBuf::new();
    for b in ["if-edge", "ifctl", "if-collector"] {
        bins = if_tests::cross_image(&format!("aarch64-unknown-linux-gnu/release/{b}"), ARM_BUILD);
    }
    let dir = bins.parent().expect("release dir");
    // Without RUN, on a machine that cannot run Arm binaries (no binfmt handler), the script says so
    // instead of writing man pages from some other build.
    if Command::new(&bins).arg("--version").output().is_err() {
        let out = Command::new(root().join("packaging/build-deb.sh")).arg(dir).arg("arm64").output().expect("run");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains("set RUN"), "{err}");
    }
    let out = run(Command::new(root().join("packaging/build-deb.sh"))
        .arg(dir)
        .arg("arm64")
        .env("STRIP", "aarch64-linux-gnu-strip")
        .env("RUN", "qemu-aarch64 -L /usr/aarch64-linux-gnu")
        .env("DEB_COMPRESS", "gzip"));
    root().join(out.trim())
}

fn mode(p: &Path) -> u32 {
    std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(p).expect("stat").permissions()) & 0o7777
}

/// Unpacks `deb` under `tmp` and checks every file, mode, owner, control field, conffile and maintainer
/// script; returns where it was unpacked.
fn holds_every_file(deb: &Path, tmp: &Path, arch: &str) -> PathBuf {
    let x = tmp.join("x");
    run(Command::new("dpkg-deb").arg("-x").arg(deb).arg(&x));
    for (path, want) in [
        ("usr/bin/if-edge", 0o755),
        ("usr/bin/ifctl", 0o755),
        ("usr/bin/if-collector", 0o755),
        ("usr/lib/systemd/system/if-edge.service", 0o644),
        ("usr/lib/systemd/system/if-collector.service", 0o644),
        ("etc/if-edge/edge.toml", 0o640),
        ("etc/mosquitto/conf.d/if-edge.conf", 0o644),
        ("etc/mosquitto/if-edge.acl", 0o644),
        ("usr/share/man/man1/ifctl.1.gz", 0o644),
        ("usr/share/man/man1/if-edge.1.gz", 0o644),
        ("usr/share/bash-completion/completions/ifctl", 0o644),
        ("usr/share/zsh/vendor-completions/_ifctl", 0o644),
        ("usr/share/fish/vendor_completions.d/ifctl.fish", 0o644),
        ("usr/share/doc/if-edge/copyright", 0o644),
    ] {
        let p = x.join(path);
        assert!(p.is_file(), "{path} is in the package");
        assert_eq!(mode(&p), want, "{path}: mode {:o}", mode(&p));
    }
    let listing = run(Command::new("dpkg-deb").arg("-c").arg(deb));
    assert!(listing.lines().all(|l| l.contains("root/root")), "every file is owned by root: {listing}");
    assert!(listing.lines().all(|l| !l.starts_with("drwx------")), "no directory is private: {listing}");
    let control = run(Command::new("dpkg-deb").arg("-f").arg(deb));
    let arch = format!("Architecture: {arch}");
    for field in ["Package: if-edge", "Recommends: mosquitto", "Depends: adduser", &arch] {
        assert!(control.contains(field), "{field} in\n{control}");
    }
    let meta = tmp.join("meta");
    run(Command::new("dpkg-deb").arg("-e").arg(deb).arg(&meta));
    let conffiles = std::fs::read_to_string(meta.join("conffiles")).expect("conffiles");
    assert_eq!(conffiles, "/etc/if-edge/edge.toml\n/etc/mosquitto/conf.d/if-edge.conf\n/etc/mosquitto/if-edge.acl\n");
    for s in ["postinst", "prerm", "postrm"] {
        assert_eq!(mode(&meta.join(s)), 0o755, "{s}");
    }
    x
}

#[test]
fn the_package_holds_every_file_with_its_mode_and_installs_runs_and_goes() {
    let deb = build();
    let tmp = tempfile::tempdir().expect("tempdir");
    let arch = run(Command::new("dpkg").arg("--print-architecture"));
    let x = holds_every_file(&deb, tmp.path(), arch.trim());
    // The packaged config is one the agent takes as it is, once the install has made its key.
    run(Command::new(x.join("usr/bin/ifctl")).args(["keygen", "--name", "agent", "--out"]).arg(x.join("etc/if-edge")));
    run(Command::new(x.join("usr/bin/if-edge")).arg("check-config").arg(x.join("etc/if-edge/edge.toml")));

    let uid = run(Command::new("id").arg("-u"));
    if uid.trim() != "0" || Command::new("dpkg").arg("--version").output().is_err() {
        println!("not root: the package was built and checked, not installed");
        return;
    }
    installed(&deb, tmp.path());
}

/// The ELF machine of `path` (e_machine: 183 is AArch64), from its header.
fn elf_machine(path: &Path) -> u16 {
    let bytes = std::fs::read(path).expect("read the binary");
    assert_eq!(bytes.get(..4), Some(&b"\x7fELF"[..]), "{} is an ELF file", path.display());
    bytes.get(18..20).map_or(0, |m| u16::from_le_bytes([m[0], m[1]]))
}

#[test]
fn the_arm64_package_holds_arm_binaries_that_run_under_qemu_user() {
    let deb = build_arm64();
    let tmp = tempfile::tempdir().expect("tempdir");
    let x = holds_every_file(&deb, tmp.path(), "arm64");
    for b in ["if-edge", "ifctl", "if-collector"] {
        assert_eq!(elf_machine(&x.join("usr/bin").join(b)), 183, "{b} is built for AArch64");
    }
    // The same first steps as on the box: a key from the packaged ifctl, the packaged config checked by
    // the packaged agent, each run by qemu-aarch64 with Debian's Arm libc.
    let qemu = |bin: &str| {
        let mut c = Command::new("qemu-aarch64");
        c.args(["-L", "/usr/aarch64-linux-gnu"]).arg(x.join("usr/bin").join(bin));
        c
    };
    run(qemu("ifctl").args(["keygen", "--name", "agent", "--out"]).arg(x.join("etc/if-edge")));
    run(qemu("if-edge").arg("check-config").arg(x.join("etc/if-edge/edge.toml")));
    assert!(run(qemu("if-collector").arg("--help")).contains("--follow"), "the collector runs too");
}

fn installed(deb: &Path, tmp: &Path) {
    let _ = Command::new("dpkg").args(["--purge", "if-edge"]).output();
    run(Command::new("dpkg").arg("-i").arg(deb));
    let etc = Path::new("/etc/if-edge");
    assert_eq!(mode(&etc.join("agent.key")), 0o600, "the identity key made at install");
    assert!(run(Command::new("id").arg("if-edge")).contains("dialout"), "the service user, in dialout");

    // The installed agent, from the installed files, against a test broker.
    let broker = Broker::start();
    let text = std::fs::read_to_string(etc.join("edge.toml")).expect("installed config");
    let state = tmp.join("state");
    std::fs::create_dir_all(&state).expect("state dir");
    let config = text
        .replace("mqtt://127.0.0.1:1884", &broker.url())
        .replace("/var/lib/if-edge/witness.redb", state.join("witness.redb").to_str().expect("utf-8"))
        .replace("key = \"agent.key\"", "key = \"/etc/if-edge/agent.key\"");
    let config_path = tmp.join("edge.toml");
    std::fs::write(&config_path, config).expect("write config");
    let mut agent = Command::new("/usr/bin/if-edge")
        .args(["run", "--log-format", "json", "--config"])
        .arg(&config_path)
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start the installed agent");
    let keys = tmp.join("keys");
    std::fs::create_dir_all(&keys).expect("keys");
    std::fs::copy(etc.join("agent.pub"), keys.join("studio-a.edge-1.pub")).expect("pin");
    let online = if_tests::wait_for(Duration::from_secs(20), || {
        let out = Command::new("/usr/bin/ifctl")
            .args(["--json", "status", "--broker", &broker.url(), "--agent-keys"])
            .arg(&keys)
            .output()
            .ok()?;
        String::from_utf8_lossy(&out.stdout).contains("\"online\"").then_some(())
    });
    let _ = agent.kill();
    let _ = agent.wait();
    assert!(online.is_some(), "the installed agent came online, signed by the installed key");

    // A changed config survives a reinstall; remove keeps it, purge takes it.
    let changed = std::fs::read_to_string(etc.join("edge.toml")).expect("read").replace("edge-1", "edge-9");
    std::fs::write(etc.join("edge.toml"), &changed).expect("change the config");
    run(Command::new("dpkg").args(["--force-confold", "-i"]).arg(deb));
    assert_eq!(std::fs::read_to_string(etc.join("edge.toml")).expect("read"), changed, "never overwritten");
    run(Command::new("dpkg").args(["-r", "if-edge"]));
    assert!(!Path::new("/usr/bin/if-edge").exists(), "removed");
    assert!(etc.join("edge.toml").exists(), "remove keeps the config");
    run(Command::new("dpkg").args(["--purge", "if-edge"]));
    assert!(!etc.join("edge.toml").exists() && !etc.join("agent.key").exists(), "purge takes config and key");
    assert!(Command::new("id").arg("if-edge").output().is_ok_and(|o| !o.status.success()), "and the user");
}
