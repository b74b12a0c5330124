//! `contact-cli server`: a [`contact_peer::Server`] configured from the command line, and
//! stopped cleanly by SIGTERM or SIGINT (the batch in hand is finished and synced).

use std::fs::File;
use std::io::BufReader;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use contact_peer::{Cidr, Server, ServerConfig};
use contact_registry::{Limits, Registry};

/// Options of `contact-cli server`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The address to listen on; an IPv6 address serves IPv6.
    #[arg(long, default_value_t = IpAddr::V4(Ipv4Addr::UNSPECIFIED))]
    bind: IpAddr,
    /// The UDP port to listen on (22000 when neither is given).
    #[arg(long, conflicts_with = "port_arg")]
    port: Option<u16>,
    /// The UDP port, as the reference server takes it: `contact-cli server 22000`.
    #[arg(value_name = "PORT", id = "port_arg")]
    port_arg: Option<u16>,
    /// The directory `save FILE` writes into; paths that leave it are refused (471).
    #[arg(long, default_value = ".")]
    data_dir: PathBuf,
    /// Start from a file written by `save` (or by the reference server); a relative path is
    /// taken in --data-dir, where `save` writes.
    #[arg(long, value_name = "FILE")]
    load: Option<PathBuf>,
    /// Keep the registry in this journal file: every mutation the server answered with
    /// success survives a crash (`kill -9`) and a restart with the same file. One server
    /// per file (it is locked). Should the file become unwritable, changes are refused with
    /// 474 and reads still served until it is writable again.
    #[arg(long, value_name = "FILE")]
    state: Option<PathBuf>,
    /// With --state: while the journal cannot be written, try again every MS milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 1000)]
    store_retry_ms: u64,
    /// With --state: compact the journal once it holds this many records (and four times
    /// what the state needs).
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    compact_after: u64,
    /// Accept join, leave, exit, im-start and im-complete for a contact only with its
    /// secret's request tag when our peer registered it, else only from its registered
    /// address (472 otherwise).
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
    /// Exempt this prefix (e.g. 10.0.0.0/8, 2001:db8::/32, or one address) from the answer
    /// volume limits and the per-source quotas; repeatable. None by default, loopback
    /// included.
    #[arg(long, value_name = "CIDR")]
    trust: Vec<Cidr>,
    /// The operator's prefix (e.g. 127.0.0.1, the server's own host); repeatable. Only
    /// requests from it may remove a list (`remove-list LIST`, which gives the list back to
    /// its creator's quota), with or without --auth; with --auth, they may also act for any
    /// contact (`exit NAME`, `leave LIST NAME`). None by default: then no one may remove a
    /// list.
    #[arg(long, value_name = "CIDR")]
    operator: Vec<Cidr>,
    /// The IPv4 prefix length that counts as one source for the limits below.
    #[arg(long, value_name = "BITS", default_value_t = 32)]
    source_prefix_v4: u8,
    /// The IPv6 prefix length that counts as one source for the limits below.
    #[arg(long, value_name = "BITS", default_value_t = 64)]
    source_prefix_v6: u8,
    /// Bytes of answers per second one source may get; answers beyond are dropped, so that
    /// the server cannot be used to flood a forged source (0: no limit).
    #[arg(long, value_name = "BYTES", default_value_t = 16_384)]
    answer_rate: u64,
    /// The burst of --answer-rate, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = 65_536)]
    answer_burst: u64,
    /// Bytes of answers per second to all sources together (0: no limit); its burst is as
    /// many bytes.
    #[arg(long, value_name = "BYTES", default_value_t = 1 << 20)]
    answer_total_rate: u64,
    /// The most contacts one source may hold registered (476 beyond; default: a quarter of
    /// --max-contacts).
    #[arg(long, value_name = "N")]
    max_contacts_per_source: Option<usize>,
    /// The most lists one source may have created (476 beyond; default: a quarter of
    /// --max-lists).
    #[arg(long, value_name = "N")]
    max_lists_per_source: Option<usize>,
    /// How often one source may save: a burst of 5, then one every SECS seconds (477
    /// beyond; 0: no limit).
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    save_interval: u64,
    /// The most files the data directory may hold after a save (477 beyond).
    #[arg(long, value_name = "N", default_value_t = 1000)]
    data_dir_max_files: u64,
    /// The most bytes the data directory may hold after a save (477 beyond).
    #[arg(long, value_name = "BYTES", default_value_t = 256 << 20)]
    data_dir_max_bytes: u64,
    /// Run as one node of a replicated cluster: every member's id and cluster (raft)
    /// address, e.g. `1=10.0.0.1:23000,2=10.0.0.2:23000,3=10.0.0.3:23000`. The cluster starts
    /// itself when the nodes meet. The raft log is the journal: not with --state or --load.
    /// Every node must be given the same registry options (limits, --auth, --im-timeout,
    /// the per-source quotas, --trust, the source prefixes).
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
    let limits = Limits::DEFAULT
        .max_contacts(args.max_contacts)
        .max_lists(args.max_lists)
        .max_members(args.max_members.unwrap_or(args.max_contacts))
        .max_name_len(args.max_name_len);
    let config = ServerConfig::default()
        .data_dir(args.data_dir)
        .limits(limits)
        .auth(args.auth)
        .im_timeout((args.im_timeout > 0).then(|| Duration::from_secs(args.im_timeout)))
        .error_rate(args.error_rate)
        .state(args.state)
        .store_retry(Duration::from_millis(args.store_retry_ms.max(1)))
        .compact_after(args.compact_after)
        .trust(args.trust)
        .operator(args.operator)
        .source_prefix_v4(args.source_prefix_v4.min(32))
        .source_prefix_v6(args.source_prefix_v6.min(128))
        .answer_rate(args.answer_rate)
        .answer_burst(args.answer_burst)
        .answer_total_rate(args.answer_total_rate)
        .answer_total_burst(args.answer_total_rate.max(args.answer_burst))
        .max_contacts_per_source(args.max_contacts_per_source)
        .max_lists_per_source(args.max_lists_per_source)
        .save_interval(Duration::from_secs(args.save_interval))
        .data_dir_max_files(args.data_dir_max_files)
        .data_dir_max_bytes(args.data_dir_max_bytes);
    if let (Some(members), Some(id)) = (&args.cluster, args.node_id) {
        return run_cluster(
            members,
            id,
            args.stale_reads,
            SocketAddr::new(args.bind, args.port.or(args.port_arg).unwrap_or(22000)),
            config,
        );
    }
    let registry = match &args.load {
        None => Registry::new(config.limits),
        Some(path) => {
            // Where `save FILE` wrote it.
            let path = config.data_dir.join(path);
            let started = Instant::now();
            let loaded = File::open(&path).map_err(|e| e.to_string()).and_then(|f| {
                Registry::load_with(BufReader::new(f), config.limits).map_err(|e| e.to_string())
            });
            match loaded {
                Ok(r) => {
                    tracing::info!(
                        path = %path.display(),
                        contacts = r.num_contacts(),
                        lists = r.num_lists(),
                        ms = started.elapsed().as_millis() as u64,
                        "registry loaded"
                    );
                    r
                }
                Err(e) => {
                    eprintln!("error: cannot load {}: {e}", path.display());
                    return ExitCode::from(1);
                }
            }
        }
    };
    let port = args.port.or(args.port_arg).unwrap_or(22000);
    let addr = SocketAddr::new(args.bind, port);
    let server = match Server::bind_with_registry(addr, config, registry) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: cannot start on {addr}: {e}");
            return ExitCode::from(1);
        }
    };
    println!("contact server listening on {}", server.local_addr());
    #[cfg(unix)]
    if let Err(e) = stop_on_signals(server.shutdown_handle()) {
        tracing::warn!(error = %e, "cannot handle SIGTERM and SIGINT: they will kill the server at once");
    }
    match server.run() {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

/// SIGTERM and SIGINT stop the server as its shutdown handle does: it finishes the batch in
/// hand (synced and answered), logs a line and returns, and the process exits 0.
#[cfg(unix)]
fn stop_on_signals(shutdown: contact_peer::ShutdownHandle) -> std::io::Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT])?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            if let Some(signal) = signals.forever().next() {
                tracing::info!(signal, "stopping on signal");
                shutdown.shutdown();
            }
        })?;
    Ok(())
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
