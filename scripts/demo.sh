#!/usr/bin/env bash
# The main job: set up the host, build strata, and mount a demo union of two layers made from
# Debian's busybox-static, then run a command inside it. Run as root.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
cargo build --release --quiet
bin=$PWD/target/release

d=$(mktemp -d /var/tmp/strata-demo.XXXXXX)
mkdir -p "$d/base/bin" "$d/base/etc" "$d/app/etc" "$d/app/srv" "$d/upper" "$d/work" "$d/merged"
cp /bin/busybox "$d/base/bin/busybox"
for a in sh ls cat echo; do ln -s busybox "$d/base/bin/$a"; done
echo 'base layer' > "$d/base/etc/motd"
echo 'app layer overrides motd' > "$d/app/etc/motd"
echo 'hello from the app layer' > "$d/app/srv/index.txt"

"$bin/strata" mount -o "lowerdir=$d/app:$d/base,upperdir=$d/upper,workdir=$d/work" "$d/merged"
trap '"$bin/strata" umount "$d/merged" 2>/dev/null || true' EXIT

echo "== mounted: $(grep " $d/merged " /proc/mounts)"
echo "== merged tree:"; ls -la "$d/merged" "$d/merged/etc"
echo "== a command inside the union (chroot):"
chroot "$d/merged" /bin/sh -c 'cat /etc/motd /srv/index.txt; echo written-inside > /srv/new.txt; ls /srv'
echo "== what the upper layer recorded:"; ls -la "$d/upper" "$d/upper/srv"
echo "== the lower layers are untouched:"; cat "$d/app/etc/motd"; ls "$d/app/srv"
echo "demo ok (files in $d)"
