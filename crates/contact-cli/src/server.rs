//! `contact-cli server`: a [`contact_peer::Server`] configured from the command line.

use std::fs::File;
use std::io::BufReader;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;

use contact_peer::{Server, ServerConfig};
use contact_registry::Registry;

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
    /// Start from a file written by `save`.
    #[arg(long, value_name = "FILE")]
    load: Option<PathBuf>,
}

pub(crate) fn run(args: Args) -> ExitCode {
    let config = ServerConfig {
        data_dir: args.data_dir,
        ..ServerConfig::default()
    };
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
            eprintln!("error: cannot listen on {addr}: {e}");
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
