//! ICE-TCP (RFC 6544 passive candidates, RFC 4571 framing) against the real `floorcast`
//! binary: a webrtc-rs publisher sends over UDP, and a viewer that has only a TCP active
//! candidate receives it over a real TCP connection. The viewer is a str0m client peer (the
//! webrtc crate has no ICE-TCP), driven here over the socket with its own ICE, DTLS and SRTP.
//!
//! - The answer carries a passive TCP host candidate below the UDP one, the viewer gets
//!   keyframes (asked of the publisher by the SFU) and continuous sequence numbers, and
//!   closing its connection removes the peer on the server.
//! - Hostile clients: connections beyond the per-address limit are refused, silent ones are
//!   closed after the handshake timeout, oversize frames and non-ICE bytes end their
//!   connection, a first request without the peer's password is refused; meanwhile a real
//!   viewer still plays.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use floorcast_load::rtp_header::PayloadKinds;
use floorcast_load::server_process::{ServerOptions, ServerProcess};
use floorcast_load::whip::http_client;
use floorcast_load::{Publisher, PublisherConfig, vp8, whep};
use reqwest::Client;
use str0m::change::SdpAnswer;
use str0m::media::{Direction, MediaKind};
use str0m::net::{Protocol, Receive, TcpType};
use str0m::{Candidate, Event, Input, Output, Rtc, RtcConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

const BIN: &str = env!("CARGO_BIN_EXE_floorcast");
const SECRET: &str = "ice-tcp-test-secret-0123456789abcdef0";
const SESSION: &str = "tcp";

async fn start_server() -> (ServerProcess, Client, Publisher) {
    let server = ServerProcess::start(ServerOptions::new(BIN, SECRET))
        .await
        .expect("floorcast starts and becomes ready");
    let client = http_client();
    server
        .create_session(&client, SESSION)
        .await
        .expect("create session");
    // No periodic keyframes: the TCP viewer gets one only if the SFU asks for it.
    let cfg = PublisherConfig {
        keyframe_interval: 0,
        ..PublisherConfig::default()
    };
    let token = server.token("venue", SESSION, "venue");
    let publisher = Publisher::whip(cfg, &client, &server.base_url, SESSION, &token)
        .await
        .unwrap_or_else(|e| panic!("publish: {e}\n{}", server.log_tail()));
    (server, client, publisher)
}

/// The passive TCP candidate of an answer, and the UDP one's priority beside it.
fn tcp_candidate(answer: &str) -> (SocketAddr, u32, u32) {
    let mut tcp = None;
    let mut udp_prio = 0;
    for line in answer.lines() {
        let Some(value) = line.trim().strip_prefix("a=") else {
            continue;
        };
        if !value.starts_with("candidate:") {
            continue;
        }
        let c = Candidate::from_sdp_string(value).expect("candidate parses");
        match c.proto() {
            Protocol::Udp => udp_prio = udp_prio.max(c.prio()),
            Protocol::Tcp => {
                assert_eq!(c.tcptype(), Some(TcpType::Passive), "{value}");
                tcp = Some((c.addr(), c.prio()));
            }
            _ => {}
        }
    }
    let (addr, prio) = tcp.unwrap_or_else(|| panic!("no TCP candidate in the answer:\n{answer}"));
    (addr, prio, udp_prio)
}

/// What the TCP viewer saw.
#[derive(Debug, Default)]
struct Seen {
    connected: bool,
    audio: u64,
    video: u64,
    keyframes: u64,
    /// Sequence number jumps of more than one, per kind (TCP loses nothing).
    gaps: u64,
}

/// A str0m viewer whose only candidate is a TCP active one, on a real TCP connection.
struct TcpViewer {
    rtc: Rtc,
    stream: TcpStream,
    server: SocketAddr,
    local: SocketAddr,
    buf: Vec<u8>,
    seen: Seen,
    last_seq: [Option<u64>; 2],
    kinds: PayloadKinds,
}

impl TcpViewer {
    async fn connect(server: &ServerProcess, client: &Client, name: &str) -> TcpViewer {
        let now = Instant::now();
        let mut rtc = RtcConfig::new()
            .set_rtp_mode(true)
            .clear_codecs()
            .enable_opus(true, false)
            .enable_vp8(true)
            .build(now);
        let mut api = rtc.sdp_api();
        api.add_media(MediaKind::Audio, Direction::RecvOnly, None, None, None);
        api.add_media(MediaKind::Video, Direction::RecvOnly, None, None, None);
        let (offer, pending) = api.apply().expect("an offer");
        let token = server.token("viewer", SESSION, name);
        let resource = whep::subscribe(
            client,
            &server.base_url,
            SESSION,
            &token,
            offer.to_sdp_string(),
        )
        .await
        .unwrap_or_else(|e| panic!("WHEP: {e}\n{}", server.log_tail()));
        let (addr, tcp_prio, udp_prio) = tcp_candidate(&resource.answer);
        assert!(
            tcp_prio < udp_prio,
            "TCP ({tcp_prio}) must rank below UDP ({udp_prio})"
        );
        let answer = SdpAnswer::from_sdp_string(&resource.answer).expect("answer parses");
        rtc.sdp_api()
            .accept_answer(pending, answer)
            .expect("answer accepted");
        // The answer's UDP candidate is useless to this viewer: it has no UDP candidate.
        let stream = TcpStream::connect(addr).await.expect("TCP connect");
        stream.set_nodelay(true).expect("nodelay");
        let local = stream.local_addr().expect("local addr");
        let candidate = Candidate::builder()
            .tcp()
            .host(local)
            .tcptype(TcpType::Active)
            .build()
            .expect("active candidate");
        rtc.add_local_candidate(candidate);
        TcpViewer {
            rtc,
            stream,
            server: addr,
            local,
            buf: Vec::new(),
            seen: Seen::default(),
            last_seq: [None, None],
            kinds: PayloadKinds::from_sdp(&resource.answer),
        }
    }

    /// Runs the peer for `time`: str0m's datagrams out as frames, frames in as datagrams.
    async fn run_for(&mut self, time: Duration) {
        let end = tokio::time::Instant::now() + time;
        let mut chunk = vec![0u8; 8192];
        loop {
            let wake = self.drain().await;
            let wake = tokio::time::Instant::from_std(wake).min(end);
            if tokio::time::Instant::now() >= end {
                return;
            }
            tokio::select! {
                n = self.stream.read(&mut chunk) => {
                    let n = n.expect("read");
                    assert!(n > 0, "the server closed the viewer's connection");
                    self.buf.extend_from_slice(&chunk[..n]);
                    // str0m holds one input's output at a time: drain after each frame.
                    while self.take_frame() {
                        self.drain().await;
                    }
                }
                _ = tokio::time::sleep_until(wake) => {
                    self.rtc.handle_input(Input::Timeout(Instant::now())).expect("timeout");
                }
            }
        }
    }

    /// Feeds the first complete frame of the buffer to str0m, if there is one.
    fn take_frame(&mut self) -> bool {
        if self.buf.len() < 2 {
            return false;
        }
        let len = usize::from(u16::from_be_bytes([self.buf[0], self.buf[1]]));
        if self.buf.len() < 2 + len {
            return false;
        }
        let frame: Vec<u8> = self.buf.drain(..2 + len).skip(2).collect();
        let receive = Receive::new(Protocol::Tcp, self.server, self.local, &frame)
            .expect("a datagram str0m knows");
        self.rtc
            .handle_input(Input::Receive(Instant::now(), receive))
            .expect("input accepted");
        true
    }

    async fn drain(&mut self) -> Instant {
        loop {
            match self.rtc.poll_output().expect("peer alive") {
                Output::Timeout(t) => return t,
                Output::Transmit(t) => {
                    assert_eq!(t.proto, Protocol::Tcp, "only TCP is possible");
                    let mut framed = (t.contents.len() as u16).to_be_bytes().to_vec();
                    framed.extend_from_slice(&t.contents);
                    self.stream.write_all(&framed).await.expect("write");
                }
                Output::Event(e) => self.on_event(e),
            }
        }
    }

    fn on_event(&mut self, e: Event) {
        match e {
            Event::Connected => self.seen.connected = true,
            Event::RtpPacket(p) => {
                let pt = *p.header.payload_type;
                if !self.kinds.is_video(pt) && !self.kinds.is_audio(pt) {
                    return;
                }
                let video = self.kinds.is_video(pt);
                let kind = usize::from(video);
                let seq = *p.seq_no;
                if let Some(last) = self.last_seq[kind]
                    && seq > last + 1
                {
                    self.seen.gaps += 1;
                }
                self.last_seq[kind] = Some(seq);
                if video {
                    self.seen.video += 1;
                    if vp8::is_keyframe_start(&p.payload) {
                        self.seen.keyframes += 1;
                    }
                } else {
                    self.seen.audio += 1;
                }
            }
            _ => {}
        }
    }
}

async fn metric(server: &ServerProcess, series: &str) -> f64 {
    server
        .metric(series)
        .await
        .unwrap_or_else(|| panic!("no {series} in /metrics"))
}

/// Waits until `series` satisfies `ok` (metrics are copied when scraped).
async fn wait_metric(server: &ServerProcess, series: &str, ok: impl Fn(f64) -> bool) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let v = server.metric(series).await.unwrap_or(f64::NAN);
        if ok(v) || Instant::now() > deadline {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn assert_plays(what: &str, seen: &Seen, server: &ServerProcess) {
    assert!(
        seen.connected && seen.audio >= 50 && seen.video >= 50 && seen.keyframes >= 1,
        "{what}: {seen:?}\n{}",
        server.log_tail()
    );
    assert_eq!(seen.gaps, 0, "{what}: sequence gaps over TCP: {seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tcp_only_viewer_plays_and_its_close_removes_the_peer() {
    tokio::time::timeout(Duration::from_secs(60), async {
        let (server, client, _publisher) = start_server().await;
        let mut viewer = TcpViewer::connect(&server, &client, "tcp-viewer").await;
        viewer.run_for(Duration::from_secs(4)).await;
        assert_plays("TCP viewer", &viewer.seen, &server);
        let viewers = format!("floorcast_viewers{{session=\"{SESSION}\"}}");
        assert_eq!(metric(&server, &viewers).await, 1.0);
        assert_eq!(metric(&server, "floorcast_tcp_connections").await, 1.0);
        assert!(metric(&server, "floorcast_tcp_frames_total{direction=\"out\"}").await > 100.0);
        assert_eq!(
            metric(&server, "floorcast_tcp_dropped_datagrams_total").await,
            0.0
        );

        // The viewer's only path goes: the server drops the peer at once, not after the ICE
        // timeout.
        drop(viewer);
        let left = wait_metric(&server, &viewers, |v| v == 0.0).await;
        assert_eq!(left, 0.0, "the peer outlived its only connection");
        assert_eq!(metric(&server, "floorcast_tcp_connections").await, 0.0);
    })
    .await
    .expect("test timed out");
}

/// A connection from `ip` (any 127.0.0.0/8 address is local on Linux), so hostile clients
/// and the real viewer have different addresses.
async fn connect_from(ip: [u8; 4], to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    socket
        .bind(SocketAddr::from((ip, 0)))
        .expect("bind a loopback source");
    socket.connect(to).await.expect("connect")
}

/// Whether the server closes `stream` within `within` (EOF or reset).
async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let mut b = [0u8; 64];
    match tokio::time::timeout(within, stream.read(&mut b)).await {
        Ok(Ok(0) | Err(_)) => true,
        Ok(Ok(_)) | Err(_) => false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_tcp_clients_do_not_stop_a_real_viewer() {
    tokio::time::timeout(Duration::from_secs(90), async {
        let (server, client, _publisher) = start_server().await;
        // Where ICE-TCP listens: from a first viewer's answer.
        let probe = TcpViewer::connect(&server, &client, "probe").await;
        let addr = probe.server;
        drop(probe);

        // 70 silent connections from one address: the default limit is 64 per address.
        let mut idle = Vec::new();
        for _ in 0..70 {
            idle.push(connect_from([127, 0, 0, 2], addr).await);
        }
        let mut refused = 0;
        for s in idle.iter_mut().rev().take(10) {
            if closed_within(s, Duration::from_millis(500)).await {
                refused += 1;
            }
        }
        assert_eq!(refused, 6, "the connections beyond 64 from one address");

        // Not ICE-TCP at all, an oversize frame, an empty frame, and a well-framed STUN
        // request naming no peer: each ends its connection at once.
        for bytes in [
            &b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..],
            &[0x08, 0x01, 1, 2, 3],
            &[0, 0],
        ] {
            let mut s = connect_from([127, 0, 0, 3], addr).await;
            s.write_all(bytes).await.expect("write");
            assert!(
                closed_within(&mut s, Duration::from_secs(2)).await,
                "{bytes:?}"
            );
        }
        let bad = wait_metric(
            &server,
            "floorcast_tcp_closed_total{reason=\"bad_frame\"}",
            |v| v >= 3.0,
        )
        .await;
        assert_eq!(bad, 3.0);
        let mut s = connect_from([127, 0, 0, 3], addr).await;
        s.write_all(&stun_frame(b"00nobody:x"))
            .await
            .expect("write");
        assert!(closed_within(&mut s, Duration::from_secs(2)).await);

        // A real viewer from another address plays meanwhile.
        let mut viewer = TcpViewer::connect(&server, &client, "real").await;
        viewer.run_for(Duration::from_secs(4)).await;
        assert_plays("viewer beside 64 idle connections", &viewer.seen, &server);

        // The silent ones are gone after the handshake timeout (5 s).
        for s in idle.iter_mut().take(64) {
            assert!(closed_within(s, Duration::from_secs(5)).await);
        }
        let timeouts = wait_metric(
            &server,
            "floorcast_tcp_closed_total{reason=\"handshake_timeout\"}",
            |v| v >= 64.0,
        )
        .await;
        assert!(timeouts >= 64.0, "{timeouts}");
        assert_eq!(
            metric(&server, "floorcast_tcp_refused_total{limit=\"per_ip\"}").await,
            6.0
        );
        assert!(
            metric(
                &server,
                "floorcast_tcp_closed_total{reason=\"unauthenticated\"}"
            )
            .await
                >= 1.0
        );
        // The viewer still plays.
        let before = viewer.seen.video;
        viewer.run_for(Duration::from_secs(1)).await;
        assert!(viewer.seen.video > before + 10, "{:?}", viewer.seen);
    })
    .await
    .expect("test timed out");
}

/// An RFC 4571 frame holding a STUN Binding request with USERNAME `user` and no integrity.
fn stun_frame(user: &[u8]) -> Vec<u8> {
    let pad = (4 - user.len() % 4) % 4;
    let attr_len = 4 + user.len() + pad;
    let mut m = Vec::new();
    m.extend_from_slice(&0x0001u16.to_be_bytes());
    m.extend_from_slice(&(attr_len as u16).to_be_bytes());
    m.extend_from_slice(&0x2112_A442u32.to_be_bytes());
    m.extend_from_slice(&[7u8; 12]);
    m.extend_from_slice(&0x0006u16.to_be_bytes());
    m.extend_from_slice(&(user.len() as u16).to_be_bytes());
    m.extend_from_slice(user);
    m.extend(std::iter::repeat_n(0u8, pad));
    let mut framed = (m.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&m);
    framed
}
