//! [`Registry::execute`]: the same answers as [`Registry::apply`], and a true account of
//! what each command changed, which a journal replays to the same state.

use contact_proto::{Body, Command, EXT_VERSION, Status, parse_line};
use contact_registry::{Registry, Reply};

fn cmd(line: &str) -> Command {
    parse_line(line).unwrap().unwrap().command
}

/// Every line with whether it changes the state and whether it changes the list names.
const SCRIPT: &[(&str, bool, bool)] = &[
    ("register Me 10.0.0.1 22000", true, false),
    ("register Me 10.0.0.1 22000", false, false),
    ("register Myself 10.0.0.2 22000", true, false),
    ("query-lists", false, false),
    ("create list_1", true, true),
    ("create list_1", false, false),
    ("join list_1 Me", true, false),
    ("join list_1 Me", false, false),
    ("join list_1 Myself", true, false),
    ("join nowhere Me", false, false),
    ("im-start list_1 Me", true, false),
    ("leave list_1 Myself", false, false),
    ("im-complete list_1 Me", true, false),
    ("im-complete list_1 Me", false, false),
    ("save config.txt", false, false),
    ("leave list_1 Myself", true, false),
    ("exit Myself", true, false),
    ("exit Myself", false, false),
    ("create list_2", true, true),
    ("im-start list_1 Me", true, false),
    ("remove-list nowhere", false, false),
    ("remove-list list_1", true, true),
    ("im-complete list_1 Me", false, false),
    ("remove-list list_1", false, false),
    ("create list_1", true, true),
];

#[test]
fn execute_answers_as_apply_and_says_what_changed() {
    let mut plain = Registry::default();
    let mut ours = Registry::default();
    let mut journal = Vec::new();
    for &(line, changed, lists_changed) in SCRIPT {
        let reply = plain.apply(cmd(line));
        let done = ours.execute(cmd(line), EXT_VERSION);
        assert_eq!(
            (done.changed, done.lists_changed),
            (changed, lists_changed),
            "{line}"
        );
        assert_eq!(
            done.changed,
            done.status() == Some(Status::Ok) && !line.starts_with("query")
        );
        match (reply, done.reply) {
            // The one difference: our server announces its extension level.
            (Reply::Answer(a), Reply::Answer(mut b)) => {
                if let Some(Body::Lists(lists)) = &mut b.body {
                    assert_eq!(lists.ext, EXT_VERSION);
                    lists.ext = 0;
                }
                if let Some(Body::ImStart(ring)) = &mut b.body {
                    for member in &mut ring.contact_list {
                        assert_eq!(member.ext, EXT_VERSION, "registered by one of ours");
                        member.ext = 0;
                    }
                }
                assert_eq!(a, b, "{line}");
            }
            (a, b) => assert_eq!(a, b, "{line}"),
        }
        if changed {
            journal.push(cmd(line));
        }
    }
    // Replaying what changed the state rebuilds it, extension levels included.
    let mut replayed = Registry::default();
    for command in journal {
        assert!(replayed.execute(command, EXT_VERSION).changed);
    }
    assert_eq!(replayed, ours);
    assert_eq!(replayed.contact("Me").unwrap().ext(), EXT_VERSION);
    assert_eq!(plain.contact("Me").unwrap().ext(), 0);
}

#[test]
fn a_caller_at_level_zero_is_registered_at_zero_but_still_told_ours() {
    let mut registry = Registry::default();
    assert!(
        registry
            .execute(cmd("register Me 10.0.0.1 22000"), 0)
            .changed
    );
    assert_eq!(registry.contact("Me").unwrap().ext(), 0);
    let Reply::Answer(answer) = registry.execute(Command::QueryLists, 0).reply else {
        panic!("query-lists is answered")
    };
    assert_eq!(
        answer.to_bytes(),
        br#"200-_-{"num_lists": 0, "list_names": [], "ext": 1}"#
    );
}

#[test]
fn only_the_owners_secret_registers_a_taken_name_again_and_changes_nothing() {
    use contact_proto::auth::Secret;
    use contact_registry::Keys;
    let mut registry = Registry::default();
    let keyed = |secret: u8| {
        let mut keys = Keys::default();
        keys.secret = Some(Secret([secret; 32]));
        keys
    };
    let first = registry.execute_keyed(&cmd("register Me 10.0.0.1 22000"), EXT_VERSION, &keyed(7));
    assert!(first.changed);
    let before = registry.clone();
    // The owner's secret at the registered address: 200 with that secret, nothing changed.
    let again = registry.execute_keyed(&cmd("register Me 10.0.0.1 22000"), EXT_VERSION, &keyed(7));
    assert!(!again.changed);
    let Reply::Answer(answer) = again.reply else {
        panic!("no answer")
    };
    assert_eq!(answer.status, Status::Ok);
    assert_eq!(answer.body, Some(Body::Secret(Secret([7; 32]))));
    // Another secret, or another address (a move is `exit` then `register`): 455.
    for (line, secret) in [
        ("register Me 10.0.0.1 22000", 8),
        ("register Me 10.0.0.1 22002", 7),
        ("register Me 10.0.0.2 22000", 7),
    ] {
        let refused = registry.execute_keyed(&cmd(line), EXT_VERSION, &keyed(secret));
        assert!(!refused.changed);
        assert_eq!(refused.status(), Some(Status::NameTaken), "{line}");
    }
    assert_eq!(
        registry
            .execute(cmd("register Me 10.0.0.1 22000"), EXT_VERSION)
            .status(),
        Some(Status::NameTaken)
    );
    assert_eq!(registry, before);
    registry.assert_consistent();
}
