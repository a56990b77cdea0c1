//! The media threads: one per shard, each the only user of its socket on the shared media
//! port and the only owner of its peers. A thread receives datagrams, messages from other
//! shards and commands from the HTTP side, wakes its core at its deadlines, and sends what
//! the core produces. Each loop is single-threaded by design (no lock per packet); shards
//! talk through bounded channels only (see [`crate::shard`]).

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket as StdUdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;
use tokio::sync::{broadcast, mpsc};
use tracing::{debug, error, info};

use crate::handle::{MediaCmd, MediaEvent, MediaHandle};
use crate::runtime_thread;
use crate::send_batch::SendBatch;
use crate::sfu::{Sfu, Transmit};
use crate::shard::{MAX_SHARDS, Shard, ShardMsg};
use crate::stats::MediaStats;
use crate::tcp::{self, TcpContext, TcpListen, TcpWriter};
use crate::{MediaConfig, MediaError};

/// Commands waiting for one shard; beyond this the HTTP side gets `Overloaded`.
const COMMAND_QUEUE: usize = 1024;
const EVENT_QUEUE: usize = 4096;
/// Relayed publisher packets waiting for one shard: about a second of a few sessions' media.
/// Beyond it packets are dropped (counted) rather than delaying the rest.
const MEDIA_QUEUE: usize = 4096;
/// Everything else between shards (datagrams passed on, routes, interest, keyframe asks).
const CONTROL_QUEUE: usize = 16 * 1024;
/// Datagrams handled before the loop looks at commands and timers again.
const MAX_DATAGRAMS_PER_TURN: usize = 256;
/// Messages from other shards handled per turn, per queue.
const MAX_SHARD_MSGS_PER_TURN: usize = 1024;
/// Commands applied per turn (besides the one that may have woken the loop). An offer costs
/// about as much as a few hundred forwarded packets: more than this waits for the next turn.
const MAX_COMMANDS_PER_TURN: usize = 8;
/// Socket buffers sized for bursts of fan-out (a keyframe to thousands of viewers).
const SOCKET_BUFFER_BYTES: usize = 8 * 1024 * 1024;
/// Upper bound on sleeping, so housekeeping runs even with no peers.
const MAX_SLEEP: Duration = Duration::from_millis(500);

/// The two queues into one shard: relayed media may be dropped under overload, the rest is
/// small and must get through, so they do not share a bound.
#[derive(Clone)]
pub(crate) struct ShardInbox {
    media: mpsc::Sender<ShardMsg>,
    pub(crate) control: mpsc::Sender<ShardMsg>,
}

impl ShardInbox {
    pub(crate) fn send(&self, msg: ShardMsg, stats: &MediaStats) {
        let queue = match msg {
            ShardMsg::Media(_) => &self.media,
            _ => &self.control,
        };
        if queue.try_send(msg).is_err() {
            stats.shard_queue_drops.add(1);
        }
    }
}

/// What one media thread owns.
struct ShardLoop {
    socket: UdpSocket,
    local: SocketAddr,
    sfu: Sfu,
    cmds: mpsc::Receiver<MediaCmd>,
    media: mpsc::Receiver<ShardMsg>,
    control: mpsc::Receiver<ShardMsg>,
    others: Arc<[ShardInbox]>,
    events: broadcast::Sender<MediaEvent>,
    /// Whether to try UDP GSO (the batch itself holds raw pointers: built on the thread).
    udp_gso: bool,
    /// The send queues of this shard's ICE-TCP connections, by remote address.
    tcp_writers: HashMap<SocketAddr, TcpWriter>,
}

pub(crate) fn start(config: MediaConfig) -> Result<MediaHandle, MediaError> {
    let count = config.shards.clamp(1, MAX_SHARDS);
    let bind_error = |addr, source| MediaError::Bind { addr, source };
    let first = bind(config.udp_addr, count > 1).map_err(|e| bind_error(config.udp_addr, e))?;
    let local = first
        .local_addr()
        .map_err(|e| bind_error(config.udp_addr, e))?;
    // The others join the first one's port (port 0 picked it).
    let mut sockets = vec![first];
    for _ in 1..count {
        sockets.push(bind(local, true).map_err(|e| bind_error(local, e))?);
    }
    let candidates = candidate_addrs(local, &config.public_ips);
    info!(%local, ?candidates, shards = count, "media sockets bound");
    let tcp_listener = match config.tcp {
        TcpListen::Off => None,
        // A UDP port picked by the kernel (port 0) may be taken over TCP: then any TCP port
        // will do, as any UDP one did.
        TcpListen::SameAsUdp if config.udp_addr.port() == 0 => Some(
            tcp::bind(local)
                .or_else(|_| tcp::bind(SocketAddr::new(local.ip(), 0)))
                .map_err(|e| bind_error(local, e))?,
        ),
        TcpListen::SameAsUdp => Some(tcp::bind(local).map_err(|e| bind_error(local, e))?),
        TcpListen::At(addr) => Some(tcp::bind(addr).map_err(|e| bind_error(addr, e))?),
    };
    let tcp_listener = match tcp_listener {
        Some(listener) => {
            let bound = listener.local_addr().map_err(|e| bind_error(local, e))?;
            Some((listener, bound))
        }
        None => None,
    };
    let tcp_candidates = tcp_listener
        .as_ref()
        .map(|(_, bound)| candidate_addrs(*bound, &config.public_ips))
        .unwrap_or_default();

    let (event_tx, _) = broadcast::channel(EVENT_QUEUE);
    let stats = Arc::new(MediaStats::default());
    let mut cmd_txs = Vec::with_capacity(count);
    let mut inboxes = Vec::with_capacity(count);
    let mut receivers = Vec::with_capacity(count);
    for _ in 0..count {
        let (cmd_tx, cmd_rx) = mpsc::channel(COMMAND_QUEUE);
        let (media_tx, media_rx) = mpsc::channel(MEDIA_QUEUE);
        let (control_tx, control_rx) = mpsc::channel(CONTROL_QUEUE);
        cmd_txs.push(cmd_tx);
        inboxes.push(ShardInbox {
            media: media_tx,
            control: control_tx,
        });
        receivers.push((cmd_rx, media_rx, control_rx));
    }
    let inboxes: Arc<[ShardInbox]> = inboxes.into();
    let handle = MediaHandle {
        shards: cmd_txs.into(),
        next_viewer_shard: Arc::default(),
        events: event_tx.clone(),
        stats: stats.clone(),
        udp_addr: local,
        tcp_addr: tcp_listener.as_ref().map(|(_, bound)| *bound),
    };
    // str0m picks its crypto backend from a process-wide default.
    str0m::crypto::from_feature_flags().install_process_default();
    for (index, (socket, (cmds, media, control))) in sockets.into_iter().zip(receivers).enumerate()
    {
        let shard = Shard { index, count };
        let mut sfu = Sfu::new(config.clone(), candidates.clone(), stats.clone(), shard);
        sfu.set_tcp_candidates(tcp_candidates.clone());
        let others = inboxes.clone();
        let events = event_tx.clone();
        let udp_gso = config.udp_gso;
        runtime_thread::spawn(format!("floorcast-media-{index}"), move || async move {
            match UdpSocket::from_std(socket) {
                Ok(socket) => {
                    let shard = ShardLoop {
                        socket,
                        local,
                        sfu,
                        cmds,
                        media,
                        control,
                        others,
                        events,
                        udp_gso,
                        tcp_writers: HashMap::new(),
                    };
                    shard.run().await
                }
                Err(e) => error!(error = %e, "media socket unusable"),
            }
        })
        .map_err(|source| MediaError::Bind {
            addr: local,
            source,
        })?;
    }
    if let Some((listener, bound)) = tcp_listener {
        tcp::announce(bound, &tcp_candidates);
        let ctx = TcpContext {
            inboxes,
            stats,
            limits: config.tcp_limits.clone(),
            candidates: tcp_candidates,
        };
        tcp::start(listener, ctx).map_err(|source| MediaError::Bind {
            addr: bound,
            source,
        })?;
    }
    Ok(handle)
}

/// `shared`: the port is shared by several sockets of this process (`SO_REUSEPORT`); the
/// kernel spreads clients over them by address hash.
fn bind(addr: SocketAddr, shared: bool) -> io::Result<StdUdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if shared {
        socket.set_reuse_port(true)?;
    }
    // Best effort: the kernel caps these at net.core.{r,w}mem_max (see loadtests/README.md).
    let _ = socket.set_send_buffer_size(SOCKET_BUFFER_BYTES);
    let _ = socket.set_recv_buffer_size(SOCKET_BUFFER_BYTES);
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

/// Host candidates to announce: configured addresses, else the bound one, else (bound to
/// 0.0.0.0) the address of the interface that routes outward.
fn candidate_addrs(local: SocketAddr, public: &[IpAddr]) -> Vec<SocketAddr> {
    if !public.is_empty() {
        return public
            .iter()
            .map(|ip| SocketAddr::new(*ip, local.port()))
            .collect();
    }
    if !local.ip().is_unspecified() {
        return vec![local];
    }
    let outward = StdUdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))
        .and_then(|s| {
            s.connect((Ipv4Addr::new(192, 0, 2, 1), 9))?;
            s.local_addr()
        })
        .map(|a| a.ip())
        .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
    vec![SocketAddr::new(outward, local.port())]
}

struct SocketTx<'a> {
    fd: RawFd,
    batch: &'a mut SendBatch,
    stats: &'a MediaStats,
    tcp: &'a mut HashMap<SocketAddr, TcpWriter>,
}

impl Transmit for SocketTx<'_> {
    fn send(&mut self, to: SocketAddr, datagram: Vec<u8>) {
        self.batch.push(self.fd, to, datagram, self.stats);
    }

    fn send_tcp(&mut self, to: SocketAddr, datagram: Vec<u8>) {
        let Some(writer) = self.tcp.get(&to) else {
            return;
        };
        match writer.try_send(datagram) {
            Ok(()) => {}
            // A client that does not read loses datagrams, as on a full UDP path; the shard
            // never waits for it.
            Err(mpsc::error::TrySendError::Full(_)) => self.stats.tcp.dropped_datagrams.add(1),
            Err(mpsc::error::TrySendError::Closed(_)) => {
                self.tcp.remove(&to);
            }
        }
    }

    fn tcp_opened(&mut self, remote: SocketAddr, writer: TcpWriter) {
        self.tcp.insert(remote, writer);
    }

    fn buffer(&mut self) -> Vec<u8> {
        self.batch.buffer()
    }
}

impl ShardLoop {
    async fn run(mut self) {
        let stats = self.sfu.stats();
        let fd = self.socket.as_raw_fd();
        let mut batch = SendBatch::new(self.udp_gso);
        if self.sfu.shard_index() == 0 {
            info!(gso = batch.gso(), "media egress: sendmmsg batches");
        }
        let mut buf = vec![0u8; 2048];
        'turns: loop {
            let now = Instant::now();
            let wake = self
                .sfu
                .poll_timeout()
                .map_or(now + MAX_SLEEP, |t| t.min(now + MAX_SLEEP));
            let mut tx = SocketTx {
                fd,
                batch: &mut batch,
                stats: &stats,
                tcp: &mut self.tcp_writers,
            };
            // Wait for anything; the work itself is done below, media first, with a bound on
            // each kind, so neither a datagram flood nor a command flood (offers cost far more
            // than packets) can starve the other or the peers' timers.
            tokio::select! {
                biased;
                _ = self.socket.readable() => {}
                Some(msg) = self.control.recv() => self.sfu.handle_shard_msg(Instant::now(), msg, &mut tx),
                Some(msg) = self.media.recv() => self.sfu.handle_shard_msg(Instant::now(), msg, &mut tx),
                cmd = self.cmds.recv() => {
                    let Some(cmd) = cmd else { break };
                    if !apply(&mut self.sfu, cmd) {
                        break;
                    }
                }
                _ = tokio::time::sleep_until(wake.into()) => {}
            }
            let mut received_at = None;
            for _ in 0..MAX_DATAGRAMS_PER_TURN {
                match self.socket.try_recv_from(&mut buf) {
                    Ok((n, from)) => {
                        let at = Instant::now();
                        received_at.get_or_insert(at);
                        self.sfu
                            .handle_datagram(at, from, self.local, &buf[..n], &mut tx);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => {
                        debug!(error = %e, "recv failed");
                        break;
                    }
                }
            }
            for queue in [&mut self.control, &mut self.media] {
                for _ in 0..MAX_SHARD_MSGS_PER_TURN {
                    let Ok(msg) = queue.try_recv() else { break };
                    let at = Instant::now();
                    received_at.get_or_insert(at);
                    self.sfu.handle_shard_msg(at, msg, &mut tx);
                }
            }
            for applied in 0.. {
                if applied == MAX_COMMANDS_PER_TURN {
                    if !self.cmds.is_empty() {
                        stats.commands_deferred_turns.add(1);
                    }
                    break;
                }
                match self.cmds.try_recv() {
                    Ok(cmd) => {
                        if !apply(&mut self.sfu, cmd) {
                            break 'turns;
                        }
                    }
                    Err(_) => break,
                }
            }
            self.sfu.handle_timeout(Instant::now(), &mut tx);
            // Dropping the writer ends the connection's task, which closes the socket.
            while let Some(remote) = self.sfu.poll_tcp_close() {
                tx.tcp.remove(&remote);
            }
            for (shard, msg) in self.sfu.drain_shard_msgs() {
                self.others[shard].send(msg, &stats);
            }
            batch.flush(fd, &stats);
            if let Some(t) = received_at {
                stats.forward_latency.observe(t.elapsed());
            }
            while let Some(e) = self.sfu.poll_event() {
                // No receiver is fine: nobody listens yet.
                let _ = self.events.send(e);
            }
        }
        info!("media loop stopped");
    }
}

/// Applies one command; false means stop.
fn apply(sfu: &mut Sfu, cmd: MediaCmd) -> bool {
    let now = Instant::now();
    match cmd {
        MediaCmd::Publish {
            session,
            role,
            offer,
            takeover,
            reply,
        } => {
            let _ = reply.send(sfu.publish(now, session, role, &offer, takeover));
        }
        MediaCmd::Subscribe {
            session,
            offer,
            follow,
            reply,
        } => {
            let _ = reply.send(sfu.subscribe(now, session, &offer, follow));
        }
        MediaCmd::AddCandidate {
            peer,
            candidate,
            reply,
        } => {
            let _ = reply.send(sfu.add_candidate(now, peer, &candidate));
        }
        MediaCmd::ClosePeer { peer, reply } => {
            let _ = reply.send(sfu.close_peer(now, peer));
        }
        MediaCmd::CloseSession { session, reply } => {
            sfu.close_session(now, &session);
            let _ = reply.send(());
        }
        MediaCmd::SendCaptions { session, text } => sfu.send_captions(now, &session, &text),
        MediaCmd::Shutdown => return false,
    }
    true
}
