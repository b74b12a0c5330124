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

    /// The address cookie `node` gives `from` (issue 10): asked with a tagged `query-lists`.
    async fn cookie(&self, node: u64, from: SocketAddr) -> String {
        let answer = self.ask(node, from, "#4000000000~-_-query-lists").await;
        let cookie = answer
            .strip_prefix("#4000000000~")
            .and_then(|rest| rest.split("-_-").next())
            .unwrap_or_else(|| panic!("no cookie in {answer}"));
        assert_eq!(cookie.len(), 16, "{answer}");
        cookie.to_owned()
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
    // A tagged register proven by node 1's cookie gets the secret the leader drew (issue
    // 10), the same on every replica: the retransmission to another node is answered from
    // the replicated cache, with that node's own cookie added to the tag (node 1's is no
    // proof there).
    let cookie = c.cookie(1, a).await;
    let register = format!("#1~{cookie}-_-register-_-A-_-127.0.0.9-_-30001");
    let registered = c.ask(1, a, &register).await;
    assert!(
        registered.starts_with("#1-_-200-_-{\"secret\": \""),
        "{registered}"
    );
    let again = c.ask(3, a, &register).await;
    let (tag, rest) = again.split_once("-_-").unwrap();
    assert!(tag.starts_with("#1~") && tag.len() == 3 + 16, "{again}");
    assert_eq!(format!("#1-_-{rest}"), registered);
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
    let cookie = c.cookie(leader, a).await;
    let registered = c
        .ask(
            leader,
            a,
            &format!("#1~{cookie}-_-register-_-A-_-127.0.0.9-_-30001"),
        )
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
/// A source in TEST-NET-2, for the abuse tests: not the loaders' 127.0.0.9.
fn forged(host: u8, port: u16) -> SocketAddr {
    SocketAddr::from(([198, 51, 100, host], port))
}

/// Issue 10 in the cluster: a tagged `register` without a valid cookie (none, or another
/// node's) is given the receiving node's cookie and no secret, on every replica; with it,
/// the leader draws a secret, whichever node received it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_cookie_proven_register_gets_a_secret() {
    let c = Cluster::start(3).await;
    let leader = c.leader(Duration::from_secs(5)).await;
    let follower = (1..=3).find(|&n| n != leader).unwrap();
    let a = forged(1, 5000);
    let asked = c
        .ask(follower, a, "#1~-_-register-_-A-_-198.51.100.1-_-5000")
        .await;
    let (tag, rest) = asked.split_once("-_-").unwrap();
    assert_eq!(rest, "200-_-null", "registered, no secret: {asked}");
    let cookie = tag
        .strip_prefix("#1~")
        .expect("a cookie in the tag")
        .to_owned();
    // That cookie proves the address at the node that gave it: a secret, through the leader.
    let proven = c
        .ask(
            follower,
            a,
            &format!("#2~{cookie}-_-register-_-B-_-198.51.100.1-_-5000"),
        )
        .await;
    assert!(proven.starts_with("#2-_-200-_-{\"secret\": \""), "{proven}");
    // Each node has its own key: at another node it is no proof, and a new cookie is given.
    let other = (1..=3).find(|&n| n != follower).unwrap();
    let elsewhere = c
        .ask(
            other,
            a,
            &format!("#3~{cookie}-_-register-_-C-_-198.51.100.1-_-5000"),
        )
        .await;
    let (tag, rest) = elsewhere.split_once("-_-").unwrap();
    assert_eq!(rest, "200-_-null", "{elsewhere}");
    assert!(
        tag.starts_with("#3~") && !tag.ends_with(&cookie),
        "{elsewhere}"
    );
    // An untagged register (a reference peer's) never gets a cookie or a secret.
    assert_eq!(
        c.ask(
            leader,
            forged(2, 5000),
            "register-_-D-_-198.51.100.2-_-5000"
        )
        .await,
        "200-_-null"
    );
    c.assert_identical().await;
    for node in c.nodes.values() {
        node.machine().with_core(|core| {
            let secret = |n: &str| core.registry().contact(n).unwrap().secret().is_some();
            assert_eq!(
                (secret("A"), secret("B"), secret("C"), secret("D")),
                (false, true, false, false)
            );
        });
    }
}

/// Issue 10, "11-byte query-lists forged from a victim", at each node of a cluster: after
/// 150 long list names exist, 3,000 forged requests (reads, mutations, garbage) from the
/// victim's address to each node bring the victim at most 3 times their bytes per node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_requests_bring_a_victim_at_most_3x_per_node() {
    let c = Cluster::start_with(3, |config| {
        config.server = config
            .server
            .clone()
            .answer_rate(1024)
            .answer_burst(16_384)
            .trust(vec!["127.0.0.9".parse().unwrap()]);
    })
    .await;
    let loader = peer(30001);
    for i in 0..150 {
        let answer = c
            .ask(1, loader, &format!("create-_-{i:03}{}", "x".repeat(57)))
            .await;
        assert_eq!(answer, "200-_-null");
    }
    let full = c.ask(2, loader, "query-lists").await;
    assert!(full.len() > 9000, "{} bytes", full.len());
    let victim = forged(9, 22001);
    // Bounded: 1,000 of each kind per node, 50 at a time.
    let requests = ["query-lists", "#7-_-create-_-000", "#8-_-frob"];
    for id in 1..=3u64 {
        let node = c.nodes[&id].clone();
        let started = Instant::now();
        let (mut sent, mut delivered, mut answers) = (0, 0, 0);
        for round in 0..60 {
            let batch: Vec<_> = (0..50)
                .map(|k| {
                    let request = requests[(round * 50 + k) % 3];
                    sent += request.len();
                    let node = node.clone();
                    tokio::spawn(
                        async move { node.handle_datagram(victim, request.as_bytes()).await },
                    )
                })
                .collect();
            for answer in futures_util::future::join_all(batch).await {
                if let Some(answer) = answer.unwrap() {
                    delivered += answer.len();
                    answers += 1;
                }
            }
        }
        let secs = started.elapsed().as_secs_f64();
        println!(
            "node {id}: {sent} bytes forged, {delivered} bytes in {answers} answers to the victim ({:.2}x) in {secs:.1} s",
            delivered as f64 / sent as f64
        );
        assert!(answers > 0, "the burst is served");
        assert!(delivered <= 3 * sent, "{delivered} > 3 x {sent}");
        assert!(
            delivered as f64 <= 16_384.0 + 1024.0 * secs + 10_000.0,
            "{delivered} bytes in {secs} s"
        );
    }
    // The trusted loader is not limited.
    for _ in 0..10 {
        assert!(c.ask(3, loader, "query-lists").await.len() > 9000);
    }
}

/// Issue 10, "one source registers 99 contacts": quotas are replicated state, refused with
/// 476 by whichever node the request reaches, and the same after a leader change and on a
/// replica restored from a snapshot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quota_refusals_survive_a_leader_change_and_a_snapshot() {
    let mut c = Cluster::start_with(3, |config| {
        config.server = config
            .server
            .clone()
            .max_contacts_per_source(Some(3))
            .max_lists_per_source(Some(2));
        config.snapshot_every = 5;
        config.keep_after_snapshot = 1;
    })
    .await;
    let a = |port| forged(20, port);
    for (i, node) in (1..=3).enumerate() {
        let port = 6000 + i as u16;
        let answer = c
            .ask(
                node,
                a(port),
                &format!("register-_-R{i}-_-198.51.100.20-_-{port}"),
            )
            .await;
        assert_eq!(answer, "200-_-null");
    }
    for (i, node) in (1..=2).enumerate() {
        assert_eq!(
            c.ask(node, a(1), &format!("create-_-q{i}")).await,
            "200-_-null"
        );
    }
    let refused =
        |answer: &str| answer.starts_with("476-_-") && answer.contains("as many as one source may");
    let over = c
        .ask(3, a(7000), "register-_-R9-_-198.51.100.20-_-7000")
        .await;
    assert!(refused(&over), "{over}");
    assert!(refused(&c.ask(1, a(1), "create-_-q9").await));
    // Another source is not held back by it.
    assert_eq!(
        c.ask(2, forged(21, 1), "create-_-other").await,
        "200-_-null"
    );
    let leader = c.leader(Duration::from_secs(5)).await;
    c.kill(leader).await;
    let new_leader = c.leader(Duration::from_secs(10)).await;
    assert_ne!(new_leader, leader);
    for &node in c.nodes.keys() {
        let over = c
            .ask(node, a(7001), "register-_-R8-_-198.51.100.20-_-7001")
            .await;
        assert!(refused(&over), "node {node}: {over}");
        assert!(refused(&c.ask(node, a(1), "create-_-q8").await));
    }
    // An exit gives the source its share back, on every replica alike.
    assert_eq!(c.ask(new_leader, a(6000), "exit-_-R0").await, "200-_-null");
    assert_eq!(
        c.ask(new_leader, a(7002), "register-_-R7-_-198.51.100.20-_-7002")
            .await,
        "200-_-null"
    );
    c.assert_identical().await;
    // A replica rebuilt from a survivor's snapshot refuses the same.
    let config = config(1, 3)
        .server
        .max_contacts_per_source(Some(3))
        .max_lists_per_source(Some(2));
    let text = c.nodes[&new_leader].machine().snapshot_text();
    let mut restored = contact_peer::replicated::ReplicatedCore::restore(&text, &config).unwrap();
    assert_eq!(restored.snapshot(), text);
    let at = restored.now_ms() + 1;
    let over = restored.apply(at, a(7003), b"register-_-R6-_-198.51.100.20-_-7003");
    assert!(refused(std::str::from_utf8(&over).unwrap()), "{over:?}");
    assert!(refused(
        std::str::from_utf8(&restored.apply(at, a(1), b"create-_-q7")).unwrap()
    ));
}
