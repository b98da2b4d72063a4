#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs what is missing, then formatting, lints, the
# rack node's firmware, and every test of the workspace. Exits non-zero on the first failure.
# CI runs exactly this (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; "$@"; }

install_missing() {
    local need=()
    command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need+=(mosquitto)
    command -v qemu-system-arm >/dev/null 2>&1 || need+=(qemu-system-arm)
    command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)
    command -v adduser >/dev/null 2>&1 || need+=(adduser)
    # The Arm build: Debian's cross gcc and libc, and qemu-user to run it.
    command -v aarch64-linux-gnu-gcc >/dev/null 2>&1 || need+=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross)
    command -v qemu-aarch64 >/dev/null 2>&1 || need+=(qemu-user)
    if [ ${#need[@]} -gt 0 ]; then
        if [ "$(id -u)" -ne 0 ]; then
            echo "missing Debian packages: ${need[*]} (install them, or run this as root)" >&2
            exit 1
        fi
        step apt-get update -qq
        DEBIAN_FRONTEND=noninteractive step apt-get install -y -qq --no-install-recommends "${need[@]}"
    fi
    for t in thumbv7em-none-eabihf aarch64-unknown-linux-gnu; do
        if ! rustup target list --installed | grep -qx "$t"; then
            step rustup target add "$t"
        fi
    done
    if ! cargo nextest --version >/dev/null 2>&1; then
        echo "cargo-nextest is missing: cargo install cargo-nextest --locked" >&2
        exit 1
    fi
}

install_missing
step cargo fmt --all -- --check
step cargo clippy --workspace --all-targets -- -D warnings
# The rack node's firmware for its microcontroller (the protocol crate without std comes with it), linted
# for that target too; the suites run it under QEMU and check its size.
step cargo clippy -p if-rack-node -p if-firmware --target thumbv7em-none-eabihf -- -D warnings
step cargo build -p if-rack-node --profile firmware --target thumbv7em-none-eabihf
# The package's binaries for Arm rack boxes (.cargo/config.toml names the cross linker); the suites run the
# agent under qemu-aarch64 and build and check the arm64 package.
step cargo build --release --target aarch64-unknown-linux-gnu -p if-edge -p if-tools -p if-collector \
    --bin if-edge --bin ifctl --bin if-collector
# The end-to-end suites run the real binaries: build them first.
step cargo build --workspace --bins
step cargo test --workspace --doc
step cargo nextest run --workspace --no-fail-fast
printf '\nIF edge: every check passed\n'
