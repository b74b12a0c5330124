//! Three nodes in one process over the in-memory router: answers through any node, a leader
//! killed under load, a cut-off minority that answers "try later", replicas identical.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use contact_cluster::{ClusterConfig, ClusterNode, MembershipChange, Router, Transport};
use contact_peer::ServerConfig;
use contact_registry::Limits;
use openraft::async_runtime::WatchReceiver;

struct Cluster {
    router: Arc<Router>,
    nodes: BTreeMap<u64, ClusterNode>,
}

fn config(id: u64, n: u64) -> ClusterConfig {
    let members = (1..=n)
        .map(|i| (i, SocketAddr::from(([127, 0, 0, 1], 23000 + i as u16))))
        .collect();
    let server = ServerConfig::default().limits(Limits::default().max_lists(10_000));
    let mut c = ClusterConfig::new(id, members, server);
    c.election_timeout_ms = (300, 600);
    c.heartbeat_ms = 50;
    c.propose_timeout = Duration::from_millis(1500);
    c
}

impl Cluster {
    async fn start(n: u64) -> Self {
        Self::start_with(n, |_| {}).await
    }

    async fn start_with(n: u64, tweak: impl Fn(&mut ClusterConfig)) -> Self {
        let router = Router::new();
        let mut nodes = BTreeMap::new();
        for id in 1..=n {
            let transport: Arc<dyn Transport> = router.clone();
            let mut config = config(id, n);
            tweak(&mut config);
            let node = ClusterNode::start(config, transport).await.unwrap();
            router.register(id, Arc::downgrade(&node.handler()));
            nodes.insert(id, node);
        }
        let c = Self { router, nodes };
        c.leader(Duration::from_secs(10)).await;
        c
    }

    /// The leader every live node agrees on, waiting up to `within` for one.
    async fn leader(&self, within: Duration) -> u64 {
        let start = Instant::now();
        loop {
            let leaders: Vec<_> = self.nodes.values().map(|n| n.status().leader).collect();
            if let Some(Some(l)) = leaders.first()
                && leaders.iter().all(|x| *x == Some(*l))
                && self.nodes.contains_key(l)
            {
                return *l;
            }
            assert!(
                start.elapsed() < within,
                "no leader within {within:?}: {leaders:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn ask(&self, node: u64, from: SocketAddr, request: &str) -> String {
        let answer = self.nodes[&node]
            .handle_datagram(from, request.as_bytes())
            .await;
        String::from_utf8(answer.expect("an answer")).unwrap()
    }

    /// Waits until every live node has applied as far as the others, then checks that
    /// their replicas are byte for byte the same.
    async fn assert_identical(&self) {
        let start = Instant::now();
        loop {
            // The machines' own applied indexes: openraft's metrics may run ahead of them.
            let applied: Vec<u64> = self
                .nodes
                .values()
                .map(|n| *n.machine().applied().borrow())
                .collect();
            let texts: Vec<_> = self
                .nodes
                .values()
                .map(|n| n.machine().snapshot_text())
                .collect();
            let after: Vec<u64> = self
                .nodes
                .values()
                .map(|n| *n.machine().applied().borrow())
                .collect();
            if applied == after && applied.windows(2).all(|w| w[0] == w[1]) {
                for t in &texts[1..] {
                    if t != &texts[0] {
                        let a = String::from_utf8_lossy(&texts[0]);
                        let b = String::from_utf8_lossy(t);
                        let diff: Vec<_> = a
                            .lines()
                            .zip(b.lines())
                            .filter(|(x, y)| x != y)
                            .take(5)
                            .collect();
                        panic!("replicas differ at {applied:?}: {diff:?}");
                    }
                }
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "replicas do not converge: {applied:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn kill(&mut self, id: u64) {
        self.router.set_cut(id, true);
        let node = self.nodes.remove(&id).unwrap();
        node.shutdown().await;
    }
}

fn peer(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 9], port))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_node_answers_and_the_replicas_agree() {
    let c = Cluster::start(3).await;
    let a = peer(30001);
    // A tagged register gets the secret the leader drew (issue 10), the same on every
    // replica: the retransmission to another node is answered with the same bytes.
    let registered = c.ask(1, a, "#1-_-register-_-A-_-127.0.0.9-_-30001").await;
    assert!(
        registered.starts_with("#1-_-200-_-{\"secret\": \""),
        "{registered}"
    );
    assert_eq!(
        c.ask(3, a, "#1-_-register-_-A-_-127.0.0.9-_-30001").await,
        registered
    );
    assert_eq!(c.ask(2, a, "#2-_-create-_-l").await, "#2-_-200-_-null");
    assert_eq!(c.ask(3, a, "#3-_-join-_-l-_-A").await, "#3-_-200-_-null");
    // A retransmission through another node after the fact: the same answer, applied once.
    assert_eq!(c.ask(1, a, "#2-_-create-_-l").await, "#2-_-200-_-null");
    assert_eq!(c.ask(3, a, "create-_-l").await, "457-_-null");
    // Linearizable reads through every node see every acknowledged mutation.
    for id in 1..=3 {
        let lists = c.ask(id, a, "query-lists").await;
        assert_eq!(
            lists,
            r#"200-_-{"num_lists": 1, "list_names": ["l"], "ext": 1}"#
        );
    }
    // Garbage is answered where it arrives.
    assert!(c.ask(2, a, "#9-_-frob").await.starts_with("#9-_-466-_-"));
    c.assert_identical().await;
}

/// One client's load: tagged creates of its own lists, each retried with the same id (as
/// our peers do) and moved to the next node on "try later" until answered 200. Never a
/// `457`: no create is applied twice.
async fn load(
    nodes: Vec<ClusterNode>,
    dead: Arc<Mutex<Vec<u64>>>,
    client: u16,
    count: u32,
    acked: Arc<Mutex<Vec<(Instant, String)>>>,
) {
    let from = peer(40000 + client);
    let deadline = Instant::now() + Duration::from_secs(60);
    for i in 0..count {
        let list = format!("c{client}_{i}");
        let (request, ok) = (
            format!("#{i}-_-create-_-{list}"),
            format!("#{i}-_-200-_-null"),
        );
        let mut k = usize::from(client) + i as usize;
        loop {
            assert!(Instant::now() < deadline, "{list} not acknowledged in time");
            let node = &nodes[k % nodes.len()];
            if dead.lock().unwrap().contains(&node.id()) {
                // A dead host does not answer: the peer's timeout, then the next node.
                tokio::time::sleep(Duration::from_millis(100)).await;
                k += 1;
                continue;
            }
            let answer = node.handle_datagram(from, request.as_bytes()).await;
            let answer = String::from_utf8(answer.expect("an answer")).unwrap();
            if answer == ok {
                break;
            }
            // "Not confirmed" (473) or "not stored" (474): the same id again, elsewhere.
            assert!(
                answer.starts_with(&format!("#{i}-_-473-_-"))
                    || answer.starts_with(&format!("#{i}-_-474-_-")),
                "{list}: {answer}"
            );
            k += 1;
        }
        acked.lock().unwrap().push((Instant::now(), list));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_killed_under_load_loses_no_acknowledged_mutation() {
    let mut c = Cluster::start(3).await;
    let nodes: Vec<ClusterNode> = c.nodes.values().cloned().collect();
    let acked = Arc::new(Mutex::new(Vec::new()));
    let dead = Arc::new(Mutex::new(Vec::new()));
    let clients: Vec<_> = (0..3)
        .map(|client| {
            tokio::spawn(load(
                nodes.clone(),
                Arc::clone(&dead),
                client,
                80,
                Arc::clone(&acked),
            ))
        })
        .collect();
    // Mid-load, kill the leader.
    let start = Instant::now();
    while acked.lock().unwrap().len() < 60 {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no progress before the kill"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let leader = c.leader(Duration::from_secs(5)).await;
    let killed = Instant::now();
    dead.lock().unwrap().push(leader);
    c.kill(leader).await;
    for client in clients {
        client.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    let first = acked
        .iter()
        .map(|(at, _)| *at)
        .filter(|at| *at > killed)
        .min()
        .unwrap()
        - killed;
    eprintln!("leader {leader} killed: first mutation answered again after {first:?}");
    c.leader(Duration::from_secs(5)).await;
    c.assert_identical().await;
    assert_eq!(acked.len(), 240);
    for node in c.nodes.values() {
        let registry = node.machine().with_core(|core| core.registry().clone());
        for (_, list) in &acked {
            assert!(
                registry.members(list).is_some(),
                "{list} missing on node {}",
                node.id()
            );
        }
        assert_eq!(registry.num_lists(), acked.len());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_off_minority_answers_try_later_and_catches_up() {
    let c = Cluster::start(3).await;
    let a = peer(30001);
    assert_eq!(c.ask(1, a, "#1-_-create-_-before").await, "#1-_-200-_-null");
    let leader = c.leader(Duration::from_secs(5)).await;
    // Cut the leader off: it is the minority now.
    c.router.set_cut(leader, true);
    // Within its lease (an election timeout since a quorum last answered) it still puts
    // the request in its log, whose fate it cannot tell: "not confirmed" (473). Past it,
    // it does not: "not stored" (474), nothing changed. Each answer within the 2 s.
    let mut answer = String::new();
    for _ in 0..3 {
        let start = Instant::now();
        answer = c.ask(leader, a, "#2-_-create-_-cut").await;
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "took {:?}",
            start.elapsed()
        );
        if answer.starts_with("#2-_-474-_-") {
            break;
        }
        assert!(answer.starts_with("#2-_-473-_-"), "{answer}");
        assert!(answer.contains("not confirmed"), "{answer}");
    }
    assert!(answer.starts_with("#2-_-474-_-"), "{answer}");
    assert!(answer.contains("not stored"), "{answer}");
    let start = Instant::now();
    let read = c.ask(leader, a, "#3-_-query-lists").await;
    assert!(read.starts_with("#3-_-473-_-"), "{read}");
    assert!(read.contains("not served"), "{read}");
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "took {:?}",
        start.elapsed()
    );
    // The majority elects a leader and goes on; the same request id through it is applied.
    let others: Vec<u64> = (1..=3).filter(|&n| n != leader).collect();
    let mut answer = String::new();
    for _ in 0..10 {
        answer = c.ask(others[0], a, "#2-_-create-_-cut").await;
        if answer == "#2-_-200-_-null" {
            break;
        }
    }
    assert_eq!(answer, "#2-_-200-_-null");
    // Healed, the old leader follows and holds what the majority acknowledged.
    c.router.set_cut(leader, false);
    c.leader(Duration::from_secs(10)).await;
    c.assert_identical().await;
    assert_eq!(
        c.ask(leader, a, "query-lists").await,
        r#"200-_-{"num_lists": 2, "list_names": ["before", "cut"], "ext": 1}"#
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_off_follower_answers_not_stored() {
    let c = Cluster::start(3).await;
    let a = peer(30002);
    assert_eq!(c.ask(1, a, "#1-_-create-_-before").await, "#1-_-200-_-null");
    let leader = c.leader(Duration::from_secs(5)).await;
    let follower = (1..=3).find(|&n| n != leader).unwrap();
    c.router.set_cut(follower, true);
    // Its forwards never leave (the leader is out of reach), so it knows nothing changed.
    let start = Instant::now();
    let answer = c.ask(follower, a, "#2-_-create-_-cut").await;
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "took {:?}",
        start.elapsed()
    );
    assert_eq!(
        answer,
        r#"#2-_-474-_-{"error": "not stored: no leader with a quorum within reach; nothing changed; try again later"}"#
    );
    // The majority did not get it either: the same id through the leader is a first copy.
    assert_eq!(
        c.ask(leader, a, "#2-_-create-_-cut").await,
        "#2-_-200-_-null"
    );
    c.router.set_cut(follower, false);
    c.assert_identical().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wiped_node_is_refused_under_its_old_id() {
    let mut c = Cluster::start(3).await;
    let a = peer(30003);
    assert_eq!(c.ask(1, a, "#1-_-create-_-kept").await, "#1-_-200-_-null");
    c.kill(3).await;
    c.router.set_cut(3, false);
    // Node 3 again, with an empty directory: it could vote twice or count towards a quorum
    // for entries it no longer has.
    let dir = tempfile::tempdir().unwrap();
    let mut wiped = config(3, 3);
    wiped.raft_dir = Some(dir.path().join("raft"));
    let transport: Arc<dyn Transport> = c.router.clone();
    let err = match ClusterNode::start(wiped, transport).await {
        Ok(_) => panic!("a wiped node started under its old id"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.starts_with("node 3 is a member of a running cluster (node "),
        "{err}"
    );
    assert!(err.contains("holds no raft state"), "{err}");
    assert!(err.contains("Restore its data directory"), "{err}");
    // The two others go on.
    assert_eq!(c.ask(2, a, "#2-_-create-_-after").await, "#2-_-200-_-null");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_is_added_then_the_leader_removed() {
    let mut c = Cluster::start(3).await;
    let a = peer(30004);
    for i in 1..=5 {
        let request = format!("#{i}-_-create-_-l{i}");
        assert_eq!(
            c.ask(1 + i % 3, a, &request).await,
            format!("#{i}-_-200-_-null")
        );
    }
    let leader = c.leader(Duration::from_secs(5)).await;
    // Node 4 starts knowing the others; no one counts it as a member, so it waits.
    let transport: Arc<dyn Transport> = c.router.clone();
    let four = ClusterNode::start(config(4, 4), transport).await.unwrap();
    c.router.register(4, Arc::downgrade(&four.handler()));
    c.nodes.insert(4, four);
    let addr4 = SocketAddr::from(([127, 0, 0, 1], 23004));
    // Through a follower: it passes the change to the leader.
    let follower = (1..=3).find(|&n| n != leader).unwrap();
    let members = c.nodes[&follower]
        .change_membership(MembershipChange::Add { id: 4, addr: addr4 })
        .await
        .unwrap();
    assert_eq!(members.keys().copied().collect::<Vec<_>>(), [1, 2, 3, 4]);
    assert_eq!(members[&4], "127.0.0.1:23004");
    // A second time is refused, and so is another id at its address.
    let again = c.nodes[&leader]
        .change_membership(MembershipChange::Add { id: 4, addr: addr4 })
        .await;
    assert_eq!(again, Err("node 4 is a member already".into()));
    let taken = c.nodes[&leader]
        .change_membership(MembershipChange::Add { id: 5, addr: addr4 })
        .await;
    assert_eq!(taken, Err("127.0.0.1:23004 is node 4's address".into()));
    c.assert_identical().await;
    // The leader retires: removed, then stopped; the three others go on.
    let members = c.nodes[&4]
        .change_membership(MembershipChange::Remove { id: leader })
        .await
        .unwrap();
    assert!(!members.contains_key(&leader), "{members:?}");
    assert_eq!(members.len(), 3);
    c.kill(leader).await;
    let new = c.leader(Duration::from_secs(10)).await;
    assert_ne!(new, leader);
    let mut answer = String::new();
    for _ in 0..5 {
        answer = c.ask(4, a, "#6-_-create-_-after").await;
        if answer == "#6-_-200-_-null" {
            break;
        }
    }
    assert_eq!(answer, "#6-_-200-_-null");
    c.assert_identical().await;
    let lists = c.nodes[&4]
        .machine()
        .with_core(|core| core.registry().num_lists());
    assert_eq!(lists, 6);
    let gone = c.nodes[&4]
        .change_membership(MembershipChange::Remove { id: leader })
        .await;
    assert_eq!(gone, Err(format!("node {leader} is not a member")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_other_registry_options_is_refused() {
    let c = Cluster::start(3).await;
    let mut other = config(3, 3);
    other.server.auth = true;
    let transport: Arc<dyn Transport> = c.router.clone();
    let err = match ClusterNode::start(other, transport).await {
        Ok(_) => panic!("started"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("other registry options"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_far_behind_is_sent_a_snapshot() {
    let c = Cluster::start_with(3, |config| {
        config.snapshot_every = 10;
        config.keep_after_snapshot = 2;
    })
    .await;
    let leader = c.leader(Duration::from_secs(5)).await;
    let behind = (1..=3).find(|&n| n != leader).unwrap();
    c.router.set_cut(behind, true);
    let a = peer(30001);
    let registered = c
        .ask(leader, a, "#1-_-register-_-A-_-127.0.0.9-_-30001")
        .await;
    assert!(
        registered.starts_with("#1-_-200-_-{\"secret\": \""),
        "{registered}"
    );
    for i in 0..60 {
        let answer = c
            .ask(leader, a, &format!("#{}-_-create-_-l{i}", i + 2))
            .await;
        assert_eq!(answer, format!("#{}-_-200-_-null", i + 2));
    }
    // The leader has purged what the cut-off node lacks: it can only catch up by snapshot.
    let start = Instant::now();
    while c.nodes[&leader].status().last_applied < Some(60)
        || c.nodes[&leader]
            .raft()
            .metrics()
            .borrow_watched()
            .purged
            .is_none()
    {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no snapshot taken"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    c.router.set_cut(behind, false);
    c.assert_identical().await;
    let snapshot = c.nodes[&behind].raft().metrics().borrow_watched().snapshot;
    assert!(
        snapshot.is_some(),
        "node {behind} caught up without a snapshot"
    );
    // A retransmission, through it, of a request answered while it was cut off: answered
    // again, not applied twice.
    assert_eq!(
        c.ask(behind, a, "#2-_-create-_-l0").await,
        "#2-_-200-_-null"
    );
}

/// Issue 10: `remove-list` goes through the log, is the operator's alone on every node, and
/// leaves identical replicas that keep each list's creator.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_removes_a_list_through_any_node() {
    let c = Cluster::start_with(3, |config| {
        config.server.operator = vec!["127.0.0.1".parse().unwrap()];
    })
    .await;
    let hog = peer(30001);
    let operator = SocketAddr::from(([127, 0, 0, 1], 40000));
    assert_eq!(c.ask(1, hog, "#1-_-create-_-h1").await, "#1-_-200-_-null");
    assert_eq!(c.ask(2, hog, "#2-_-create-_-h2").await, "#2-_-200-_-null");
    let refused = c.ask(3, hog, "#3-_-remove-list-_-h1").await;
    assert!(refused.starts_with("#3-_-472-_-"), "{refused}");
    assert_eq!(
        c.ask(2, operator, "#1-_-remove-list-_-h1").await,
        "#1-_-200-_-null"
    );
    // A retransmission to another node is answered, not applied again.
    assert_eq!(
        c.ask(3, operator, "#1-_-remove-list-_-h1").await,
        "#1-_-200-_-null"
    );
    assert_eq!(
        c.ask(1, operator, "#2-_-remove-list-_-h1").await,
        "#2-_-460-_-null"
    );
    c.assert_identical().await;
    for node in c.nodes.values() {
        let text = node.machine().snapshot_text();
        let text = String::from_utf8_lossy(&text);
        assert!(text.contains("0,c127.0.0.9 create-_-h2\n"), "{text}");
        assert!(!text.contains("create-_-h1"), "{text}");
    }
}
