//! `help`, `help COMMAND`, and "did you mean" for a mistyped command.

/// A command the peer understands: the server's ten and the peer's own.
struct Entry {
    name: &'static str,
    syntax: &'static str,
    summary: &'static str,
    detail: &'static str,
}

const ENTRIES: &[Entry] = &[
    Entry {
        name: "register",
        syntax: "register NAME IP PORT",
        summary: "add a contact reachable at IP, PORT (messages go to PORT+1)",
        detail: "Register the port this peer printed at start (P) to receive messages here.\n\
                 IP may be a host name such as localhost; the peer sends its address.\n\
                 Fails with 455 (name taken), 456 (too many contacts), 467 (bad name or \
                 address).",
    },
    Entry {
        name: "create",
        syntax: "create LIST",
        summary: "create an empty contact list",
        detail: "Quote a name with spaces: create \"book club\".\n\
                 Fails with 457 (the list exists), 458 (too many lists).",
    },
    Entry {
        name: "query-lists",
        syntax: "query-lists",
        summary: "show every list",
        detail: "Shows the lists in creation order.",
    },
    Entry {
        name: "join",
        syntax: "join LIST NAME",
        summary: "add contact NAME to LIST",
        detail: "Fails with 459 (no such contact), 460 (no such list), 461 (already a \
                 member),\n463 (a message is ongoing in LIST: its sender must send \
                 im-complete first).",
    },
    Entry {
        name: "leave",
        syntax: "leave LIST NAME",
        summary: "remove contact NAME from LIST",
        detail: "Fails with 459, 460, 464 (not a member), 463 (a message is ongoing in LIST).",
    },
    Entry {
        name: "im-start",
        syntax: "im-start LIST NAME [MESSAGE]",
        summary: "send a message from NAME around LIST",
        detail: "Without MESSAGE, the next line is the message (prompt `message> `; an \
                 empty line\nor Ctrl-C cancels it). When it has gone round, send \
                 `im-complete LIST NAME`:\nuntil then nobody can join or leave LIST.",
    },
    Entry {
        name: "im-complete",
        syntax: "im-complete LIST NAME",
        summary: "close one message NAME started in LIST",
        detail: "Once per im-start. Fails with 465 when NAME has no message to complete there.",
    },
    Entry {
        name: "save",
        syntax: "save FILE",
        summary: "write the server's contacts and lists to FILE (on the server)",
        detail: "FILE is inside the server's data directory.\n\
                 Fails with 462 (cannot write) or 471 (outside the data directory).",
    },
    Entry {
        name: "exit",
        syntax: "exit NAME",
        summary: "unregister NAME (the last contact registered here ends the program)",
        detail: "Removes NAME from every list and from the server. When NAME was registered \
                 from\nthis peer and it was the last such contact, the program ends.\n\
                 Fails with 459, or 463 when a message is ongoing in one of NAME's lists.",
    },
    Entry {
        name: "remove-list",
        syntax: "remove-list LIST",
        summary: "delete LIST (the server's operator only)",
        detail: "Its members leave it; a message going round in it ends with it (its \
                 im-complete then\ngets 460). Only from the server's --operator addresses: \
                 anyone else gets 472.\nFails with 460 (no such list).",
    },
    Entry {
        name: "help",
        syntax: "help [COMMAND]",
        summary: "list the commands, or explain one",
        detail: "",
    },
    Entry {
        name: "quit",
        syntax: "quit",
        summary: "leave this program (Ctrl-D too); your contacts stay registered",
        detail: "Asks first when a message of yours is still open.",
    },
];

/// Every command word, for completion.
pub(super) fn commands() -> Vec<String> {
    ENTRIES.iter().map(|e| e.name.to_owned()).collect()
}

/// The text of `help` (no topic) or `help COMMAND`.
pub(super) fn help(topic: Option<&str>) -> String {
    let Some(topic) = topic else {
        let mut text = String::from("commands (help COMMAND explains one):");
        for e in ENTRIES {
            text.push_str(&format!("\n  {:<30} {}", e.syntax, e.summary));
        }
        text.push_str(
            "\nQuote a word with spaces: \"book club\". Tab completes commands and names \
             seen;\nup and down recall earlier lines (kept across sessions).",
        );
        return text;
    };
    let lower = topic.to_ascii_lowercase();
    match ENTRIES.iter().find(|e| e.name == lower) {
        Some(e) if e.detail.is_empty() => format!("{}: {}", e.syntax, e.summary),
        Some(e) => format!("{}: {}\n{}", e.syntax, e.summary, e.detail),
        None => format!("no command {topic:?}{}", suggestion(topic)),
    }
}

/// `; did you mean `query-lists`?` for a word close to a command, or nothing.
pub(super) fn suggestion(word: &str) -> String {
    let lower = word.to_ascii_lowercase();
    let best = ENTRIES
        .iter()
        .map(|e| {
            let distance = strsim::damerau_levenshtein(&lower, e.name);
            // A prefix (`query`, `im`) is as good as one typo.
            let distance = if e.name.starts_with(&lower) && lower.len() >= 2 {
                distance.min(1)
            } else {
                distance
            };
            (distance, e.name)
        })
        .min_by_key(|(d, _)| *d);
    match best {
        Some((d, name)) if d <= 2 || d * 3 <= name.len() => {
            format!("; did you mean `{name}`?")
        }
        _ => "; `help` lists the commands".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_the_nearest_command() {
        assert_eq!(suggestion("query-list"), "; did you mean `query-lists`?");
        assert_eq!(suggestion("regster"), "; did you mean `register`?");
        assert_eq!(suggestion("Quit"), "; did you mean `quit`?");
        assert_eq!(suggestion("imstart"), "; did you mean `im-start`?");
        assert_eq!(suggestion("frobnicate"), "; `help` lists the commands");
    }

    #[test]
    fn help_explains_one_command() {
        assert!(help(Some("JOIN")).starts_with("join LIST NAME: add contact NAME to LIST\n"));
        assert!(help(None).contains("im-start LIST NAME [MESSAGE]"));
        assert_eq!(
            help(Some("lave")),
            "no command \"lave\"; did you mean `leave`?"
        );
        assert!(help(Some("remove-list")).contains("operator"));
    }

    #[test]
    fn every_protocol_command_has_help_and_completion() {
        for keyword in contact_proto::KEYWORDS {
            assert!(commands().iter().any(|c| c == keyword), "{keyword}");
            assert!(help(None).contains(keyword), "{keyword}");
        }
        assert_eq!(suggestion("remove-lst"), "; did you mean `remove-list`?");
    }
}
