//! Helpers: a server on a free port, a raw UDP "client", peers, a Python-style JSON writer.

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use contact_peer::{Peer, PortChoice, Server, ServerConfig, ServerHandle};
use contact_proto::{Answer, Body, Command, ImStartBody, Status};

/// Long enough never to fire on a healthy machine, short enough to fail a broken test fast.
pub const WAIT: Duration = Duration::from_secs(5);

pub struct TestServer {
    pub handle: ServerHandle,
    pub dir: tempfile::TempDir,
}

impl TestServer {
    pub fn start() -> Self {
        Self::with(ServerConfig::default())
    }

    pub fn with(config: ServerConfig) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = config.data_dir(dir.path().to_path_buf());
        let handle = Server::bind("127.0.0.1:0".parse().unwrap(), config)
            .unwrap()
            .spawn()
            .unwrap();
        Self { handle, dir }
    }

    pub fn addr(&self) -> SocketAddr {
        self.handle.local_addr()
    }
}

/// A bare UDP socket that speaks the wire format byte for byte.
pub struct Raw {
    pub socket: UdpSocket,
    pub server: SocketAddr,
}

impl Raw {
    pub fn new(server: SocketAddr) -> Self {
        let any = if server.is_ipv4() {
            "127.0.0.1:0"
        } else {
            "[::1]:0"
        };
        let socket = UdpSocket::bind(any).unwrap();
        socket.set_read_timeout(Some(WAIT)).unwrap();
        Self { socket, server }
    }

    /// Sends a datagram and returns the answer, as text.
    pub fn ask(&self, request: impl AsRef<[u8]>) -> String {
        String::from_utf8(self.ask_bytes(request)).unwrap()
    }

    pub fn ask_bytes(&self, request: impl AsRef<[u8]>) -> Vec<u8> {
        self.socket.send_to(request.as_ref(), self.server).unwrap();
        let mut buf = vec![0; 65_536];
        let (n, from) = self.socket.recv_from(&mut buf).expect("an answer");
        assert_eq!(from, self.server);
        buf.truncate(n);
        buf
    }
}

pub fn peer(server: SocketAddr) -> Peer {
    Peer::bind("127.0.0.1".parse().unwrap(), server, PortChoice::Ephemeral).unwrap()
}

/// Registers `peer` as `name` at its own address and port.
pub fn register(peer: &Peer, name: &str) {
    let answer = peer
        .request(Command::Register {
            name: name.parse().unwrap(),
            ip: peer.control_addr().ip(),
            port: peer.control_addr().port(),
        })
        .unwrap();
    assert_eq!(answer.status, Status::Ok, "register {name}");
}

pub fn ok(peer: &Peer, line: &str) -> Answer {
    let command = contact_proto::parse_line(line).unwrap().unwrap().command;
    let answer = peer.request(command).unwrap();
    assert_eq!(answer.status, Status::Ok, "{line}: {answer:?}");
    answer
}

pub fn im_body(answer: Answer) -> ImStartBody {
    match answer.body {
        Some(Body::ImStart(body)) => body,
        other => panic!("not an im-start body: {other:?}"),
    }
}
