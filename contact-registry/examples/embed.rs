//! A program that owns a registry: applies commands, reads the state, saves it to a file and
//! loads it back. No sockets: the registry is a plain value, so this is all an embedder needs
//! to run the contact rules inside its own service (or a test).
//!
//! `cargo run -p contact-registry --example embed` (CI runs it; it exits 0 when every
//! assertion holds).

use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::net::{IpAddr, Ipv4Addr};

use contact_proto::{Body, Command, ContactName, ListName, Status, parse_line};
use contact_registry::{Limits, Registry, Reply};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Limits: start from the reference's and change what differs (`Limits` is
    // non-exhaustive, so there is no struct literal outside its crate: chain setters).
    let limits = Limits::default().max_contacts(10_000);
    let mut registry = Registry::new(limits);

    // Commands as a user types them, parsed by the protocol crate...
    for line in [
        "register Me 10.0.0.1 22000",
        "register Myself 10.0.0.2 22000",
        r#"create "book club""#,
        r#"join "book club" Me"#,
        r#"join "book club" Myself"#,
    ] {
        let command = parse_line(line)?.ok_or("a blank line")?.command;
        let status = registry.apply(command).status();
        assert_eq!(status, Some(Status::Ok), "{line}");
    }

    // ...or built as values. A failure is an answer with a status, not an error.
    let me = ContactName::try_from("Me")?;
    let again = Command::Register {
        name: me.clone(),
        ip: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 9)),
        port: 22000,
    };
    assert_eq!(registry.apply(again).status(), Some(Status::NameTaken));

    // The typed methods skip the `Command` round trip.
    let club = ListName::try_from("book club")?;
    let ring = registry
        .im_start(&club, &me)
        .map_err(|s| format!("{s:?}"))?;
    let names: Vec<&str> = ring.contact_list.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["Me", "Myself"], "the initiator first");
    // While a message is going round, nobody leaves the list.
    let leave = Command::Leave {
        list: club.clone(),
        name: me.clone(),
    };
    assert_eq!(registry.apply(leave).status(), Some(Status::ImOngoing));
    assert_eq!(registry.im_complete(&club, &me), Status::Ok);

    // Read access.
    let members: Vec<&str> = registry
        .members(&club)
        .ok_or("no such list")?
        .map(|c| c.name().as_str())
        .collect();
    assert_eq!(members, ["Me", "Myself"]);
    let Reply::Answer(lists) = registry.apply(Command::QueryLists) else {
        unreachable!("query-lists is answered")
    };
    let Some(Body::Lists(lists)) = lists.body else {
        unreachable!("query-lists has a body")
    };
    assert_eq!(lists.list_names, ["book club"]);

    // `save` hands the path back: the registry renders, the embedder decides where the bytes
    // go (our server confines it to its data directory).
    let dir = std::env::temp_dir().join(format!("contact-embed-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let save = parse_line("save registry.txt")?
        .ok_or("a blank line")?
        .command;
    let Reply::Save(file) = registry.apply(save) else {
        unreachable!("save is handed back")
    };
    let path = dir.join(file.as_str());
    let mut out = BufWriter::new(File::create(&path)?);
    registry.save(&mut out)?;
    out.flush()?;
    drop(out);

    let loaded = Registry::load_with(BufReader::new(File::open(&path)?), limits)?;
    assert_eq!(loaded, registry);
    print!("{}", std::fs::read_to_string(&path)?);
    std::fs::remove_dir_all(&dir)?;
    println!("embed: every assertion held");
    Ok(())
}
