//! ICE-TCP: RFC 6544 passive host candidates, datagrams framed per RFC 4571
//! ([`crate::framing`]), for clients whose firewall passes TCP only.
//!
//! One thread (`floorcast-media-tcp`) accepts connections and runs one small task per
//! connection. The task never touches a peer: it reads frames and passes them to the shard
//! that owns the peer, through the same bounded queue as a datagram passed between shards
//! ([`crate::shard::ShardMsg::TcpFrame`]). The shard is named by the ufrag of the
//! connection's first STUN request (as for UDP), and the shard proves the peer from that
//! request before accepting anything else ([`crate::tcp_links`]). What the peer sends back
//! goes into the connection's bounded queue; when it is full (a stalled client), the shard
//! drops the datagram and counts it, it never waits.
//!
//! Hostile by default: connections per address and in total are capped at accept, a
//! connection that names no peer within the handshake timeout is closed, as is one silent
//! for the idle timeout (a client sends consent checks every few seconds), and a frame
//! larger than any WebRTC datagram ends the connection.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr, TcpListener as StdTcpListener};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until, timeout};
use tracing::{debug, error, info};

use crate::driver::ShardInbox;
use crate::framing::{FrameDecoder, frame_header};
use crate::runtime_thread;
use crate::shard::{ShardMsg, shard_of_ufrag};
use crate::stats::MediaStats;
use crate::stun;

/// Where the core's datagrams for one connection go (bounded).
pub(crate) type TcpWriter = mpsc::Sender<Vec<u8>>;

/// The largest frame accepted: a WebRTC datagram fits one UDP packet of the path MTU, and
/// the UDP side reads into buffers of this size too.
pub const MAX_FRAME_LEN: usize = 2048;
/// Bytes read from a connection at once.
const READ_CHUNK: usize = 4096;
/// Datagrams written per wake before flushing: bounds the time the task spends writing.
const MAX_WRITES_PER_FLUSH: usize = 64;

/// Whether and where ICE-TCP listens.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TcpListen {
    /// No ICE-TCP: answers carry UDP candidates only.
    Off,
    /// The address of the media UDP socket, same port number (its port once bound).
    #[default]
    SameAsUdp,
    At(SocketAddr),
}

/// What ICE-TCP clients may hold.
#[derive(Clone, Debug)]
pub struct TcpLimits {
    /// Open connections on the node.
    pub max_connections: usize,
    /// Open connections from one IP address. A browser opens one or two per peer, and a
    /// venue behind one NAT address has a few dozen viewers.
    pub max_connections_per_ip: usize,
    /// A connection must send a STUN request naming a peer within this.
    pub handshake_timeout: Duration,
    /// A connection with nothing received for this long is closed.
    pub idle_timeout: Duration,
    /// Datagrams waiting to be written to one connection; beyond it they are dropped.
    pub send_queue: usize,
}

impl Default for TcpLimits {
    fn default() -> Self {
        Self {
            max_connections: 4096,
            max_connections_per_ip: 64,
            handshake_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(30),
            send_queue: 512,
        }
    }
}

/// Binds the listener (on the caller's thread, so a taken port fails the start).
pub(crate) fn bind(addr: SocketAddr) -> io::Result<StdTcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    // A restarted node rebinds at once despite connections in TIME_WAIT.
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}

/// What every connection task needs.
pub(crate) struct TcpContext {
    pub inboxes: Arc<[ShardInbox]>,
    pub stats: Arc<MediaStats>,
    pub limits: TcpLimits,
    /// Our TCP candidate addresses, which str0m matches a request's destination against.
    pub candidates: Vec<SocketAddr>,
}

impl TcpContext {
    /// The candidate a connection reached: its local address, unless we listen on a wildcard
    /// or behind NAT, where it is the announced address of that family.
    fn destination(&self, local: SocketAddr) -> SocketAddr {
        if self.candidates.contains(&local) {
            return local;
        }
        self.candidates
            .iter()
            .find(|c| c.is_ipv4() == local.is_ipv4())
            .copied()
            .unwrap_or(local)
    }
}

/// Starts the accept thread.
pub(crate) fn start(listener: StdTcpListener, ctx: TcpContext) -> io::Result<()> {
    runtime_thread::spawn("floorcast-media-tcp".into(), move || async move {
        match tokio::net::TcpListener::from_std(listener) {
            Ok(listener) => accept_loop(listener, Arc::new(ctx)).await,
            Err(e) => error!(error = %e, "ICE-TCP listener unusable"),
        }
    })
}

async fn accept_loop(listener: tokio::net::TcpListener, ctx: Arc<TcpContext>) {
    let admission = Arc::new(Admission::new(&ctx.limits));
    // The engine stops when its shards do: shard 0's queue closing says so.
    let stopped = ctx.inboxes.first().map(|i| i.control.clone());
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = async {
                match &stopped {
                    Some(queue) => queue.closed().await,
                    None => std::future::pending().await,
                }
            } => break,
        };
        let (stream, remote) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of descriptors and the like: pause instead of spinning.
                debug!(error = %e, "ICE-TCP accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let permit = match admission.admit(remote.ip()) {
            Ok(permit) => permit,
            Err(Refusal::Total) => {
                ctx.stats.tcp.refused_total_limit.add(1);
                continue;
            }
            Err(Refusal::PerIp) => {
                ctx.stats.tcp.refused_per_ip_limit.add(1);
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let ctx = ctx.clone();
        tokio::spawn(async move {
            ctx.stats.tcp.connections.inc();
            serve(stream, remote, &ctx).await;
            ctx.stats.tcp.connections.dec();
            drop(permit);
        });
    }
}

/// Why a connection ended, for the counters.
enum End {
    /// The remote closed it, or it failed: nothing to count.
    Remote,
    HandshakeTimeout,
    IdleTimeout,
    BadFrame,
    /// The first frame named no peer.
    Unauthenticated,
    /// The owning shard closed it (its peer left) or could not take it.
    Core,
}

async fn serve(stream: TcpStream, remote: SocketAddr, ctx: &TcpContext) {
    let Ok(local) = stream.local_addr() else {
        return;
    };
    let local = ctx.destination(local);
    let (mut reader, writer) = stream.into_split();
    let mut decoder = FrameDecoder::new(MAX_FRAME_LEN);
    let mut buf = vec![0u8; READ_CHUNK];
    let first = timeout(
        ctx.limits.handshake_timeout,
        first_request(&mut reader, &mut decoder, &mut buf),
    )
    .await;
    let (shard, frame) = match first {
        Err(_) => return count(ctx, End::HandshakeTimeout),
        Ok(Err(end)) => return count(ctx, end),
        Ok(Ok(first)) => first,
    };
    let Some(inbox) = ctx.inboxes.get(shard) else {
        return count(ctx, End::Unauthenticated);
    };
    let (tx, rx) = mpsc::channel(ctx.limits.send_queue);
    inbox.send(ShardMsg::TcpOpen { remote, writer: tx }, &ctx.stats);
    inbox.send(
        ShardMsg::TcpFrame {
            remote,
            local,
            data: frame,
        },
        &ctx.stats,
    );
    let end = relay(
        reader,
        writer,
        rx,
        decoder,
        buf,
        (remote, local),
        inbox,
        ctx,
    )
    .await;
    if !matches!(end, End::Core) {
        inbox.send(ShardMsg::TcpClosed { remote }, &ctx.stats);
    }
    count(ctx, end);
}

fn count(ctx: &TcpContext, end: End) {
    let tcp = &ctx.stats.tcp;
    match end {
        End::Remote | End::Core => {}
        End::HandshakeTimeout => tcp.handshake_timeouts.add(1),
        End::IdleTimeout => tcp.idle_timeouts.add(1),
        End::BadFrame => tcp.bad_frames.add(1),
        End::Unauthenticated => tcp.unauthenticated.add(1),
    }
}

/// Reads up to the first frame, which must be a STUN request whose ufrag names a shard.
async fn first_request(
    reader: &mut OwnedReadHalf,
    decoder: &mut FrameDecoder,
    buf: &mut [u8],
) -> Result<(usize, Box<[u8]>), End> {
    loop {
        match decoder.next_frame() {
            Err(_) => return Err(End::BadFrame),
            Ok(Some(frame)) => {
                let shard = stun::local_ufrag(frame).and_then(shard_of_ufrag);
                return match shard {
                    Some(shard) => Ok((shard, frame.into())),
                    None => Err(End::Unauthenticated),
                };
            }
            Ok(None) => {}
        }
        match reader.read(buf).await {
            Ok(0) | Err(_) => return Err(End::Remote),
            Ok(n) => decoder.push(&buf[..n]),
        }
    }
}

/// After the handshake: frames in to the shard, datagrams out from its queue.
#[allow(clippy::too_many_arguments)]
async fn relay(
    mut reader: OwnedReadHalf,
    writer: OwnedWriteHalf,
    mut rx: mpsc::Receiver<Vec<u8>>,
    mut decoder: FrameDecoder,
    mut buf: Vec<u8>,
    (remote, local): (SocketAddr, SocketAddr),
    inbox: &ShardInbox,
    ctx: &TcpContext,
) -> End {
    let mut writer = BufWriter::new(writer);
    let idle = ctx.limits.idle_timeout;
    let mut deadline = Instant::now() + idle;
    loop {
        // Frames already buffered (several may come in one read) go first.
        loop {
            match decoder.next_frame() {
                Err(_) => return End::BadFrame,
                Ok(None) => break,
                Ok(Some(frame)) => inbox.send(
                    ShardMsg::TcpFrame {
                        remote,
                        local,
                        data: frame.into(),
                    },
                    &ctx.stats,
                ),
            }
        }
        tokio::select! {
            read = reader.read(&mut buf) => match read {
                Ok(0) | Err(_) => return End::Remote,
                Ok(n) => {
                    decoder.push(&buf[..n]);
                    deadline = Instant::now() + idle;
                }
            },
            out = rx.recv() => {
                let Some(first) = out else { return End::Core };
                // A client that does not read for the idle timeout is as dead as a silent one.
                match timeout(idle, write_queued(&mut writer, first, &mut rx, ctx)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => return End::Remote,
                    Err(_) => return End::IdleTimeout,
                }
            }
            _ = sleep_until(deadline) => return End::IdleTimeout,
        }
    }
}

/// Writes `first` and what else is queued (bounded), framed, then flushes.
async fn write_queued(
    writer: &mut BufWriter<OwnedWriteHalf>,
    first: Vec<u8>,
    rx: &mut mpsc::Receiver<Vec<u8>>,
    ctx: &TcpContext,
) -> io::Result<()> {
    let mut next = Some(first);
    let mut written = 0;
    while let Some(datagram) = next.take() {
        // str0m never makes a datagram that does not fit a frame; skip one if it did.
        if let Some(header) = frame_header(datagram.len()) {
            writer.write_all(&header).await?;
            writer.write_all(&datagram).await?;
            ctx.stats.tcp.tx_frames.add(1);
        }
        written += 1;
        if written < MAX_WRITES_PER_FLUSH {
            next = rx.try_recv().ok();
        }
    }
    writer.flush().await
}

/// Why a connection was refused at accept.
#[derive(Debug, PartialEq, Eq)]
enum Refusal {
    Total,
    PerIp,
}

/// Counts open connections, in total and per address. Touched at accept and close only,
/// never per frame, so a std lock is right here.
struct Admission {
    max_total: usize,
    max_per_ip: usize,
    open: Mutex<(usize, HashMap<IpAddr, usize>)>,
}

/// One admitted connection; dropping it frees its slot.
struct Permit {
    admission: Arc<Admission>,
    ip: IpAddr,
}

impl Admission {
    fn new(limits: &TcpLimits) -> Self {
        Self {
            max_total: limits.max_connections,
            max_per_ip: limits.max_connections_per_ip,
            open: Mutex::new((0, HashMap::new())),
        }
    }

    fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Permit, Refusal> {
        let mut guard = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let (total, per_ip) = &mut *guard;
        if *total >= self.max_total {
            return Err(Refusal::Total);
        }
        let of_ip = per_ip.entry(ip).or_insert(0);
        if *of_ip >= self.max_per_ip {
            return Err(Refusal::PerIp);
        }
        *of_ip += 1;
        *total += 1;
        Ok(Permit {
            admission: self.clone(),
            ip,
        })
    }

    #[cfg(test)]
    fn open(&self) -> usize {
        self.open.lock().unwrap_or_else(|e| e.into_inner()).0
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut guard = self
            .admission
            .open
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let (total, per_ip) = &mut *guard;
        *total = total.saturating_sub(1);
        if let Some(n) = per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                per_ip.remove(&self.ip);
            }
        }
    }
}

/// Logs where ICE-TCP listens (once, at start).
pub(crate) fn announce(local: SocketAddr, candidates: &[SocketAddr]) {
    info!(%local, ?candidates, "ICE-TCP listening");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admission(total: usize, per_ip: usize) -> Arc<Admission> {
        Arc::new(Admission::new(&TcpLimits {
            max_connections: total,
            max_connections_per_ip: per_ip,
            ..TcpLimits::default()
        }))
    }

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([192, 0, 2, last])
    }

    #[test]
    fn one_address_cannot_take_every_slot() {
        let a = admission(10, 2);
        let held: Vec<Permit> = (0..2).map(|_| a.admit(ip(1)).unwrap()).collect();
        assert_eq!(a.admit(ip(1)).err(), Some(Refusal::PerIp));
        let other = a.admit(ip(2)).unwrap();
        drop(held);
        assert_eq!(a.open(), 1);
        assert!(a.admit(ip(1)).is_ok());
        drop(other);
    }

    #[test]
    fn the_node_limit_holds_across_addresses() {
        let a = admission(3, 2);
        let held: Vec<Permit> = (1..=3).map(|i| a.admit(ip(i)).unwrap()).collect();
        assert_eq!(a.admit(ip(4)).err(), Some(Refusal::Total));
        drop(held);
        assert_eq!(a.open(), 0);
        assert!(
            a.open.lock().unwrap().1.is_empty(),
            "no address left behind"
        );
    }

    #[test]
    fn destination_is_the_announced_candidate() {
        let ctx = TcpContext {
            inboxes: Arc::from([]),
            stats: Arc::default(),
            limits: TcpLimits::default(),
            candidates: vec!["203.0.113.5:443".parse().unwrap()],
        };
        let behind_nat = "10.0.0.5:443".parse().unwrap();
        assert_eq!(ctx.destination(behind_nat), ctx.candidates[0]);
        assert_eq!(
            ctx.destination("203.0.113.5:443".parse().unwrap()),
            ctx.candidates[0]
        );
        let v6 = "[::1]:443".parse().unwrap();
        assert_eq!(ctx.destination(v6), v6);
    }
}
