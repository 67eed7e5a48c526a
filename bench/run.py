#!/usr/bin/env python3
"""Side-by-side benchmark: native dir, kernel overlayfs, fuse-overlayfs 1.x (Debian),
fuse-overlayfs 2.0 (crate registry) and strata, on the data set from prepare.sh.

Every repetition runs each implementation on a fresh mount with an empty upper, in a
shuffled order (interleaved, so background load hits every implementation alike). Prints
medians, the ratio strata/peer (time ratio: < 1 means strata is faster) and each daemon's
peak RSS. Every workload checks its result, so a fast wrong answer fails the run.
Run as root: ./bench/run.py [--quick] [--reps N] [--only W1,W3] [--rootless] [--rss-files N]

--rootless runs every implementation as the unprivileged user strata-test inside a user and
mount namespace (`unshare -Urm`): kernel overlayfs with `userxattr`, the FUSE daemons as
namespace root, so no FUSE passthrough (it needs real root). The data set is chowned to the
user for the run (and back), as a rootless container's layers belong to the user's ids. The native copy is left out
(a plain user may not hard-link root's files). Caches are still dropped for the cold
workloads: the root parent process does it when the namespaced child asks.

--rss-files N builds a lower of N empty files and reports each daemon's peak RSS after a
find+stat walk of it (memory must stay bounded as the walk grows).
"""
import argparse, os, random, shutil, statistics, subprocess, sys, tempfile, threading, time

ROOT = os.path.dirname(os.path.abspath(__file__))
DATA = os.environ.get("BENCH_DATA", os.path.join(ROOT, "data"))
STRATA = os.environ.get("STRATA_BIN", os.path.join(ROOT, "..", "target", "release", "strata-overlay"))
FO1 = shutil.which("fuse-overlayfs") or "/usr/bin/fuse-overlayfs"
FO2 = "/opt/strata-tools/bin/fuse-overlayfs"
LOWERS = [os.path.join(DATA, l) for l in ("lower1", "lower2", "lower3")]
ROOTLESS = os.environ.get("STRATA_BENCH_ROOTLESS") == "1"
DROP_FIFO = os.environ.get("STRATA_BENCH_DROP_FIFO")
UNPRIV_USER = "strata-test"


def sh(cmd, **kw):
    return subprocess.run(cmd, shell=True, check=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw).stdout


def drop_caches():
    if DROP_FIFO:
        # In the user namespace: the root parent drops the caches and answers.
        with open(DROP_FIFO + ".req", "w") as f:
            f.write("drop\n")
        with open(DROP_FIFO + ".ack") as f:
            f.read()
        return
    sh("sync; echo 3 > /proc/sys/vm/drop_caches")


class Mount:
    """One fresh mount of one implementation."""

    def __init__(self, impl, scratch):
        self.impl = impl
        self.dir = tempfile.mkdtemp(dir=scratch)
        self.mnt = os.path.join(self.dir, "m")
        up, wk = os.path.join(self.dir, "u"), os.path.join(self.dir, "w")
        for d in (self.mnt, up, wk):
            os.makedirs(d)
        opts = f"lowerdir={':'.join(LOWERS)},upperdir={up},workdir={wk}"
        if impl == "native":
            shutil.rmtree(self.mnt)
            # A merged copy made of hard links: same data, plain directory.
            for l in reversed(LOWERS):
                sh(f"cp -al --remove-destination {l}/. {self.mnt}/ 2>/dev/null || cp -al {l}/. {self.mnt}/")
            # git writes its index: give the native tree its own copy, never a link to a lower.
            sh(f"rm -rf {self.mnt}/repo/.git && cp -a {LOWERS[0]}/repo/.git {self.mnt}/repo/.git")
        elif impl == "kernel":
            extra = ",userxattr" if ROOTLESS else ""
            sh(f"mount -t overlay overlay -o {opts}{extra} {self.mnt}")
        elif impl == "fo1":
            sh(f"{FO1} -o {opts} {self.mnt}")
        elif impl == "fo2":
            sh(f"{FO2} -o {opts} {self.mnt}")
        elif impl == "strata":
            sh(f"{STRATA} -o {opts} {self.mnt}")
        elif impl == "strata-metacopy":
            # metacopy=on (off by default, as in kernel overlayfs): chmod of a lower file
            # copies its metadata only.
            sh(f"{STRATA} -o {opts},metacopy=on {self.mnt}")
        elif impl == "strata-unbounded":
            # No bound on the inodes the daemon keeps (max_inodes=0): for --rss-files.
            sh(f"{STRATA} -o {opts},max_inodes=0 {self.mnt}")
        elif impl == "strata-noprov":
            # The same daemon without the provenance xattrs: the column shows what they cost
            # a mount where nobody reads them.
            sh(f"{STRATA} -o {opts},provenance=off {self.mnt}")
        self.pid = self.daemon_pid()

    def daemon_pid(self):
        if self.impl in ("native", "kernel"):
            return None
        for p in os.listdir("/proc"):
            if p.isdigit():
                try:
                    cl = open(f"/proc/{p}/cmdline", "rb").read().split(b"\0")
                except OSError:
                    continue
                if self.mnt.encode() in cl:
                    return int(p)
        return None

    def peak_rss_mib(self):
        if not self.pid:
            return None
        for line in open(f"/proc/{self.pid}/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return None

    def close(self):
        if self.impl != "native":
            subprocess.run(["umount", self.mnt], check=False)
            for _ in range(100):
                if not self.pid or not os.path.exists(f"/proc/{self.pid}"):
                    break
                time.sleep(0.02)
        # Only the large files (the 1 GiB copy-ups) go now; the rest is removed when the whole
        # run ends. ext4 does not reuse an inode within a minute of its deletion (five more
        # while its table block is dirty: fs/ext4/ialloc.c, recently_deleted) and scans past
        # every such one at each allocation, so removing the 10,000 files of one untar made
        # the next implementation's untar in the same block group pay for it: W6 took 3 s to
        # 10 s for the same daemon depending on what ran before it.
        if self.impl == "native":
            # Its hard links raise the link count of every lower file, which the union
            # implementations would see for the rest of the run (strata then indexes the
            # layers' links): it goes at once. It frees no file inodes, only directories.
            shutil.rmtree(self.dir, ignore_errors=True)
            return
        subprocess.run(["find", self.dir, "-xdev", "-type", "f", "-size", "+1M", "-delete"], check=False)
        # And what this mount left dirty is written now, untimed: in ext4's data=ordered mode
        # a journal commit also writes the dirty data of every file in it, so the next
        # implementation's fsync or sync would otherwise pay for this one's writes.
        os.sync()


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def expect(cond, what):
    if not cond:
        raise SystemExit(f"result check failed: {what}")


# Each workload: (name, setup(mnt) or None, run(mnt) -> checked value, needs_cold)
def w_find_stat(m):
    out = sh(f"find {m} -xdev -print0 | xargs -0 stat -c %s | wc -l")
    expect(int(out) > 1000, f"find+stat saw {out.strip()} entries")
    return int(out)


def w_ls_lR(m):
    out = sh(f"ls -lR {m}/small").splitlines()
    files = sum(1 for l in out if l.startswith("-"))
    expect(files >= 1000, f"ls -lR listed {files} files")
    return len(out)


def w_seq_read(m):
    return int(sh(f"dd if={m}/big.bin of=/dev/null bs=1M 2>&1 | tail -1 | cut -d' ' -f1"))


def w_fio(m, jobs):
    import json
    out = sh(f"fio --name=rr --filename={m}/big.bin --rw=randread --bs=4k --ioengine=psync --numjobs={jobs} "
             f"--io_size=64m --invalidate=0 --group_reporting --output-format=json")
    return json.loads(out)["jobs"][0]["read"]["iops"]


def w_append_copyup(m):
    sh(f"echo x >> {m}/big.bin")
    return os.stat(f"{m}/big.bin").st_size


def w_chmod_copyup(m):
    os.chmod(f"{m}/big.bin", 0o600)
    return os.stat(f"{m}/big.bin").st_mode & 0o777


def w_untar(m):
    os.makedirs(f"{m}/untar")
    sh(f"tar -C {m}/untar -xf {DATA}/untar.tar && sync")
    return int(sh(f"find {m}/untar -type f | wc -l"))


def w_rm_rf(m):
    sh(f"rm -rf {m}/small")
    return os.path.exists(f"{m}/small")


def w_git_status(m):
    # safe.directory: rootless, the repository belongs to an id the namespace does not map.
    out = sh(f"git -c safe.directory='*' -C {m}/repo status --porcelain")
    expect(out.strip() == "", f"git status is not clean: {out[:200]!r}")
    return 0


def w_tar(m):
    sh(f"tar cf /dev/null -C {m} repo small")
    return True


def w_provenance(m):
    # strata only: the provenance of every file of the 20k-file tree, read with getfattr.
    out = sh(f"cd {m}/small && find . -type f -print0 | xargs -0 getfattr -n user.strata.layer | grep -c '^user.strata.layer='")
    return int(out)


def w_parallel_walks(m):
    procs = [subprocess.Popen(f"find {m}/{d} -xdev | wc -l", shell=True, stdout=subprocess.PIPE, text=True)
             for d in ("small", "repo", "usr", "small")]
    return [int(p.communicate()[0]) for p in procs]


WORKLOADS = [
    # name, function, cache state: cold (drop caches first) / warm (one untimed run first) / once
    ("W1 find+stat cold", w_find_stat, "cold"),
    ("W1 find+stat warm", w_find_stat, "warm"),
    ("W2 ls -lR cold", w_ls_lR, "cold"),
    ("W2 ls -lR warm", w_ls_lR, "warm"),
    ("W3 seq read cold", w_seq_read, "cold"),
    ("W3 seq read warm", w_seq_read, "warm"),
    ("W4 fio 4k rand 1 job (IOPS)", lambda m: w_fio(m, 1), "warm"),
    ("W4 fio 4k rand 4 jobs (IOPS)", lambda m: w_fio(m, 4), "warm"),
    ("W5 copy-up on append", w_append_copyup, "once"),
    ("W5 copy-up on chmod", w_chmod_copyup, "once"),
    ("W6 untar 10k + sync", w_untar, "once"),
    ("W7 rm -rf lower tree", w_rm_rf, "once"),
    ("W8 git status first", w_git_status, "cold"),
    ("W8 git status warm", w_git_status, "warm"),
    ("W8 tar cf /dev/null warm", w_tar, "warm"),
    ("W9 4 parallel walks warm", w_parallel_walks, "warm"),
    ("W10 provenance of 20k files", w_provenance, "warm"),
]


def rss_walk(n, impls):
    """Peak daemon RSS after find+stat of a lower holding n empty files."""
    base = tempfile.mkdtemp(prefix="strata-rss.", dir="/var/tmp")
    low = os.path.join(base, "lower")
    sh(f"python3 -c \"import os; d='{low}'; [os.makedirs(f'{{d}}/d{{i // 1000:04d}}', exist_ok=True) for i in range(0, {n}, 1000)]; "
       f"[open(f'{{d}}/d{{i // 1000:04d}}/f{{i}}', 'w').close() for i in range({n})]\"")
    global LOWERS
    saved, LOWERS = LOWERS, [low]
    try:
        for impl in [i for i in impls if i not in ("native", "kernel")]:
            mt = Mount(impl, base)
            try:
                seen = int(sh(f"find {mt.mnt} -xdev -print0 | xargs -0 stat -c %s | wc -l"))
                expect(seen > n, f"{impl} walked {seen} entries, fewer than the {n} files")
                print(f"RSS after find+stat of {n} files: {impl} {mt.peak_rss_mib():.1f} MiB (saw {seen} entries)")
            finally:
                mt.close()
    finally:
        LOWERS = saved
        shutil.rmtree(base, ignore_errors=True)


def run_rootless(argv):
    """Runs this script as the unprivileged user in a new user and mount namespace; this
    (root) process drops caches on request."""
    fifo = tempfile.mkdtemp(prefix="strata-bench-fifo.", dir="/var/tmp")
    req, ack = os.path.join(fifo, "f.req"), os.path.join(fifo, "f.ack")
    os.mkfifo(req)
    os.mkfifo(ack)
    sh(f"chown -R {UNPRIV_USER} {fifo}")
    stop = False

    def serve():
        while not stop:
            with open(req) as f:
                if not f.read():
                    continue
            sh("sync; echo 3 > /proc/sys/vm/drop_caches")
            with open(ack, "w") as f:
                f.write("ok\n")

    threading.Thread(target=serve, daemon=True).start()
    # The layers belong to the user for the run, as a rootless container's layers belong to
    # ids the user's namespace maps; root-owned files would be read-only to every peer.
    trees = " ".join(LOWERS + [os.path.join(DATA, "untar.tar")])
    sh(f"chown -R {UNPRIV_USER}: {trees}")
    env = dict(os.environ, STRATA_BENCH_ROOTLESS="1", STRATA_BENCH_DROP_FIFO=os.path.join(fifo, "f"),
               BENCH_DATA=DATA, STRATA_BIN=os.path.abspath(STRATA))
    args = [a for a in argv if a != "--rootless"]
    cmd = ["setpriv", f"--reuid={UNPRIV_USER}", f"--regid={UNPRIV_USER}", "--clear-groups",
           "--", "unshare", "-Urm", "/usr/bin/python3", os.path.abspath(__file__)] + args
    try:
        r = subprocess.run(cmd, env=env)
    finally:
        sh(f"chown -R root: {trees}")
    stop = True
    shutil.rmtree(fifo, ignore_errors=True)
    sys.exit(r.returncode)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--reps", type=int, default=None)
    ap.add_argument("--only", default="")
    ap.add_argument("--impls", default="native,kernel,fo1,fo2,strata,strata-noprov")
    ap.add_argument("--rootless", action="store_true")
    ap.add_argument("--rss-files", type=int, default=0)
    a = ap.parse_args()
    if a.rootless and not ROOTLESS:
        run_rootless(sys.argv[1:])
    reps = a.reps or (1 if a.quick else 3)
    impls = [i for i in a.impls.split(",") if (i != "fo2" or os.path.exists(FO2)) and not (ROOTLESS and i == "native")]
    if a.rss_files:
        rss_walk(a.rss_files, impls)
        return
    print(f"mode: {'rootless (user namespace, no passthrough)' if ROOTLESS else 'root'}; reps {reps}; "
          f"kernel {os.uname().release}", file=sys.stderr)
    scratch = tempfile.mkdtemp(prefix="strata-bench.", dir="/var/tmp")
    wl = [w for w in WORKLOADS if not a.only or any(w[0].startswith(o) for o in a.only.split(","))]
    res = {(w[0], i): [] for w in wl for i in impls}
    rss = {i: [] for i in impls}
    expected = {}
    for r in range(reps):
        for name, fn, state in wl:
            order = impls[:]
            random.shuffle(order)
            for impl in order:
                if impl == "native" and name.startswith("W5"):
                    continue  # copy-up has no native equivalent (and would write a lower via its link)
                if name.startswith("W10") and impl != "strata":
                    continue  # provenance xattrs are strata's alone
                mt = Mount(impl, scratch)
                try:
                    if state == "cold":
                        drop_caches()
                    elif state == "warm":
                        fn(mt.mnt)
                    dt, out = timed(lambda: fn(mt.mnt))
                    key = name
                    if key in expected:
                        expect(out == expected[key] or "IOPS" in name, f"{name} on {impl}: {out!r} != {expected[key]!r}")
                    else:
                        expected[key] = out
                    res[(name, impl)].append(out if "IOPS" in name else dt)
                    if name.startswith("W1 find+stat warm"):
                        p = mt.peak_rss_mib()
                        if p:
                            rss[impl].append(p)
                finally:
                    mt.close()
        print(f"round {r + 1}/{reps} done", file=sys.stderr)
    shutil.rmtree(scratch, ignore_errors=True)
    head = f"{'workload':34}" + "".join(f"{i:>10}" for i in impls) + "".join(f"{'st/' + i:>11}" for i in impls if i != "strata")
    print(head)
    for name, _, _ in wl:
        med = {i: statistics.median(res[(name, i)]) if res[(name, i)] else 0 for i in impls}
        row = f"{name:34}" + "".join(f"{'-':>10}" if not res[(name, i)] else f"{med[i]:>10.3f}" if med[i] < 1e4 else f"{med[i]:>10.0f}" for i in impls)
        for i in impls:
            if i == "strata":
                continue
            if med[i] == 0:
                row += f"{'-':>11}"
            elif "IOPS" in name:
                row += f"{med['strata'] / med[i]:>10.2f}x"  # throughput ratio: > 1 is better
            else:
                row += f"{med['strata'] / med[i]:>10.2f}x"  # time ratio: < 1 is better
        print(row)
    print("peak RSS after W1 (MiB): " + ", ".join(f"{i}={max(v):.1f}" for i, v in rss.items() if v))
    print("time rows: strata/peer time (< 1: strata faster); IOPS rows: strata/peer IOPS (> 1: strata faster)")


if __name__ == "__main__":
    main()
