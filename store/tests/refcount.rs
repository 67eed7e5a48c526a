//! Refcounting and garbage collection through the library API: names, shared layers, and
//! container leases (which only the runtime takes, so the CLI cannot set them up yet).

use std::fs;
use std::path::Path;

use strata_store::images::Removal;
use strata_store::import::{ImportOptions, ImportSource};
use strata_store::{Digest, Error, Name, Store};

fn import_dir(store: &Store, dir: &Path, name: &str) -> Digest {
    let n = Name::parse(name).unwrap();
    let (id, _) = store
        .import(
            ImportSource::Dir(dir),
            Some(&n),
            &ImportOptions::default(),
            None,
        )
        .unwrap();
    id
}

fn tree(files: &[(&str, &str)]) -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    for (p, c) in files {
        let p = t.path().join(p);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, c).unwrap();
    }
    t
}

fn layer_dirs(store: &Store) -> usize {
    fs::read_dir(store.root().join("layers")).unwrap().count()
}

#[test]
fn a_shared_layer_lives_until_its_last_image_goes() {
    let root = tempfile::tempdir().unwrap();
    let store = Store::open(root.path().join("s")).unwrap();
    let base = tree(&[("etc/os", "base")]);
    // Two images with the same single layer (same tree, so the same diff_id) but different
    // configs (different created times and names), and a third with another layer.
    let a = import_dir(&store, base.path(), "a:1");
    std::thread::sleep(std::time::Duration::from_millis(5));
    let b = import_dir(&store, base.path(), "b:1");
    assert_ne!(a, b, "different configs are different images");
    let other = tree(&[("x", "y")]);
    import_dir(&store, other.path(), "c:1");
    assert_eq!(layer_dirs(&store), 2, "the shared layer is stored once");
    let du = store.disk_usage().unwrap();
    let ua = du.images.iter().find(|u| u.info.record.id == a).unwrap();
    assert_eq!((ua.shared, ua.unique), (ua.size, 0));

    assert_eq!(
        store.remove("a:1", false).unwrap(),
        [Removal::Untagged("a:1".into()), Removal::Deleted(a.clone())]
    );
    assert_eq!(layer_dirs(&store), 2, "b still uses the layer");
    store.remove("b:1", false).unwrap();
    assert_eq!(layer_dirs(&store), 1, "the layer went with its last image");
    assert!(matches!(store.resolve("a:1"), Err(Error::NotFound(_))));
    assert!(
        !store.blob_path(&a).exists() && !store.blob_path(&b).exists(),
        "configs are collected"
    );
}

#[test]
fn a_leased_image_is_kept_until_released_and_pruned() {
    let root = tempfile::tempdir().unwrap();
    let store = Store::open(root.path().join("s")).unwrap();
    let t = tree(&[("f", "1")]);
    let id = import_dir(&store, t.path(), "app:1");
    store.lease("c0ffee", &id).unwrap();

    let e = store.remove("app:1", false).unwrap_err();
    assert!(
        e.to_string().contains("in use by container(s) c0ffee"),
        "{e}"
    );
    assert_eq!(
        store.resolve("app:1").unwrap(),
        id,
        "a refused rmi changes nothing"
    );

    // -f removes the name; the container keeps the image (shown as <none>).
    assert_eq!(
        store.remove("app:1", true).unwrap(),
        [Removal::Untagged("app:1".into())]
    );
    assert_eq!(store.resolve(id.hex()).unwrap(), id);
    assert_eq!(store.list().unwrap()[0].names.len(), 0);
    assert_eq!(
        store.prune().unwrap().0,
        Vec::<Digest>::new(),
        "prune keeps leased images"
    );
    assert_eq!(layer_dirs(&store), 1);

    store.release("c0ffee").unwrap();
    let (gone, freed) = store.prune().unwrap();
    assert_eq!(gone, std::slice::from_ref(&id));
    assert!(freed > 0);
    assert_eq!(layer_dirs(&store), 0);
    assert!(store.list().unwrap().is_empty());
}

#[test]
fn rmi_by_id_of_an_image_with_two_names_needs_force() {
    let root = tempfile::tempdir().unwrap();
    let store = Store::open(root.path().join("s")).unwrap();
    let t = tree(&[("f", "1")]);
    let id = import_dir(&store, t.path(), "one:1");
    store.tag("one:1", "two:1").unwrap();
    let e = store.remove(&id.hex()[..12], false).unwrap_err();
    assert!(matches!(e, Error::Conflict(_)), "{e}");
    let done = store.remove(&id.hex()[..12], true).unwrap();
    assert_eq!(done.len(), 3, "two untags and one delete: {done:?}");
    assert_eq!(layer_dirs(&store), 0);
}
