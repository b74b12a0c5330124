use contact_proto::Status;
use contact_registry::Reply;

use super::*;

fn cmd(line: &str) -> Command {
    contact_proto::parse_line(line).unwrap().unwrap().command
}

fn apply(store: &mut Store, registry: &mut Registry, line: &str) {
    let command = cmd(line);
    let reply = registry.apply(command.clone());
    assert_eq!(reply.status(), Some(Status::Ok), "{line}");
    store.record(&Record {
        ext: 0,
        command: Some(command),
        answer: None,
        keys: Default::default(),
    });
}

fn demo(store: &mut Store, registry: &mut Registry) {
    let name: contact_proto::ContactName = "Me".parse().unwrap();
    assert_eq!(
        registry.register(name.clone(), "10.0.0.1".parse().unwrap(), 22000, 1),
        Status::Ok
    );
    store.record(&Record {
        ext: 1,
        command: Some(Command::Register {
            name,
            ip: "10.0.0.1".parse().unwrap(),
            port: 22000,
        }),
        answer: None,
        keys: Default::default(),
    });
    for line in [
        "register Myself 10.0.0.1 22002",
        "register \"I am\" ::1 22004",
        "create list_1",
        "create \"list 2\"",
        "join list_1 Me",
        "join list_1 Myself",
        "join \"list 2\" \"I am\"",
        "join list_1 \"I am\"",
        "leave list_1 Myself",
        "im-start list_1 Me",
        "im-start list_1 Me",
        "im-complete list_1 Me",
        "im-start \"list 2\" \"I am\"",
    ] {
        apply(store, registry, line);
    }
}

fn assert_same(a: &Registry, b: &Registry) {
    assert_eq!(a, b);
    for c in a.contacts() {
        assert_eq!(b.contact(c.name()).map(Contact::ext), Some(c.ext()));
    }
    for list in a.lists() {
        assert_eq!(a.ongoing(list), b.ongoing(list));
        for m in a.members(list).unwrap() {
            assert_eq!(a.pending(list, m.name()), b.pending(list, m.name()));
        }
    }
}

use contact_registry::Contact;

/// The records of the journal at `path`: its bytes up to the free space, which must be NULs
/// to the end.
fn records_of(path: &Path) -> Vec<u8> {
    let mut bytes = fs::read(path).unwrap();
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    assert!(
        bytes[end..].iter().all(|&b| b == 0),
        "a byte other than NUL in the free space"
    );
    bytes.truncate(end);
    bytes
}

/// A journal at `path` holding [`demo`]'s mutations, committed and closed; the registry
/// they made.
fn demo_journal(path: &Path) -> Registry {
    let (mut store, mut registry) = Store::open(path, Limits::default()).unwrap();
    demo(&mut store, &mut registry);
    store.commit().unwrap();
    registry
}

#[test]
fn committed_mutations_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state");
    let registry = demo_journal(&path);
    let (_, again) = Store::open(&path, Limits::default()).unwrap();
    assert_same(&registry, &again);
    assert_eq!(again.ongoing("list_1"), Some(1));
    assert_eq!(again.contact("Me").unwrap().ext(), 1);
}

#[test]
fn uncommitted_records_are_not_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state");
    let (mut store, mut registry) = Store::open(&path, Limits::default()).unwrap();
    apply(&mut store, &mut registry, "create a");
    assert!(store.has_pending());
    drop(store);
    let (_, again) = Store::open(&path, Limits::default()).unwrap();
    assert_eq!(again.num_lists(), 0);
}

/// A torn last record, at the end of a journal without free space (as an earlier version
/// wrote it) or inside the free space, is cut off by writing NULs over it: the file keeps
/// its size, and the next records go where the torn one was.
#[test]
fn a_torn_tail_is_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state");
    let (mut store, mut registry) = Store::open(&path, Limits::default()).unwrap();
    apply(&mut store, &mut registry, "create a");
    store.commit().unwrap();
    drop(store);
    let good = records_of(&path);
    let free = fs::metadata(&path).unwrap().len() as usize - good.len();
    assert!(free > 0, "a journal has free space after its records");
    for tail in [
        &b"0badc0de 0 create-_-b"[..],
        b"0badc0de 0 create-_-b\n",
        b"12",
    ] {
        for free in [0, free] {
            let mut torn = good.clone();
            torn.extend_from_slice(tail);
            torn.resize(torn.len().max(good.len() + free), 0);
            fs::write(&path, &torn).unwrap();
            let (mut store, restored) = Store::restore(&path, Limits::default()).unwrap();
            assert_eq!(restored.torn_bytes, tail.len() as u64, "tail {tail:?}");
            let mut cut = good.clone();
            cut.resize(torn.len(), 0);
            assert_eq!(
                fs::read(&path).unwrap(),
                cut,
                "tail {tail:?}, free {free}: NULs over it, the size kept"
            );
            let mut registry = restored.registry;
            assert_eq!(registry.lists().count(), 1);
            // Appending after the cut gives a clean journal.
            apply(&mut store, &mut registry, "create c");
            store.commit().unwrap();
            drop(store); // one store per file at a time
            let (_, again) = Store::restore(&path, Limits::default()).unwrap();
            assert_eq!(again.registry.lists().count(), 2);
            assert_eq!(again.torn_bytes, 0);
        }
    }
}

/// The free space after the records reads as nothing, and records are written into it: the
/// file's size changes only when it is extended, by whole blocks.
#[test]
fn records_go_into_free_space_that_grows_by_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state");
    let (mut store, mut registry) = Store::open(&path, Limits::default()).unwrap();
    assert_eq!(
        fs::metadata(&path).unwrap().len(),
        0,
        "nothing before a write"
    );
    apply(&mut store, &mut registry, "register A 10.0.0.1 22000");
    store.commit().unwrap();
    let size = fs::metadata(&path).unwrap().len();
    assert_eq!(size, BLOCK);
    let one = records_of(&path);
    apply(&mut store, &mut registry, "create a");
    store.commit().unwrap();
    assert_eq!(fs::metadata(&path).unwrap().len(), size, "written in place");
    let two = records_of(&path);
    assert!(two.starts_with(&one) && two.len() > one.len());
    apply(&mut store, &mut registry, "join a A");
    store.commit().unwrap();
    let two = records_of(&path);
    drop(store);
    let (mut store, restored) = Store::restore(&path, Limits::default()).unwrap();
    assert_eq!((restored.records, restored.torn_bytes), (3, 0));
    assert_eq!(restored.valid_len, two.len() as u64);
    let mut registry = restored.registry;
    // Past the free space: extended (by the file's size while it is small), in blocks.
    let mut n = 0;
    while fs::metadata(&path).unwrap().len() == size {
        n += 2;
        assert!(n < 10_000, "the journal never grew");
        apply(&mut store, &mut registry, "im-start a A");
        apply(&mut store, &mut registry, "im-complete a A");
        store.commit().unwrap();
    }
    assert_eq!(fs::metadata(&path).unwrap().len(), 2 * size);
    drop(store);
    let (_, restored) = Store::restore(&path, Limits::default()).unwrap();
    assert_eq!(restored.records, 3 + n);
    assert_same(&registry, &restored.registry);
    assert_eq!(restored.valid_len, records_of(&path).len() as u64);
    // Verified as the server reads it: the free space is neither torn nor a problem.
    let v = verify(&path, Limits::default()).unwrap();
    assert!(v.problem.is_none() && v.restored.torn_bytes == 0);
    assert_eq!(v.file_len, 2 * size);
}

/// A journal without free space, as an earlier version wrote it, loads unchanged and gets
/// free space at its first write.
#[test]
fn a_journal_without_free_space_loads_and_grows_some() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state");
    let mut registry = demo_journal(&path);
    let old = records_of(&path);
    fs::write(&path, &old).unwrap();
    let (mut store, restored) = Store::restore(&path, Limits::default()).unwrap();
    assert_eq!(fs::read(&path).unwrap(), old, "loading changes nothing");
    assert_same(&registry, &restored.registry);
    apply(&mut store, &mut registry, "create more");
    store.commit().unwrap();
    let bytes = records_of(&path);
    assert!(bytes.starts_with(&old));
    assert_eq!(
        fs::metadata(&path).unwrap().len(),
        round_up(old.len() as u64 + BLOCK, BLOCK)
    );
    drop(store);
    let (_, again) = Store::open(&path, Limits::default()).unwrap();
    assert_same(&registry, &again);
}

/// Anything but NULs after the free space began is not a torn write but damage: the start
/// stops, naming the line after the last valid record, and a repair keeps the records.
#[test]
fn bytes_after_the_free_space_began_are_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state");
    let good = three_lists(&path);
    let records = records_of(&path);
    assert!(good.len() > records.len() + 100);
    // A stray byte in the free space; a torn record, NULs, then bytes again.
    let mut stray = good.clone();
    stray[records.len() + 100] = b'x';
    let mut torn = good.clone();
    torn[records.len()..records.len() + 5].copy_from_slice(b"12345");
    torn[records.len() + 50] = b'\n';
    for (bad, what) in [(stray, "stray byte"), (torn, "torn record then bytes")] {
        fs::write(&path, &bad).unwrap();
        let err = Store::open(&path, Limits::default()).unwrap_err();
        assert!(
            matches!(&err, StoreError::Corrupt { line: 5, .. }),
            "{what}: {err}"
        );
        let r = repair(&path, Limits::default(), true).unwrap();
        assert_eq!(r.verified.restored.records, 4, "{what}");
        assert_eq!(
            fs::read(&path).unwrap(),
            records,
            "{what}: the records alone"
        );
        let (_, registry) = Store::open(&path, Limits::default()).unwrap();
        assert_eq!(registry.lists().count(), 4, "{what}");
    }
}

#[test]
fn damage_before_the_tail_is_an_error_naming_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state");
    let (mut store, mut registry) = Store::open(&path, Limits::default()).unwrap();
    for line in ["create a", "create b", "create c"] {
        apply(&mut store, &mut registry, line);
    }
    store.commit().unwrap();
    drop(store);
    let mut bytes = fs::read(&path).unwrap();
    let second = bytes.iter().position(|&b| b == b'\n').unwrap() + 1;
    bytes[second + 20] ^= 1;
    fs::write(&path, &bytes).unwrap();
    let err = Store::open(&path, Limits::default()).unwrap_err();
    assert!(
        matches!(&err, StoreError::Corrupt { line: 2, reason, .. } if reason.contains("checksum")),
        "{err}"
    );
}

#[test]
fn lowered_limits_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state");
    let (mut store, mut registry) = Store::open(&path, Limits::default()).unwrap();
    apply(&mut store, &mut registry, "create a");
    apply(&mut store, &mut registry, "create b");
    store.commit().unwrap();
    drop(store);
    let limits = Limits::default().max_lists(1);
    let err = Store::open(&path, limits).unwrap_err();
    assert!(err.to_string().contains("line 2"), "{err}");
}

#[test]
fn compaction_keeps_the_state_and_shrinks_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state");
    let (mut store, mut registry) = Store::open(&path, Limits::default()).unwrap();
    demo(&mut store, &mut registry);
    for i in 0..40 {
        apply(
            &mut store,
            &mut registry,
            &format!("register c{i} 10.0.0.2 {}", 5000 + i),
        );
    }
    for _ in 0..500 {
        apply(&mut store, &mut registry, "im-start \"list 2\" \"I am\"");
        apply(&mut store, &mut registry, "im-complete \"list 2\" \"I am\"");
    }
    store.commit().unwrap();
    let before = fs::metadata(&path).unwrap().len();
    store.compact(&registry, []).unwrap();
    let after = fs::metadata(&path).unwrap().len();
    assert!(after < before / 4, "{after} < {before} / 4");
    // With free space of its own, written before the rename: to the last whole block
    // within twice its records.
    let records = records_of(&path).len() as u64;
    assert!(records > BLOCK / 2, "{records}");
    assert_eq!(after, 2 * records / BLOCK * BLOCK, "for {records}");
    assert!(after > records);
    // Records after a compaction go to the new file.
    apply(&mut store, &mut registry, "create more");
    store.commit().unwrap();
    drop(store);
    let (_, again) = Store::open(&path, Limits::default()).unwrap();
    assert_same(&registry, &again);
}

fn three_lists(path: &Path) -> Vec<u8> {
    let (mut store, mut registry) = Store::open(path, Limits::default()).unwrap();
    for line in ["create a", "create b", "create c", "create d"] {
        apply(&mut store, &mut registry, line);
    }
    store.commit().unwrap();
    drop(store);
    fs::read(path).unwrap()
}

fn lines(bytes: &[u8]) -> Vec<Vec<u8>> {
    bytes
        .split_inclusive(|&b| b == b'\n')
        .map(<[u8]>::to_vec)
        .collect()
}

#[test]
fn a_record_deleted_from_the_middle_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state");
    let mut records = lines(&three_lists(&path));
    records.remove(1);
    fs::write(&path, records.concat()).unwrap();
    let err = Store::open(&path, Limits::default()).unwrap_err();
    assert!(
        matches!(&err, StoreError::Corrupt { line: 2, reason, .. } if reason.contains("sequence number 3 where 2")),
        "{err}"
    );
    // Even the last record: a missing one is not a torn write.
    let path = dir.path().join("state2");
    let mut records = lines(&three_lists(&path));
    records.remove(2);
    fs::write(&path, records.concat()).unwrap();
    let err = Store::open(&path, Limits::default()).unwrap_err();
    assert!(matches!(&err, StoreError::Corrupt { line: 3, .. }), "{err}");
}

#[test]
fn records_out_of_order_are_detected() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state");
    let mut records = lines(&three_lists(&path));
    records.swap(1, 2);
    fs::write(&path, records.concat()).unwrap();
    let err = Store::open(&path, Limits::default()).unwrap_err();
    assert!(matches!(&err, StoreError::Corrupt { line: 2, .. }), "{err}");
}

#[test]
fn a_corrupt_last_record_is_cut_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state");
    let good = three_lists(&path);
    let records = records_of(&path);
    let mut bad = good.clone();
    let n = records.len();
    bad[n - 3] ^= 0x20;
    let last = lines(&records).last().unwrap().len() as u64;
    fs::write(&path, &bad).unwrap();
    let (store, restored) = Store::restore(&path, Limits::default()).unwrap();
    assert_eq!(restored.torn_bytes, last);
    assert_eq!(restored.records, 3);
    assert_eq!(store.last_seq(), 3);
    assert_eq!(records_of(&path), &records[..n - last as usize]);
    assert_eq!(fs::metadata(&path).unwrap().len(), good.len() as u64);
}

#[test]
fn a_bit_flip_in_the_middle_is_refused_and_repaired() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state");
    let good = three_lists(&path);
    let mut bad = good.clone();
    let second = lines(&good)[0].len();
    bad[second + 14] ^= 1;
    fs::write(&path, &bad).unwrap();
    assert!(matches!(
        Store::open(&path, Limits::default()).unwrap_err(),
        StoreError::Corrupt { line: 2, .. }
    ));
    let v = verify(&path, Limits::default()).unwrap();
    assert_eq!(v.problem.as_ref().map(|p| p.0), Some(2));
    assert_eq!(v.restored.records, 1);
    // Beside the original, which is left alone.
    let r = repair(&path, Limits::default(), false).unwrap();
    assert_eq!(r.written, dir.path().join("state.repaired"));
    assert_eq!(fs::read(&path).unwrap(), bad);
    assert_eq!(fs::read(&r.written).unwrap(), lines(&good)[0]);
    assert_eq!(r.dropped_bytes, (good.len() - second) as u64);
    // In place: the server starts from the valid prefix.
    repair(&path, Limits::default(), true).unwrap();
    let (_, registry) = Store::open(&path, Limits::default()).unwrap();
    assert_eq!(
        registry.lists().map(|l| l.as_str()).collect::<Vec<_>>(),
        ["a"]
    );
}

#[test]
fn one_store_per_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state");
    let (store, _) = Store::open(&path, Limits::default()).unwrap();
    let err = Store::open(&path, Limits::default()).unwrap_err();
    assert!(matches!(err, StoreError::Locked { .. }), "{err}");
    assert!(
        err.to_string().contains("in use by another server"),
        "{err}"
    );
    // Nor may a repair replace it under the server.
    assert!(matches!(
        repair(&path, Limits::default(), true).unwrap_err(),
        StoreError::Locked { .. }
    ));
    drop(store);
    Store::open(&path, Limits::default()).unwrap();
}

#[test]
fn a_removed_or_replaced_journal_fails_the_commit_and_is_rewritten() {
    for replace in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state");
        let (mut store, mut registry) = Store::open(&path, Limits::default()).unwrap();
        apply(&mut store, &mut registry, "create a");
        store.commit().unwrap();
        if replace {
            fs::rename(&path, dir.path().join("state.1")).unwrap();
            fs::write(&path, b"").unwrap();
        } else {
            fs::remove_file(&path).unwrap();
        }
        apply(&mut store, &mut registry, "create b");
        let err = store.commit().unwrap_err();
        assert!(
            err.to_string()
                .contains(if replace { "replaced" } else { "removed" })
        );
        // The committed state is read back from the open file.
        let restored = store.reload(Limits::default()).unwrap();
        assert_eq!(restored.registry.lists().count(), 1);
        // A fresh journal, then appends to it.
        store.rewrite(&restored.registry, []).unwrap();
        let mut registry = restored.registry;
        apply(&mut store, &mut registry, "create b");
        store.commit().unwrap();
        drop(store);
        let (_, again) = Store::open(&path, Limits::default()).unwrap();
        assert_eq!(again.lists().count(), 2);
    }
}

#[test]
fn answers_are_journaled_and_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state");
    let from: SocketAddr = "127.0.0.1:4000".parse().unwrap();
    let (mut store, mut registry) = Store::open(&path, Limits::default()).unwrap();
    apply(&mut store, &mut registry, "register A 127.0.0.1 4000");
    apply(&mut store, &mut registry, "create l");
    apply(&mut store, &mut registry, "join l A");
    let tag = |id, bytes: &[u8]| KeptAnswer {
        from,
        id,
        digest: 99,
        at: 1_000,
        bytes: bytes.to_vec(),
    };
    let command = cmd("im-start l A");
    let Reply::Answer(answer) = registry.apply(command.clone()) else {
        panic!()
    };
    store.record(&Record {
        ext: 1,
        command: Some(command),
        answer: Some(tag(7, b"")),
        keys: Default::default(),
    });
    store.record(&Record {
        ext: 0,
        command: None,
        answer: Some(tag(8, b"#8-_-457-_-null")),
        keys: Default::default(),
    });
    store.commit().unwrap();
    drop(store);
    let (mut store, restored) = Store::restore(&path, Limits::default()).unwrap();
    let mut sent = Vec::new();
    answer.with_id(Some(7)).encode(&mut sent);
    assert_eq!(
        restored.answers,
        [tag(7, &sent), tag(8, b"#8-_-457-_-null")]
    );
    // A compaction keeps the answers it is given.
    store
        .compact(&restored.registry, restored.answers.clone())
        .unwrap();
    drop(store);
    let (_, again) = Store::restore(&path, Limits::default()).unwrap();
    assert_eq!(again.answers, restored.answers);
    assert_eq!(again.registry.ongoing("l"), Some(1));
}

#[cfg(unix)]
#[test]
fn compaction_does_not_follow_a_planted_symbolic_link() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state");
    let victim = dir.path().join("victim");
    fs::write(&victim, b"precious").unwrap();
    // The old, predictable temporary name.
    std::os::unix::fs::symlink(&victim, dir.path().join("state.compact.tmp")).unwrap();
    let (mut store, mut registry) = Store::open(&path, Limits::default()).unwrap();
    demo(&mut store, &mut registry);
    store.compact(&registry, []).unwrap();
    assert_eq!(fs::read(&victim).unwrap(), b"precious");
    // No temporary file is left behind.
    let names: Vec<String> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp") && n != "state.compact.tmp")
        .collect();
    assert!(names.is_empty(), "{names:?}");
}

#[test]
fn a_journal_truncated_under_the_store_fails_the_commit() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state");
    let (mut store, mut registry) = Store::open(&path, Limits::default()).unwrap();
    apply(&mut store, &mut registry, "create a");
    store.commit().unwrap();
    // What logrotate's copytruncate would do.
    OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(0)
        .unwrap();
    apply(&mut store, &mut registry, "create b");
    let err = store.commit().unwrap_err();
    assert!(
        err.to_string().contains("changed by another process"),
        "{err}"
    );
}

/// The identity check before each write (a `statx` that asks for no timestamps, on Linux)
/// still tells the open journal from another file at its path, and from no file.
#[test]
fn a_journal_replaced_or_removed_under_the_store_fails_the_commit() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state");
    let (mut store, mut registry) = Store::open(&path, Limits::default()).unwrap();
    apply(&mut store, &mut registry, "create a");
    store.commit().unwrap();
    // Another file of the same length renamed over it.
    let other = dir.path().join("other");
    fs::write(
        &other,
        vec![0u8; fs::metadata(&path).unwrap().len() as usize],
    )
    .unwrap();
    fs::rename(&other, &path).unwrap();
    apply(&mut store, &mut registry, "create b");
    let err = store.commit().unwrap_err();
    assert!(
        err.to_string().contains("replaced by another file"),
        "{err}"
    );

    let path = dir.path().join("state2");
    let (mut store, mut registry) = Store::open(&path, Limits::default()).unwrap();
    apply(&mut store, &mut registry, "create a");
    store.commit().unwrap();
    fs::remove_file(&path).unwrap();
    apply(&mut store, &mut registry, "create b");
    let err = store.commit().unwrap_err();
    assert!(err.to_string().contains("was removed"), "{err}");
}

/// The two halves of a commit, as the server uses them to sync on another thread: what is
/// written is committed only once a sync started after it is reported; an abandoned write
/// (its sync failed) is cut off, and the store goes on from the committed records.
#[test]
fn written_records_are_committed_by_the_sync_that_covers_them_or_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state");
    let (mut store, mut registry) = Store::open(&path, Limits::default()).unwrap();
    apply(&mut store, &mut registry, "create a");
    store.write().unwrap();
    let first = store.written();
    assert!(store.is_unsynced() && !store.is_synced(first));
    // Written while the first sync runs: not covered by it.
    apply(&mut store, &mut registry, "create b");
    store.write().unwrap();
    let second = store.written();
    store.sync_file().unwrap().sync_data().unwrap();
    store.synced(first);
    assert!(store.is_synced(first) && !store.is_synced(second) && store.is_unsynced());
    assert_eq!(store.last_seq(), 1);
    // The second sync fails: its records go (NULs over them, synced), the first stay, and
    // appends go on after them.
    let size = fs::metadata(&path).unwrap().len();
    let both = records_of(&path);
    store.abandon();
    assert!(!store.is_unsynced());
    let kept = records_of(&path);
    assert_eq!(lines(&kept).len(), 1);
    assert!(both.starts_with(&kept) && both.len() > kept.len());
    assert_eq!(fs::metadata(&path).unwrap().len(), size);
    // As a restart would see it.
    let v = verify(&path, Limits::default()).unwrap();
    assert_eq!((v.restored.records, v.restored.torn_bytes), (1, 0));
    let mut again = store.reload(Limits::default()).unwrap().registry;
    assert_eq!(again.lists().collect::<Vec<_>>(), ["a"]);
    apply(&mut store, &mut again, "create c");
    store.commit().unwrap();
    assert_eq!(store.last_seq(), 2);
    drop(store);
    let (_, reopened) = Store::open(&path, Limits::default()).unwrap();
    assert_eq!(reopened.lists().collect::<Vec<_>>(), ["a", "c"]);
}
