#!/usr/bin/env bash
# Where the time of the metadata workloads goes on a strata mount: for W2 cold, W6 (the untar
# without its sync) and W9 (second and third walks), the FUSE requests the kernel sent (the
# fuse:fuse_request_send tracepoint of Linux 6.14+, in a private tracefs instance filtered on
# the mount), the wall time per request, and the daemon's time on a CPU and waiting for one
# (/proc/PID/task/*/schedstat: ns on CPU, ns on the run queue). Run as root after
# bench/prepare.sh; STRATA_BIN picks another mount program.
set -euo pipefail
cd "$(dirname "$0")"
DATA=${BENCH_DATA:-$PWD/data}
BIN=${STRATA_BIN:-$PWD/../target/release/strata-overlay}
T=/sys/kernel/tracing
[ -d $T/events/fuse/fuse_request_send ] || mount -t tracefs nodev $T 2>/dev/null || true
[ -d $T/events/fuse/fuse_request_send ] || { echo "no fuse tracepoint (Linux 6.14+)" >&2; exit 1; }
WORK=$(mktemp -d /var/tmp/strata-profile.XXXXXX)
trap 'for m in "$WORK"/*/m; do umount "$m" 2>/dev/null || true; done; rm -rf "$WORK"' EXIT

sched() { awk '{c += $1; w += $2} END {printf "%d %d\n", c, w}' /proc/"$1"/task/*/schedstat; }

profile() { # NAME CMD...: runs CMD against mount $M served by $PID
    local name=$1; shift
    local inst=$T/instances/strata-profile-$$
    mkdir "$inst"
    echo 8192 > "$inst/buffer_size_kb"
    # The event's connection is the superblock's dev_t in the kernel's encoding (MINORBITS 20).
    local dev; dev=$(stat -c %d "$M")
    echo "connection == $(( ((dev >> 8) & 0xfff) << 20 | (dev & 0xff) | ((dev >> 12) & 0xfff00) ))" \
        > "$inst/events/fuse/fuse_request_send/filter"
    local c0 w0 c1 w1 s e
    read -r c0 w0 < <(sched "$PID")
    echo 1 > "$inst/events/fuse/fuse_request_send/enable"
    s=$(date +%s%N)
    "$@" > /dev/null
    e=$(date +%s%N)
    echo 0 > "$inst/events/fuse/fuse_request_send/enable"
    read -r c1 w1 < <(sched "$PID")
    local n ops
    n=$(grep -c "opcode" "$inst/trace" || true)
    ops=$(grep -o '(FUSE_[A-Z_]*)' "$inst/trace" | tr -d '()' | sort | uniq -c | sort -rn \
        | awk '{printf "%s%s %s", (NR > 1 ? ", " : ""), $2, $1}')
    rmdir "$inst"
    awk -v n="$n" -v wall=$((e - s)) -v c=$((c1 - c0)) -v w=$((w1 - w0)) -v name="$name" \
        -v ops="$ops" 'BEGIN {
        printf "%-28s %.3f s, %d requests (%s)\n", name, wall / 1e9, n, ops
        if (n >= 100) printf "%-28s per request: wall %.1f us, daemon on CPU %.1f us, waiting to run %.1f us\n", "", wall / n / 1e3, c / n / 1e3, w / n / 1e3
    }'
}

mount_strata() { # NAME: a fresh mount of the three lowers at $WORK/NAME/m
    local d=$WORK/$1
    mkdir -p "$d/u" "$d/w" "$d/m"
    M=$d/m
    "$BIN" -o "lowerdir=$DATA/lower1:$DATA/lower2:$DATA/lower3,upperdir=$d/u,workdir=$d/w" "$M"
    PID=$(pgrep -f -- "$M" | head -1)
}

walks() { for d in small repo usr small; do find "$M/$d" -xdev > /dev/null & done; wait; }

mount_strata w2
sync; echo 3 > /proc/sys/vm/drop_caches
profile "W2 ls -lR cold" ls -lR "$M/small"
umount "$M"

mount_strata w6
mkdir "$M/untar"; sync
profile "W6 untar (no sync)" tar -C "$M/untar" -xf "$DATA/untar.tar"
umount "$M"

mount_strata w9
walks
profile "W9 second walk" walks
profile "W9 third walk" walks
umount "$M"
