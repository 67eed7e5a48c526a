//! Hostile and broken input to `strata import` and `strata load`: path traversal (`..`,
//! absolute names, symlinks and hard links leading out), truncated and corrupt archives, and
//! OCI layouts with wrong digests, wrong diff_ids, missing blobs, unknown media types and
//! schema versions. Every one must fail with a message naming the problem, leave the store
//! exactly as it was, and create nothing outside it.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use strata_tests::oci::*;
use strata_tests::store::*;
use strata_tests::*;

/// A store holding one good image, and a directory outside it that hostile entries aim at.
struct Case {
    st: Store,
    target: tempfile::TempDir,
}

fn setup() -> Case {
    let st = Store::new();
    let seed = tar_bytes(&[TarEntry::dir("etc/"), TarEntry::file("etc/seed", "seed\n")]);
    st.import_bytes(&seed, "localhost/seed:1");
    let target = tempfile::Builder::new()
        .prefix("strata-hostile-target-")
        .tempdir()
        .expect("target dir");
    Case { st, target }
}

impl Case {
    fn t(&self) -> &str {
        s(self.target.path())
    }

    /// Runs `strata ARGS` (with `{}` in an arg replaced by `input`), expecting a refusal
    /// whose stderr contains one of `any_of` (case-insensitive), with no trace left anywhere.
    #[track_caller]
    fn refused(&self, what: &str, input: &Path, args: &[&str], any_of: &[&str]) {
        let st = &self.st;
        let before = st.tree();
        let images_before = st.ok(&["images", "--format", "json"]);
        let beside_before = dir_names(&st.dir);
        let passwd = lstat("/etc/passwd");
        let args: Vec<String> = args.iter().map(|a| a.replace("{}", s(input))).collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let err = st.fail(&args);
        // Shown with --no-capture, to read what users get.
        println!("{what}: {}", err.trim());
        let low = err.to_lowercase();
        assert!(
            any_of.iter().any(|w| low.contains(&w.to_lowercase())),
            "{what}: stderr should mention one of {any_of:?}:\n{err}"
        );
        assert_same_content(&format!("{what}: store root changed"), &before, &st.tree());
        st.assert_tmp_clean(what);
        assert_eq!(
            st.ok(&["images", "--format", "json"]),
            images_before,
            "{what}: image list changed"
        );
        assert_eq!(
            dir_names(&st.dir),
            beside_before,
            "{what}: files appeared beside the root"
        );
        let left = dir_names(self.target.path());
        assert!(
            left.is_empty(),
            "{what}: written outside the store: {left:?}"
        );
        let p2 = lstat("/etc/passwd");
        assert_eq!(
            (p2.ino(), p2.nlink(), p2.size(), p2.mode()),
            (passwd.ino(), passwd.nlink(), passwd.size(), passwd.mode()),
            "{what}: /etc/passwd touched"
        );
    }

    /// `strata import FILE` of `tar` (plain) refused.
    #[track_caller]
    fn import_refused(&self, tar: &[u8], any_of: &[&str]) {
        let f = self.st.input(tar);
        self.refused(
            "import",
            &f,
            &["import", "{}", "localhost/hostile:1"],
            any_of,
        );
    }

    /// `strata load` of an OCI layout dir and of an oci-archive whose only layer is `tar`
    /// (gzip), both refused.
    #[track_caller]
    fn load_layer_refused(&self, tar: &[u8], any_of: &[&str]) {
        let img = Image::new(
            Some("localhost/hostile:2"),
            vec![Layer::new(tar.to_vec(), Compression::Gzip)],
        );
        self.layout_refused(&[img], any_of);
    }

    /// `strata load` of `images` as an OCI layout dir and as an oci-archive, both refused.
    #[track_caller]
    fn layout_refused(&self, images: &[Image], any_of: &[&str]) {
        let layout = oci_layout(images);
        let dir = self.input_dir();
        layout.write_dir(&dir);
        self.refused(
            "load of an OCI layout dir",
            &dir,
            &["load", "-i", "{}"],
            any_of,
        );
        let f = self.st.input(&layout.archive());
        self.refused("load of an oci-archive", &f, &["load", "-i", "{}"], any_of);
    }

    /// `strata load` of `images` as a docker-archive (`form`), refused.
    #[track_caller]
    fn docker_refused(&self, images: &[Image], form: DockerForm, any_of: &[&str]) {
        let f = self.st.input(&docker_archive(images, form));
        self.refused(
            &format!("load of a docker-archive ({form:?})"),
            &f,
            &["load", "-i", "{}"],
            any_of,
        );
    }

    fn input_dir(&self) -> PathBuf {
        let d = tempfile::Builder::new()
            .prefix("layout-")
            .tempdir_in(&self.st.dir)
            .expect("layout dir");
        d.keep()
    }
}

/// A tar whose first entries are harmless and whose last is `bad`.
fn with_bad(bad: Vec<TarEntry>) -> Vec<u8> {
    let mut e = vec![TarEntry::dir("ok/"), TarEntry::file("ok/file", "fine\n")];
    e.extend(bad);
    tar_bytes(&e)
}

#[test]
fn dotdot_entry() {
    let c = setup();
    let tar = with_bad(vec![TarEntry::file("../escape", "x")]);
    c.import_refused(&tar, &["../escape"]);
    c.load_layer_refused(&tar, &["../escape"]);
}

#[test]
fn dotdot_inside_entry() {
    let c = setup();
    let tar = with_bad(vec![
        TarEntry::dir("a/"),
        TarEntry::file("a/../../escape", "x"),
    ]);
    c.import_refused(&tar, &["a/../../escape"]);
    c.load_layer_refused(&tar, &["a/../../escape"]);
}

#[test]
fn dotdot_deep_entry() {
    // Enough `..` to reach `/` from wherever the layer is staged, then down to the target:
    // a store that follows it writes into the target dir, whatever its staging depth.
    let c = setup();
    let name = format!("{}{}/deep", "../".repeat(40), c.t().trim_start_matches('/'));
    let tar = with_bad(vec![TarEntry::file(&name, "x")]);
    c.import_refused(&tar, &[&name]);
    c.load_layer_refused(&tar, &[&name]);
}

#[test]
fn absolute_entry() {
    let c = setup();
    let name = format!("{}/evil", c.t());
    let tar = with_bad(vec![TarEntry::file(&name, "x")]);
    c.import_refused(&tar, &[&name]);
    c.load_layer_refused(&tar, &[&name]);
    let tar = with_bad(vec![TarEntry::file("/etc/evil", "x")]);
    c.import_refused(&tar, &["/etc/evil"]);
    assert!(!Path::new("/etc/evil").exists());
}

#[test]
fn path_through_absolute_symlink() {
    let c = setup();
    let tar = with_bad(vec![
        TarEntry::symlink("link", c.t()),
        TarEntry::file("link/pwned", "x"),
    ]);
    c.import_refused(&tar, &["link/pwned"]);
    c.load_layer_refused(&tar, &["link/pwned"]);
}

#[test]
fn path_through_dotdot_symlink() {
    let c = setup();
    let tar = with_bad(vec![
        TarEntry::symlink("link", ".."),
        TarEntry::file("link/x", "x"),
    ]);
    c.import_refused(&tar, &["link/x"]);
    c.load_layer_refused(&tar, &["link/x"]);
    // The same through a symlinked directory deeper down.
    let tar = with_bad(vec![
        TarEntry::dir("d/"),
        TarEntry::symlink("d/up", "../.."),
        TarEntry::dir("d/up/sub/"),
    ]);
    c.import_refused(&tar, &["d/up/sub"]);
}

#[test]
fn hardlink_out_of_the_layer() {
    let c = setup();
    let tar = with_bad(vec![TarEntry::hardlink("hl-outside", "../outside")]);
    c.import_refused(&tar, &["hl-outside"]);
    c.load_layer_refused(&tar, &["hl-outside"]);
    let tar = with_bad(vec![TarEntry::hardlink("hl-passwd", "/etc/passwd")]);
    c.import_refused(&tar, &["hl-passwd"]);
    c.load_layer_refused(&tar, &["hl-passwd"]);
    // Through a symlink of the same layer.
    let tar = with_bad(vec![
        TarEntry::symlink("etc-link", "/etc"),
        TarEntry::hardlink("hl-via-link", "etc-link/passwd"),
    ]);
    c.import_refused(&tar, &["hl-via-link"]);
}

/// A tar with a 64 KiB file, cut in the middle of its body.
fn truncated_tar() -> Vec<u8> {
    let full = with_bad(vec![TarEntry::file("ok/big", noise(65_536, 3))]);
    let cut = full.len() - 1024 - 32_768;
    full[..cut].to_vec()
}

#[test]
fn truncated_tar_refused() {
    let c = setup();
    let tar = truncated_tar();
    c.import_refused(&tar, &["truncated", "corrupt"]);
    c.load_layer_refused(&tar, &["truncated", "corrupt"]);
    let gz = compress(
        &with_bad(vec![TarEntry::file("ok/big", noise(65_536, 4))]),
        Compression::Gzip,
    );
    c.import_refused(&gz[..gz.len() / 2], &["truncated", "corrupt"]);
}

/// `gz` with 64 bytes in the middle of the compressed stream flipped.
fn flip_middle(mut gz: Vec<u8>) -> Vec<u8> {
    let mid = gz.len() / 2;
    for b in &mut gz[mid..mid + 64] {
        *b ^= 0x5a;
    }
    gz
}

#[test]
fn corrupt_gzip_refused() {
    let c = setup();
    // Text compresses, so flipped bytes break the deflate stream itself; noise is stored
    // uncompressed, so only the gzip trailer's CRC shows the damage (read to the end!).
    let text: String = (0..5000).map(|i| format!("line {i}\n")).collect();
    for (what, tar) in [
        ("text", with_bad(vec![TarEntry::file("ok/text", &text)])),
        (
            "noise",
            with_bad(vec![TarEntry::file("ok/big", noise(65_536, 5))]),
        ),
    ] {
        let gz = flip_middle(compress(&tar, Compression::Gzip));
        println!("corrupt gzip of {what}");
        c.import_refused(&gz, &["corrupt", "truncated"]);
        // As an OCI layer the blob digest matches the (corrupt) bytes; what comes out of them
        // is not the tar of the diff_id either, so a diff_id mismatch is a fair report too.
        let mut layer = Layer::new(tar, Compression::Gzip);
        layer.raw_blob = Some(gz);
        c.layout_refused(
            &[Image::new(Some("localhost/hostile:3"), vec![layer])],
            &["corrupt", "truncated", "diff_id"],
        );
    }
}

fn good_image(name: &str) -> Image {
    Image::new(
        Some(name),
        vec![
            Layer::new(with_bad(vec![]), Compression::Gzip),
            Layer::new(
                tar_bytes(&[TarEntry::file("top", "top\n")]),
                Compression::Zstd,
            ),
        ],
    )
}

#[test]
fn layer_blob_digest_mismatch() {
    let c = setup();
    let mut img = good_image("localhost/hostile:4");
    img.layers[0].blob_mismatch = true;
    c.layout_refused(&[img], &["digest"]);
}

#[test]
fn config_and_manifest_digest_mismatch() {
    let c = setup();
    let mut img = good_image("localhost/hostile:5");
    img.config_mismatch = true;
    c.layout_refused(&[img], &["digest"]);
    let mut img = good_image("localhost/hostile:6");
    img.manifest_mismatch = true;
    c.layout_refused(&[img], &["digest"]);
}

#[test]
fn diff_id_mismatch() {
    let c = setup();
    let mut img = good_image("localhost/hostile:7");
    img.layers[1].wrong_diff_id = true;
    c.layout_refused(std::slice::from_ref(&img), &["diff_id"]);
    for form in [DockerForm::Legacy, DockerForm::Podman, DockerForm::Oci] {
        c.docker_refused(std::slice::from_ref(&img), form, &["diff_id"]);
    }
    // A docker-archive whose layer file holds other bytes than the config's diff_id.
    let mut img = good_image("localhost/hostile:8");
    img.layers[0].blob_mismatch = true;
    c.docker_refused(&[img], DockerForm::Podman, &["diff_id", "digest"]);
}

#[test]
fn missing_blob() {
    let c = setup();
    let mut img = good_image("localhost/hostile:9");
    img.layers[1].missing = true;
    c.layout_refused(std::slice::from_ref(&img), &["missing"]);
    c.docker_refused(std::slice::from_ref(&img), DockerForm::Legacy, &["missing"]);
    let mut img = good_image("localhost/hostile:10");
    img.config_missing = true;
    c.layout_refused(&[img], &["missing"]);
}

#[test]
fn index_points_at_missing_manifest() {
    let c = setup();
    let mut img = good_image("localhost/hostile:11");
    img.manifest_missing = true;
    c.layout_refused(&[img], &["missing"]);
}

#[test]
fn unsupported_layer_media_type() {
    let c = setup();
    let mut img = good_image("localhost/hostile:12");
    img.layers[0].media_type = Some("application/vnd.example.layer.v1.tar+lz4".into());
    c.layout_refused(&[img], &["media type"]);
}

#[test]
fn unsupported_schema_version() {
    let c = setup();
    let mut img = good_image("localhost/hostile:13");
    img.schema_version = 3;
    c.layout_refused(&[img], &["schema"]);
}

#[test]
fn truncated_archive_refused() {
    let c = setup();
    let layout = oci_layout(&[good_image("localhost/hostile:14")]);
    let a = layout.archive();
    // Cut in the middle of the last blob's body (members are sorted by digest; after it come
    // its padding and the two end blocks).
    let last = layout.blobs.values().last().expect("blobs").len();
    let pad = (512 - last % 512) % 512;
    let f = c.st.input(&a[..a.len() - 1024 - pad - last / 2]);
    c.refused(
        "load of a truncated oci-archive",
        &f,
        &["load", "-i", "{}"],
        &["truncated", "corrupt", "missing"],
    );
    let d = docker_archive(&[good_image("localhost/hostile:15")], DockerForm::Podman);
    let f = c.st.input(&d[..d.len() / 2]);
    c.refused(
        "load of a truncated docker-archive",
        &f,
        &["load", "-i", "{}"],
        &["truncated", "corrupt", "missing"],
    );
}

#[test]
fn good_images_load() {
    // The builders themselves: the unspoiled forms of the images above load, so the refusals
    // above are about the spoiled part.
    let c = setup();
    let img = good_image("localhost/good:1");
    let dir = c.input_dir();
    oci_layout(std::slice::from_ref(&img)).write_dir(&dir);
    c.st.load(&dir);
    for form in [DockerForm::Legacy, DockerForm::Podman, DockerForm::Oci] {
        let st = Store::new();
        let f = st.input(&docker_archive(std::slice::from_ref(&img), form));
        let out = st.load(&f);
        assert!(
            out.contains("Loaded image: localhost/good:1"),
            "{form:?}: {out}"
        );
        assert_eq!(
            st.inspect("localhost/good:1")["Id"],
            serde_json::json!(img.id())
        );
    }
    let st = Store::new();
    st.load(&st.input(&oci_layout(&[img]).archive()));
    st.import_bytes(
        &with_bad(vec![
            TarEntry::symlink("link", "/etc"),
            TarEntry::file("x", "x"),
        ]),
        "localhost/good:2",
    );
}

#[test]
fn later_entries_replace_symlinks_without_following_them() {
    // Legal tars, hostile intent: a symlink out of the layer, then an entry of the same name
    // (which replaces the symlink), and a symlink whose own metadata must be set with the
    // l-variants (lchown, utimensat NOFOLLOW), never on what it points to.
    let c = setup();
    let victim = c.target.path().join("victim");
    write(&victim, "victim\n");
    chmod(&victim, 0o644);
    set_times(&victim, (1_000_000_000, 0), (1_000_000_000, 0));
    let before = content_tree(c.target.path(), &[]);
    let before_md = lstat(&victim);
    let v = s(&victim);
    let tar = tar_bytes(&[
        TarEntry::symlink("s1", v),
        TarEntry::file("s1", "mine\n").mode(0o600).owner(1234, 5678),
        TarEntry::symlink("d1", c.t()),
        TarEntry::dir("d1/").mode(0o700).owner(1234, 5678),
        TarEntry::symlink("s2", v)
            .owner(1234, 5678)
            .mtime(1_500_000_000),
    ]);
    let id = c.st.import_bytes(&tar, "localhost/replace:1");
    let layer = c.st.layer(
        c.st.inspect(&id)["RootFS"]["Layers"][0]
            .as_str()
            .expect("layer"),
    );
    assert_layer_matches_tar(&layer, &tar, rustix::process::geteuid().is_root());
    assert_eq!(read_str(layer.join("s1")), "mine\n");
    assert!(lstat(layer.join("d1")).is_dir());
    assert_same_content(
        "the symlinks' target dir",
        &before,
        &content_tree(c.target.path(), &[]),
    );
    let after_md = lstat(&victim);
    assert_eq!(
        (after_md.mtime(), after_md.uid(), after_md.mode()),
        (before_md.mtime(), before_md.uid(), before_md.mode()),
        "the file the symlinks point to was changed"
    );
}
