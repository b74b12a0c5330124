//! Linearizability: concurrent clients through every node of a three-node cluster, creating
//! lists (some of the same names) and reading them, while the leader is cut off and then
//! healed; the history is checked by a Wing-Gong search against the sequential registry
//! (a set of list names: `create` is 200 if the name is new, 457 if not; `query-lists` gives
//! the set).
//!
//! Each client retries a create with the same id until it is answered (as our peers do):
//! the operation took effect once, somewhere between its first send and its answer.
//! A read answered `473` ("not served, try later") is dropped from the history: it observed
//! nothing.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use contact_cluster::{ClusterConfig, ClusterNode, Router, Transport};
use contact_peer::ServerConfig;
use contact_proto::{Answer, Body};

#[derive(Debug, Clone)]
enum Op {
    /// `create NAME` answered: `true` for 200, `false` for 457.
    Create(String, bool),
    /// `query-lists` answered with these names.
    Read(BTreeSet<String>),
}

#[derive(Debug, Clone)]
struct Event {
    call: Instant,
    ret: Instant,
    op: Op,
}

/// Whether `history` is linearizable: some order of the operations, consistent with
/// real time (an operation that returned before another was called comes first), in which
/// every answer is what the sequential set of names would give. Wing and Gong's search, with
/// the (done set, state) pairs already seen remembered (Lowe's refinement).
fn linearizable(history: &[Event]) -> bool {
    fn search(
        history: &[Event],
        done: &mut Vec<bool>,
        state: &mut BTreeSet<String>,
        seen: &mut HashSet<(Vec<bool>, BTreeSet<String>)>,
    ) -> bool {
        if done.iter().all(|&d| d) {
            return true;
        }
        if !seen.insert((done.clone(), state.clone())) {
            return false;
        }
        // The earliest return among pending operations: only operations called before it
        // may come next.
        let horizon = history
            .iter()
            .zip(done.iter())
            .filter(|(_, d)| !**d)
            .map(|(e, _)| e.ret)
            .min()
            .expect("a pending operation");
        for i in 0..history.len() {
            if done[i] || history[i].call > horizon {
                continue;
            }
            let ok = match &history[i].op {
                Op::Create(name, created) => *created != state.contains(name),
                Op::Read(names) => names == state,
            };
            if !ok {
                continue;
            }
            let added = match &history[i].op {
                Op::Create(name, true) => state.insert(name.clone()),
                _ => false,
            };
            done[i] = true;
            if search(history, done, state, seen) {
                return true;
            }
            done[i] = false;
            if let (true, Op::Create(name, _)) = (added, &history[i].op) {
                state.remove(name);
            }
        }
        false
    }
    let mut done = vec![false; history.len()];
    search(
        history,
        &mut done,
        &mut BTreeSet::new(),
        &mut HashSet::new(),
    )
}

#[test]
fn the_checker_tells_a_stale_read() {
    let t0 = Instant::now();
    let t = |ms| t0 + Duration::from_millis(ms);
    let create = |a, b, name: &str, ok| Event {
        call: t(a),
        ret: t(b),
        op: Op::Create(name.into(), ok),
    };
    let read = |a, b, names: &[&str]| Event {
        call: t(a),
        ret: t(b),
        op: Op::Read(names.iter().map(|n| n.to_string()).collect()),
    };
    // A read overlapping the create may see it or not.
    assert!(linearizable(&[create(0, 10, "a", true), read(5, 6, &[])]));
    assert!(linearizable(&[
        create(0, 10, "a", true),
        read(5, 6, &["a"])
    ]));
    // A read after the create's answer must see it.
    assert!(!linearizable(&[
        create(0, 10, "a", true),
        read(11, 12, &[])
    ]));
    // Two creates of one name: one 200, one 457.
    assert!(linearizable(&[
        create(0, 10, "a", true),
        create(1, 9, "a", false)
    ]));
    assert!(!linearizable(&[
        create(0, 10, "a", true),
        create(1, 9, "a", true)
    ]));
    // Once seen, never unseen.
    assert!(!linearizable(&[
        create(0, 10, "a", true),
        read(1, 2, &["a"]),
        read(3, 4, &[])
    ]));
}

fn config(id: u64) -> ClusterConfig {
    let members = (1..=3)
        .map(|i| (i, SocketAddr::from(([127, 0, 0, 1], 23000 + i as u16))))
        .collect();
    let mut c = ClusterConfig::new(id, members, ServerConfig::default());
    c.election_timeout_ms = (300, 600);
    c.heartbeat_ms = 50;
    c.propose_timeout = Duration::from_millis(1000);
    c
}

async fn ask(node: &ClusterNode, from: SocketAddr, request: &str) -> Answer {
    let bytes = node
        .handle_datagram(from, request.as_bytes())
        .await
        .expect("an answer");
    Answer::decode(&bytes).expect("an answer that decodes")
}

/// One client: `rounds` operations on its key set, through node after node.
async fn client(
    nodes: Vec<ClusterNode>,
    n: u16,
    keys: Vec<String>,
    rounds: u32,
    history: Arc<Mutex<Vec<Event>>>,
) {
    let from = SocketAddr::from(([127, 0, 0, 9], 41000 + n));
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut k = usize::from(n);
    for r in 0..rounds {
        let id = r + 1;
        let call = Instant::now();
        let op = if r % 2 == 0 {
            let name = &keys[(r as usize / 2) % keys.len()];
            let request = format!("#{id}-_-create-_-{name}");
            loop {
                assert!(Instant::now() < deadline, "client {n} stuck");
                let a = ask(&nodes[k % nodes.len()], from, &request).await;
                k += 1;
                match a.status.code() {
                    200 => break Some(Op::Create(name.clone(), true)),
                    457 => break Some(Op::Create(name.clone(), false)),
                    // Not confirmed (473) or not stored (474): the same id again.
                    473 | 474 => continue,
                    code => panic!("create {name}: {code}"),
                }
            }
        } else {
            let a = ask(
                &nodes[k % nodes.len()],
                from,
                &format!("#{id}-_-query-lists"),
            )
            .await;
            k += 1;
            match (a.status.code(), a.body) {
                (200, Some(Body::Lists(lists))) => Some(Op::Read(
                    lists
                        .list_names
                        .iter()
                        .map(|l| l.to_string())
                        .filter(|l| keys.contains(l))
                        .collect(),
                )),
                (473, _) => None,
                other => panic!("query-lists: {other:?}"),
            }
        };
        if let Some(op) = op {
            history.lock().unwrap().push(Event {
                call,
                ret: Instant::now(),
                op,
            });
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn histories_through_every_node_with_a_leader_cut_off_are_linearizable() {
    let router = Router::new();
    let mut nodes = BTreeMap::new();
    for id in 1..=3 {
        let transport: Arc<dyn Transport> = router.clone();
        let node = ClusterNode::start(config(id), transport).await.unwrap();
        router.register(id, Arc::downgrade(&node.handler()));
        nodes.insert(id, node);
    }
    let start = Instant::now();
    let leader = loop {
        if let Some(l) = nodes[&1].status().leader {
            break l;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "no leader");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let all: Vec<ClusterNode> = nodes.values().cloned().collect();
    // Two disjoint key sets, two clients each: the check stays small and fast.
    let mut groups = Vec::new();
    for g in 0..2 {
        let keys: Vec<String> = (0..3).map(|i| format!("g{g}k{i}")).collect();
        let history = Arc::new(Mutex::new(Vec::new()));
        let clients: Vec<_> = (0..2)
            .map(|c| {
                tokio::spawn(client(
                    all.clone(),
                    g * 2 + c,
                    keys.clone(),
                    12,
                    Arc::clone(&history),
                ))
            })
            .collect();
        groups.push((history, clients));
    }
    // Mid-run: the leader is cut off, then healed.
    tokio::time::sleep(Duration::from_millis(150)).await;
    router.set_cut(leader, true);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    router.set_cut(leader, false);
    for (history, clients) in groups {
        for c in clients {
            c.await.unwrap();
        }
        let history = history.lock().unwrap().clone();
        assert!(history.len() >= 12, "{} operations", history.len());
        assert!(linearizable(&history), "not linearizable: {history:#?}");
    }
    for node in nodes.values() {
        node.shutdown().await;
    }
}
