//! The test helpers of the image store tests, checked against reference tools, so that a
//! failure in the other `store_*` tests points at strata and not at the helpers: GNU tar reads
//! the tars `oci::tar_bytes` writes, `layer_vs_tar` and `merged_view` agree with GNU tar's
//! extraction and the test data's README, and podman loads the layouts and archives
//! `oci` builds, with the ids it predicts.

use std::path::Path;
use std::process::Command;

use serde_json::{json, Value};
use strata_tests::oci::*;
use strata_tests::store::*;
use strata_tests::*;

fn gnu_tar_extract(tar: &[u8], dest: &Path) {
    mkdirs(dest);
    let f = dest.with_extension("tar");
    std::fs::write(&f, tar).unwrap();
    let out = Command::new("tar")
        .args([
            "--xattrs",
            "--xattrs-include=user.*",
            "--numeric-owner",
            "-xpf",
        ])
        .arg(&f)
        .arg("-C")
        .arg(dest)
        .output()
        .expect("run tar");
    assert!(out.status.success(), "GNU tar:\n{}", show(&out));
}

#[test]
fn gnu_tar_extraction_matches_layer_vs_tar() {
    let t = tempfile::tempdir().unwrap();
    let root = rustix::process::geteuid().is_root();
    let mut e = fidelity_entries();
    if root {
        e.push(TarEntry::file("owned", "o").owner(1234, 5678).mode(0o4750));
        e.push(TarEntry::chardev("null", 1, 3).owner(0, 5));
    }
    let tar = tar_bytes(&e);
    let dest = t.path().join("x");
    gnu_tar_extract(&tar, &dest);
    // GNU tar makes symlinks last (after it restored directory times), so d/'s mtime moves
    // when d/sl is made: a quirk of GNU tar, not of the tar or of the comparison.
    let d: Vec<String> = layer_vs_tar(&dest, &tar, root)
        .into_iter()
        .filter(|x| !x.starts_with("d: mtime"))
        .collect();
    assert!(d.is_empty(), "{d:#?}");
    // And the comparison sees a difference when there is one.
    chmod(dest.join("d/suid"), 0o755);
    std::fs::remove_file(dest.join("d/hl")).unwrap();
    std::fs::copy(dest.join("d/f"), dest.join("d/hl")).unwrap();
    write(dest.join("extra"), "x");
    let d: Vec<String> = layer_vs_tar(&dest, &tar, root)
        .into_iter()
        .filter(|x| !x.starts_with("d: mtime"))
        .collect();
    assert_eq!(d.len(), 3, "{d:#?}");
}

#[test]
fn merged_view_of_gnu_tar_extracted_testdata() {
    let t = tempfile::tempdir().unwrap();
    let archive =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("data/images/bb-2layer.docker-archive.tar");
    let mut ar = tar::Archive::new(std::fs::File::open(archive).unwrap());
    ar.unpack(t.path().join("a")).unwrap();
    let mut dirs = Vec::new();
    for l in [
        "1de107a7521c2a027ea12fbb236bc818adf4168d344ee5ad28f2a778d42892c4",
        "aebb72f77720794bbc774067ea1b14cca2cbcd4559bf48db73f659b7d11b162c",
    ] {
        let tar = read(t.path().join(format!("a/{l}.tar")));
        let d = t.path().join(l);
        gnu_tar_extract(&tar, &d);
        assert_layer_matches_tar(&d, &tar, rustix::process::geteuid().is_root());
        dirs.push(d);
    }
    let v = merged_view(&dirs);
    let want = [
        ("added.txt", "f added in layer 2\n"),
        ("keep.txt", "f keep\n"),
        ("link-to-keep", "l -> keep.txt"),
        ("modify-me.txt", "f modified in layer 2\n"),
        ("newdir", "d"),
        ("newdir/nested.txt", "f nested\n"),
    ];
    let want: std::collections::BTreeMap<String, String> = want
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    assert_eq!(subtree(&v, "data"), want);
}

#[test]
fn rfc3339_parser() {
    assert_eq!(rfc3339_secs("1970-01-01T00:00:00Z"), Some(0));
    assert_eq!(rfc3339_secs("2023-11-14T22:13:20Z"), Some(1_700_000_000));
    assert_eq!(
        rfc3339_secs("2023-11-14T23:13:20.123456789+01:00"),
        Some(1_700_000_000)
    );
    assert_eq!(
        rfc3339_secs("2024-02-29T00:00:00-00:30"),
        Some(1_709_166_600)
    );
    assert_eq!(rfc3339_secs("yesterday"), None);
}

#[test]
fn priv_podman_loads_built_archives() {
    if !require(Need::Root) {
        return;
    }
    if !require_podman() {
        return;
    }
    let base = tar_bytes(&fidelity_entries());
    let top = tar_bytes(&[TarEntry::file("top", "top\n")]);
    let img = Image::new(
        Some("localhost/built:1"),
        vec![
            Layer::new(base.clone(), Compression::Gzip),
            Layer::new(top.clone(), Compression::Zstd),
        ],
    );
    let t = tempfile::tempdir().unwrap();
    let archives = [
        (
            "oci-archive",
            oci_layout(std::slice::from_ref(&img)).archive(),
        ),
        (
            "docker legacy",
            docker_archive(std::slice::from_ref(&img), DockerForm::Legacy),
        ),
        (
            "docker podman",
            docker_archive(std::slice::from_ref(&img), DockerForm::Podman),
        ),
        (
            "docker oci",
            docker_archive(std::slice::from_ref(&img), DockerForm::Oci),
        ),
    ];
    for (i, (what, bytes)) in archives.iter().enumerate() {
        let f = t.path().join(format!("{i}.tar"));
        std::fs::write(&f, bytes).unwrap();
        let graph = t.path().join(format!("g{i}"));
        let out = podman(&graph, &["load", "-i", s(&f)]);
        assert!(out.status.success(), "{what}: podman load:\n{}", show(&out));
        let out = podman(&graph, &["image", "inspect", "localhost/built:1"]);
        assert!(
            out.status.success(),
            "{what}: podman inspect:\n{}",
            show(&out)
        );
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v[0]["Id"], json!(hex(&img.id())), "{what}");
        assert_eq!(
            v[0]["RootFS"]["Layers"],
            json!([digest_of(&base), digest_of(&top)]),
            "{what}"
        );
        let _ = podman(&graph, &["rmi", "-a", "-f"]);
    }
}
