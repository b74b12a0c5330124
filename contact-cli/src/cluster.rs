//! `contact-cli cluster status`: each node's view of a replicated cluster; `cluster
//! add-node`, `remove-node`: change its voters.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

/// `cluster` subcommands.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum Cmd {
    /// The leader, the members and each node's last applied index.
    Status {
        /// A node's cluster (raft) address, as in --cluster.
        #[arg(long, value_name = "IP:PORT")]
        node: SocketAddr,
        /// Print JSON: one object per node, `{"id", "status"}` or `{"id", "error"}`.
        #[arg(long)]
        json: bool,
    },
    /// Add a node (already started with `server --node-id ID --cluster ...`): it catches
    /// up from the leader as a learner, then becomes a voter. Waits until it has.
    AddNode {
        /// The new node: an id the cluster has never had, and its cluster (raft) address.
        #[arg(value_name = "ID=IP:PORT", value_parser = parse_new_node)]
        new: (contact_cluster::NodeId, SocketAddr),
        /// Any member's cluster address.
        #[arg(long, value_name = "IP:PORT")]
        node: SocketAddr,
    },
    /// Remove a voter (a dead one, or one to retire); stop its process afterwards.
    RemoveNode {
        /// Its id.
        #[arg(value_name = "ID")]
        id: contact_cluster::NodeId,
        /// Any member's cluster address.
        #[arg(long, value_name = "IP:PORT")]
        node: SocketAddr,
    },
}

fn parse_new_node(text: &str) -> Result<(contact_cluster::NodeId, SocketAddr), String> {
    let members = contact_cluster::parse_members(text)?;
    match <[_; 1]>::try_from(members.into_iter().collect::<Vec<_>>()) {
        Ok([one]) => Ok(one),
        Err(_) => Err("one ID=IP:PORT".into()),
    }
}

pub(crate) fn run(cmd: Cmd) -> ExitCode {
    let (node, change) = match cmd {
        Cmd::Status { node, json } => return status(node, json),
        Cmd::AddNode {
            new: (id, addr),
            node,
        } => (node, contact_cluster::MembershipChange::Add { id, addr }),
        Cmd::RemoveNode { id, node } => (node, contact_cluster::MembershipChange::Remove { id }),
    };
    match contact_cluster::change_membership(node, change) {
        Ok(members) => {
            let list: Vec<String> = members.iter().map(|(id, a)| format!("{id}={a}")).collect();
            println!("members: {}", list.join(","));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

fn status(node: SocketAddr, json: bool) -> ExitCode {
    let statuses = match contact_cluster::query_status(node, Duration::from_secs(2)) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    if json {
        let items: Vec<_> = statuses
            .iter()
            .map(|(id, s)| match s {
                Ok(s) => serde_json::json!({ "id": id, "status": s }),
                Err(e) => serde_json::json!({ "id": id, "error": e }),
            })
            .collect();
        println!("{}", serde_json::Value::Array(items));
        return ExitCode::SUCCESS;
    }
    let leader = statuses.iter().find_map(|(_, s)| s.as_ref().ok()?.leader);
    match leader {
        Some(l) => println!("leader: node {l}"),
        None => println!("leader: none known"),
    }
    println!(
        "{:>4}  {:<22} {:<10} {:>6} {:>10} {:>12}",
        "node", "address", "state", "term", "last log", "last applied"
    );
    let first = statuses.iter().find_map(|(_, s)| s.as_ref().ok());
    for (id, s) in &statuses {
        let addr = first
            .and_then(|f| f.members.iter().find(|(m, _)| m == id))
            .map_or("?", |(_, a)| a.as_str());
        match s {
            Ok(s) => println!(
                "{:>4}  {:<22} {:<10} {:>6} {:>10} {:>12}",
                id,
                addr,
                s.state,
                s.term,
                s.last_log_index.map_or("-".into(), |i| i.to_string()),
                s.last_applied.map_or("-".into(), |i| i.to_string())
            ),
            Err(e) => println!("{id:>4}  {addr:<22} unreachable: {e}"),
        }
    }
    ExitCode::SUCCESS
}
