//! Replays the checked-in fuzz corpus (`tests/corpus/<target>/`, which the fuzz targets in
//! `fuzz/` also start from) through the same functions the fuzz targets call, so that every
//! test run on stable exercises them. The corpus ships in the package, so the packaged tests
//! pass too.

use std::path::PathBuf;

fn replay(target: &str, check: fn(&[u8])) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/corpus")
        .join(target);
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let mut count = 0;
    for entry in entries {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        let outcome = std::panic::catch_unwind(|| check(&data));
        assert!(outcome.is_ok(), "{} fails its round trip", path.display());
        count += 1;
    }
    assert!(count > 0, "{} is empty", dir.display());
}

#[test]
fn line_corpus() {
    replay("line", contact_proto::roundtrip::line);
}

#[test]
fn request_corpus() {
    replay("request", contact_proto::roundtrip::request);
}

#[test]
fn answer_corpus() {
    replay("answer", contact_proto::roundtrip::answer);
}

#[test]
fn ring_corpus() {
    replay("ring", contact_proto::roundtrip::ring);
}

#[test]
fn im_datagram_corpus() {
    replay("im_datagram", contact_proto::roundtrip::im_datagram);
}
