#!/usr/bin/env python3
"""Store benchmark: `strata load` of an image against `tar -x` of the same layers.

The image is made from bench/data/lower{1,2,3} (run bench/prepare.sh first): each lower
becomes one uncompressed layer of an OCI archive, built here with tarfile and hashlib so the
benchmark does not depend on the code it measures. Each repetition loads into a fresh store
root, and extracts into fresh dirs, on the same filesystem; the two are interleaved.

`strata load` verifies every digest, unpacks each layer, and syncs the unpacked files before
committing (syncfs), so it is compared with `tar -x` alone and with `tar -x; sync`.

usage: bench/store.py [--reps N] [--gzip]
"""
import argparse, gzip, hashlib, io, json, os, shutil, statistics, subprocess, tarfile, tempfile, time

ROOT = os.path.dirname(os.path.abspath(__file__))
DATA = os.environ.get("BENCH_DATA", os.path.join(ROOT, "data"))
STRATA = os.environ.get("STRATA", os.path.join(ROOT, "..", "target", "release", "strata"))


def sha(b):
    return hashlib.sha256(b).hexdigest()


def build(work, gz):
    layers = []
    for i in (3, 2, 1):  # base first: lower3 is the bottom layer
        src = os.path.join(DATA, f"lower{i}")
        path = os.path.join(work, f"layer{i}.tar")
        subprocess.run(["tar", "--numeric-owner", "-C", src, "-cf", path, "."], check=True)
        layers.append(path)
    blobs, descs, diff_ids = {}, [], []
    for p in layers:
        raw = open(p, "rb").read()
        diff_ids.append("sha256:" + sha(raw))
        blob = gzip.compress(raw, 1) if gz else raw
        d = sha(blob)
        blobs[d] = blob
        mt = "application/vnd.oci.image.layer.v1.tar" + ("+gzip" if gz else "")
        descs.append({"mediaType": mt, "digest": "sha256:" + d, "size": len(blob)})
    cfg = json.dumps({"architecture": "amd64", "os": "linux", "config": {},
                      "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
    blobs[sha(cfg)] = cfg
    man = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                      "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                 "digest": "sha256:" + sha(cfg), "size": len(cfg)},
                      "layers": descs}).encode()
    blobs[sha(man)] = man
    idx = json.dumps({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "sha256:" + sha(man),
        "size": len(man), "annotations": {"org.opencontainers.image.ref.name": "localhost/bench:1"}}]}).encode()
    out = os.path.join(work, "image.tar")
    with tarfile.open(out, "w") as t:
        def add(name, data):
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            t.addfile(ti, io.BytesIO(data))
        add("oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        for d, b in blobs.items():
            add("blobs/sha256/" + d, b)
        add("index.json", idx)
    return out, layers


def count_entries(d):
    return sum(len(f) + len(ds) for _, ds, f in os.walk(d))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--gzip", action="store_true")
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="strata-bench-store.", dir=os.environ.get("BENCH_TMP", "/var/tmp"))
    try:
        image, layers = build(work, a.gzip)
        want = sum(count_entries(os.path.join(DATA, f"lower{i}")) for i in (1, 2, 3))
        res = {"strata load": [], "tar -x": [], "tar -x; sync": []}
        for r in range(a.reps):
            root = os.path.join(work, f"root{r}")
            t0 = time.perf_counter()
            subprocess.run([STRATA, "--root", root, "load", "-q", "-i", image], check=True)
            res["strata load"].append(time.perf_counter() - t0)
            got = sum(count_entries(os.path.join(root, "layers", d)) for d in os.listdir(os.path.join(root, "layers"))
                      if not d.endswith(".json"))
            assert got == want, f"strata unpacked {got} entries, the lowers have {want}"
            subprocess.run(["sync"], check=True)
            for name, sync in (("tar -x", False), ("tar -x; sync", True)):
                dst = os.path.join(work, f"x{r}{int(sync)}")
                t0 = time.perf_counter()
                for i, p in enumerate(layers):
                    d = os.path.join(dst, str(i))
                    os.makedirs(d)
                    subprocess.run(["tar", "--numeric-owner", "-xpf", p, "-C", d], check=True)
                if sync:
                    subprocess.run(["sync"], check=True)
                res[name].append(time.perf_counter() - t0)
                subprocess.run(["sync"], check=True)
            shutil.rmtree(root)
        size = sum(os.path.getsize(p) for p in layers)
        print(f"image: 3 layers, {want} entries, {size / 1e6:.0f} MB uncompressed, "
              f"{'gzip' if a.gzip else 'plain'} blobs; median of {a.reps}")
        base = {k: statistics.median(v) for k, v in res.items()}
        for k, v in base.items():
            print(f"  {k:14s} {v:7.2f} s")
        print(f"  ratio strata load / tar -x       = {base['strata load'] / base['tar -x']:.2f}")
        print(f"  ratio strata load / (tar -x; sync) = {base['strata load'] / base['tar -x; sync']:.2f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
