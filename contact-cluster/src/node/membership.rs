//! Membership: where the members listen, and `cluster add-node` / `remove-node`.

use super::*;

impl Inner {
    /// Tells the transport where every member listens, as the membership says: a node
    /// added with `cluster add-node` is in no one's `--cluster`.
    pub(super) fn learn_addresses(&self) {
        let nodes: Vec<(NodeId, SocketAddr)> = {
            let metrics = self.raft.metrics();
            let m = metrics.borrow_watched();
            m.membership_config
                .membership()
                .nodes()
                .filter_map(|(id, n)| Some((*id, n.addr.parse().ok()?)))
                .collect()
        };
        for (id, addr) in nodes {
            self.transport.learn(id, addr);
        }
    }

    /// The members, id and cluster address.
    pub(super) fn members(&self) -> BTreeMap<NodeId, String> {
        self.status().members.into_iter().collect()
    }

    /// `cluster add-node`, `remove-node`: done by the leader (a follower passes it on).
    /// Adding waits until the new node has caught up as a learner, then makes it a voter;
    /// both steps are openraft's (`add_learner`, `change_membership`, joint consensus).
    pub(super) async fn change_membership(
        &self,
        change: MembershipChange,
    ) -> Result<BTreeMap<NodeId, String>, String> {
        match self.leader() {
            Some(l) if l == self.id => {}
            Some(l) => {
                return match self
                    .transport
                    .call(self.id, l, Rpc::Membership(change), MEMBERSHIP_TIMEOUT)
                    .await
                {
                    Ok(Reply::Membership(r)) => r,
                    Ok(other) => Err(format!("the leader (node {l}) answered {other:?}")),
                    Err(e) => Err(format!("the leader (node {l}): {e}")),
                };
            }
            None => return Err("no leader now; try again".into()),
        }
        let voters: BTreeSet<NodeId> = {
            let metrics = self.raft.metrics();
            let m = metrics.borrow_watched();
            m.membership_config.membership().voter_ids().collect()
        };
        let known = self.members();
        let work = async {
            match change {
                MembershipChange::Add { id, addr } => {
                    if voters.contains(&id) {
                        return Err(format!("node {id} is a member already"));
                    }
                    if let Some((other, _)) = known
                        .iter()
                        .find(|(other, a)| **other != id && a.parse() == Ok(addr))
                    {
                        return Err(format!("{addr} is node {other}'s address"));
                    }
                    self.transport.learn(id, addr);
                    let node = BasicNode {
                        addr: addr.to_string(),
                    };
                    self.raft
                        .add_learner(id, node, true)
                        .await
                        .map_err(|e| format!("adding node {id} as a learner: {e}"))?;
                    self.raft
                        .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false)
                        .await
                        .map_err(|e| format!("making node {id} a voter: {e}"))?;
                }
                MembershipChange::Remove { id } => {
                    if !voters.contains(&id) {
                        return Err(format!("node {id} is not a member"));
                    }
                    if voters.len() == 1 {
                        return Err(format!("node {id} is the only member"));
                    }
                    self.raft
                        .change_membership(ChangeMembers::RemoveVoters(BTreeSet::from([id])), false)
                        .await
                        .map_err(|e| format!("removing node {id}: {e}"))?;
                }
            }
            Ok(())
        };
        match tokio::time::timeout(MEMBERSHIP_TIMEOUT, work).await {
            Ok(Ok(())) => Ok(self.members()),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(format!(
                "not done within {MEMBERSHIP_TIMEOUT:?} (is the new node running and reachable?); \
                 `cluster status` tells what was"
            )),
        }
    }
}
