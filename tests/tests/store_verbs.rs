//! The image store verbs on images made in the tests: import (directory, tarballs in every
//! compression, stdin, --change/--message), tag, rmi, lookups by name and id prefix, invalid
//! names, images/history output, prune, system df, and extraction fidelity.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use serde_json::{json, Value};
use strata_tests::oci::*;
use strata_tests::store::*;
use strata_tests::*;

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// A small rootfs tar whose contents (and so diff_id) depend on `tag`.
fn small_tar(tag: &str) -> Vec<u8> {
    tar_bytes(&[
        TarEntry::dir("etc/"),
        TarEntry::file("etc/tag", tag),
        TarEntry::file(&format!("{tag}.txt"), format!("file of {tag}\n")),
    ])
}

/// The one diff_id of a one-layer image.
fn only_layer(st: &Store, image: &str) -> String {
    let i = st.inspect(image);
    let l = i["RootFS"]["Layers"].as_array().expect("Layers");
    assert_eq!(l.len(), 1, "{image}: one layer expected: {l:?}");
    l[0].as_str().expect("layer").to_string()
}

fn ids_of(rows: &[Value]) -> BTreeSet<String> {
    rows.iter()
        .map(|r| r["Id"].as_str().expect("Id").to_string())
        .collect()
}

fn names_of(rows: &[Value]) -> BTreeSet<String> {
    rows.iter()
        .map(|r| {
            format!(
                "{}:{}",
                r["Repository"].as_str().unwrap(),
                r["Tag"].as_str().unwrap()
            )
        })
        .collect()
}

/// `content_tree` plus mtimes, without the root entry: what a directory import must keep.
fn meta_tree(root: &Path, with_owners: bool) -> BTreeMap<String, String> {
    let mut t = content_tree(root, &[]);
    t.remove("");
    for (k, v) in t.iter_mut() {
        let md = lstat(root.join(k));
        *v += &format!(" mtime={}", md.mtime());
        if !with_owners {
            // "f 0644 0:0 ..." -> drop the owner field.
            let parts: Vec<&str> = v.splitn(4, ' ').collect();
            *v = format!("{} {} {}", parts[0], parts[1], parts[3]);
        }
    }
    t
}

#[test]
fn import_directory() {
    let st = Store::new();
    let src = st.dir.join("src");
    write(src.join("a"), "alpha\n");
    chmod(src.join("a"), 0o640);
    write(src.join("d/b"), "beta\n");
    chmod(src.join("d"), 0o750);
    mkdirs(src.join("e"));
    std::os::unix::fs::symlink("a", src.join("s")).unwrap();
    std::fs::hard_link(src.join("a"), src.join("d/a-link")).unwrap();
    if is_root() {
        lchown(src.join("d/b"), 1234, 5678);
    }
    for (i, p) in ["a", "d/b", "d/a-link", "s", "e", "d"].iter().enumerate() {
        set_times(
            src.join(p),
            (1_500_000_000, 0),
            (1_400_000_000 + i as i64, 0),
        );
    }
    let want = meta_tree(&src, is_root());
    let id = st.import(&src, "localhost/dir-import:1");
    let i = st.inspect("localhost/dir-import:1");
    assert_eq!(i["Id"], json!(id));
    let l = only_layer(&st, &id);
    let layer = st.layer(&l);
    assert_eq!(st.layers(), BTreeSet::from([hex(&l).to_string()]));
    assert_eq!(
        meta_tree(&layer, is_root()),
        want,
        "layer dir vs imported dir"
    );
    assert_eq!(
        lstat(layer.join("a")).ino(),
        lstat(layer.join("d/a-link")).ino(),
        "hard link kept"
    );
    st.assert_tmp_clean("after import");
}

#[test]
fn import_tarball_plain_gzip_zstd() {
    let st = Store::new();
    let tar = tar_bytes(&[
        TarEntry::dir("bin/"),
        TarEntry::file("bin/tool", "#!/bin/sh\n").mode(0o755),
        TarEntry::symlink("tool", "bin/tool"),
        TarEntry::file("big", noise(300_000, 7)),
    ]);
    let mut layers = BTreeSet::new();
    for c in [Compression::None, Compression::Gzip, Compression::Zstd] {
        // No file extension: the format must be found from the magic bytes.
        let f = st.input(&compress(&tar, c));
        let name = format!("localhost/comp:{c:?}").to_lowercase();
        st.import(&f, &name);
        let l = only_layer(&st, &name);
        assert_layer_matches_tar(&st.layer(&l), &tar, is_root());
        layers.insert(l);
    }
    assert_eq!(layers.len(), 1, "one tar, one layer: {layers:?}");
    assert_eq!(st.layers().len(), 1, "the layer is stored once");
    assert_eq!(names_of(&st.images()).len(), 3);
    st.assert_tmp_clean("after imports");
}

#[test]
fn import_from_stdin() {
    let st = Store::new();
    let tar = small_tar("stdin");
    for (c, name) in [
        (Compression::None, "localhost/stdin:plain"),
        (Compression::Zstd, "localhost/stdin:zstd"),
    ] {
        let out = st.run_stdin(&["import", "-", name], &compress(&tar, c));
        assert!(out.status.success(), "import - {name}:\n{}", show(&out));
        let id = parse_id(&String::from_utf8_lossy(&out.stdout));
        assert_eq!(st.inspect(name)["Id"], json!(id));
        assert_layer_matches_tar(&st.layer(&only_layer(&st, name)), &tar, is_root());
    }
}

#[test]
fn import_change_cmd_and_message() {
    let st = Store::new();
    let f = st.input(&small_tar("chg"));
    let out = st.ok(&[
        "import",
        s(&f),
        "localhost/chg:1",
        "--message",
        "imported by a test",
        "--change",
        r#"CMD ["/bin/sh", "-c", "echo hi"]"#,
    ]);
    let id = parse_id(&out);
    let i = st.inspect("localhost/chg:1");
    assert_eq!(i["Id"], json!(id));
    assert_eq!(i["Config"]["Cmd"], json!(["/bin/sh", "-c", "echo hi"]));
    let h = i["History"].as_array().expect("History");
    assert_eq!(h.len(), 1, "{h:?}");
    assert_eq!(h[0]["comment"], json!("imported by a test"));
    let rows = json_lines(&st.ok(&["history", "--format", "json", "localhost/chg:1"]));
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["Comment"], json!("imported by a test"));
    assert_eq!(rows[0]["EmptyLayer"], json!(false));
    assert!(
        rows[0]["Size"].as_i64().is_some_and(|n| n > 0),
        "{}",
        rows[0]
    );
    let table = st.ok(&["history", "localhost/chg:1"]);
    assert!(table.contains("imported by a test"), "{table}");
}

#[test]
fn import_change_other_instructions() {
    let st = Store::new();
    let f = st.input(&small_tar("chg2"));
    st.ok(&[
        "import",
        s(&f),
        "localhost/chg:2",
        "--change",
        "ENV FOO=bar",
        "--change",
        "WORKDIR /srv",
        "--change",
        r#"ENTRYPOINT ["/bin/true"]"#,
        "--change",
        "USER 1000",
        "--change",
        "LABEL org.example.k=v",
    ]);
    let c = &st.inspect("localhost/chg:2")["Config"];
    assert!(
        c["Env"]
            .as_array()
            .is_some_and(|e| e.contains(&json!("FOO=bar"))),
        "Env: {c}"
    );
    assert_eq!(c["WorkingDir"], json!("/srv"), "{c}");
    assert_eq!(c["Entrypoint"], json!(["/bin/true"]), "{c}");
    assert_eq!(c["User"], json!("1000"), "{c}");
    assert_eq!(c["Labels"]["org.example.k"], json!("v"), "{c}");
}

#[test]
fn tag_lists_both_names_with_one_id() {
    let st = Store::new();
    let id = st.import_bytes(&small_tar("tag"), "localhost/a:1");
    st.ok(&["tag", "localhost/a:1", "localhost/b:2"]);
    let rows = st.images();
    assert_eq!(
        names_of(&rows),
        BTreeSet::from(["localhost/a:1".into(), "localhost/b:2".into()])
    );
    assert_eq!(ids_of(&rows), BTreeSet::from([id.clone()]));
    let t = table(&st.ok(&["images"]));
    assert_eq!(t[0], ["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"]);
    assert_eq!(t.len(), 3, "{t:?}");
    for r in &t[1..] {
        assert_eq!(r[2], hex(&id)[..12], "{r:?}");
    }
    let q = st.ok(&["images", "-q"]);
    let q: BTreeSet<&str> = q.lines().collect();
    assert_eq!(q, BTreeSet::from([&hex(&id)[..12]]));
    assert_eq!(
        st.inspect("localhost/b:2")["RepoTags"]
            .as_array()
            .map(Vec::len),
        Some(2)
    );
}

#[test]
fn rmi_untags_then_deletes_with_unique_layer() {
    let st = Store::new();
    let id = st.import_bytes(&small_tar("rmi"), "localhost/r:1");
    let l = only_layer(&st, &id);
    st.ok(&["tag", "localhost/r:1", "localhost/r:2"]);
    let out = st.ok(&["rmi", "localhost/r:1"]);
    assert!(
        out.lines().any(|x| x == "Untagged: localhost/r:1"),
        "{out:?}"
    );
    assert!(!out.contains("Deleted"), "another name remains: {out:?}");
    assert_eq!(st.inspect(&id)["RepoTags"], json!(["localhost/r:2"]));
    assert!(st.layer(&l).is_dir());
    let out = st.ok(&["rmi", "localhost/r:2"]);
    assert!(
        out.lines().any(|x| x == "Untagged: localhost/r:2"),
        "{out:?}"
    );
    assert!(
        out.lines().any(|x| x == format!("Deleted: {id}")),
        "{out:?}"
    );
    st.fail(&["inspect", &id]);
    assert!(st.images().is_empty());
    assert!(
        !st.layer(&l).exists(),
        "the image's own layer is removed with it"
    );
    assert!(!st.root.join(format!("images/{}.json", hex(&id))).exists());
}

#[test]
fn rmi_keeps_layers_other_images_use() {
    let st = Store::new();
    let (t1, t2, t3) = (small_tar("base"), small_tar("a-top"), small_tar("b-top"));
    let a = Image::new(
        Some("localhost/sa:1"),
        vec![
            Layer::new(t1.clone(), Compression::Gzip),
            Layer::new(t2.clone(), Compression::Gzip),
        ],
    );
    let b = Image::new(
        Some("localhost/sb:1"),
        vec![
            Layer::new(t1.clone(), Compression::Zstd),
            Layer::new(t3.clone(), Compression::None),
        ],
    );
    oci_layout(&[a, b]).write_dir(&st.dir.join("two"));
    st.load(&st.dir.join("two"));
    let h = |t: &[u8]| sha256_hex(t);
    assert_eq!(st.layers(), BTreeSet::from([h(&t1), h(&t2), h(&t3)]));
    st.ok(&["rmi", "localhost/sa:1"]);
    assert_eq!(st.layers(), BTreeSet::from([h(&t1), h(&t3)]));
    assert_layer_matches_tar(&st.layer(&h(&t1)), &t1, is_root());
    st.inspect("localhost/sb:1");
    st.ok(&["rmi", "localhost/sb:1"]);
    assert!(st.layers().is_empty(), "{:?}", st.layers());
}

#[test]
fn rmi_by_id_with_two_names_needs_force() {
    let st = Store::new();
    let id = st.import_bytes(&small_tar("force"), "localhost/f:1");
    st.ok(&["tag", &id, "localhost/f:2"]);
    let before = st.tree();
    st.fail(&["rmi", &id]);
    assert_same_content("store after refused rmi", &before, &st.tree());
    let out = st.ok(&["rmi", "-f", &id]);
    for n in ["localhost/f:1", "localhost/f:2"] {
        assert!(
            out.lines().any(|x| x == format!("Untagged: {n}")),
            "{out:?}"
        );
    }
    assert!(
        out.lines().any(|x| x == format!("Deleted: {id}")),
        "{out:?}"
    );
    assert!(st.images().is_empty());
}

/// Two images whose ids share their first `n` hex digits: configs differing only in a label,
/// searched until two digests collide on the prefix (about 300 tries for 4 digits).
fn colliding_pair(n: usize) -> (Image, Image) {
    let layer = Layer::new(small_tar("prefix"), Compression::Gzip);
    let mut seen: BTreeMap<String, Image> = BTreeMap::new();
    for i in 0..200_000 {
        let mut img = Image::new(None, vec![layer.clone()]);
        img.config["Labels"] = json!({"n": i.to_string()});
        let id = img.id();
        let p = hex(&id)[..n].to_string();
        if let Some(other) = seen.remove(&p) {
            return (other, img);
        }
        seen.insert(p, img);
    }
    panic!("no collision found");
}

fn common_prefix(a: &str, b: &str) -> usize {
    a.bytes().zip(b.bytes()).take_while(|(x, y)| x == y).count()
}

#[test]
fn lookup_by_id_and_prefixes() {
    let st = Store::new();
    let (mut a, b) = colliding_pair(4);
    a.name = Some("localhost/pa:1".into());
    oci_layout(&[a.clone(), b.clone()]).write_dir(&st.dir.join("pair"));
    let out = st.load(&st.dir.join("pair"));
    assert!(out.contains("Loaded image: localhost/pa:1"), "{out:?}");
    assert!(
        out.contains(&format!("Loaded image ID: {}", b.id())),
        "{out:?}"
    );
    let (ida, idb) = (a.id(), b.id());
    let n = common_prefix(hex(&ida), hex(&idb));
    for id in [&ida, &idb] {
        let h = hex(id);
        for r in [id.as_str(), h, &h[..12], &h[..n + 1]] {
            assert_eq!(st.inspect(r)["Id"], json!(id), "lookup {r}");
        }
    }
    // The untagged one shows as <none> <none>.
    let rows = st.images();
    let none = rows
        .iter()
        .find(|r| r["Id"] == json!(idb))
        .expect("untagged row");
    assert_eq!(
        (&none["Repository"], &none["Tag"]),
        (&json!("<none>"), &json!("<none>"))
    );

    let before = st.tree();
    let amb = &hex(&ida)[..n];
    for args in [
        vec!["inspect", amb],
        vec!["rmi", amb],
        vec!["tag", amb, "localhost/x:1"],
        vec!["history", amb],
    ] {
        let err = st.fail(&args);
        assert!(err.to_lowercase().contains("ambiguous"), "{args:?}: {err}");
        for id in [&ida, &idb] {
            assert!(
                err.contains(&hex(id)[..12]),
                "{args:?}: candidate {id} not named: {err}"
            );
        }
    }
    assert_same_content("store after ambiguous lookups", &before, &st.tree());
    st.fail(&["inspect", "localhost/nope:1"]);
    st.fail(&["rmi", "nope"]);
}

#[test]
fn invalid_names_are_refused() {
    let st = Store::new();
    let f = st.input(&small_tar("names"));
    st.import(&f, "localhost/valid:1");
    let long_tag = "t".repeat(129);
    let before = st.tree();
    let bad = [
        "localhost/Upper:1".to_string(),
        "Upper".into(),
        String::new(),
        ":tag".into(),
        "bad name".into(),
        "a//b".into(),
        "foo:bad tag".into(),
        "foo$bar".into(),
        format!("foo:{long_tag}"),
    ];
    for n in &bad {
        let err = st.fail(&["import", s(&f), n]);
        assert!(
            err.to_lowercase().contains("invalid"),
            "import as {n:?}: {err}"
        );
        let err = st.fail(&["tag", "localhost/valid:1", n]);
        assert!(
            err.to_lowercase().contains("invalid"),
            "tag as {n:?}: {err}"
        );
    }
    assert_same_content("store after invalid names", &before, &st.tree());
    // 128 characters is the longest valid tag.
    let ok = format!("localhost/valid:{}", &long_tag[..128]);
    st.ok(&["tag", "localhost/valid:1", &ok]);
    assert!(names_of(&st.images()).contains(&ok));
    // No tag means `latest`, and a short name finds localhost/NAME.
    st.ok(&["tag", "localhost/valid:1", "localhost/short"]);
    assert!(names_of(&st.images()).contains("localhost/short:latest"));
    st.inspect("short");
    st.inspect("short:latest");
}

#[test]
fn images_json_quiet_and_table() {
    let st = Store::new();
    let mut a = Image::new(
        Some("localhost/ia:1"),
        vec![Layer::new(small_tar("ia"), Compression::Gzip)],
    );
    a.created = "2023-05-06T07:08:09.5+02:00".into();
    let b = Image::new(
        Some("localhost/ib:2"),
        vec![Layer::new(small_tar("ib"), Compression::None)],
    );
    oci_layout(&[a.clone(), b.clone()]).write_dir(&st.dir.join("l"));
    st.load(&st.dir.join("l"));
    let rows = st.images();
    assert_eq!(rows.len(), 2, "{rows:?}");
    for (img, repo, tag) in [(&a, "localhost/ia", "1"), (&b, "localhost/ib", "2")] {
        let r = rows
            .iter()
            .find(|r| r["Id"] == json!(img.id()))
            .expect("row");
        assert_eq!((&r["Repository"], &r["Tag"]), (&json!(repo), &json!(tag)));
        let c = r["Created"].as_str().expect("Created");
        assert_eq!(
            rfc3339_secs(c),
            rfc3339_secs(&img.created),
            "{c} vs {}",
            img.created
        );
        assert!(r["Size"].as_i64().is_some_and(|n| n > 0), "{r}");
    }
    let q: BTreeSet<String> = st.ok(&["images", "-q"]).lines().map(String::from).collect();
    let want: BTreeSet<String> = [&a, &b]
        .iter()
        .map(|i| hex(&i.id())[..12].to_string())
        .collect();
    assert_eq!(q, want);
    let t = table(&st.ok(&["images"]));
    assert_eq!(t[0], ["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"]);
    let rows: BTreeSet<(String, String, String)> = t[1..]
        .iter()
        .map(|r| (r[0].clone(), r[1].clone(), r[2].clone()))
        .collect();
    assert!(
        rows.contains(&("localhost/ia".into(), "1".into(), hex(&a.id())[..12].into())),
        "{t:?}"
    );
    assert!(
        rows.contains(&("localhost/ib".into(), "2".into(), hex(&b.id())[..12].into())),
        "{t:?}"
    );
}

#[test]
fn history_rows_newest_first() {
    let st = Store::new();
    let mut img = Image::new(
        Some("localhost/hist:1"),
        vec![
            Layer::new(small_tar("h1"), Compression::Gzip),
            Layer::new(small_tar("h2"), Compression::Gzip),
        ],
    );
    img.history = Some(vec![
        json!({"created": "2024-01-01T00:00:00Z", "created_by": "ADD rootfs", "comment": "base"}),
        json!({"created": "2024-01-02T00:00:00Z", "created_by": "ENV X=1", "empty_layer": true}),
        json!({"created": "2024-01-03T00:00:00Z", "created_by": "RUN touch h2", "comment": "top"}),
    ]);
    oci_layout(&[img]).write_dir(&st.dir.join("l"));
    st.load(&st.dir.join("l"));
    let rows = json_lines(&st.ok(&["history", "--format", "json", "hist:1"]));
    let by: Vec<&Value> = rows.iter().map(|r| &r["CreatedBy"]).collect();
    assert_eq!(
        by,
        [
            &json!("RUN touch h2"),
            &json!("ENV X=1"),
            &json!("ADD rootfs")
        ]
    );
    let empty: Vec<&Value> = rows.iter().map(|r| &r["EmptyLayer"]).collect();
    assert_eq!(empty, [&json!(false), &json!(true), &json!(false)]);
    assert_eq!(rows[1]["Size"], json!(0));
    assert!(rows[0]["Size"].as_i64() > Some(0) && rows[2]["Size"].as_i64() > Some(0));
    assert_eq!(
        (&rows[0]["Comment"], &rows[2]["Comment"]),
        (&json!("top"), &json!("base"))
    );
    assert_eq!(
        rfc3339_secs(rows[0]["Created"].as_str().unwrap()),
        rfc3339_secs("2024-01-03T00:00:00Z")
    );
    let t = table(&st.ok(&["history", "hist:1"]));
    assert_eq!(t[0], ["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"]);
    assert_eq!(t.len(), 4, "{t:?}");
    let q = st.ok(&["history", "-q", "hist:1"]);
    assert_eq!(q.lines().count(), 3, "{q:?}");
}

#[test]
fn prune_removes_dangling_images_and_unused_data() {
    let st = Store::new();
    let x = st.import_bytes(&small_tar("x"), "localhost/p:1");
    let lx = only_layer(&st, &x);
    let y = st.import_bytes(&small_tar("y"), "localhost/q:1");
    let ly = only_layer(&st, &y);
    // Moving the name leaves x untagged.
    st.ok(&["tag", "localhost/q:1", "localhost/p:1"]);
    let rows = st.images();
    let xr = rows
        .iter()
        .find(|r| r["Id"] == json!(x))
        .expect("x still listed");
    assert_eq!(
        (&xr["Repository"], &xr["Tag"]),
        (&json!("<none>"), &json!("<none>"))
    );
    assert!(table(&st.ok(&["images"]))
        .iter()
        .any(|r| r[0] == "<none>" && r[1] == "<none>"));

    let out = st.ok(&["image", "prune"]);
    assert!(out.contains("Total reclaimed space:"), "{out:?}");
    st.fail(&["inspect", &x]);
    assert!(
        !st.layer(&lx).exists(),
        "dangling image's layer left behind"
    );
    assert!(st.layer(&ly).is_dir());
    assert_eq!(
        names_of(&st.images()),
        BTreeSet::from(["localhost/p:1".into(), "localhost/q:1".into()])
    );
    // A second prune has nothing to do and changes nothing.
    let before = st.tree();
    st.ok(&["image", "prune"]);
    assert_same_content(
        "store after a prune with nothing to prune",
        &before,
        &st.tree(),
    );

    st.ok(&["rmi", "-f", &y]);
    st.ok(&["image", "prune"]);
    assert!(
        st.layers().is_empty() && st.blobs().is_empty(),
        "{:?} {:?}",
        st.layers(),
        st.blobs()
    );
    assert!(dir_names(&st.root.join("images")).is_empty());
    st.assert_tmp_clean("after prune");
}

#[test]
fn system_df_counts_shared_layers() {
    let st = Store::new();
    let f = st.input(&compress(&small_tar("df"), Compression::Gzip));
    let a = parse_id(&st.ok(&["import", s(&f), "localhost/df:1", "--message", "one"]));
    let b = parse_id(&st.ok(&["import", s(&f), "localhost/df:2", "--message", "two"]));
    assert_ne!(a, b, "different messages, different configs");
    assert_eq!(st.layers().len(), 1);
    assert!(!st.ok(&["system", "df"]).trim().is_empty());
    let t = table(&st.ok(&["system", "df", "-v"]));
    let header = t
        .iter()
        .find(|r| r.contains(&"SHARED SIZE".to_string()))
        .expect("-v table");
    for c in [
        "REPOSITORY",
        "TAG",
        "IMAGE ID",
        "SIZE",
        "SHARED SIZE",
        "UNIQUE SIZE",
    ] {
        assert!(header.contains(&c.to_string()), "{header:?}");
    }
    let rows = json_lines(&st.ok(&["system", "df", "-v", "--format", "json"]));
    assert_eq!(ids_of(&rows), BTreeSet::from([a, b]));
    for r in &rows {
        let size = r["Size"].as_i64().expect("Size");
        assert!(size > 0, "{r}");
        assert_eq!(
            r["SharedSize"].as_i64(),
            Some(size),
            "the only layer is shared: {r}"
        );
        assert_eq!(r["UniqueSize"], json!(0), "{r}");
        assert!(r["Repository"] == json!("localhost/df"), "{r}");
    }
}

#[test]
fn import_keeps_metadata() {
    let st = Store::new();
    let tar = tar_bytes(&fidelity_entries());
    let id = st.import_bytes(&compress(&tar, Compression::Gzip), "localhost/fid:1");
    let layer = st.layer(&only_layer(&st, &id));
    assert_layer_matches_tar(&layer, &tar, is_root());
    for wh in [".wh.x", "w/.wh..wh..opq", "w/.wh.gone"] {
        let md = lstat(layer.join(wh));
        assert!(
            md.is_file() && md.len() == 0,
            "{wh} kept as an empty file: {md:?}"
        );
    }
    assert_eq!(lstat(layer.join("d/f")).nlink(), 2);
}

#[test]
fn priv_import_keeps_owners_and_devices() {
    if !require(Need::Root) {
        return;
    }
    let st = Store::new();
    let mut e = fidelity_entries();
    e.extend([
        TarEntry::dir("own/").owner(7, 8).mtime(1_500_000_000),
        TarEntry::file("own/f", "o").owner(1234, 5678).mode(0o4750),
        TarEntry::symlink("own/sl", "f").owner(42, 43),
        TarEntry::fifo("own/fifo").owner(1000, 1000),
        TarEntry::chardev("own/null", 1, 3).owner(0, 5),
        TarEntry::file("own/big-ids", "b").owner(70_000, 80_000),
    ]);
    let tar = tar_bytes(&e);
    let id = st.import_bytes(&tar, "localhost/fid:2");
    let layer = st.layer(&only_layer(&st, &id));
    assert_layer_matches_tar(&layer, &tar, true);
    // The setuid bit survives the chown (chown clears it, so the mode must be set after).
    assert_eq!(lstat(layer.join("own/f")).mode() & 0o7777, 0o4750);
}

#[test]
fn save_several_images_and_reload() {
    let st = Store::new();
    let base = Layer::new(small_tar("shared-base"), Compression::Gzip);
    let img = |name: Option<&str>, top: &str| {
        Image::new(
            name,
            vec![base.clone(), Layer::new(small_tar(top), Compression::Zstd)],
        )
    };
    let (a, b, c) = (
        img(Some("localhost/sa:1"), "top-a"),
        img(Some("localhost/sb:1"), "top-b"),
        img(None, "top-c"),
    );
    let dir = st.dir.join("three");
    oci_layout(&[a.clone(), b.clone(), c.clone()]).write_dir(&dir);
    st.load(&dir);
    for format in ["oci-archive", "docker-archive"] {
        let f = st.dir.join(format!("three.{format}"));
        let cid = c.id();
        st.ok(&[
            "save",
            "-o",
            s(&f),
            "--format",
            format,
            "sa:1",
            "localhost/sb:1",
            &cid,
        ]);
        let fresh = Store::new();
        let out = fresh.load(&f);
        let lines: BTreeSet<&str> = out.lines().collect();
        let want_ids = format!("Loaded image ID: {cid}");
        let want: BTreeSet<&str> = [
            "Loaded image: localhost/sa:1",
            "Loaded image: localhost/sb:1",
            want_ids.as_str(),
        ]
        .into();
        assert_eq!(lines, want, "{format}: load output");
        assert_eq!(
            ids_of(&fresh.images()),
            BTreeSet::from([a.id(), b.id(), c.id()])
        );
        assert_eq!(
            fresh.layers().len(),
            4,
            "{format}: the base layer is stored once"
        );
    }
    let f = st.dir.join("none.tar");
    st.fail(&["save", "-o", s(&f), "localhost/not-there:1"]);
}

#[test]
fn strata_root_env_selects_the_store() {
    let st = Store::new();
    let f = st.input(&small_tar("env"));
    let mut c = std::process::Command::new(bin("strata"));
    c.env("STRATA_ROOT", &st.root)
        .args(["import", s(&f), "localhost/env:1"]);
    let out = run_timeout(&mut c, STORE_TIMEOUT);
    assert!(out.status.success(), "{}", show(&out));
    let id = parse_id(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(st.inspect("localhost/env:1")["Id"], json!(id));
}
