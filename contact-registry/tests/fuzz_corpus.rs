//! Replays the checked-in fuzz corpus (`tests/corpus/registry/`, which the `registry` fuzz
//! target in `fuzz/` also starts from) through the function the fuzz target calls, so that
//! every run on stable exercises it. Needs the `arbitrary` feature, which the crate's
//! dev-dependency on itself turns on for `cargo test` (and `--all-features` in a packaged
//! crate, whose manifest has no such dev-dependency).

use std::path::PathBuf;

#[cfg(feature = "arbitrary")]
#[test]
fn registry_corpus() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/registry");
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        let outcome = std::panic::catch_unwind(|| contact_registry::fuzzing::run(&data));
        assert!(outcome.is_ok(), "{} fails", path.display());
        count += 1;
    }
    assert!(count > 0, "{} is empty", dir.display());
}

/// The demo's saved file loads; the malformed one does not.
#[test]
fn corpus_files_are_what_they_say() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/registry");
    let read = |name: &str| std::fs::read(dir.join(name)).unwrap();
    let r = contact_registry::Registry::load(&read("seed-demo-saved")[..]).unwrap();
    assert_eq!((r.num_contacts(), r.num_lists()), (5, 4));
    contact_registry::Registry::load(&read("reference-quote-list")[..]).unwrap();
    contact_registry::Registry::load(&read("ours-quoted")[..]).unwrap();
    assert!(contact_registry::Registry::load(&read("malformed")[..]).is_err());
}
