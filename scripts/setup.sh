#!/usr/bin/env bash
# One-time host set-up for strata on Debian 12 (idempotent). Run as root.
#  - installs what the filesystem, its tests and the benchmarks need;
#  - sets /dev/fuse to mode 0666, as distributions ship it, so rootless mounts work
#    (this sandbox ships 0600; fusermount3 and unshare -Urm need the usual mode);
#  - creates an unprivileged user `strata-test` for the rootless tests.
set -euo pipefail

if [ "$(id -u)" -ne 0 ]; then
    echo "setup.sh: run as root (sudo $0)" >&2
    exit 1
fi

# podman: the store tests check that `podman load` accepts what `strata save` writes.
pkgs=(fuse3 fuse-overlayfs busybox-static uidmap attr acl strace util-linux e2fsprogs podman zstd)
missing=()
for p in "${pkgs[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "setup: apt-get install ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ ! -e /dev/fuse ]; then
    mknod -m 0666 /dev/fuse c 10 229
fi
chmod 0666 /dev/fuse

if ! id strata-test >/dev/null 2>&1; then
    useradd --create-home --shell /bin/sh strata-test
fi

if ! command -v cargo >/dev/null 2>&1; then
    echo "setup: cargo not found; install Rust >= 1.85 (rustup) first" >&2
    exit 1
fi
echo "setup: ok"
