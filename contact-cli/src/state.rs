//! `contact-cli state`: the operator's tools for a server's journal (`server --state FILE`):
//! `check` reads and verifies it and prints what it holds, `repair` keeps its longest valid
//! prefix. The work is `contact_peer::store`'s ([`verify`], [`repair`]); this is
//! the glue.

use std::path::PathBuf;
use std::process::ExitCode;

use contact_peer::store::{self, Verified, repair, verify};
use contact_registry::Limits;

/// Options of `contact-cli state`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(subcommand)]
    command: StateCmd,
}

#[derive(Debug, clap::Subcommand)]
enum StateCmd {
    /// Read and verify a journal, and print what it holds (records, contacts, lists, open
    /// instant messages, the last sequence number). Exit 1 if a record before the last is
    /// damaged, missing or out of order.
    Check {
        /// The journal (`server --state FILE`).
        file: PathBuf,
    },
    /// Keep the longest valid prefix of a journal: written atomically to FILE.repaired beside
    /// it, or over FILE with --in-place (refused while a server holds the file).
    Repair {
        /// The journal (`server --state FILE`).
        file: PathBuf,
        /// Replace FILE itself.
        #[arg(long)]
        in_place: bool,
    },
}

/// Limits wide enough for any journal: a tool reads what a server with any limits wrote.
fn limits() -> Limits {
    Limits::UNLIMITED.max_name_len(contact_proto::MAX_NAME_LEN)
}

pub(crate) fn run(args: Args) -> ExitCode {
    match args.command {
        StateCmd::Check { file } => match verify(&file, limits()) {
            Ok(v) => {
                print_summary(&v);
                match &v.problem {
                    None => {
                        println!("{}: ok", file.display());
                        ExitCode::SUCCESS
                    }
                    Some((line, reason)) => {
                        println!(
                            "{}: line {line}: {reason}\n`contact-cli state repair {}` keeps the {} valid record(s) before it",
                            file.display(),
                            file.display(),
                            v.restored.records
                        );
                        ExitCode::from(1)
                    }
                }
            }
            Err(e) => fail(&e),
        },
        StateCmd::Repair { file, in_place } => {
            match verify(&file, limits()) {
                Ok(v) if v.problem.is_none() && v.restored.torn_bytes == 0 => {
                    print_summary(&v);
                    println!("{}: nothing to repair", file.display());
                    return ExitCode::SUCCESS;
                }
                Ok(_) => {}
                Err(e) => return fail(&e),
            }
            match repair(&file, limits(), in_place) {
                Ok(r) => {
                    print_summary(&r.verified);
                    if let Some((line, reason)) = &r.verified.problem {
                        println!("dropped from line {line}: {reason}");
                    }
                    println!(
                        "kept {} records ({} bytes), dropped {} bytes: written to {}",
                        r.verified.restored.records,
                        r.verified.restored.valid_len,
                        r.dropped_bytes,
                        r.written.display()
                    );
                    if !in_place {
                        println!(
                            "the original is unchanged: move {} over it (server stopped), or run again with --in-place",
                            r.written.display()
                        );
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => fail(&e),
            }
        }
    }
}

fn print_summary(v: &Verified) {
    let r = &v.restored;
    println!("records       {} (last sequence {})", r.records, r.last_seq);
    println!("contacts      {}", r.registry.num_contacts());
    println!("lists         {}", r.registry.num_lists());
    println!("open IMs      {}", r.open_ims());
    println!("answers kept  {}", r.answers.len());
    println!("bytes         {} valid of {}", r.valid_len, v.file_len);
    if r.torn_bytes > 0 {
        println!(
            "torn tail     {} bytes (an unacknowledged write: a server cuts it off)",
            r.torn_bytes
        );
    }
    let free = v.file_len.saturating_sub(r.valid_len + r.torn_bytes);
    if free > 0 && v.problem.is_none() {
        println!("free space    {free} bytes (NULs the next records are written into)");
    }
}

fn fail(e: &store::StoreError) -> ExitCode {
    eprintln!("error: {e}");
    ExitCode::from(1)
}
