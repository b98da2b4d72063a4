#!/usr/bin/env bash
# Builds the Debian package of the agent, ifctl and the collector with dpkg-deb, from binaries already
# built: packaging/build-deb.sh [TARGET_DIR] [DEB_ARCH]
#   TARGET_DIR  where the release binaries are (default target/release)
#   DEB_ARCH    the package's architecture (default: this machine's, dpkg --print-architecture)
# Writes target/debian/if-edge_VERSION_ARCH.deb and prints its path. The binaries are stripped of debug
# information ($STRIP, default strip; a cross build names its own, e.g. aarch64-linux-gnu-strip); the
# package is compressed with $DEB_COMPRESS (default xz). The binaries write the man pages and completions,
# run through $RUN for a cross build (e.g. RUN="qemu-aarch64 -L /usr/aarch64-linux-gnu").
set -euo pipefail
cd "$(dirname "$0")/.."
bins=${1:-target/release}
arch=${2:-$(dpkg --print-architecture)}
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
# The binaries write the man pages and completions, so those always match them; a cross build runs
# them through $RUN.
read -r -a run <<< "${RUN:-}"
ifctl=("${run[@]}" "$bins/ifctl")
edge=("${run[@]}" "$bins/if-edge")
if ! "${ifctl[@]}" --version >/dev/null 2>&1 || ! "${edge[@]}" version >/dev/null 2>&1; then
    echo "build-deb.sh: $bins/ifctl and $bins/if-edge do not run here; for a cross build set RUN" >&2
    exit 1
fi
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
chmod 0755 "$root"

install -d "$root/DEBIAN" "$root/usr/bin" "$root/usr/lib/systemd/system" "$root/etc/if-edge" \
    "$root/usr/share/man/man1" "$root/usr/share/bash-completion/completions" \
    "$root/usr/share/zsh/vendor-completions" "$root/usr/share/fish/vendor_completions.d" \
    "$root/usr/share/doc/if-edge"
for b in if-edge ifctl if-collector; do
    install -m 0755 "$bins/$b" "$root/usr/bin/$b"
    "${STRIP:-strip}" --strip-debug "$root/usr/bin/$b"
done
install -m 0644 packaging/if-edge.service packaging/if-collector.service "$root/usr/lib/systemd/system/"
install -m 0640 packaging/edge.toml "$root/etc/if-edge/edge.toml"
install -d "$root/etc/mosquitto/conf.d"
install -m 0644 packaging/mosquitto/if-edge.conf "$root/etc/mosquitto/conf.d/if-edge.conf"
install -m 0644 packaging/mosquitto/if-edge.acl "$root/etc/mosquitto/if-edge.acl"
# The man pages and completions, from the packaged binaries themselves.
"${ifctl[@]}" man | gzip -9n > "$root/usr/share/man/man1/ifctl.1.gz"
"${edge[@]}" man | gzip -9n > "$root/usr/share/man/man1/if-edge.1.gz"
"${ifctl[@]}" completions bash > "$root/usr/share/bash-completion/completions/ifctl"
"${ifctl[@]}" completions zsh > "$root/usr/share/zsh/vendor-completions/_ifctl"
"${ifctl[@]}" completions fish > "$root/usr/share/fish/vendor_completions.d/ifctl.fish"
chmod 0644 "$root"/usr/share/man/man1/* "$root"/usr/share/*/completions/* \
    "$root"/usr/share/zsh/vendor-completions/* "$root"/usr/share/fish/vendor_completions.d/*
install -m 0644 README.md "$root/usr/share/doc/if-edge/README.md"
printf 'IF edge\nLicense: Apache-2.0\n' > "$root/usr/share/doc/if-edge/copyright"
chmod 0644 "$root/usr/share/doc/if-edge/copyright"
for s in postinst prerm postrm; do
    install -m 0755 "packaging/deb/$s" "$root/DEBIAN/$s"
done
printf '%s\n' /etc/if-edge/edge.toml /etc/mosquitto/conf.d/if-edge.conf /etc/mosquitto/if-edge.acl \
    > "$root/DEBIAN/conffiles"
size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
cat > "$root/DEBIAN/control" <<CONTROL
Package: if-edge
Version: $version
Architecture: $arch
Maintainer: IF edge <if-edge@example.invalid>
Installed-Size: $size
Depends: adduser, libc6 (>= 2.36)
Recommends: mosquitto
Section: net
Priority: optional
Description: edge controller for broadcast studios
 Receives signed command envelopes over MQTT, checks them against signed
 capability manifests and grants, witnesses every step in a crash-safe log,
 and drives vMix, Videohub, VISCA cameras and IF rack nodes.
CONTROL
mkdir -p target/debian
out="target/debian/if-edge_${version}_${arch}.deb"
dpkg-deb --root-owner-group -Z"${DEB_COMPRESS:-xz}" --build "$root" "$out" >/dev/null
echo "$out"
