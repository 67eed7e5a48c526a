//! The image store against the two archives podman made (tests/data/images, see its README):
//! what `strata load` stores and reports, the merged view of the extracted layers (by hand and
//! through a strata mount), layer sharing, idempotent loads, and save/load round trips through
//! strata and through podman.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};
use strata_tests::oci::*;
use strata_tests::store::*;
use strata_tests::*;

// Facts from tests/data/images/README.md (the spec of the test data, not outputs of strata).
const CONFIG: &str = "sha256:5e7cd4f93de751fc7965b2abf0e47ec66338eaeed1a1cb2609a5814872649f0d";
const L1: &str = "sha256:1de107a7521c2a027ea12fbb236bc818adf4168d344ee5ad28f2a778d42892c4";
const L2: &str = "sha256:aebb72f77720794bbc774067ea1b14cca2cbcd4559bf48db73f659b7d11b162c";
const NAME: &str = "localhost/bb-test:2";
const BUSYBOX_SIZE: i64 = 1_982_256;

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("data/images")
        .join(name)
}

fn oci_archive() -> PathBuf {
    data("bb-2layer.oci-archive.tar")
}

fn docker_archive() -> PathBuf {
    data("bb-2layer.docker-archive.tar")
}

/// A member of an archive file, read with the tar crate.
fn member(archive: &Path, name: &str) -> Vec<u8> {
    let f = fs::File::open(archive).expect("open archive");
    let mut ar = tar::Archive::new(f);
    for e in ar.entries().expect("entries") {
        let mut e = e.expect("entry");
        if e.path_bytes().as_ref() == name.as_bytes() {
            let mut v = Vec::new();
            e.read_to_end(&mut v).expect("read member");
            return v;
        }
    }
    panic!("{}: no member {name}", archive.display());
}

/// The uncompressed tar of layer `diff_id`, as the docker-archive holds it.
fn layer_tar(diff_id: &str) -> Vec<u8> {
    let t = member(&docker_archive(), &format!("{}.tar", hex(diff_id)));
    assert_eq!(digest_of(&t), diff_id, "test data: layer member digest");
    t
}

/// The image config, as the docker-archive holds it.
fn config() -> Value {
    let c = member(&docker_archive(), &format!("{}.json", hex(CONFIG)));
    assert_eq!(digest_of(&c), CONFIG, "test data: config digest");
    serde_json::from_slice(&c).expect("config json")
}

fn owners() -> bool {
    rustix::process::geteuid().is_root()
}

/// The merged `/data` the README describes.
fn expected_data() -> BTreeMap<String, String> {
    [
        ("added.txt", "f added in layer 2\n"),
        ("keep.txt", "f keep\n"),
        ("link-to-keep", "l -> keep.txt"),
        ("modify-me.txt", "f modified in layer 2\n"),
        ("newdir", "d"),
        ("newdir/nested.txt", "f nested\n"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// Everything a load of either test archive must have produced in `st`.
fn check_loaded(st: &Store, load_out: &str) {
    assert!(
        load_out
            .lines()
            .any(|l| l.trim() == format!("Loaded image: {NAME}")),
        "load output should name the image: {load_out:?}"
    );
    let imgs = st.images();
    assert_eq!(imgs.len(), 1, "one image expected: {imgs:?}");
    let row = &imgs[0];
    assert_eq!(row["Repository"], json!("localhost/bb-test"), "{row}");
    assert_eq!(row["Tag"], json!("2"), "{row}");
    assert_eq!(row["Id"], json!(CONFIG), "image id = config digest: {row}");
    let cfg = config();
    let want_created = rfc3339_secs(cfg["created"].as_str().unwrap()).unwrap();
    let created = row["Created"]
        .as_str()
        .unwrap_or_else(|| panic!("Created: {row}"));
    assert_eq!(
        rfc3339_secs(created),
        Some(want_created),
        "Created {created:?} vs config {}",
        cfg["created"]
    );
    assert!(
        row["Size"].as_i64().is_some_and(|s| s > BUSYBOX_SIZE),
        "Size: {row}"
    );

    // By full name, by the short name of a localhost/ image, by id, by bare hex.
    for r in [NAME, "bb-test:2", CONFIG, hex(CONFIG), &hex(CONFIG)[..12]] {
        let i = st.inspect(r);
        assert_eq!(i["Id"], json!(CONFIG), "inspect {r}");
    }
    let i = st.inspect(NAME);
    assert_eq!(i["RepoTags"], json!([NAME]));
    assert_eq!(i["RootFS"]["Type"], json!("layers"));
    assert_eq!(i["RootFS"]["Layers"], json!([L1, L2]));
    assert_eq!(i["Author"], json!("podman-client testdata"));
    assert_eq!(i["Architecture"], json!("amd64"));
    assert_eq!(i["Os"], json!("linux"));
    assert_eq!(i["Config"]["Cmd"], json!(["/bin/sh"]));
    assert_eq!(i["Config"]["WorkingDir"], json!("/"));
    assert_eq!(i["Config"]["Env"], cfg["config"]["Env"]);
    let env = i["Config"]["Env"].as_array().expect("Env");
    assert!(env.contains(&json!("TERM=xterm")) && env.contains(&json!("container=podman")));
    let hist = i["History"].as_array().expect("History");
    assert_eq!(hist.len(), 2, "{hist:?}");
    assert_eq!(hist[0]["comment"], json!("layer 1: busybox-static rootfs"));
    assert_eq!(hist[1]["created_by"], cfg["history"][1]["created_by"]);
    assert!(i["Size"].as_i64().is_some_and(|s| s > BUSYBOX_SIZE));

    // Each layer once, extracted exactly as its tar says.
    assert_eq!(st.layers(), [hex(L1), hex(L2)].map(String::from).into());
    for l in [L1, L2] {
        assert_layer_matches_tar(&st.layer(l), &layer_tar(l), owners());
    }
    // Whiteouts stay `.wh.` files in the layer dir.
    let wh = lstat(st.layer(L2).join("data/.wh.deldir"));
    assert!(wh.is_file() && wh.len() == 0, "{wh:?}");
    assert!(st
        .root
        .join("images")
        .join(format!("{}.json", hex(CONFIG)))
        .is_file());
    st.assert_tmp_clean("after load");

    let view = merged_view(&[st.layer(L1), st.layer(L2)]);
    assert_eq!(subtree(&view, "data"), expected_data());
    assert_eq!(view.get("data").map(String::as_str), Some("d"));
    assert_eq!(
        view.get("etc/motd").map(String::as_str),
        Some("f base image v1\n")
    );
}

#[test]
fn store_layout_is_as_documented() {
    // The documented layout (store/src/store.rs): blobs/sha256/<hex>, layers/<diff_id hex>/,
    // layerinfo/<hex>.json, images/<id hex>.json, refs, lock, tmp/. Nothing else, so that other
    // tools (and these tests) can rely on it.
    let st = Store::new();
    st.load(&oci_archive());
    let top = dir_names(&st.root);
    let allowed = [
        "blobs",
        "layers",
        "layerinfo",
        "images",
        "refs",
        "lock",
        "tmp",
    ];
    let extra: Vec<&String> = top
        .iter()
        .filter(|n| !allowed.contains(&n.as_str()))
        .collect();
    assert!(
        extra.is_empty(),
        "unexpected entries in the store root: {extra:?}"
    );
    assert_eq!(
        dir_names(&st.root.join("layers")),
        [hex(L1), hex(L2)].map(String::from).into(),
        "layers/ should hold exactly one directory per diff_id"
    );
    assert_eq!(
        dir_names(&st.root.join("layerinfo")),
        [format!("{}.json", hex(L1)), format!("{}.json", hex(L2))].into(),
        "layerinfo/ should hold one record per layer"
    );
    assert_eq!(
        dir_names(&st.root.join("images")),
        [format!("{}.json", hex(CONFIG))].into()
    );
    for b in st.blobs() {
        let data = fs::read(st.root.join("blobs/sha256").join(&b)).unwrap();
        assert_eq!(sha256_hex(&data), b, "blob stored under the wrong name");
    }
    assert!(st.root.join("refs").is_file() && st.root.join("lock").is_file());
}

#[test]
fn testdata_oci_archive_loads() {
    let st = Store::new();
    let out = st.load(&oci_archive());
    check_loaded(&st, &out);
}

#[test]
fn testdata_docker_archive_loads() {
    let st = Store::new();
    let out = st.load(&docker_archive());
    check_loaded(&st, &out);
}

#[test]
fn testdata_oci_layout_dir_loads() {
    // The same OCI layout, unpacked into a directory.
    let st = Store::new();
    let dir = st.dir.join("layout");
    let mut ar = tar::Archive::new(fs::File::open(oci_archive()).unwrap());
    ar.unpack(&dir).expect("unpack test archive");
    let out = st.load(&dir);
    check_loaded(&st, &out);
}

#[test]
fn testdata_both_archives_share_layers() {
    let st = Store::new();
    st.load(&oci_archive());
    let out = st.load(&docker_archive());
    check_loaded(&st, &out);
    let df = json_lines(&st.ok(&["system", "df", "-v", "--format", "json"]));
    assert_eq!(df.len(), 1, "{df:?}");
    assert_eq!(
        df[0]["SharedSize"],
        json!(0),
        "nothing shared yet: {}",
        df[0]
    );

    // A second image on top of the same base layer shares it.
    let top = tar_bytes(&[TarEntry::dir("opt/"), TarEntry::file("opt/second", "2nd\n")]);
    let img = Image::new(
        Some("localhost/second:1"),
        vec![
            Layer::new(layer_tar(L1), Compression::Gzip),
            Layer::new(top.clone(), Compression::Gzip),
        ],
    );
    let dir = st.dir.join("second");
    oci_layout(std::slice::from_ref(&img)).write_dir(&dir);
    st.load(&dir);
    let top_id = digest_of(&top);
    assert_eq!(
        st.layers(),
        [hex(L1), hex(L2), hex(&top_id)].map(String::from).into(),
        "layer 1 must be stored once"
    );
    assert_layer_matches_tar(&st.layer(L1), &layer_tar(L1), owners());
    let df = json_lines(&st.ok(&["system", "df", "-v", "--format", "json"]));
    assert_eq!(df.len(), 2, "{df:?}");
    let by_id: BTreeMap<String, &Value> = df
        .iter()
        .map(|r| (r["Id"].as_str().expect("Id").to_string(), r))
        .collect();
    let (bb, second) = (by_id[CONFIG], by_id[&img.id()]);
    for r in [bb, second] {
        let (size, shared, unique) = (
            r["Size"].as_i64().expect("Size"),
            r["SharedSize"].as_i64().expect("SharedSize"),
            r["UniqueSize"].as_i64().expect("UniqueSize"),
        );
        assert_eq!(size, shared + unique, "Size = SharedSize + UniqueSize: {r}");
        assert!(shared >= BUSYBOX_SIZE, "layer 1 (busybox) is shared: {r}");
    }
    assert_eq!(bb["SharedSize"], second["SharedSize"]);
    assert!(
        bb["UniqueSize"].as_i64() > Some(0),
        "layer 2 is bb-test's own: {bb}"
    );
}

#[test]
fn testdata_load_twice_changes_nothing() {
    for archive in [oci_archive(), docker_archive()] {
        let st = Store::new();
        st.load(&archive);
        let before = st.tree();
        let out = st.load(&archive);
        assert!(out.contains(NAME), "second load output: {out:?}");
        assert_same_content(
            "store after loading the same archive again",
            &before,
            &st.tree(),
        );
        st.assert_tmp_clean("after the second load");
    }
}

fn archive_has(file: &Path, name: &str) -> bool {
    let mut ar = tar::Archive::new(fs::File::open(file).unwrap());
    let found = ar
        .entries()
        .expect("entries")
        .any(|e| norm_name(&e.expect("entry").path_bytes()) == name);
    found
}

#[test]
fn testdata_save_and_reload() {
    let st = Store::new();
    st.load(&oci_archive());
    let layers_before: Vec<_> = [L1, L2]
        .iter()
        .map(|l| content_tree(&st.layer(l), &[]))
        .collect();
    for format in [None, Some("oci-archive"), Some("docker-archive")] {
        let f = st
            .dir
            .join(format!("saved-{}.tar", format.unwrap_or("default")));
        let mut args = vec!["save", "-o", s(&f)];
        if let Some(fm) = format {
            args.extend(["--format", fm]);
        }
        args.push("bb-test:2");
        st.ok(&args);
        if format == Some("oci-archive") {
            assert!(archive_has(&f, "index.json") && archive_has(&f, "oci-layout"));
        } else {
            // docker-archive, also the default.
            assert!(
                archive_has(&f, "manifest.json"),
                "{format:?}: no manifest.json"
            );
        }
        let fresh = Store::new();
        let out = fresh.load(&f);
        assert!(out.contains(NAME), "{format:?}: {out:?}");
        let i = fresh.inspect(NAME);
        assert_eq!(i["Id"], json!(CONFIG), "{format:?}: image id changed");
        assert_eq!(i["RootFS"]["Layers"], json!([L1, L2]), "{format:?}");
        assert_eq!(i["RepoTags"], json!([NAME]), "{format:?}");
        for (l, before) in [L1, L2].iter().zip(&layers_before) {
            assert_same_content(
                &format!("{format:?}: layer {l} after save + load"),
                before,
                &content_tree(&fresh.layer(l), &[]),
            );
        }
    }
}

#[test]
fn priv_podman_loads_strata_save() {
    if !require(Need::Root) {
        return;
    }
    if !require_podman() {
        return;
    }
    let st = Store::new();
    st.load(&docker_archive());
    for format in ["oci-archive", "docker-archive"] {
        let f = st.dir.join(format!("saved.{format}.tar"));
        st.ok(&["save", "-o", s(&f), "--format", format, NAME]);
        let graph = tempfile::tempdir().unwrap();
        let out = podman(graph.path(), &["load", "-i", s(&f)]);
        assert!(
            out.status.success(),
            "podman load {format}:\n{}",
            show(&out)
        );
        let out = podman(graph.path(), &["image", "inspect", NAME]);
        assert!(
            out.status.success(),
            "podman image inspect:\n{}",
            show(&out)
        );
        let v: Value = serde_json::from_slice(&out.stdout).expect("podman json");
        assert_eq!(
            v[0]["Id"],
            json!(hex(CONFIG)),
            "{format}: podman's image id"
        );
        assert_eq!(v[0]["RootFS"]["Layers"], json!([L1, L2]), "{format}");
        // podman's vfs storage is root-owned and may hold read-only dirs: its own rm cleans up.
        let _ = podman(graph.path(), &["rmi", "-a", "-f"]);
    }
}

#[test]
fn priv_mount_of_loaded_layers_shows_merged_view() {
    if !require_all(&[Need::Root, Need::Fuse]) {
        return;
    }
    let st = Store::new();
    st.load(&oci_archive());
    let before = st.tree();
    let by_hand = merged_view(&[st.layer(L1), st.layer(L2)]);
    let (upper, work, mnt) = (st.dir.join("u"), st.dir.join("w"), st.dir.join("m"));
    for d in [&upper, &work, &mnt] {
        mkdirs(d);
    }
    let mut c = Command::new(bin("strata"));
    c.arg("mount")
        .arg("--lower")
        .arg(st.layer(L2))
        .arg("--lower")
        .arg(st.layer(L1))
        .arg("--upper")
        .arg(&upper)
        .arg("--work")
        .arg(&work)
        .arg(&mnt);
    let out = run_timeout(&mut c, MOUNT_TIMEOUT);
    assert!(out.status.success(), "strata mount:\n{}", show(&out));
    let mut guard = MountGuard::new(&mnt);
    let seen = view_of(&mnt);
    assert_eq!(
        subtree(&seen, "data"),
        expected_data(),
        "/data through the mount"
    );
    assert_same_tree(
        "merged by hand (left) vs through strata mount (right)",
        &by_hand,
        &seen,
    );
    unmount_patiently(&mnt).expect("umount");
    for pid in guard.daemons().to_vec() {
        assert!(wait_exited(pid, EXIT_TIMEOUT), "daemon {pid} still running");
    }
    guard.disarm();
    assert_same_content("store after mounting its layers", &before, &st.tree());
}
