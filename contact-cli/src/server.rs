//! `contact-cli server`: a [`contact_peer::Server`] configured from the command line.

use std::fs::File;
use std::io::BufReader;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use contact_peer::{Server, ServerConfig};
use contact_registry::{Limits, Registry};

/// Options of `contact-cli server`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The address to listen on; an IPv6 address serves IPv6.
    #[arg(long, default_value_t = IpAddr::V4(Ipv4Addr::UNSPECIFIED))]
    bind: IpAddr,
    /// The UDP port to listen on.
    #[arg(long, default_value_t = 22000)]
    port: u16,
    /// The directory `save FILE` writes into; paths that leave it are refused (471).
    #[arg(long, default_value = ".")]
    data_dir: PathBuf,
    /// Start from a file written by `save` (or by the reference server).
    #[arg(long, value_name = "FILE")]
    load: Option<PathBuf>,
    /// Keep the registry in this journal file: every mutation the server answered with
    /// success survives a crash (`kill -9`) and a restart with the same file.
    #[arg(long, value_name = "FILE")]
    state: Option<PathBuf>,
    /// Accept join, leave, exit, im-start and im-complete for a contact only from that
    /// contact's registered address (472 otherwise).
    #[arg(long)]
    auth: bool,
    /// Complete an instant message left open this many seconds (0: never, as the reference).
    #[arg(long, value_name = "SECS", default_value_t = 600)]
    im_timeout: u64,
    /// Error answers per second per source IP; bad requests beyond are dropped (0: no limit).
    #[arg(long, value_name = "N", default_value_t = 100)]
    error_rate: u32,
    /// The most contacts registered at once (456 beyond).
    #[arg(long, value_name = "N", default_value_t = Limits::DEFAULT.max_contacts)]
    max_contacts: usize,
    /// The most lists (458 beyond).
    #[arg(long, value_name = "N", default_value_t = Limits::DEFAULT.max_lists)]
    max_lists: usize,
    /// The most members of one list (469 beyond; default: --max-contacts).
    #[arg(long, value_name = "N")]
    max_members: Option<usize>,
    /// The longest name, in bytes (467 beyond; at most 255).
    #[arg(long, value_name = "BYTES", default_value_t = Limits::DEFAULT.max_name_len)]
    max_name_len: usize,
    /// Run as one node of a replicated cluster: every member's id and cluster (raft)
    /// address, e.g. `1=10.0.0.1:23000,2=10.0.0.2:23000,3=10.0.0.3:23000`. The cluster starts
    /// itself when the nodes meet. The raft log is the journal: not with --state or --load.
    /// Every node must be given the same registry options (limits, --auth, --im-timeout).
    #[arg(long, value_name = "ID=IP:PORT,...", requires = "node_id", conflicts_with_all = ["state", "load"])]
    cluster: Option<String>,
    /// This node's id in --cluster. Its raft state is kept in DIR/raft (--data-dir); a node
    /// restarted with the same directory rejoins.
    #[arg(long, value_name = "ID", requires = "cluster")]
    node_id: Option<u64>,
    /// With --cluster: answer query-lists from this node's copy without asking the leader
    /// (faster, may miss the latest mutations). Default: linearizable (ReadIndex).
    #[arg(long, requires = "cluster")]
    stale_reads: bool,
}

pub(crate) fn run(args: Args) -> ExitCode {
    let limits = Limits {
        max_contacts: args.max_contacts,
        max_lists: args.max_lists,
        max_members: args.max_members.unwrap_or(args.max_contacts),
        max_name_len: args.max_name_len,
        ..Limits::DEFAULT
    };
    let config = ServerConfig {
        data_dir: args.data_dir,
        limits,
        auth: args.auth,
        im_timeout: (args.im_timeout > 0).then(|| Duration::from_secs(args.im_timeout)),
        error_rate: args.error_rate,
        state: args.state,
        ..ServerConfig::default()
    };
    if let (Some(members), Some(id)) = (&args.cluster, args.node_id) {
        return run_cluster(
            members,
            id,
            args.stale_reads,
            SocketAddr::new(args.bind, args.port),
            config,
        );
    }
    let registry = match &args.load {
        None => Registry::new(config.limits),
        Some(path) => {
            let loaded = File::open(path).map_err(|e| e.to_string()).and_then(|f| {
                Registry::load_with(BufReader::new(f), config.limits).map_err(|e| e.to_string())
            });
            match loaded {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("error: cannot load {}: {e}", path.display());
                    return ExitCode::from(1);
                }
            }
        }
    };
    let addr = SocketAddr::new(args.bind, args.port);
    let server = match Server::bind_with_registry(addr, config, registry) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: cannot start on {addr}: {e}");
            return ExitCode::from(1);
        }
    };
    println!("contact server listening on {}", server.local_addr());
    match server.run() {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

/// `server --cluster`: one node of a replicated registry (`contact_cluster`).
fn run_cluster(
    members: &str,
    id: u64,
    stale_reads: bool,
    udp: SocketAddr,
    server: ServerConfig,
) -> ExitCode {
    let members = match contact_cluster::parse_members(members) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("error: --cluster: {e}");
            return ExitCode::from(2);
        }
    };
    let mut config = contact_cluster::ClusterConfig::new(id, members, server);
    config.raft_dir = Some(config.server.data_dir.join("raft"));
    config.stale_reads = stale_reads;
    let result = contact_cluster::run(config, udp, |local| {
        println!("contact cluster node {id} listening on {local}");
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: node {id}: {e}");
            ExitCode::from(1)
        }
    }
}
