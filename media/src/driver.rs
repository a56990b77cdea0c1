//! The only owner of the media UDP socket: one thread, one loop. It receives datagrams,
//! applies commands from the HTTP side, wakes the core at its deadlines, and sends what the
//! core produces. The loop is single-threaded by design (no lock per packet); sharding per
//! core later means several of these, each owning its peers, behind `SO_REUSEPORT`.

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
use crate::send_batch::SendBatch;
use crate::sfu::{Sfu, Transmit};
use crate::stats::MediaStats;
use crate::{MediaConfig, MediaError};

/// Commands waiting for the media loop; beyond this the HTTP side gets `Overloaded`.
const COMMAND_QUEUE: usize = 1024;
const EVENT_QUEUE: usize = 4096;
/// Datagrams handled before the loop looks at commands and timers again.
const MAX_DATAGRAMS_PER_TURN: usize = 256;
/// Commands applied per turn (besides the one that may have woken the loop). An offer costs
/// about as much as a few hundred forwarded packets: more than this waits for the next turn.
const MAX_COMMANDS_PER_TURN: usize = 8;
/// Socket buffers sized for bursts of fan-out (a keyframe to thousands of viewers).
const SOCKET_BUFFER_BYTES: usize = 8 * 1024 * 1024;
/// Upper bound on sleeping, so housekeeping runs even with no peers.
const MAX_SLEEP: Duration = Duration::from_millis(500);

pub(crate) fn start(config: MediaConfig) -> Result<MediaHandle, MediaError> {
    let socket = bind(config.udp_addr).map_err(|source| MediaError::Bind {
        addr: config.udp_addr,
        source,
    })?;
    let local = socket.local_addr().map_err(|source| MediaError::Bind {
        addr: config.udp_addr,
        source,
    })?;
    let candidates = candidate_addrs(local, &config.public_ips);
    info!(%local, ?candidates, "media socket bound");

    let (cmd_tx, cmd_rx) = mpsc::channel(COMMAND_QUEUE);
    let (event_tx, _) = broadcast::channel(EVENT_QUEUE);
    let stats = Arc::new(MediaStats::default());
    let handle = MediaHandle {
        cmds: cmd_tx,
        events: event_tx.clone(),
        stats: stats.clone(),
        udp_addr: local,
    };
    // str0m picks its crypto backend from a process-wide default.
    str0m::crypto::from_feature_flags().install_process_default();
    let sfu = Sfu::new(config, candidates, stats);
    std::thread::Builder::new()
        .name("floorcast-media".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    error!(error = %e, "media runtime failed to start");
                    return;
                }
            };
            rt.block_on(async move {
                match UdpSocket::from_std(socket) {
                    Ok(socket) => run(socket, local, sfu, cmd_rx, event_tx).await,
                    Err(e) => error!(error = %e, "media socket unusable"),
                }
            });
        })
        .map_err(|source| MediaError::Bind {
            addr: local,
            source,
        })?;
    Ok(handle)
}

fn bind(addr: SocketAddr) -> io::Result<StdUdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
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
}

impl Transmit for SocketTx<'_> {
    fn send(&mut self, to: SocketAddr, datagram: Vec<u8>) {
        self.batch.push(self.fd, to, datagram, self.stats);
    }
}

async fn run(
    socket: UdpSocket,
    local: SocketAddr,
    mut sfu: Sfu,
    mut cmds: mpsc::Receiver<MediaCmd>,
    events: broadcast::Sender<MediaEvent>,
) {
    let stats = sfu.stats();
    let fd = socket.as_raw_fd();
    let mut batch = SendBatch::new();
    let mut buf = vec![0u8; 2048];
    'turns: loop {
        let now = Instant::now();
        let wake = sfu
            .poll_timeout()
            .map_or(now + MAX_SLEEP, |t| t.min(now + MAX_SLEEP));
        // Wait for anything; the work itself is done below, media first, with a bound on
        // each kind, so neither a datagram flood nor a command flood (offers cost far more
        // than packets) can starve the other or the peers' timers.
        tokio::select! {
            biased;
            _ = socket.readable() => {}
            cmd = cmds.recv() => {
                let Some(cmd) = cmd else { break };
                if !apply(&mut sfu, cmd) {
                    break;
                }
            }
            _ = tokio::time::sleep_until(wake.into()) => {}
        }
        let mut received_at = None;
        let mut tx = SocketTx {
            fd,
            batch: &mut batch,
            stats: &stats,
        };
        for _ in 0..MAX_DATAGRAMS_PER_TURN {
            match socket.try_recv_from(&mut buf) {
                Ok((n, from)) => {
                    let at = Instant::now();
                    received_at.get_or_insert(at);
                    sfu.handle_datagram(at, from, local, &buf[..n], &mut tx);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    debug!(error = %e, "recv failed");
                    break;
                }
            }
        }
        for applied in 0.. {
            if applied == MAX_COMMANDS_PER_TURN {
                if !cmds.is_empty() {
                    stats.commands_deferred_turns.add(1);
                }
                break;
            }
            match cmds.try_recv() {
                Ok(cmd) => {
                    if !apply(&mut sfu, cmd) {
                        break 'turns;
                    }
                }
                Err(_) => break,
            }
        }
        let mut tx = SocketTx {
            fd,
            batch: &mut batch,
            stats: &stats,
        };
        sfu.handle_timeout(Instant::now(), &mut tx);
        batch.flush(fd, &stats);
        if let Some(t) = received_at {
            stats.forward_latency.observe(t.elapsed());
        }
        while let Some(e) = sfu.poll_event() {
            // No receiver is fine: nobody listens yet.
            let _ = events.send(e);
        }
    }
    info!("media loop stopped");
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
            let _ = reply.send(sfu.add_candidate(peer, &candidate));
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
