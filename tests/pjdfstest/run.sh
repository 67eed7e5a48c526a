#!/usr/bin/env bash
# pjdfstest (crates.io `pjdfstest`, the Rust rewrite) against kernel overlayfs and
# against strata-overlay, on the same machine, with the same configuration.
#
# Gate: every test case that passes on kernel overlayfs must pass on strata, unless it is
# listed in expected-failures.txt (beside this script) with a reason.
#
# Usage (as root):  tests/pjdfstest/run.sh [PATTERN...]
#   PATTERN...        optional pjdfstest name filters (substring match), e.g. `chmod rename`;
#                     both runs use the same filter.
# Environment:
#   STRATA_BIN        strata-overlay binary (default: target/release/strata-overlay of this
#                     workspace, built with `cargo build --release --bin strata-overlay` if missing)
#   PJDFSTEST_BIN     pjdfstest binary (default: /opt/strata-tools/bin/pjdfstest, installed
#                     with `cargo install` if missing)
#   PJD_SCRATCH       parent of the scratch directory (default: /var/tmp; should be a disk
#                     file system such as ext4, not tmpfs)
#   PJD_TIMEOUT       seconds allowed for one pjdfstest run (default: 120; one takes ~2 s)
#   PJD_REPEAT        runs of the whole suite per file system (default: 10; a run takes
#                     a few seconds); a case passes only if it passes in every run
#   PJD_KEEP=1        keep the scratch directory (logs, layers) for inspection
#
# Output: per-run logs and `name status` result files in $PJD_OUT (default: the scratch dir,
# printed at the end), two summary lines
#   pjdfstest kernel-overlayfs: passed=N failed=M skipped=K total=T
#   pjdfstest strata: passed=N failed=M skipped=K total=T
# the lists of regressions / expected failures / wins, and a closing line
#   pjdfstest: X passed, Y failed
# where X counts the kernel-passing cases that strata also passes and Y the kernel-passing
# cases that strata fails and that are not listed in expected-failures.txt.
# Exit status: 0 if Y == 0, 1 if there are regressions, 2 on a setup error.

set -euo pipefail

PJDFSTEST_VERSION=0.2.2
TOOLS_ROOT=/opt/strata-tools

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
expected_file="$here/expected-failures.txt"
PJDFSTEST_BIN=${PJDFSTEST_BIN:-$TOOLS_ROOT/bin/pjdfstest}
STRATA_BIN=${STRATA_BIN:-$repo/target/release/strata-overlay}
PJD_SCRATCH=${PJD_SCRATCH:-/var/tmp}
PJD_TIMEOUT=${PJD_TIMEOUT:-120}
PJD_REPEAT=${PJD_REPEAT:-10}
patterns=("$@")

log() { printf '[pjdfstest] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 2; }

[[ $(id -u) -eq 0 ]] || die "must run as root (mounts kernel overlayfs, switches users)"

# --- tools -------------------------------------------------------------------------------
if [[ ! -x $PJDFSTEST_BIN ]] || ! "$PJDFSTEST_BIN" --version 2>/dev/null | grep -qx "pjdfstest $PJDFSTEST_VERSION"; then
    # exacl (a pjdfstest dependency) links against libacl.
    if ! dpkg -s libacl1-dev >/dev/null 2>&1; then
        log "installing libacl1-dev (needed to build pjdfstest)"
        if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libacl1-dev >/dev/null; then
            apt-get update -qq >/dev/null
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libacl1-dev >/dev/null
        fi
    fi
    log "installing pjdfstest $PJDFSTEST_VERSION into $TOOLS_ROOT"
    cargo install pjdfstest --version "=$PJDFSTEST_VERSION" --locked --root "$TOOLS_ROOT"
    PJDFSTEST_BIN=$TOOLS_ROOT/bin/pjdfstest
fi
"$PJDFSTEST_BIN" --version >&2

if [[ ! -x $STRATA_BIN ]]; then
    log "building strata-overlay (cargo build --release --bin strata-overlay)"
    (cd "$repo" && cargo build --release --bin strata-overlay)
fi
[[ -x $STRATA_BIN ]] || die "strata binary not found: $STRATA_BIN"
for t in mount umount timeout mountpoint; do command -v "$t" >/dev/null || die "$t not found"; done
[[ -e /dev/fuse ]] || die "/dev/fuse missing"
grep -qw overlay /proc/filesystems || modprobe overlay 2>/dev/null || true
grep -qw overlay /proc/filesystems || die "kernel overlayfs not available"

# --- dummy users ---------------------------------------------------------------------------
# pjdfstest switches to two unprivileged users, each with a primary group of its own.
# `nobody` exists on Debian (group nogroup); `tests` is the one pjdfstest's README asks for.
getent passwd nobody >/dev/null || die "user nobody missing"
if ! getent passwd tests >/dev/null; then
    log "creating the dummy user 'tests' for pjdfstest"
    getent group tests >/dev/null || groupadd --system tests
    useradd --system --gid tests --no-create-home --home-dir / \
        --shell /usr/sbin/nologin --comment "Dummy User for pjdfstest" tests
fi
nobody_group=$(id -gn nobody)
tests_group=$(id -gn tests)

# --- scratch -------------------------------------------------------------------------------
mkdir -p "$PJD_SCRATCH"
scratch=$(mktemp -d "$PJD_SCRATCH/strata-pjdfstest.XXXXXX")
fstype=$(stat -f -c %T "$scratch")
[[ $fstype == tmpfs ]] && log "warning: $scratch is on tmpfs; upper layers should be on a disk fs"
PJD_OUT=${PJD_OUT:-$scratch/out}
mkdir -p "$PJD_OUT"
chmod 0755 "$scratch"

mounted=()
hung=0
cleanup() {
    local rc=$? m
    for m in ${mounted[@]+"${mounted[@]}"}; do
        if mountpoint -q "$m"; then umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true; fi
    done
    if [[ ${PJD_KEEP:-0} != 1 ]]; then
        if [[ $rc -eq 0 ]]; then
            rm -rf "$scratch" 2>/dev/null || true
        else
            # Keep the logs of a failing run; drop the layers.
            rm -rf "$scratch/kernel" "$scratch/strata" "$scratch/secondary" 2>/dev/null || true
            log "logs kept in $PJD_OUT"
        fi
    fi
}
trap cleanup EXIT

# Two configurations, identical for both file systems: the main run does not remount; the
# EROFS run (only the *erofs* cases, in a pjdfstest process of its own on the still fresh
# mount) may. The EROFS cases need `mount -o remount,ro` to succeed, which the kernel refuses
# (EBUSY) while any file on the mount is open for writing; pjdfstest leaks open fds from
# earlier cases (and from failing ones), so inside the main run they fail or pass depending
# on what ran before them, on both file systems alike.
write_config() { # $1 = file, $2 = allow_remount
    cat >"$1" <<EOF
# Generated by tests/pjdfstest/run.sh; identical for both file systems.
[features]
posix_fallocate = {}
utime_now = {}
utimensat = {}
rename_ctime = {}
# EXDEV cases: a directory on the scratch disk file system, which is a different
# file system from either overlay mount.
secondary_fs = "$scratch/secondary"

[settings]
# Timestamps are nanosecond-grained on both (ext4 underneath); pjdfstest's default of
# 1 s would add minutes of sleeping for nothing.
naptime = 0.01
allow_remount = $2

[dummy_auth]
entries = [
    ["nobody", "$nobody_group"],
    ["tests", "$tests_group"],
]
EOF
}
write_config "$scratch/main.toml" false
write_config "$scratch/erofs.toml" true
mkdir -p "$scratch/secondary"

# The EROFS cases run `mount -o remount,ro MNT` (and `remount,rw`). For a FUSE mount
# (type fuse.strata) mount(8) would hand that to /sbin/mount.fuse3, which tries to start a
# new daemon named after the subtype instead of remounting. `mount -i` (no helper) issues
# mount(2) with MS_REMOUNT itself, which the kernel handles for FUSE as for overlayfs.
# Both runs use the same shim.
mkdir -p "$scratch/bin"
cat >"$scratch/bin/mount" <<EOF
#!/bin/sh
exec $(command -v mount) -i "\$@"
EOF
chmod 0755 "$scratch/bin/mount"
chmod 0777 "$scratch/secondary"

# A small lower layer. pjdfstest runs in lower's `pjd/`, so the directory it works in is a
# merged directory that exists in the lower layer (copied up on first change).
make_layers() { # $1 = run dir
    local d=$1
    mkdir -p "$d/lower/pjd/sub" "$d/upper" "$d/work" "$d/mnt"
    chmod 0755 "$d" "$d/lower" "$d/lower/pjd" "$d/mnt"
    echo "lower file" >"$d/lower/pjd/lowerfile"
    echo "nested" >"$d/lower/pjd/sub/nested"
    ln -s lowerfile "$d/lower/pjd/lowerlink"
    mkdir -p "$d/lower/etc"
    echo "hello" >"$d/lower/etc/motd"
}

# Turns pjdfstest's output into `name status` lines (status: ok, FAILED, skipped,
# xfail, xpass).
parse_results() { # $1 = log, $2 = result file
    sed -e 's/\x1b\[[0-9;]*m//g' "$1" | awk '
        /^[A-Za-z_][A-Za-z0-9_:]*[ \t]+ok$/                   { print $1, "ok"; next }
        /^[A-Za-z_][A-Za-z0-9_:]*[ \t]+FAILED$/               { print $1, "FAILED"; next }
        /^[A-Za-z_][A-Za-z0-9_:]*[ \t]+skipped$/              { print $1, "skipped"; next }
        /^[A-Za-z_][A-Za-z0-9_:]*[ \t]+failed as expected$/   { print $1, "xfail"; next }
        /^[A-Za-z_][A-Za-z0-9_:]*[ \t]+PASSED UNEXPECTEDLY$/  { print $1, "xpass"; next }
    ' | sort -u >"$2"
}

count() { # $1 = result file, $2 = status
    awk -v s="$2" '$2 == s { n++ } END { print n + 0 }' "$1"
}

# Runs pjdfstest in $2/mnt/pjd. $1 = log name, $3 = config, the rest = name filters.
# Writes $PJD_OUT/$1.log and $PJD_OUT/$1.results; returns nothing but logs.
run_pjdfstest() {
    local label=$1 d=$2 cfg=$3 rc=0 t0=$SECONDS
    shift 3
    (cd "$d/mnt/pjd" && PATH="$scratch/bin:$PATH" NO_COLOR=1 RUST_BACKTRACE=0 \
        timeout --kill-after=10 "$PJD_TIMEOUT" "$PJDFSTEST_BIN" -c "$cfg" -p "$d/mnt/pjd" "$@") \
        >"$PJD_OUT/$label.log" 2>&1 </dev/null || rc=$?
    local secs=$((SECONDS - t0))
    if [[ $rc -eq 124 || $rc -eq 137 ]]; then
        log "$label: pjdfstest TIMED OUT after ${secs}s; cases not reached count as not passed"
        hung=1
    fi
    parse_results "$PJD_OUT/$label.log" "$PJD_OUT/$label.results"
    log "$label: pjdfstest exited $rc after ${secs}s ($(wc -l <"$PJD_OUT/$label.results") cases)"
    grep -a '^Summary' "$PJD_OUT/$label.log" | sed 's/^/    /' >&2 || true
}

# All pjdfstest runs on the mount at $2/mnt; $1 = label. First the *erofs* cases with
# remounts allowed (a process of its own, on the fresh mount), then $PJD_REPEAT runs of
# everything without remounts (some failures are races, e.g. open::etxtbsy on strata, and a
# run takes seconds). Merges them into $PJD_OUT/$1.results: the *erofs* cases from the EROFS
# run, every other case `ok` only if it passed in every repetition, `FAILED` if it failed
# in any (listed in $PJD_OUT/$1.flaky when it also passed in some), else `skipped`.
run_all() {
    local label=$1 d=$2 t0=$SECONDS i
    hung=0
    local erofs_patterns=(erofs)
    [[ ${#patterns[@]} -gt 0 ]] && erofs_patterns=("${patterns[@]}")
    log "$label: EROFS cases (remounts allowed)"
    run_pjdfstest "$label.erofs" "$d" "$scratch/erofs.toml" "${erofs_patterns[@]}"
    local mains=()
    for ((i = 1; i <= PJD_REPEAT; i++)); do
        if [[ $hung == 1 ]] || ! mountpoint -q "$d/mnt"; then
            log "$label: mount hung or gone; no further runs"
            break
        fi
        log "$label: all cases, run $i/$PJD_REPEAT (no remounts)"
        run_pjdfstest "$label.main$i" "$d" "$scratch/main.toml" ${patterns[@]+"${patterns[@]}"}
        mains+=("$PJD_OUT/$label.main$i.results")
    done
    awk -v reps="${#mains[@]}" -v flaky="$PJD_OUT/$label.flaky" '
        FILENAME == ARGV[1] { if ($1 ~ /::erofs/) e[$1] = $2; next }
        { n[$1]++; c[$1, $2]++ }
        END {
            for (t in e) print t, e[t]
            for (t in n) {
                if (t in e) continue
                if (c[t, "FAILED"] + c[t, "xpass"] > 0) {
                    print t, "FAILED"
                    if (c[t, "ok"] > 0) printf "%s failed %d of %d runs\n", t, c[t, "FAILED"], reps > flaky
                } else if (c[t, "ok"] == reps) print t, "ok"
                else if (c[t, "ok"] > 0) print t, "FAILED"   # passed in some runs, missing from others
                else print t, "skipped"
            }
        }' "$PJD_OUT/$label.erofs.results" "${mains[@]}" | sort >"$PJD_OUT/$label.results"
    touch "$PJD_OUT/$label.flaky"
    sort -o "$PJD_OUT/$label.flaky" "$PJD_OUT/$label.flaky"
    echo $((SECONDS - t0)) >"$PJD_OUT/$label.seconds"
}

unmount() { # $1 = mountpoint
    local i conn
    if [[ $hung == 1 ]] && mountpoint -q "$1"; then
        # A FUSE daemon that stopped answering: abort its connection so nothing blocks on it.
        conn=$(mountpoint -d "$1" | cut -d: -f2)
        if [[ -d /sys/fs/fuse/connections ]] && ! mountpoint -q /sys/fs/fuse/connections; then
            mount -t fusectl fusectl /sys/fs/fuse/connections 2>/dev/null || true
        fi
        [[ -e /sys/fs/fuse/connections/$conn/abort ]] && echo 1 >"/sys/fs/fuse/connections/$conn/abort" || true
        umount -l "$1" || true
        return 0
    fi
    for i in 1 2 3 4 5; do
        mountpoint -q "$1" || return 0
        umount "$1" 2>/dev/null && return 0
        sleep 1
    done
    log "warning: $1 busy; lazy unmount"
    umount -l "$1" || true
}

# --- kernel overlayfs -----------------------------------------------------------------------
k=$scratch/kernel
make_layers "$k"
mount -t overlay overlay -o "lowerdir=$k/lower,upperdir=$k/upper,workdir=$k/work" "$k/mnt" \
    || die "cannot mount kernel overlayfs"
mounted+=("$k/mnt")
run_all kernel-overlayfs "$k"
unmount "$k/mnt"

# --- strata ---------------------------------------------------------------------------------
s=$scratch/strata
make_layers "$s"
# The daemon is started with the usual umask 022 (a service manager's default), explicitly,
# so that results do not depend on the caller's umask.
(umask 022 && exec "$STRATA_BIN" -o "lowerdir=$s/lower,upperdir=$s/upper,workdir=$s/work" "$s/mnt") \
    || die "strata-overlay failed to mount"
mounted+=("$s/mnt")
mountpoint -q "$s/mnt" || die "strata-overlay exited 0 but $s/mnt is not a mount point"
run_all strata "$s"
mountpoint -q "$s/mnt" || log "warning: strata mount was gone at the end of the run (daemon died?)"
unmount "$s/mnt"

# --- compare --------------------------------------------------------------------------------
kr=$PJD_OUT/kernel-overlayfs.results
sr=$PJD_OUT/strata.results

summary() { # $1 = label, $2 = result file
    printf 'pjdfstest %s: passed=%d failed=%d skipped=%d total=%d (%ss)\n' "$1" \
        "$(count "$2" ok)" "$(($(count "$2" FAILED) + $(count "$2" xpass)))" \
        "$(count "$2" skipped)" "$(wc -l <"$2")" "$(cat "$PJD_OUT/$1.seconds")"
}

# expected-failures.txt: `test::name # reason`, blank lines and whole-line comments ignored.
expected=$PJD_OUT/expected.names
if [[ -f $expected_file ]]; then
    sed -e 's/#.*//' -e 's/[[:space:]]*$//' -e 's/^[[:space:]]*//' "$expected_file" \
        | grep -v '^$' | sort -u >"$expected" || true
else
    : >"$expected"
fi

# Status of each case in both runs: name kernel strata (`-` where a run has no result).
join -a1 -a2 -e - -o 0,1.2,2.2 "$kr" "$sr" >"$PJD_OUT/both.results"

gated=$(awk '$2 == "ok"' "$PJD_OUT/both.results" | wc -l)
gate_pass=$(awk '$2 == "ok" && $3 == "ok"' "$PJD_OUT/both.results" | wc -l)
awk '$2 == "ok" && $3 != "ok" { print $1, $3 }' "$PJD_OUT/both.results" >"$PJD_OUT/strata-lost"
# (FILENAME == ARGV[1], not NR == FNR: the list may be empty.)
regressions=$(awk 'FILENAME == ARGV[1] { x[$1] = 1; next } !($1 in x)' "$expected" "$PJD_OUT/strata-lost")
listed=$(awk 'FILENAME == ARGV[1] { x[$1] = 1; next } ($1 in x)' "$expected" "$PJD_OUT/strata-lost")
wins=$(awk '$3 == "ok" && $2 != "ok" { print $1, "(kernel: " $2 ")" }' "$PJD_OUT/both.results")
stale=$(awk 'FILENAME == ARGV[1] { x[$1] = 1; next } { if (!($1 in x)) print $1 }' \
    <(awk '$2 == "ok" && $3 != "ok" { print $1 }' "$PJD_OUT/both.results") "$expected")

echo
echo "=== pjdfstest $("$PJDFSTEST_BIN" --version | awk '{print $2}'): kernel overlayfs vs strata ($(uname -r)) ==="
summary kernel-overlayfs "$kr"
summary strata "$sr"
echo "cases passing on kernel overlayfs: $gated; of these strata passes $gate_pass"

if [[ -n $listed ]]; then
    echo
    echo "Expected strata failures (listed in tests/pjdfstest/expected-failures.txt):"
    while read -r name st; do
        printf '  %-50s %-8s %s\n' "$name" "$st" \
            "$(grep -E "^[[:space:]]*${name}([[:space:]]|#|$)" "$expected_file" | sed -n 's/[^#]*#[[:space:]]*//p' | head -1)"
    done <<<"$listed"
fi
if [[ -n $stale ]]; then
    echo
    echo "Listed in expected-failures.txt but not failing on strata while passing on the kernel (stale entry?):"
    sed 's/^/  /' <<<"$stale"
fi
if [[ -n $wins ]]; then
    echo
    echo "Wins (strata passes, kernel overlayfs does not; informational, not gated):"
    sed 's/^/  /' <<<"$wins"
fi
for f in kernel-overlayfs strata; do
    if [[ -s $PJD_OUT/$f.flaky ]]; then
        echo
        echo "Flaky on $f (counted as failed):"
        sed 's/^/  /' "$PJD_OUT/$f.flaky"
    fi
done

nreg=0
if [[ -n $regressions ]]; then
    nreg=$(wc -l <<<"$regressions")
    echo
    echo "REGRESSIONS: strata does not pass these cases, which pass on kernel overlayfs:"
    while read -r name st; do
        printf '  %-50s %s\n' "$name" "$st"
        # pjdfstest's message for the failure (the indented lines after the FAILED line).
        cat "$PJD_OUT"/strata.erofs.log "$PJD_OUT"/strata.main*.log | sed -e 's/\x1b\[[0-9;]*m//g' \
            | awk -v n="$name" '$1 == n && $2 == "FAILED" { p = 1; next }
                                p && /^[ \t]/ { print "      " $0; next } { p = 0 }' \
            | awk '!seen[$0]++' | head -5
    done <<<"$regressions"
fi

if [[ ${PJD_KEEP:-0} == 1 || $PJD_OUT != "$scratch/out" ]]; then
    echo
    echo "logs and result files: $PJD_OUT"
fi
echo
echo "pjdfstest: $gate_pass passed, $nreg failed"
[[ $nreg -eq 0 ]]
