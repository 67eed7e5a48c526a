#!/usr/bin/env bash
# Prepares the benchmark data set once, under bench/data (or $BENCH_DATA):
#   lower3 (base OS): real Debian packages extracted with dpkg-deb;
#   lower2 (libraries): more packages, plus a directory of 20,000 small files;
#   lower1 (application): a git checkout (a local repository of /usr/share/doc) and a 1 GiB file.
# Also installs the peers: Debian's fuse-overlayfs 1.x, and fuse-overlayfs 2.0.0 from the crate
# registry into /opt/strata-tools (outside the workspace). Run as root. --quick makes it small.
set -euo pipefail
cd "$(dirname "$0")"
quick=0; [ "${1:-}" = "--quick" ] && quick=1
D=${BENCH_DATA:-$PWD/data}
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -qq fuse-overlayfs fio git >/dev/null
if [ ! -x /opt/strata-tools/bin/fuse-overlayfs ]; then
    cargo install --quiet --locked fuse-overlayfs --version 2.0.0 --root /opt/strata-tools || \
        cargo install --quiet fuse-overlayfs --version 2.0.0 --root /opt/strata-tools
fi
if [ -f "$D/.done" ] && [ "$(cat "$D/.done")" = "$quick" ]; then echo "data ready in $D"; exit 0; fi
rm -rf "$D"; mkdir -p "$D/lower1" "$D/lower2" "$D/lower3" "$D/debs"
base_pkgs="coreutils bash perl-base libc6 util-linux tar findutils sed grep"
lib_pkgs="libssl3 libsqlite3-0 libxml2 libglib2.0-0 libpython3.11-stdlib python3.11-minimal"
( cd "$D/debs" && apt-get download $base_pkgs $lib_pkgs >/dev/null 2>&1 || true )
for p in $base_pkgs; do f=$(ls "$D"/debs/${p}_*.deb 2>/dev/null | head -1) && [ -n "$f" ] && dpkg-deb -x "$f" "$D/lower3"; done
for p in $lib_pkgs; do f=$(ls "$D"/debs/${p}_*.deb 2>/dev/null | head -1) && [ -n "$f" ] && dpkg-deb -x "$f" "$D/lower2"; done
n=20000; [ $quick = 1 ] && n=2000
# gen_files DIR N PER_DIR SUBDIR_FMT CHAR MAXLEN: N small files, PER_DIR to a subdirectory,
# file i holding (i % MAXLEN) copies of CHAR.
gen_files() {
    python3 - "$@" <<'PY'
import os, sys
d, n, per, fmt, ch, mod = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5], int(sys.argv[6])
for i in range(n):
    sub = os.path.join(d, fmt % (i // per))
    os.makedirs(sub, exist_ok=True)
    with open(os.path.join(sub, "f%05d" % i), "w") as f:
        f.write(ch * (i % mod))
PY
}
gen_files "$D/lower2/small" "$n" 200 d%03d x 512
mkdir -p "$D/lower1/repo"
cp -r /usr/share/doc/. "$D/lower1/repo/" 2>/dev/null || true
git -C "$D/lower1/repo" init -q && git -C "$D/lower1/repo" add -A && \
    git -C "$D/lower1/repo" -c user.name=bench -c user.email=bench@localhost commit -qm data
size=1024; [ $quick = 1 ] && size=128
dd if=/dev/urandom of="$D/lower1/big.bin" bs=1M count=$size status=none
# A 10,000-file tarball for the untar workload.
gen_files "$D/untar-src" 10000 500 t%02d y 700
tar -C "$D/untar-src" -cf "$D/untar.tar" . && rm -rf "$D/untar-src"
echo "$quick" > "$D/.done"
echo "data ready in $D: $(find "$D/lower1" "$D/lower2" "$D/lower3" | wc -l) entries"
