//! Waiting for the server's answer while the session goes on.

use std::net::SocketAddr;
use std::time::Duration;

use contact_peer::{ClientError, Peer, PendingRequest, RequestUpdate};
use contact_proto::{Answer, Command};
use crossbeam_channel::Receiver;

/// One request out. The peer's client reports each resend on the request's updates, so the
/// session can say how long it has waited, with the real number of sends, while it prints
/// messages meanwhile.
pub(super) struct Waiting {
    pending: PendingRequest,
}

/// What became of a request while it was waited on.
pub(super) enum Progress {
    /// Sent again: a line to show.
    Resent(String),
    /// The answer, or why there is none.
    Done(Result<Answer, ClientError>),
}

impl Waiting {
    pub(super) fn start(peer: &Peer, command: Command) -> Self {
        Self {
            pending: peer.send_request(command),
        }
    }

    /// The request's updates, to wait on beside the session's other channels.
    pub(super) fn updates(&self) -> &Receiver<RequestUpdate> {
        self.pending.updates()
    }

    /// What an update (or the channel's end) means for the person waiting.
    pub(super) fn progress(
        update: Result<RequestUpdate, crossbeam_channel::RecvError>,
        server: SocketAddr,
        what: &str,
    ) -> Option<Progress> {
        match update {
            Ok(RequestUpdate::Resent {
                sends,
                waited,
                window,
            }) => Some(Progress::Resent(report(
                server, what, sends, waited, window,
            ))),
            Ok(RequestUpdate::Done(result)) => Some(Progress::Done(result)),
            Ok(_) => None,
            Err(_) => Some(Progress::Done(Err(ClientError::Shutdown))),
        }
    }
}

/// How long a request waits before the person is told that it is still waiting, when the
/// client does not resend it (a resend would tell): a little after the client's first
/// timeout.
pub(super) const QUIET: Duration = Duration::from_millis(600);

/// "No answer yet" for a request sent once and waited for.
pub(super) fn quiet(server: SocketAddr, what: &str, waited: Duration) -> String {
    format!(
        "no answer yet from the server at {server} to `{what}` ({:.1} s); sent once (a \
         change is not sent twice to this kind of server), still waiting",
        waited.as_secs_f64()
    )
}

/// "No answer yet", the first time with what the peer will do about it.
fn report(
    server: SocketAddr,
    what: &str,
    sends: u32,
    waited: Duration,
    window: Duration,
) -> String {
    let waited = waited.as_secs_f64();
    if sends <= 2 {
        format!(
            "no answer yet from the server at {server} to `{what}` ({waited:.1} s); still \
             trying, for {:.0} s in all",
            window.as_secs_f64()
        )
    } else {
        format!("still no answer to `{what}` ({waited:.1} s, {sends} sends so far)")
    }
}

/// What to say when the server did not answer.
pub(super) fn silent(e: &ClientError) -> String {
    match e {
        ClientError::Timeout { .. } => {
            format!("{e}: is it running, at this address and port? (a firewall may also drop UDP)")
        }
        _ => e.to_string(),
    }
}
