//! [`Server`]: [`ServerCore`] on a UDP socket, driven by a blocking loop on one thread;
//! [`ServerHandle`] and [`ShutdownHandle`] to run it in the background and stop it.
//!
//! The driver is the only part of the server that does I/O: it reads the clock once per
//! turn, receives, feeds the core, makes the core's journal records durable through the
//! [`Store`] before any answer that depends on them goes out, carries out `save` jobs through
//! the [`DataDir`], and sends what the core wants sent.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Instant;

use contact_registry::Registry;

use super::{DataDir, SaveError, ServerConfig, ServerCore, Store};
use crate::RECV_BUFFER_LEN;
use crate::net::{self, Received};

/// A server on a UDP socket: [`ServerCore`] driven by a blocking loop.
///
/// ```no_run
/// use contact_peer::{Server, ServerConfig};
/// let server = Server::bind("0.0.0.0:22000".parse()?, ServerConfig::default())?;
/// server.run()?; // until a ShutdownHandle says stop
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Server {
    socket: UdpSocket,
    local: SocketAddr,
    core: ServerCore,
    data: DataDir,
    store: Option<Store>,
    stop: Arc<AtomicBool>,
}

/// How many datagrams the loop takes before it syncs the journal and sends the answers:
/// large enough that one disk sync serves many requests, small enough that a burst does not
/// delay the first answers much.
const BATCH: usize = 64;

impl Server {
    /// Binds a server to `addr` (port 0: any free port), with an empty registry or, with
    /// [`ServerConfig::state`], the registry its state file holds.
    pub fn bind(addr: SocketAddr, config: ServerConfig) -> io::Result<Self> {
        let registry = Registry::new(config.limits);
        Self::bind_with_registry(addr, config, registry)
    }

    /// Binds a server that starts from `registry` (e.g. one loaded from a saved file).
    ///
    /// With [`ServerConfig::state`], a state file that already holds a registry wins, and
    /// a non-empty `registry` is then refused (which one is meant would be a guess); an
    /// empty or new state file takes `registry` as its starting point.
    pub fn bind_with_registry(
        addr: SocketAddr,
        config: ServerConfig,
        registry: Registry,
    ) -> io::Result<Self> {
        let (store, registry) = match &config.state {
            None => (None, registry),
            Some(path) => {
                let (mut store, stored) =
                    Store::open(path, config.limits).map_err(io::Error::other)?;
                let given = registry.num_contacts() + registry.num_lists() > 0;
                let held = stored.num_contacts() + stored.num_lists() > 0;
                if given && held {
                    return Err(io::Error::other(format!(
                        "{} already holds a registry: start from it, or from the file to load with a new state file",
                        path.display()
                    )));
                }
                let registry = if given {
                    store.compact(&registry)?;
                    registry
                } else {
                    stored
                };
                (Some(store), registry)
            }
        };
        let socket = net::bind_udp(addr)?;
        let local = socket.local_addr()?;
        Ok(Self {
            socket,
            local,
            core: ServerCore::new(registry, &config),
            data: DataDir::new(config.data_dir),
            store,
            stop: Arc::new(AtomicBool::new(false)),
        })
    }

    /// The address the server is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// A handle that stops [`Server::run`] from another thread.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle {
            stop: Arc::clone(&self.stop),
            target: net::reachable(self.local),
        }
    }

    /// Serves until a [`ShutdownHandle`] stops it; returns the registry as it is then.
    ///
    /// Without a state file each answer goes out as soon as its request is handled: the
    /// loop is a receive and a send per request, as short as a bare echo loop. With one,
    /// each turn takes up to 64 datagrams (`BATCH`) that are waiting, makes their mutations
    /// durable with one journal sync, and only then sends their answers: an answer is never
    /// sent for a mutation that a crash could still lose.
    pub fn run(mut self) -> io::Result<Registry> {
        let mut recv = vec![0u8; RECV_BUFFER_LEN];
        let mut send = Vec::with_capacity(RECV_BUFFER_LEN);
        let mut timeout = net::ReadTimeout::default();
        tracing::info!(addr = %self.local, "server listening");
        self.core.handle_timeout(Instant::now());
        loop {
            timeout.set(&self.socket, self.core.poll_timeout())?;
            let received = net::recv(&self.socket, &mut recv)?;
            if self.stop.load(Ordering::SeqCst) {
                tracing::info!(addr = %self.local, "server stopped");
                return Ok(self.core.into_registry());
            }
            let now = Instant::now();
            match received {
                Received::Datagram(n, from) => self.core.handle_datagram(now, from, &recv[..n]),
                Received::Nothing => self.core.handle_timeout(now),
            }
            if self.store.is_some() {
                self.socket.set_nonblocking(true)?;
                for _ in 1..BATCH {
                    match net::try_recv(&self.socket, &mut recv)? {
                        Some(Received::Datagram(n, from)) => {
                            self.core.handle_datagram(now, from, &recv[..n]);
                        }
                        Some(Received::Nothing) => {}
                        None => break,
                    }
                }
                self.socket.set_nonblocking(false)?;
            }
            self.carry_out_saves(now);
            if let Some(store) = &mut self.store {
                while let Some(record) = self.core.poll_record() {
                    store.record(&record);
                }
                // Without the sync the answers would promise what a crash could undo: a
                // server that cannot write its journal stops rather than lie.
                store.commit().map_err(|e| {
                    tracing::error!(path = %store.path().display(), error = %e, "journal write failed: stopping");
                    e
                })?;
                if store.should_compact() {
                    store.compact(self.core.registry())?;
                }
            }
            while let Some(t) = self.core.poll_transmit(&mut send) {
                net::send_to(&self.socket, &send[..t.size], t.destination);
            }
        }
    }

    fn carry_out_saves(&mut self, now: Instant) {
        while let Some(job) = self.core.poll_save() {
            let registry = self.core.registry();
            let result = self
                .data
                .save(&job.file, |mut w| registry.save(&mut w))
                .map(|path| tracing::debug!(path = %path.display(), "saved"))
                .map_err(|e| {
                    match e {
                        SaveError::Refused(_) => tracing::info!(error = %e, "save refused"),
                        _ => tracing::warn!(error = %e, "save failed"),
                    }
                    (e.status(), e.to_string())
                });
            self.core.complete_save(now, job, result);
        }
    }

    /// Runs the server on a thread of its own.
    pub fn spawn(self) -> io::Result<ServerHandle> {
        let local = self.local;
        let shutdown = self.shutdown_handle();
        let thread = std::thread::Builder::new()
            .name(format!("contact-server {local}"))
            .spawn(move || self.run())?;
        Ok(ServerHandle {
            local,
            shutdown,
            thread: Some(thread),
        })
    }
}

/// Stops a running [`Server`].
#[derive(Debug, Clone)]
pub struct ShutdownHandle {
    stop: Arc<AtomicBool>,
    target: SocketAddr,
}

impl ShutdownHandle {
    /// Tells the server to stop, and wakes it with an empty datagram so it notices at once.
    pub fn shutdown(&self) {
        self.stop.store(true, Ordering::SeqCst);
        let any: SocketAddr = if self.target.is_ipv4() {
            ([0, 0, 0, 0], 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        if let Ok(socket) = UdpSocket::bind(any) {
            let _ = socket.send_to(&[], self.target);
        }
    }
}

/// A server running on its own thread ([`Server::spawn`]). Dropping it stops the server.
#[derive(Debug)]
pub struct ServerHandle {
    local: SocketAddr,
    shutdown: ShutdownHandle,
    thread: Option<JoinHandle<io::Result<Registry>>>,
}

impl ServerHandle {
    /// The address the server is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// A handle that stops the server.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        self.shutdown.clone()
    }

    /// Stops the server, waits for its thread, and gives its registry back.
    pub fn shutdown(mut self) -> io::Result<Registry> {
        self.shutdown.shutdown();
        let thread = self.thread.take().expect("joined only here or in drop");
        thread
            .join()
            .map_err(|_| io::Error::other("the server thread panicked"))?
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        if let Some(thread) = self.thread.take() {
            self.shutdown.shutdown();
            let _ = thread.join();
        }
    }
}
