//! Snapshots rebuild what replaying the log does: a property test over random histories.

use std::net::SocketAddr;
use std::time::Duration;

use contact_peer::ServerConfig;
use contact_peer::replicated::ReplicatedCore;
use contact_registry::{Limits, Registry};
use proptest::prelude::*;

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// One entry of a random history: a time step, a source, an optional id, a command (or a
/// tick), on a few names so that commands collide.
fn entry() -> impl Strategy<Value = (u64, u16, Option<u8>, String)> {
    let name = prop::sample::select(vec!["A", "B", "C"]);
    let list = prop::sample::select(vec!["l1", "l2"]);
    let command = prop_oneof![
        (name.clone(), 0u16..3)
            .prop_map(|(n, p)| format!("register-_-{n}-_-127.0.0.1-_-{}", 30001 + p)),
        list.clone().prop_map(|l| format!("create-_-{l}")),
        (list.clone(), name.clone()).prop_map(|(l, n)| format!("join-_-{l}-_-{n}")),
        (list.clone(), name.clone()).prop_map(|(l, n)| format!("leave-_-{l}-_-{n}")),
        name.clone().prop_map(|n| format!("exit-_-{n}")),
        (list.clone(), name.clone()).prop_map(|(l, n)| format!("im-start-_-{l}-_-{n}")),
        (list, name).prop_map(|(l, n)| format!("im-complete-_-{l}-_-{n}")),
        Just("query-lists".to_string()),
        Just("frob".to_string()),
        Just("tick".to_string()),
    ];
    (0u64..40_000, 0u16..3, prop::option::of(0u8..6), command)
}

fn feed(
    r: &mut ReplicatedCore,
    at: u64,
    (_, port, id, command): &(u64, u16, Option<u8>, String),
) -> Vec<u8> {
    if command == "tick" {
        r.tick(at);
        return Vec::new();
    }
    let bytes = match id {
        Some(id) => format!("#{id}-_-{command}"),
        None => command.clone(),
    };
    r.apply(at, addr(30001 + port), bytes.as_bytes())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// A snapshot taken anywhere in a history, restored and fed the rest of the history,
    /// gives the same answers and the same final state as replaying the whole history.
    #[test]
    fn a_snapshot_rebuilds_what_replaying_the_log_does(
        history in prop::collection::vec(entry(), 1..120),
        cut in any::<prop::sample::Index>(),
        auth in any::<bool>(),
        capacity in 1usize..8,
        quota in 1usize..4,
    ) {
        // Small per-source quotas, so that histories hit them (476) and exits give shares
        // back: who holds what is part of the snapshot.
        let config = ServerConfig::default()
            .max_contacts_per_source(Some(quota))
            .max_lists_per_source(Some(quota))
            .auth(auth)
            .dedup_capacity(capacity)
            .dedup_lifetime(Duration::from_secs(30))
            .im_timeout(Some(Duration::from_secs(60)));
        let cut = cut.index(history.len() + 1);
        let mut whole = ReplicatedCore::new(Registry::new(Limits::default()), &config);
        let mut part = ReplicatedCore::new(Registry::new(Limits::default()), &config);
        // Mostly forward, in steps up to 40 s (past the cache lifetime), sometimes back (a
        // new leader whose clock is behind).
        let mut at = 0u64;
        let times: Vec<u64> = history
            .iter()
            .map(|e| {
                at = if e.0 % 7 == 0 { at.saturating_sub(e.0 / 7) } else { at + e.0 };
                at
            })
            .collect();
        for (e, &t) in history.iter().zip(&times).take(cut) {
            prop_assert_eq!(feed(&mut whole, t, e), feed(&mut part, t, e));
        }
        let snapshot = part.snapshot();
        let mut restored = ReplicatedCore::restore(&snapshot, &config).unwrap();
        prop_assert_eq!(restored.snapshot(), snapshot);
        for (e, &t) in history.iter().zip(&times).skip(cut) {
            prop_assert_eq!(feed(&mut whole, t, e), feed(&mut restored, t, e));
        }
        prop_assert_eq!(whole.snapshot(), restored.snapshot());
        prop_assert!(whole.registry() == restored.registry());
        prop_assert_eq!(whole.next_deadline(), restored.next_deadline());
    }
}
