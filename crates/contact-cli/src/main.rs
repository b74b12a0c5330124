//! `contact-cli`: the command-line front end of contact (server, peer and demo arrive with
//! issue 4).

fn main() {
    eprintln!("contact-cli: the server, peer and demo commands are not built yet");
    std::process::exit(2);
}
