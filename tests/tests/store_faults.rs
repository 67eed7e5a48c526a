//! The image store under faults: concurrent loads of the same image, `kill -9` in the middle
//! of a load, and a full disk.

use std::collections::BTreeSet;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use strata_tests::oci::*;
use strata_tests::store::*;
use strata_tests::*;

fn testdata(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("data/images")
        .join(name)
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

#[test]
fn concurrent_loads_of_one_image() {
    let oci = testdata("bb-2layer.oci-archive.tar");
    let docker = testdata("bb-2layer.docker-archive.tar");
    // Same archive twice, and the two archives (other blobs, same layers) at once.
    for (round, pair) in [[&oci, &oci], [&oci, &docker], [&docker, &docker]]
        .iter()
        .enumerate()
    {
        let st = Store::new();
        let children: Vec<_> = pair
            .iter()
            .map(|a| {
                let mut c = st.cmd();
                c.args(["load", "-i"])
                    .arg(a)
                    .stdin(Stdio::null())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped());
                c.spawn().expect("spawn strata load")
            })
            .collect();
        for ch in children {
            let out = ch.wait_with_output().expect("wait");
            assert!(
                out.status.success(),
                "round {round}: concurrent load:\n{}",
                show(&out)
            );
        }
        let rows = st.images();
        assert_eq!(rows.len(), 1, "round {round}: one image: {rows:?}");
        assert_eq!(rows[0]["Repository"], json!("localhost/bb-test"));
        let i = st.inspect("localhost/bb-test:2");
        let layers: Vec<String> = i["RootFS"]["Layers"]
            .as_array()
            .expect("Layers")
            .iter()
            .map(|l| hex(l.as_str().unwrap()).to_string())
            .collect();
        assert_eq!(
            st.layers(),
            layers.iter().cloned().collect::<BTreeSet<_>>(),
            "round {round}: one layer dir per diff_id"
        );
        // Each layer is complete: the same as a load on its own gives.
        let alone = Store::new();
        alone.load(pair[0]);
        for l in &layers {
            assert_same_content(
                &format!("round {round}: layer {l} after concurrent loads vs a lone load"),
                &content_tree(&alone.layer(l), &[]),
                &content_tree(&st.layer(l), &[]),
            );
        }
        st.assert_tmp_clean("after concurrent loads");
    }
}

const NFILES: usize = 30_000;

/// An oci-archive of one image whose only layer holds `NFILES` small files.
fn big_image() -> (Image, Vec<u8>) {
    let mut e = Vec::with_capacity(NFILES + 40);
    for d in 0..NFILES / 1000 {
        e.push(TarEntry::dir(&format!("d{d:02}/")));
        for f in 0..1000 {
            e.push(TarEntry::file(
                &format!("d{d:02}/f{f:04}"),
                format!("file {d}/{f}\n"),
            ));
        }
    }
    let tar = tar_bytes(&e);
    let img = Image::new(
        Some("localhost/big:1"),
        vec![Layer::new(tar.clone(), Compression::Gzip)],
    );
    (img, tar)
}

fn count_objects(dir: &Path, limit: usize) -> usize {
    let mut n = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            n += 1;
            if n >= limit {
                return n;
            }
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(e.path());
            }
        }
    }
    n
}

/// Starts `strata load -i archive`, waits until `ready` says the store is being written, then
/// kills it with SIGKILL. Panics when the load finished first.
fn kill_load_when(st: &Store, archive: &Path, what: &str, ready: impl Fn(&Store) -> bool) {
    let mut c = st.cmd();
    c.args(["load", "-i"])
        .arg(archive)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = c.spawn().expect("spawn strata load");
    let deadline = Instant::now() + STORE_TIMEOUT;
    loop {
        if ready(st) {
            break;
        }
        if let Some(status) = child.try_wait().expect("try_wait") {
            panic!(
                "the load ended ({status}) before {what}: cannot kill it in the middle; \
                 make the image bigger"
            );
        }
        assert!(Instant::now() < deadline, "load hung before {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().expect("kill -9");
    child.wait().expect("wait");
    // Shown with --no-capture: what the kill left behind.
    println!(
        "killed when {what}: tmp/ holds {} objects, layers/ {}, the root {}",
        count_objects(&st.root.join("tmp"), usize::MAX),
        count_objects(&st.root.join("layers"), usize::MAX),
        count_objects(&st.root, usize::MAX)
    );
}

#[test]
fn kill9_during_load_then_recover() {
    let setup = Store::new();
    let (img, tar) = big_image();
    let archive = setup.dir.join("big.oci-archive.tar");
    fs::write(&archive, oci_layout(std::slice::from_ref(&img)).archive()).unwrap();
    let diff = img.layers[0].diff_id();

    // Kill at the first write, and again well into the extraction.
    type Ready = Box<dyn Fn(&Store) -> bool>;
    let points: [(&str, Ready); 2] = [
        (
            "anything appeared in tmp/ or layers/",
            Box::new(|st: &Store| {
                count_objects(&st.root.join("tmp"), 1) > 0
                    || count_objects(&st.root.join("layers"), 1) > 0
            }),
        ),
        (
            "5000 objects were extracted",
            Box::new(|st: &Store| count_objects(&st.root, 5000) >= 5000),
        ),
    ];
    for (what, ready) in points {
        let st = Store::new();
        kill_load_when(&st, &archive, what, ready);
        let rows = st.images();
        assert!(
            rows.is_empty(),
            "killed when {what}: image listed: {rows:?}"
        );
        st.fail(&["inspect", "localhost/big:1"]);

        let out = st.load(&archive);
        assert!(out.contains("Loaded image: localhost/big:1"), "{out:?}");
        assert_eq!(st.inspect("localhost/big:1")["Id"], json!(img.id()));
        // The interrupted extraction left nothing half-done in the layer that counts.
        assert_layer_matches_tar(&st.layer(&diff), &tar, is_root());
        st.assert_tmp_clean(&format!("killed when {what}, then loaded again"));
        st.ok(&["image", "prune"]);
        st.assert_tmp_clean("after prune");
        assert_eq!(st.images().len(), 1);
    }
}

#[test]
fn kill9_during_load_then_prune_cleans() {
    let setup = Store::new();
    let (img, _) = big_image();
    let archive = setup.dir.join("big.oci-archive.tar");
    fs::write(&archive, oci_layout(&[img]).archive()).unwrap();
    let st = Store::new();
    kill_load_when(&st, &archive, "500 objects appeared", |st| {
        count_objects(&st.root, 500) >= 500
    });
    let out = st.ok(&["image", "prune"]);
    assert!(out.contains("Total reclaimed space:"), "{out:?}");
    st.assert_tmp_clean("prune after kill -9");
    assert!(st.images().is_empty());
    assert!(
        st.layers().is_empty(),
        "half-loaded layer left: {:?}",
        st.layers()
    );
}

fn fill(path: &Path) {
    let mut f = fs::File::create(path).expect("filler");
    let chunk = vec![0x55u8; 64 * 1024];
    while f.write_all(&chunk).is_ok() {}
    let small = [0u8; 512];
    while f.write_all(&small).is_ok() {}
    let _ = f.sync_all();
}

#[test]
fn priv_full_disk() {
    if !require(Need::Root) {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let mnt = t.path().join("small");
    mkdirs(&mnt);
    let out = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=2m,mode=0755", "tmpfs"])
        .arg(&mnt)
        .output()
        .expect("mount tmpfs");
    assert!(
        out.status.success(),
        "mount tmpfs: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _guard = MountGuard::new(&mnt);
    let st = Store::at(&mnt.join("root"));
    // Inputs live outside the small filesystem.
    let input = |data: &[u8], n: &str| {
        let p = t.path().join(n);
        fs::write(&p, data).unwrap();
        p
    };
    let small = |tag: &str| tar_bytes(&[TarEntry::file(&format!("{tag}.txt"), tag)]);
    st.import(&input(&small("seed"), "seed.tar"), "localhost/seed:1");

    // (1) An image bigger than the whole filesystem.
    let big = tar_bytes(&[TarEntry::file("noise", noise(4 << 20, 9))]);
    let img = Image::new(
        Some("localhost/huge:1"),
        vec![Layer::new(big, Compression::Gzip)],
    );
    let archive = input(&oci_layout(&[img]).archive(), "huge.tar");
    let before = st.tree();
    let images_before = st.images();
    let err = st.fail(&["load", "-i", s(&archive)]);
    println!("load on a full disk: {}", err.trim());
    assert!(err.to_lowercase().contains("no space"), "stderr: {err}");
    assert_eq!(st.images(), images_before, "after ENOSPC");
    assert_same_content(
        "store after a load that ran out of space",
        &before,
        &st.tree(),
    );
    st.assert_tmp_clean("after ENOSPC during load");

    // (2) A disk filled by someone else: even a small import fails cleanly, then works once
    // space is freed.
    let filler = mnt.join("filler");
    fill(&filler);
    let small_in = input(&small("after"), "after.tar");
    let err = st.fail(&["import", s(&small_in), "localhost/after:1"]);
    println!("import on a full disk: {}", err.trim());
    assert!(err.to_lowercase().contains("no space"), "stderr: {err}");
    assert_eq!(st.images(), images_before, "after ENOSPC during import");
    assert_same_content("store after an import on a full disk", &before, &st.tree());
    st.assert_tmp_clean("after ENOSPC during import");
    fs::remove_file(&filler).unwrap();
    st.import(&small_in, "localhost/after:1");
    assert_eq!(st.images().len(), 2);
    st.assert_tmp_clean("after the import that fit");
}
