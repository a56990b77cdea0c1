//! The SFU core on virtual time: str0m client peers (a publisher and viewers) connected to
//! the core through in-memory datagrams, no sockets, no sleeping. These check forwarding,
//! rewriting across a publisher restart, keyframe gating and PLI on join, the per-kind
//! source switch between the floor feed and a speaker, the audio tap, and captions on a
//! viewer's data channel. The interop tests against the `webrtc` crate live in
//! `server/tests/`.
//!
//! Every scenario also runs on two shards ([`every_scenario_on_two_shards`]): the clients'
//! datagrams then land on the shard their port hashes to, whoever owns their peer, and the
//! shards' messages are delivered between them as the driver would.

use std::cell::Cell;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::change::{SdpAnswer, SdpPendingOffer};
use str0m::channel::ChannelId;
use str0m::format::Codec;
use str0m::media::{Direction, MediaKind, Mid, Pt};
use str0m::net::{Protocol, Receive};
use str0m::rtp::rtcp::SenderInfo;
use str0m::rtp::{RtpWrite, Ssrc};
use str0m::{Candidate, Event, Input, Output, Rtc};

use crate::config::MediaConfig;
use crate::forward::keyframe::{VideoCodec, starts_keyframe};
use crate::handle::{Follow, MediaEvent, Takeover};
use crate::ids::{PeerId, Role, SessionId};
use crate::sfu::{CAPTIONS_LABEL, Sfu, Transmit};
use crate::shard::{Shard, ShardMsg, home_shard, shard_of_peer};
use crate::stats::{Kind, MediaStats};
use crate::tap::TapPacket;

const SFU_ADDR: &str = "127.0.0.1:40000";
const AV: &[MediaKind] = &[MediaKind::Audio, MediaKind::Video];
/// Payload fill bytes, so a viewer can tell whose packets it receives.
const FLOOR_FILL: u8 = 0xf1;
const SPEAKER_FILL: u8 = 0x5e;

/// The network between the SFU and the clients: datagrams in flight, and how many were ever
/// sent (to check the SFU's own count).
#[derive(Default)]
struct Wire(VecDeque<(SocketAddr, Vec<u8>)>, u64);

impl Transmit for Wire {
    fn send(&mut self, to: SocketAddr, datagram: Vec<u8>) {
        self.1 += 1;
        self.0.push_back((to, datagram));
    }
}

thread_local! {
    /// Shards of the worlds this test thread builds.
    static SHARDS: Cell<usize> = const { Cell::new(1) };
    /// Whether the worlds this test thread builds send forwarded media through str0m's send
    /// streams instead of our own egress.
    static STR0M_EGRESS: Cell<bool> = const { Cell::new(false) };
    /// Whether the clients this test thread makes offer RED over Opus.
    static CLIENT_RED: Cell<bool> = const { Cell::new(false) };
}

/// The SFU shards of one node, driven as `driver.rs` drives them, on virtual time: commands
/// go where `MediaHandle` sends them, a datagram to the shard its source port hashes to, and
/// messages between shards are delivered until none is left.
struct Node {
    shards: Vec<Sfu>,
    next_viewer: usize,
    /// `KeyframeFrom` messages delivered between shards.
    keyframe_asks: usize,
}

impl Node {
    fn new(config: MediaConfig, count: usize) -> Self {
        let stats = Arc::new(MediaStats::default());
        let shards = (0..count)
            .map(|index| {
                Sfu::new(
                    config.clone(),
                    vec![SFU_ADDR.parse().unwrap()],
                    stats.clone(),
                    Shard { index, count },
                )
            })
            .collect();
        Self {
            shards,
            next_viewer: 0,
            keyframe_asks: 0,
        }
    }

    fn home(&mut self, session: &SessionId) -> &mut Sfu {
        let i = home_shard(session, self.shards.len());
        &mut self.shards[i]
    }

    fn home_ref(&self, session: &SessionId) -> &Sfu {
        &self.shards[home_shard(session, self.shards.len())]
    }

    fn stats(&self) -> Arc<MediaStats> {
        self.shards[0].stats()
    }

    fn publish(
        &mut self,
        now: Instant,
        session: SessionId,
        role: Role,
        offer: &str,
        takeover: Takeover,
    ) -> Result<crate::Answer, crate::MediaError> {
        let r = self
            .home(&session)
            .publish(now, session, role, offer, takeover);
        self.exchange(now, &mut Wire::default());
        r
    }

    fn subscribe(
        &mut self,
        now: Instant,
        session: SessionId,
        offer: &str,
        follow: Follow,
    ) -> Result<crate::Answer, crate::MediaError> {
        let i = self.next_viewer % self.shards.len();
        self.next_viewer += 1;
        let r = self.shards[i].subscribe(now, session, offer, follow);
        self.exchange(now, &mut Wire::default());
        r
    }

    fn add_candidate(
        &mut self,
        now: Instant,
        peer: PeerId,
        candidate: &str,
    ) -> Result<(), crate::MediaError> {
        self.shards[shard_of_peer(peer)].add_candidate(now, peer, candidate)
    }

    fn close_peer(&mut self, now: Instant, peer: PeerId) -> Result<(), crate::MediaError> {
        let r = self.shards[shard_of_peer(peer)].close_peer(now, peer);
        self.exchange(now, &mut Wire::default());
        r
    }

    fn close_session(&mut self, now: Instant, session: &SessionId) {
        for shard in &mut self.shards {
            shard.close_session(now, session);
        }
        self.exchange(now, &mut Wire::default());
    }

    fn send_captions(&mut self, now: Instant, session: &SessionId, text: &str) {
        for shard in &mut self.shards {
            shard.send_captions(now, session, text);
        }
    }

    fn source_of(&self, session: &SessionId, kind: MediaKind) -> Option<PeerId> {
        self.home_ref(session).source_of(session, kind)
    }

    fn peers(&self) -> usize {
        self.shards.iter().map(Sfu::peer_count).sum()
    }

    fn poll_event(&mut self) -> Option<MediaEvent> {
        self.shards.iter_mut().find_map(Sfu::poll_event)
    }

    fn handle_datagram(
        &mut self,
        now: Instant,
        source: SocketAddr,
        destination: SocketAddr,
        data: &[u8],
        wire: &mut Wire,
    ) {
        // The kernel's choice of socket: a hash of the client's address, blind to owners.
        let i = usize::from(source.port()) % self.shards.len();
        self.shards[i].handle_datagram(now, source, destination, data, wire);
        self.exchange(now, wire);
    }

    fn handle_timeout(&mut self, now: Instant, wire: &mut Wire) {
        for shard in &mut self.shards {
            shard.handle_timeout(now, wire);
        }
        self.exchange(now, wire);
    }

    /// Delivers messages between shards until there are none (bounded: a loop would fail).
    fn exchange(&mut self, now: Instant, wire: &mut Wire) {
        for _ in 0..100 {
            let mut mail = Vec::new();
            for shard in &mut self.shards {
                mail.extend(shard.drain_shard_msgs());
            }
            if mail.is_empty() {
                return;
            }
            for (to, msg) in mail {
                if matches!(msg, ShardMsg::KeyframeFrom { .. }) {
                    self.keyframe_asks += 1;
                }
                self.shards[to].handle_shard_msg(now, msg, wire);
            }
        }
        panic!("shards kept messaging each other");
    }
}

/// One RTP packet a client received.
struct Rx {
    kind: MediaKind,
    seq: u64,
    ssrc: Ssrc,
    /// The last payload byte: the sending publisher's fill.
    fill: u8,
    /// Whether it came as RED (RFC 2198), and its payload's length.
    red: bool,
    len: usize,
    keyframe: bool,
    timestamp: u32,
}

struct Client {
    rtc: Rtc,
    addr: SocketAddr,
    pending: Option<SdpPendingOffer>,
    mids: Vec<(Mid, MediaKind)>,
    received: Vec<Rx>,
    /// Keyframe requests not yet answered by a keyframe.
    keyframe_requests: usize,
    /// Keyframe requests ever received.
    plis: usize,
    /// What this client fills its payloads with when it publishes.
    fill: u8,
    timeout: Instant,
    /// Data channels open now, by label.
    channels: Vec<(ChannelId, String)>,
    /// Data channels closed (by either side) after they opened.
    closed_channels: Vec<String>,
    /// Text messages received on data channels: (label, text).
    messages: Vec<(String, String)>,
    /// Sender reports received, in order.
    sender_reports: Vec<SenderInfo>,
}

impl Client {
    fn new(port: u16, now: Instant, dir: Direction, kinds: &[MediaKind]) -> (Self, String) {
        Self::with_channel(port, now, dir, kinds, None)
    }

    /// A client whose offer also creates a data channel labelled `channel`, as a browser
    /// does with `createDataChannel` before `createOffer` (an m=application section).
    fn with_channel(
        port: u16,
        now: Instant,
        dir: Direction,
        kinds: &[MediaKind],
        channel: Option<&str>,
    ) -> (Self, String) {
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let mut rtc = Rtc::builder()
            .set_rtp_mode(true)
            .clear_codecs()
            .enable_opus(true, CLIENT_RED.get())
            .enable_vp8(true)
            .build(now);
        rtc.add_local_candidate(Candidate::host(addr, "udp").unwrap());
        let mut api = rtc.sdp_api();
        let mids = kinds
            .iter()
            .map(|k| (api.add_media(*k, dir, None, None, None), *k))
            .collect();
        if let Some(label) = channel {
            api.add_channel(label.to_string());
        }
        let (offer, pending) = api.apply().unwrap();
        let client = Self {
            rtc,
            addr,
            pending: Some(pending),
            mids,
            received: Vec::new(),
            keyframe_requests: 0,
            plis: 0,
            fill: FLOOR_FILL,
            timeout: now,
            channels: Vec::new(),
            closed_channels: Vec::new(),
            messages: Vec::new(),
            sender_reports: Vec::new(),
        };
        (client, offer.to_sdp_string())
    }

    fn accept(&mut self, answer: &str) {
        let answer = SdpAnswer::from_sdp_string(answer).unwrap();
        let pending = self.pending.take().unwrap();
        self.rtc.sdp_api().accept_answer(pending, answer).unwrap();
    }

    fn pt(&self, codec: Codec) -> Pt {
        self.rtc
            .codec_config()
            .find(|p| p.spec().codec == codec)
            .unwrap()
            .pt()
    }

    fn send(&mut self, kind: MediaKind, seq: u64, ts: u32, payload: &[u8], now: Instant) {
        let mid = self.mids.iter().find(|m| m.1 == kind).unwrap().0;
        let pt = self.pt(match kind {
            MediaKind::Audio => Codec::Opus,
            MediaKind::Video => Codec::Vp8,
        });
        let mut api = self.rtc.direct_api();
        let stream = api.stream_tx_by_mid(mid, None).unwrap();
        stream.write_rtp(
            RtpWrite::new(pt, seq.into(), ts, now, Arc::<[u8]>::from(payload)).nackable(true),
        );
    }

    /// Drains outputs into the SFU.
    fn pump(&mut self, now: Instant, sfu: &mut Node, wire: &mut Wire) {
        if self.timeout <= now {
            self.rtc.handle_input(Input::Timeout(now)).unwrap();
        }
        loop {
            match self.rtc.poll_output().unwrap() {
                Output::Timeout(t) => {
                    self.timeout = t;
                    return;
                }
                Output::Transmit(t) => {
                    let to = t.destination;
                    sfu.handle_datagram(now, self.addr, to, &t.contents, wire);
                }
                Output::Event(Event::RtpPacket(p)) => {
                    let red = self
                        .rtc
                        .codec_config()
                        .find(|c| c.spec().codec == Codec::Opus)
                        .and_then(|c| c.red())
                        .is_some_and(|red| red == p.header.payload_type);
                    let kind = if red || p.header.payload_type == self.pt(Codec::Opus) {
                        MediaKind::Audio
                    } else {
                        MediaKind::Video
                    };
                    self.received.push(Rx {
                        kind,
                        seq: *p.seq_no,
                        ssrc: p.header.ssrc,
                        fill: p.payload.last().copied().unwrap_or(0),
                        red,
                        len: p.payload.len(),
                        timestamp: p.header.timestamp,
                        keyframe: kind == MediaKind::Video
                            && starts_keyframe(VideoCodec::Vp8, &p.payload),
                    });
                }
                Output::Event(Event::SenderFeedback(f)) => self.sender_reports.push(f.sender_info),
                Output::Event(Event::KeyframeRequest(_)) => {
                    self.keyframe_requests += 1;
                    self.plis += 1;
                }
                Output::Event(Event::ChannelOpen(id, label)) => self.channels.push((id, label)),
                Output::Event(Event::ChannelClose(id)) => {
                    if let Some(at) = self.channels.iter().position(|c| c.0 == id) {
                        let (_, label) = self.channels.remove(at);
                        self.closed_channels.push(label);
                    }
                }
                Output::Event(Event::ChannelData(d)) => {
                    let label = self.label_of(d.id).unwrap_or_default().to_string();
                    assert!(!d.binary, "captions are text messages");
                    let text = String::from_utf8(d.data).expect("text messages are UTF-8");
                    self.messages.push((label, text));
                }
                Output::Event(_) => {}
            }
        }
    }

    fn label_of(&self, id: ChannelId) -> Option<&str> {
        self.channels
            .iter()
            .find(|c| c.0 == id)
            .map(|c| c.1.as_str())
    }

    fn channel_open(&self, label: &str) -> bool {
        self.channels.iter().any(|c| c.1 == label)
    }

    fn deliver(&mut self, now: Instant, data: &[u8]) {
        let input = Input::Receive(
            now,
            Receive {
                proto: Protocol::Udp,
                source: SFU_ADDR.parse().unwrap(),
                destination: self.addr,
                contents: data.try_into().unwrap(),
            },
        );
        self.rtc.handle_input(input).unwrap();
    }
}

struct World {
    now: Instant,
    sfu: Node,
    wire: Wire,
    clients: Vec<Client>,
    /// The network loses this many of the next datagrams over 300 bytes (media, not RTCP or
    /// audio) sent to this address.
    lose: Option<(SocketAddr, usize)>,
    /// The network loses two of every three datagrams over 300 bytes sent to this address;
    /// the count is of those lost.
    thin: Option<(SocketAddr, usize)>,
    thin_seen: usize,
    /// Datagrams at least this long are the ones `thin` loses (300: video only; lower also
    /// takes probe padding).
    thin_min_len: usize,
}

impl World {
    fn new() -> Self {
        Self::with_config(MediaConfig::default())
    }

    fn with_config(config: MediaConfig) -> Self {
        let now = Instant::now();
        let config = MediaConfig {
            udp_addr: SFU_ADDR.parse().unwrap(),
            app_egress: config.app_egress && !STR0M_EGRESS.get(),
            ..config
        };
        let sfu = Node::new(config, SHARDS.get());
        Self {
            now,
            sfu,
            wire: Wire::default(),
            clients: Vec::new(),
            lose: None,
            thin: None,
            thin_seen: 0,
            thin_min_len: 300,
        }
    }

    fn step(&mut self, dt: Duration) {
        self.now += dt;
        let now = self.now;
        for c in &mut self.clients {
            c.pump(now, &mut self.sfu, &mut self.wire);
        }
        self.sfu.handle_timeout(now, &mut self.wire);
        while let Some((to, data)) = self.wire.0.pop_front() {
            if let Some((addr, n)) = &mut self.lose
                && *addr == to
                && *n > 0
                && data.len() > 300
            {
                *n -= 1;
                continue;
            }
            if let Some((addr, lost)) = &mut self.thin
                && *addr == to
                && data.len() > self.thin_min_len
            {
                self.thin_seen += 1;
                if !self.thin_seen.is_multiple_of(3) {
                    *lost += 1;
                    continue;
                }
            }
            if let Some(c) = self.clients.iter_mut().find(|c| c.addr == to) {
                // str0m wants its output drained after every input.
                c.deliver(now, &data);
                c.pump(now, &mut self.sfu, &mut self.wire);
            }
        }
        for c in &mut self.clients {
            c.pump(now, &mut self.sfu, &mut self.wire);
        }
    }

    fn run_until(&mut self, max: Duration, mut done: impl FnMut(&World) -> bool) -> bool {
        let end = self.now + max;
        while self.now < end {
            self.step(Duration::from_millis(5));
            if done(self) {
                return true;
            }
        }
        false
    }

    fn add_publisher(&mut self, port: u16, session: &SessionId) -> usize {
        self.add_publisher_as(port, session, Role::Floor, AV, FLOOR_FILL)
            .0
    }

    /// A publisher of `kinds` in `role` whose payloads are filled with `fill`; returns its
    /// client index and its peer id in the SFU.
    fn add_publisher_as(
        &mut self,
        port: u16,
        session: &SessionId,
        role: Role,
        kinds: &[MediaKind],
        fill: u8,
    ) -> (usize, PeerId) {
        let (mut c, offer) = Client::new(port, self.now, Direction::SendOnly, kinds);
        c.fill = fill;
        let answer = self
            .sfu
            .publish(self.now, session.clone(), role, &offer, Takeover::Refuse)
            .unwrap();
        c.accept(&answer.sdp);
        self.clients.push(c);
        (self.clients.len() - 1, answer.peer)
    }

    fn add_viewer(&mut self, port: u16, session: &SessionId, kinds: &[MediaKind]) -> usize {
        self.add_viewer_with_channel(port, session, kinds, None)
    }

    /// A viewer whose offer opens a data channel labelled `channel`.
    fn add_viewer_with_channel(
        &mut self,
        port: u16,
        session: &SessionId,
        kinds: &[MediaKind],
        channel: Option<&str>,
    ) -> usize {
        self.add_viewer_following(port, session, kinds, channel, Follow::Current)
    }

    fn add_viewer_following(
        &mut self,
        port: u16,
        session: &SessionId,
        kinds: &[MediaKind],
        channel: Option<&str>,
        follow: Follow,
    ) -> usize {
        let (mut c, offer) =
            Client::with_channel(port, self.now, Direction::RecvOnly, kinds, channel);
        let answer = self
            .sfu
            .subscribe(self.now, session.clone(), &offer, follow)
            .unwrap();
        c.accept(&answer.sdp);
        self.clients.push(c);
        self.clients.len() - 1
    }

    /// One 20 ms tick of a synthetic publisher, then the 20 ms pass.
    fn publish_tick(&mut self, p: usize, tick: u64, base: (u64, u32), gop: u64) {
        self.send_tick(p, tick, base, gop);
        self.step(Duration::from_millis(20));
    }

    /// The media of one 20 ms tick of a synthetic publisher, for the kinds it has: an Opus
    /// packet and (every other tick) a 3-packet VP8 frame, a keyframe every `gop` frames or
    /// when asked. Payloads end with the client's fill byte.
    fn send_tick(&mut self, p: usize, tick: u64, base: (u64, u32), gop: u64) {
        let now = self.now;
        let c = &mut self.clients[p];
        let has = |kind| c.mids.iter().any(|m| m.1 == kind);
        let (audio, video) = (has(MediaKind::Audio), has(MediaKind::Video));
        if audio {
            c.send(
                MediaKind::Audio,
                base.0 + tick,
                base.1.wrapping_add(tick as u32 * 960),
                &[c.fill; 80],
                now,
            );
        }
        if video && tick.is_multiple_of(2) {
            let frame = tick / 2;
            let key = frame.is_multiple_of(gop) || c.keyframe_requests > 0;
            c.keyframe_requests = 0;
            for k in 0..3u64 {
                let descriptor = if k == 0 { 0x10 } else { 0x00 };
                let header = if key { 0x00 } else { 0x01 };
                let mut payload = vec![descriptor, header];
                payload.extend_from_slice(&[c.fill; 400]);
                c.send(
                    MediaKind::Video,
                    base.0 * 3 + frame * 3 + k,
                    base.1.wrapping_add(frame as u32 * 3000),
                    &payload,
                    now,
                );
            }
        }
    }
}

fn connected(w: &World, n: usize) -> bool {
    w.clients.iter().take(n).all(|c| c.rtc.is_connected())
}

fn seqs(c: &Client, kind: MediaKind) -> Vec<u64> {
    c.received
        .iter()
        .filter(|r| r.kind == kind)
        .map(|r| r.seq)
        .collect()
}

/// Packets of `kind` from the publisher that fills with `fill`, received since index `from`.
fn count_since(c: &Client, from: usize, kind: MediaKind, fill: u8) -> usize {
    c.received[from..]
        .iter()
        .filter(|r| r.kind == kind && r.fill == fill)
        .count()
}

/// The first packet of `kind` from the publisher filling with `fill`, since index `from`.
fn first_since(c: &Client, from: usize, kind: MediaKind, fill: u8) -> Option<&Rx> {
    c.received[from..]
        .iter()
        .find(|r| r.kind == kind && r.fill == fill)
}

/// Whether, from its first packet of `kind` since index `from`, the publisher filling with
/// `fill` is the only one of that kind (packets the SFU queued before the switch may come
/// out just after it).
fn only_since_first(c: &Client, from: usize, kind: MediaKind, fill: u8) -> bool {
    let rx = &c.received[from..];
    let Some(at) = rx.iter().position(|r| r.kind == kind && r.fill == fill) else {
        return false;
    };
    rx[at..].iter().all(|r| r.kind != kind || r.fill == fill)
}

/// Whether a viewer saw exactly one SSRC per kind (no renegotiation).
fn one_ssrc_per_kind(c: &Client) -> bool {
    [MediaKind::Audio, MediaKind::Video]
        .into_iter()
        .all(|kind| {
            let mut ssrcs: Vec<Ssrc> = c
                .received
                .iter()
                .filter(|r| r.kind == kind)
                .map(|r| r.ssrc)
                .collect();
            ssrcs.dedup();
            ssrcs.len() <= 1
        })
}

fn assert_continuous(s: &[u64]) {
    for w in s.windows(2) {
        assert_eq!(w[1], w[0] + 1, "sequence jumps from {} to {}", w[0], w[1]);
    }
}

#[test]
fn forwards_to_viewers_and_survives_publisher_restart() {
    let session = SessionId::new("s1");
    let mut w = World::new();
    // A viewer that is there before the publisher.
    let early = w.add_viewer(5001, &session, &[MediaKind::Audio, MediaKind::Video]);
    let publisher = w.add_publisher(5000, &session);
    assert!(w.run_until(Duration::from_secs(5), |w| connected(w, 2)));

    // Publish 2 s with a long GOP, so that late joiners rely on PLI.
    for tick in 0..50 {
        w.publish_tick(publisher, tick, (1000, 5000), 1000);
    }
    let late = w.add_viewer(5002, &session, &[MediaKind::Audio, MediaKind::Video]);
    let audio_only = w.add_viewer(5003, &session, &[MediaKind::Audio]);
    assert!(w.run_until(Duration::from_secs(5), |w| connected(w, 4)));
    let plis_before = w.sfu.stats().plis.get();
    for tick in 50..150 {
        w.publish_tick(publisher, tick, (1000, 5000), 1000);
    }
    assert!(
        w.sfu.stats().plis.get() > plis_before,
        "a joining video viewer triggers a keyframe request"
    );
    for v in [early, late] {
        let video = seqs(&w.clients[v], MediaKind::Video);
        assert!(
            video.len() > 30,
            "viewer {v} got {} video packets",
            video.len()
        );
        assert_continuous(&video);
        assert_continuous(&seqs(&w.clients[v], MediaKind::Audio));
    }
    assert!(seqs(&w.clients[audio_only], MediaKind::Video).is_empty());
    assert!(seqs(&w.clients[audio_only], MediaKind::Audio).len() > 50);
    let first_media = std::iter::from_fn(|| w.sfu.poll_event())
        .filter(|e| matches!(e, MediaEvent::FirstMedia { .. }))
        .count();
    assert_eq!(first_media, 3);

    // The publisher goes away and a new one (new SSRCs, new bases) comes back.
    let before: Vec<usize> = w.clients.iter().map(|c| c.received.len()).collect();
    w.clients[publisher].rtc.disconnect();
    let pub_peer = w.sfu_publisher(&session);
    w.sfu.close_peer(w.now, pub_peer).unwrap();
    w.step(Duration::from_millis(500));
    let p2 = w.add_publisher(5010, &session);
    assert!(w.run_until(Duration::from_secs(5), |w| w.clients[p2].rtc.is_connected()));
    for tick in 0..100 {
        w.publish_tick(p2, tick, (40_000, 77), 1000);
    }
    for v in [early, late] {
        let c = &w.clients[v];
        assert!(
            c.received.len() > before[v] + 50,
            "viewer {v} kept receiving"
        );
        assert_continuous(&seqs(c, MediaKind::Video));
        assert_continuous(&seqs(c, MediaKind::Audio));
    }
    // Viewers never saw a second SSRC per kind: no renegotiation needed.
    for kind in [MediaKind::Audio, MediaKind::Video] {
        let mut ssrcs: Vec<_> = w.clients[early]
            .received
            .iter()
            .filter(|r| r.kind == kind)
            .map(|r| r.ssrc)
            .collect();
        ssrcs.dedup();
        assert_eq!(ssrcs.len(), 1, "{kind:?} SSRC stays the same");
    }
}

#[test]
fn second_floor_publisher_is_refused() {
    let session = SessionId::new("s1");
    let mut w = World::new();
    w.add_publisher(5000, &session);
    let (_c, offer) = Client::new(
        5001,
        w.now,
        Direction::SendOnly,
        &[MediaKind::Audio, MediaKind::Video],
    );
    let err = w
        .sfu
        .publish(
            w.now,
            session.clone(),
            Role::Floor,
            &offer,
            Takeover::Refuse,
        )
        .unwrap_err();
    assert!(matches!(err, crate::MediaError::PublisherExists(_)));
    assert!(
        w.sfu
            .publish(w.now, session, Role::Floor, &offer, Takeover::Replace)
            .is_ok()
    );
}

#[test]
fn garbage_datagrams_are_counted_not_fatal() {
    let session = SessionId::new("s1");
    let mut w = World::new();
    let v = w.add_viewer(5001, &session, &[MediaKind::Audio]);
    let p = w.add_publisher(5000, &session);
    assert!(w.run_until(Duration::from_secs(5), |w| connected(w, 2)));
    let now = w.now;
    let mut seed = 0x1234_5678u32;
    for i in 0..2000u32 {
        seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        let len = (seed % 1400) as usize;
        let data: Vec<u8> = (0..len).map(|k| (seed >> (k % 24)) as u8).collect();
        // From the publisher's known address and from strangers.
        let from = if i % 2 == 0 {
            w.clients[p].addr
        } else {
            SocketAddr::from(([127, 0, 0, 9], 9000 + (i % 50) as u16))
        };
        w.sfu
            .handle_datagram(now, from, SFU_ADDR.parse().unwrap(), &data, &mut w.wire);
    }
    assert!(w.sfu.stats().unroutable_datagrams.get() > 0);
    for tick in 0..50 {
        w.publish_tick(p, tick, (1, 1), 10);
    }
    assert!(seqs(&w.clients[v], MediaKind::Audio).len() > 40);
}

impl World {
    fn sfu_publisher(&self, session: &SessionId) -> crate::ids::PeerId {
        self.sfu.source_of(session, MediaKind::Video).unwrap()
    }
}

impl World {
    /// Runs the floor feed (ticks from `*tick`) until `done`, at most 5 s of virtual time.
    fn floor_until(&mut self, floor: usize, tick: &mut u64, done: impl Fn(&World) -> bool) {
        for _ in 0..250 {
            if done(self) {
                return;
            }
            self.publish_tick(floor, *tick, FLOOR_BASE, 1000);
            *tick += 1;
        }
        panic!("condition not reached in 5 s of floor ticks");
    }

    /// `n` ticks of the floor feed alone (20 ms each), counting on from `tick`.
    fn floor_ticks(&mut self, floor: usize, tick: &mut u64, n: u64) {
        for _ in 0..n {
            self.publish_tick(floor, *tick, FLOOR_BASE, 1000);
            *tick += 1;
        }
    }

    /// `n` ticks of the floor feed and the speaker together (20 ms each).
    fn floor_and_speaker(
        &mut self,
        (floor, floor_tick): (usize, &mut u64),
        (speaker, speaker_tick): (usize, &mut u64),
        n: u64,
    ) {
        for _ in 0..n {
            self.send_tick(floor, *floor_tick, FLOOR_BASE, 1000);
            self.send_tick(speaker, *speaker_tick, SPEAKER_BASE, 1000);
            *floor_tick += 1;
            *speaker_tick += 1;
            self.step(Duration::from_millis(20));
        }
    }

    fn closed_event(&mut self, peer: PeerId) -> Option<Role> {
        std::iter::from_fn(|| self.sfu.poll_event()).find_map(|e| match e {
            MediaEvent::Closed { peer: p, role, .. } if p == peer => Some(role),
            _ => None,
        })
    }
}

/// Sequence and timestamp bases: unrelated, as two real publishers' would be.
const FLOOR_BASE: (u64, u32) = (1000, 5000);
const SPEAKER_BASE: (u64, u32) = (7000, 900_000);

/// A hub's speaker publishes a microphone only: viewers hear the speaker and still see the
/// room's camera, without waiting for a keyframe; when the speaker leaves they hear the room
/// again, on the same audio sequence line.
#[test]
fn audio_only_speaker_replaces_floor_audio_and_keeps_floor_video() {
    let session = SessionId::new("s1");
    let mut w = World::new();
    let viewer = w.add_viewer(5001, &session, AV);
    let (floor, floor_peer) = w.add_publisher_as(5000, &session, Role::Floor, AV, FLOOR_FILL);
    assert!(w.run_until(Duration::from_secs(5), |w| connected(w, 2)));
    let mut ft = 0;
    w.floor_ticks(floor, &mut ft, 50);
    assert!(count_since(&w.clients[viewer], 0, MediaKind::Video, FLOOR_FILL) > 30);

    // The speaker joins while the floor keeps sending.
    let (speaker, speaker_peer) = w.add_publisher_as(
        5002,
        &session,
        Role::Speaker,
        &[MediaKind::Audio],
        SPEAKER_FILL,
    );
    w.floor_until(floor, &mut ft, |w| {
        w.clients[speaker].rtc.is_connected()
            && w.sfu.source_of(&session, MediaKind::Audio) == Some(speaker_peer)
    });
    assert_eq!(
        w.sfu.source_of(&session, MediaKind::Video),
        Some(floor_peer),
        "a speaker without video leaves the floor's video on"
    );

    let plis = w.sfu.stats().plis.get();
    let start = w.clients[viewer].received.len();
    let mut st = 0;
    w.floor_and_speaker((floor, &mut ft), (speaker, &mut st), 100);
    let v = &w.clients[viewer];
    assert!(only_since_first(v, start, MediaKind::Audio, SPEAKER_FILL));
    let speaker_audio = count_since(v, start, MediaKind::Audio, SPEAKER_FILL);
    assert!(speaker_audio >= 95, "speaker audio: {speaker_audio} of 100");
    // 100 ticks = 50 frames of 3 packets; all of them, since no keyframe wait began.
    let floor_video = count_since(v, start, MediaKind::Video, FLOOR_FILL);
    assert!(floor_video >= 147, "floor video: {floor_video} of 150");
    assert_eq!(
        w.sfu.stats().plis.get(),
        plis,
        "the video source did not change: nobody waits for a keyframe"
    );

    // The speaker leaves: back to the floor's audio.
    w.clients[speaker].rtc.disconnect();
    w.sfu.close_peer(w.now, speaker_peer).unwrap();
    assert_eq!(w.closed_event(speaker_peer), Some(Role::Speaker));
    assert_eq!(
        w.sfu.source_of(&session, MediaKind::Audio),
        Some(floor_peer)
    );
    let start = w.clients[viewer].received.len();
    w.floor_ticks(floor, &mut ft, 100);
    let v = &w.clients[viewer];
    assert!(only_since_first(v, start, MediaKind::Audio, FLOOR_FILL));
    let floor_audio = count_since(v, start, MediaKind::Audio, FLOOR_FILL);
    assert!(
        floor_audio >= 95,
        "floor audio after the speaker: {floor_audio}"
    );
    let floor_video = count_since(v, start, MediaKind::Video, FLOOR_FILL);
    assert!(
        floor_video >= 147,
        "floor video after the speaker: {floor_video}"
    );
    // floor → speaker → floor on one unbroken audio sequence, one SSRC.
    assert_continuous(&seqs(v, MediaKind::Audio));
    assert_continuous(&seqs(v, MediaKind::Video));
    assert!(one_ssrc_per_kind(v));
}

/// A speaker with a camera takes both kinds: the viewer's video switches on the speaker's
/// keyframe (asked for by PLI) and carries no floor video meanwhile, and the floor is not asked
/// for keyframes nobody receives. When the speaker leaves, video waits for a floor keyframe,
/// which the floor is asked for.
#[test]
fn speaker_video_replaces_floor_video_from_a_keyframe_and_back() {
    let session = SessionId::new("s1");
    let mut w = World::new();
    let viewer = w.add_viewer(5001, &session, AV);
    let (floor, floor_peer) = w.add_publisher_as(5000, &session, Role::Floor, AV, FLOOR_FILL);
    assert!(w.run_until(Duration::from_secs(5), |w| connected(w, 2)));
    let mut ft = 0;
    w.floor_ticks(floor, &mut ft, 50);
    assert!(count_since(&w.clients[viewer], 0, MediaKind::Video, FLOOR_FILL) > 30);

    let (speaker, speaker_peer) =
        w.add_publisher_as(5002, &session, Role::Speaker, AV, SPEAKER_FILL);
    w.floor_until(floor, &mut ft, |w| {
        w.clients[speaker].rtc.is_connected()
            && w.sfu.source_of(&session, MediaKind::Video) == Some(speaker_peer)
    });
    assert_eq!(
        w.sfu.source_of(&session, MediaKind::Audio),
        Some(speaker_peer)
    );

    // Asked as soon as it becomes the video source, before it sent anything.
    w.step(Duration::from_millis(20));
    assert!(
        w.clients[speaker].plis > 0,
        "the speaker is asked for a keyframe at the switch"
    );

    // The speaker's stream starts after its frame 0, so only a PLI gets it a keyframe.
    let floor_plis = w.clients[floor].plis;
    let start = w.clients[viewer].received.len();
    let mut st = 2;
    w.floor_and_speaker((floor, &mut ft), (speaker, &mut st), 100);
    assert_eq!(
        w.clients[floor].plis, floor_plis,
        "the floor is not asked for keyframes while the speaker is the video source"
    );
    let v = &w.clients[viewer];
    assert!(only_since_first(v, start, MediaKind::Video, SPEAKER_FILL));
    assert!(only_since_first(v, start, MediaKind::Audio, SPEAKER_FILL));
    assert!(
        count_since(v, start, MediaKind::Video, FLOOR_FILL) <= 3,
        "no floor video while the speaker is the video source"
    );
    let speaker_video = count_since(v, start, MediaKind::Video, SPEAKER_FILL);
    assert!(
        speaker_video >= 120,
        "speaker video: {speaker_video} of 150"
    );
    assert!(count_since(v, start, MediaKind::Audio, SPEAKER_FILL) >= 95);
    let first = first_since(v, start, MediaKind::Video, SPEAKER_FILL).unwrap();
    assert!(first.keyframe, "the speaker's video starts on a keyframe");

    // The speaker leaves: the floor is asked for a keyframe and video resumes on it.
    w.clients[speaker].rtc.disconnect();
    w.sfu.close_peer(w.now, speaker_peer).unwrap();
    assert_eq!(
        w.sfu.source_of(&session, MediaKind::Video),
        Some(floor_peer)
    );
    let start = w.clients[viewer].received.len();
    w.floor_ticks(floor, &mut ft, 100);
    assert!(
        w.clients[floor].plis > floor_plis,
        "the floor was asked for a keyframe"
    );
    let v = &w.clients[viewer];
    assert!(only_since_first(v, start, MediaKind::Video, FLOOR_FILL));
    assert!(only_since_first(v, start, MediaKind::Audio, FLOOR_FILL));
    let floor_video = count_since(v, start, MediaKind::Video, FLOOR_FILL);
    assert!(
        floor_video >= 120,
        "floor video after the speaker: {floor_video}"
    );
    let first = first_since(v, start, MediaKind::Video, FLOOR_FILL).unwrap();
    assert!(first.keyframe, "the floor's video resumes on a keyframe");
    assert_continuous(&seqs(v, MediaKind::Audio));
    assert_continuous(&seqs(v, MediaKind::Video));
    assert!(one_ssrc_per_kind(v));
}

#[test]
fn a_lost_video_packet_is_resent_after_the_viewers_nack() {
    let session = SessionId::new("s1");
    let mut w = World::new();
    let viewer = w.add_viewer(5001, &session, AV);
    let (floor, _) = w.add_publisher_as(5000, &session, Role::Floor, AV, FLOOR_FILL);
    assert!(w.run_until(Duration::from_secs(5), |w| connected(w, 2)));
    let mut ft = 0;
    w.floor_ticks(floor, &mut ft, 50);
    w.lose = Some((w.clients[viewer].addr, 2));
    w.floor_ticks(floor, &mut ft, 100);
    assert_eq!(w.lose.map(|l| l.1), Some(0), "two video packets were lost");
    // Resends are counted as "sent beyond forwarded" from str0m's egress stats, so a report
    // taken while copies wait in str0m's queue counts them late; one taken with nothing
    // queued settles the count (here: after the feed pauses for 3 s).
    for _ in 0..150 {
        w.step(Duration::from_millis(20));
    }
    let mut video = seqs(&w.clients[viewer], MediaKind::Video);
    video.sort_unstable();
    video.dedup();
    assert_continuous(&video);
    let stats = w.sfu.stats();
    assert!(stats.nacks.get() > 0, "the viewer's NACKs reached the SFU");
    assert!(
        stats.retransmitted.get() >= 2,
        "resent: {}",
        stats.retransmitted.get()
    );
}

/// A viewer whose link loses most video NACKs all of it, again and again: our egress resends
/// at most its budget (a burst, then 15 % of what it forwards to that viewer), counts what it
/// refuses, and a second viewer of the session is unharmed. (Soon the video gate pauses the
/// victim's video: see the next test.)
#[test]
fn a_viewer_nacking_everything_gets_a_bounded_share_of_resends() {
    let session = SessionId::new("s1");
    let mut w = World::new();
    let victim = w.add_viewer(5001, &session, AV);
    let other = w.add_viewer(5002, &session, AV);
    let (floor, _) = w.add_publisher_as(5000, &session, Role::Floor, AV, FLOOR_FILL);
    assert!(w.run_until(Duration::from_secs(5), |w| connected(w, 3)));
    let mut ft = 0;
    w.floor_ticks(floor, &mut ft, 50);
    let before = w.clients[other].received.len();
    let stats = w.sfu.stats();
    let video_before = stats.rtp_out.packets(Kind::Video);
    // Two of every three video datagrams (the only ones over 300 bytes) to the victim are
    // lost for 4 s, resends included: it NACKs most of what it should get, again and again.
    w.thin = Some((w.clients[victim].addr, 0));
    w.floor_ticks(floor, &mut ft, 200);
    w.thin = None;
    let seen = w.thin_seen as u64;
    let to_other = count_since(&w.clients[other], before, MediaKind::Video, FLOOR_FILL) as u64;
    let forwarded = stats.rtp_out.packets(Kind::Video) - video_before - to_other;
    let resent = seen.saturating_sub(forwarded);
    eprintln!(
        "forwarded {forwarded}, resent {resent}, refused {}",
        stats.resends_refused.get()
    );
    assert!(forwarded >= 50, "forwarded {forwarded}");
    assert!(
        stats.resends_refused.get() > 0,
        "the budget refused some resends"
    );
    assert!(
        resent as f32 <= 48.0 + 0.15 * forwarded as f32 + 1.0,
        "resent {resent} for {forwarded} forwarded"
    );
    assert!(resent >= 48, "the burst was resent: {resent}");
    let o = &w.clients[other];
    assert!(count_since(o, before, MediaKind::Video, FLOOR_FILL) >= 290);
    assert_continuous(&seqs(o, MediaKind::Video));
}

/// A viewer whose link loses most of its video (and of the probes' padding) gets its video
/// paused and is told on its captions channel; its audio and a second viewer's video go on.
/// When the link recovers, the probes get through and its video comes back, from a keyframe,
/// within 5 s.
#[test]
fn a_thin_link_pauses_the_video_and_probes_bring_it_back() {
    let session = SessionId::new("s1");
    let mut w = World::new();
    let victim = w.add_viewer_with_channel(5001, &session, AV, Some(CAPTIONS_LABEL));
    let other = w.add_viewer(5002, &session, AV);
    let (floor, _) = w.add_publisher_as(5000, &session, Role::Floor, AV, FLOOR_FILL);
    assert!(w.run_until(Duration::from_secs(5), |w| connected(w, 3)));
    let mut ft = 0;
    w.floor_ticks(floor, &mut ft, 50);
    let stats = w.sfu.stats();
    let audio_before = count_since(&w.clients[victim], 0, MediaKind::Audio, FLOOR_FILL);
    let other_before = w.clients[other].received.len();
    // Padding datagrams are ≈ 290 bytes, audio ≈ 120: the thin link takes two of every three
    // video and padding datagrams, never audio.
    w.thin_min_len = 250;
    w.thin = Some((w.clients[victim].addr, 0));
    w.floor_ticks(floor, &mut ft, 150);
    assert_eq!(stats.video_pauses.get(), 1, "paused once");
    let paused_at = w.clients[victim].received.len();
    w.floor_ticks(floor, &mut ft, 250);
    assert_eq!(stats.video_resumes.get(), 0, "lossy probes keep it paused");
    let v = &w.clients[victim];
    assert_eq!(
        count_since(v, paused_at, MediaKind::Video, FLOOR_FILL),
        0,
        "no video while paused"
    );
    assert!(stats.video_paused_packets.get() > 100);
    let audio = count_since(v, 0, MediaKind::Audio, FLOOR_FILL) - audio_before;
    assert!(audio >= 395, "the audio goes on: {audio} of 400");
    assert!(
        v.messages.iter().any(|(label, m)| label == CAPTIONS_LABEL
            && m == r#"{"type":"link","video":"paused","reason":"weak_connection"}"#),
        "told: {:?}",
        v.messages
    );
    let o = &w.clients[other];
    assert!(count_since(o, other_before, MediaKind::Video, FLOOR_FILL) >= 500);
    assert_continuous(&seqs(o, MediaKind::Video));

    w.thin = None;
    let lifted = w.clients[victim].received.len();
    let mut back_after = None;
    for tick in 0..250 {
        w.floor_ticks(floor, &mut ft, 1);
        if stats.video_resumes.get() == 1 && back_after.is_none() {
            back_after = Some(tick * 20);
        }
    }
    let back_after = back_after.expect("video came back");
    eprintln!("video back {back_after} ms after the link recovered");
    assert!(back_after <= 5_000, "back after {back_after} ms");
    let v = &w.clients[victim];
    let video: Vec<&Rx> = v.received[lifted..]
        .iter()
        .filter(|r| r.kind == MediaKind::Video && r.fill == FLOOR_FILL)
        .collect();
    assert!(video.len() > 50, "video flows again: {}", video.len());
    assert!(video[0].keyframe, "from a keyframe");
    let after: Vec<u64> = video.iter().map(|r| r.seq).collect();
    assert_continuous(&after);
    assert!(
        v.messages
            .last()
            .is_some_and(|(_, m)| m == r#"{"type":"link","video":"on"}"#),
        "{:?}",
        v.messages
    );
    // Probe padding counts as sent, like everything else (the SFU publishes its count once a
    // turn, so the replies of the last turn may not be in it yet).
    let (counted, sent) = (stats.udp_tx_datagrams.get(), w.wire.1);
    eprintln!("datagrams sent {sent}, counted {counted}");
    assert!(
        counted.abs_diff(sent) <= 10,
        "sent {sent}, counted {counted}"
    );
}

/// A viewer that offers RED gets each Opus packet as RED carrying the one before (a lone
/// loss is then recovered); a viewer that does not gets plain Opus.
#[test]
fn viewers_offering_red_get_the_previous_opus_packet_too() {
    let session = SessionId::new("s1");
    let mut w = World::new();
    let plain = w.add_viewer(5001, &session, AV);
    CLIENT_RED.set(true);
    let with_red = w.add_viewer(5002, &session, AV);
    CLIENT_RED.set(false);
    let (floor, _) = w.add_publisher_as(5000, &session, Role::Floor, AV, FLOOR_FILL);
    assert!(w.run_until(Duration::from_secs(5), |w| connected(w, 3)));
    let mut ft = 0;
    w.floor_ticks(floor, &mut ft, 100);
    let audio = |c: &Client| -> Vec<(bool, usize)> {
        c.received
            .iter()
            .filter(|r| r.kind == MediaKind::Audio && r.fill == FLOOR_FILL)
            .map(|r| (r.red, r.len))
            .collect()
    };
    let plain = audio(&w.clients[plain]);
    let red = audio(&w.clients[with_red]);
    assert!(
        plain.len() >= 95 && red.len() >= 95,
        "{} {}",
        plain.len(),
        red.len()
    );
    assert!(plain.iter().all(|&(r, len)| !r && len == 80), "plain Opus");
    if STR0M_EGRESS.get() {
        return; // RED is written by our own egress only
    }
    // 80-byte Opus packets: a redundant block header (4), the primary's (1), both payloads.
    assert!(red.iter().all(|&(r, _)| r), "all RED");
    assert!(
        red[1..].iter().all(|&(_, len)| len == 4 + 1 + 80 + 80),
        "each with the packet before: {:?}",
        &red[..5]
    );
    assert_continuous(&seqs(&w.clients[with_red], MediaKind::Audio));
}

/// A session where one viewer has watched the floor for `ticks` 20 ms ticks; the viewer's
/// index.
fn one_viewer_of_the_floor(ticks: u64) -> (World, usize) {
    let session = SessionId::new("s1");
    let mut w = World::new();
    let viewer = w.add_viewer(5001, &session, AV);
    let (floor, _) = w.add_publisher_as(5000, &session, Role::Floor, AV, FLOOR_FILL);
    assert!(w.run_until(Duration::from_secs(5), |w| connected(w, 2)));
    let mut ft = 0;
    w.floor_ticks(floor, &mut ft, ticks);
    (w, viewer)
}

/// Our own egress tells str0m what it sent: the viewer gets sender reports for each of its
/// streams, counting what it received and with an RTP time on the stream's own timeline (what
/// a browser synchronises audio with video by).
#[test]
fn viewers_get_true_sender_reports() {
    for str0m_egress in [false, true] {
        STR0M_EGRESS.set(str0m_egress);
        let (w, viewer) = one_viewer_of_the_floor(250);
        let v = &w.clients[viewer];
        for (kind, clock) in [(MediaKind::Audio, 48_000i64), (MediaKind::Video, 90_000)] {
            let got: Vec<&Rx> = v.received.iter().filter(|r| r.kind == kind).collect();
            let ssrc = got[0].ssrc;
            let sr = v
                .sender_reports
                .iter()
                .rev()
                .find(|s| s.ssrc == ssrc)
                .unwrap_or_else(|| panic!("{kind:?}: no sender report ({str0m_egress})"));
            let count = sr.sender_packet_count as usize;
            assert!(
                count >= got.len() / 2 && count <= got.len(),
                "{kind:?}: reported {count}, received {} ({str0m_egress})",
                got.len()
            );
            assert_eq!(i64::from(sr.rtp_time.denom()), clock, "{kind:?}");
            let first = got[0].timestamp;
            let last = got.last().unwrap().timestamp;
            let at = (sr.rtp_time.numer() as u32).wrapping_sub(first) as i64;
            let span = last.wrapping_sub(first) as i64;
            assert!(
                (0..=span + clock).contains(&at),
                "{kind:?}: report at {at} ticks from the first packet, last at {span} ({str0m_egress})"
            );
        }
    }
    STR0M_EGRESS.set(false);
}

fn speaker_video_flag(w: &World, session: &SessionId) -> bool {
    w.sfu
        .stats()
        .sessions()
        .into_iter()
        .any(|(s, c)| &s == session && c.speaker_video)
}

#[test]
fn a_floor_viewer_keeps_the_floor_feed_while_a_speaker_holds_the_floor() {
    let session = SessionId::new("s1");
    let mut w = World::new();
    let viewer = w.add_viewer(5001, &session, AV);
    let pip = w.add_viewer_following(5003, &session, AV, None, Follow::Floor);
    let (floor, _) = w.add_publisher_as(5000, &session, Role::Floor, AV, FLOOR_FILL);
    assert!(w.run_until(Duration::from_secs(5), |w| connected(w, 3)));
    let mut ft = 0;
    w.floor_ticks(floor, &mut ft, 50);
    for c in [viewer, pip] {
        assert!(count_since(&w.clients[c], 0, MediaKind::Video, FLOOR_FILL) > 30);
    }
    assert!(!speaker_video_flag(&w, &session));

    let (speaker, speaker_peer) =
        w.add_publisher_as(5002, &session, Role::Speaker, AV, SPEAKER_FILL);
    w.floor_until(floor, &mut ft, |w| {
        w.clients[speaker].rtc.is_connected()
            && w.sfu.source_of(&session, MediaKind::Video) == Some(speaker_peer)
    });
    assert!(speaker_video_flag(&w, &session), "the speaker sends video");
    let (v_start, p_start) = (
        w.clients[viewer].received.len(),
        w.clients[pip].received.len(),
    );
    let mut st = 2;
    w.floor_and_speaker((floor, &mut ft), (speaker, &mut st), 100);

    let v = &w.clients[viewer];
    assert!(only_since_first(v, v_start, MediaKind::Video, SPEAKER_FILL));
    let p = &w.clients[pip];
    for kind in [MediaKind::Video, MediaKind::Audio] {
        assert_eq!(
            count_since(p, p_start, kind, SPEAKER_FILL),
            0,
            "the floor viewer gets none of the speaker's {kind:?}"
        );
    }
    let pip_video = count_since(p, p_start, MediaKind::Video, FLOOR_FILL);
    assert!(
        pip_video >= 145,
        "floor video under the speaker: {pip_video} of 150"
    );
    assert!(count_since(p, p_start, MediaKind::Audio, FLOOR_FILL) >= 95);

    // The speaker leaves: nothing changes for the floor viewer, not even a keyframe wait.
    w.clients[speaker].rtc.disconnect();
    w.sfu.close_peer(w.now, speaker_peer).unwrap();
    assert!(!speaker_video_flag(&w, &session));
    let p_start = w.clients[pip].received.len();
    w.floor_ticks(floor, &mut ft, 50);
    let p = &w.clients[pip];
    assert!(count_since(p, p_start, MediaKind::Video, FLOOR_FILL) >= 70);
    assert_continuous(&seqs(p, MediaKind::Audio));
    assert_continuous(&seqs(p, MediaKind::Video));
    assert!(one_ssrc_per_kind(p));
}

#[test]
fn a_floor_viewer_joining_under_a_speaker_gets_a_floor_keyframe() {
    let session = SessionId::new("s1");
    let mut w = World::new();
    let viewer = w.add_viewer(5001, &session, AV);
    let (floor, _) = w.add_publisher_as(5000, &session, Role::Floor, AV, FLOOR_FILL);
    let (speaker, speaker_peer) =
        w.add_publisher_as(5002, &session, Role::Speaker, AV, SPEAKER_FILL);
    assert!(w.run_until(Duration::from_secs(5), |w| connected(w, 3)));
    assert_eq!(
        w.sfu.source_of(&session, MediaKind::Video),
        Some(speaker_peer)
    );
    let (mut ft, mut st) = (2, 2);
    w.floor_and_speaker((floor, &mut ft), (speaker, &mut st), 50);
    let floor_plis = w.clients[floor].plis;

    let pip = w.add_viewer_following(5003, &session, &[MediaKind::Video], None, Follow::Floor);
    assert!(w.run_until(Duration::from_secs(5), |w| connected(w, 4)));
    w.floor_and_speaker((floor, &mut ft), (speaker, &mut st), 100);
    assert!(
        w.clients[floor].plis > floor_plis,
        "the floor is asked for a keyframe for its new viewer"
    );
    let p = &w.clients[pip];
    let first = first_since(p, 0, MediaKind::Video, FLOOR_FILL).expect("floor video");
    assert!(first.keyframe, "the floor viewer starts on a keyframe");
    assert_eq!(count_since(p, 0, MediaKind::Video, SPEAKER_FILL), 0);
    assert!(count_since(p, 0, MediaKind::Video, FLOOR_FILL) >= 120);
    assert!(only_since_first(
        &w.clients[viewer],
        0,
        MediaKind::Video,
        SPEAKER_FILL
    ));
}

fn drain_tap(rx: &mut tokio::sync::mpsc::Receiver<TapPacket>) -> Vec<TapPacket> {
    std::iter::from_fn(|| rx.try_recv().ok()).collect()
}

/// The audio tap carries what viewers hear: the floor's audio, then the speaker's while it
/// sends audio, then the floor's again; never video, and one copy per packet however many
/// viewers there are.
#[test]
fn audio_tap_follows_the_current_audio_source() {
    let (tx, mut rx) = tokio::sync::mpsc::channel(1_000);
    let session = SessionId::new("s1");
    let mut w = World::with_config(MediaConfig {
        audio_tap: Some(tx),
        ..MediaConfig::default()
    });
    let viewer = w.add_viewer(5001, &session, AV);
    w.add_viewer(5003, &session, AV);
    w.add_viewer(5004, &session, &[MediaKind::Audio]);
    let (floor, floor_peer) = w.add_publisher_as(5000, &session, Role::Floor, AV, FLOOR_FILL);
    assert!(w.run_until(Duration::from_secs(5), |w| connected(w, 4)));
    let mut ft = 0;
    w.floor_ticks(floor, &mut ft, 50);
    let floor_packets = drain_tap(&mut rx);
    // 50 audio packets in; 3 viewers and 75 video packets must not multiply them.
    assert_eq!(floor_packets.len(), 50);
    assert!(
        floor_packets.iter().all(|p| p.source == floor_peer
            && p.session == session
            && p.payload == [FLOOR_FILL; 80])
    );
    assert_eq!(floor_packets[0].seq, FLOOR_BASE.0);
    assert_eq!(floor_packets[0].timestamp, FLOOR_BASE.1);
    assert!(floor_packets.windows(2).all(|p| p[1].seq == p[0].seq + 1
        && p[1].timestamp == p[0].timestamp.wrapping_add(960)));
    assert_eq!(
        count_since(&w.clients[viewer], 0, MediaKind::Audio, FLOOR_FILL),
        50
    );

    // A speaker with a microphone takes the audio (and only the audio).
    let (speaker, speaker_peer) = w.add_publisher_as(
        5002,
        &session,
        Role::Speaker,
        &[MediaKind::Audio],
        SPEAKER_FILL,
    );
    w.floor_until(floor, &mut ft, |w| {
        w.clients[speaker].rtc.is_connected()
            && w.sfu.source_of(&session, MediaKind::Audio) == Some(speaker_peer)
    });
    drain_tap(&mut rx);
    let mut st = 0;
    w.floor_and_speaker((floor, &mut ft), (speaker, &mut st), 50);
    let speaker_packets = drain_tap(&mut rx);
    assert_eq!(
        speaker_packets.len(),
        50,
        "the floor's audio is not tapped too"
    );
    assert!(
        speaker_packets
            .iter()
            .all(|p| p.source == speaker_peer && p.payload == [SPEAKER_FILL; 80]),
        "only the speaker's audio is tapped while it holds the floor"
    );
    assert_eq!(speaker_packets[0].seq, SPEAKER_BASE.0);

    // The speaker leaves: the tap follows the viewers back to the floor's audio.
    w.clients[speaker].rtc.disconnect();
    w.sfu.close_peer(w.now, speaker_peer).unwrap();
    assert_eq!(w.closed_event(speaker_peer), Some(Role::Speaker));
    w.floor_ticks(floor, &mut ft, 20);
    let back = drain_tap(&mut rx);
    assert_eq!(back.len(), 20);
    assert!(back.iter().all(|p| p.source == floor_peer));
    assert_eq!(w.sfu.stats().tap_dropped.get(), 0);
}

/// A consumer that does not read loses packets (counted); the media loop goes on and
/// viewers get everything. A consumer that is gone costs nothing and counts nothing.
#[test]
fn audio_tap_drops_and_counts_when_full() {
    let (tx, mut rx) = tokio::sync::mpsc::channel(10);
    let session = SessionId::new("s1");
    let mut w = World::with_config(MediaConfig {
        audio_tap: Some(tx),
        ..MediaConfig::default()
    });
    let viewer = w.add_viewer(5001, &session, &[MediaKind::Audio]);
    let floor = w.add_publisher(5000, &session);
    assert!(w.run_until(Duration::from_secs(5), |w| connected(w, 2)));
    for tick in 0..100 {
        w.publish_tick(floor, tick, FLOOR_BASE, 1000);
    }
    assert_eq!(w.sfu.stats().tap_dropped.get(), 90);
    let kept = drain_tap(&mut rx);
    assert_eq!(kept.len(), 10);
    assert_eq!(
        kept[0].seq, FLOOR_BASE.0,
        "the oldest are kept, the newest dropped"
    );
    assert_eq!(seqs(&w.clients[viewer], MediaKind::Audio).len(), 100);

    drop(rx);
    for tick in 100..150 {
        w.publish_tick(floor, tick, FLOOR_BASE, 1000);
    }
    assert_eq!(w.sfu.stats().tap_dropped.get(), 90);
    assert_eq!(seqs(&w.clients[viewer], MediaKind::Audio).len(), 150);
}

/// A viewer that opened a data channel labelled `captions` in its offer receives caption
/// text on it; a viewer without a data channel gets its media as before and no captions;
/// a channel with another label is closed; viewers of other sessions get nothing.
#[test]
fn captions_reach_viewers_with_a_captions_channel() {
    let session = SessionId::new("s1");
    let other = SessionId::new("s2");
    let mut w = World::new();
    let with = w.add_viewer_with_channel(5001, &session, AV, Some(CAPTIONS_LABEL));
    let without = w.add_viewer(5002, &session, AV);
    let chat = w.add_viewer_with_channel(5003, &session, &[MediaKind::Audio], Some("chat"));
    let elsewhere = w.add_viewer_with_channel(5004, &other, AV, Some(CAPTIONS_LABEL));
    let floor = w.add_publisher(5000, &session);
    assert!(w.run_until(Duration::from_secs(5), |w| {
        connected(w, 5)
            && w.clients[with].channel_open(CAPTIONS_LABEL)
            && w.clients[elsewhere].channel_open(CAPTIONS_LABEL)
            && w.clients[chat].closed_channels == ["chat"]
    }));
    for tick in 0..25 {
        w.publish_tick(floor, tick, FLOOR_BASE, 1000);
    }
    w.sfu
        .send_captions(w.now, &session, r#"{"text":"hello","final":false}"#);
    w.sfu
        .send_captions(w.now, &session, r#"{"text":"hello world","final":true}"#);
    for tick in 25..50 {
        w.publish_tick(floor, tick, FLOOR_BASE, 1000);
    }

    let label = CAPTIONS_LABEL.to_string();
    assert_eq!(
        w.clients[with].messages,
        [
            (
                label.clone(),
                r#"{"text":"hello","final":false}"#.to_string()
            ),
            (label, r#"{"text":"hello world","final":true}"#.to_string()),
        ]
    );
    for c in [without, chat, elsewhere] {
        assert!(w.clients[c].messages.is_empty(), "client {c} got captions");
    }
    assert_eq!(w.sfu.stats().captions_sent.get(), 2);
    assert_eq!(w.sfu.stats().captions_dropped.get(), 0);
    // Media is unaffected (the last packet may still be on its way).
    for c in [with, without, chat] {
        let audio = seqs(&w.clients[c], MediaKind::Audio).len();
        assert!(audio >= 49, "client {c}: {audio} audio packets of 50");
    }
    for c in [with, without] {
        let video = seqs(&w.clients[c], MediaKind::Video).len();
        assert!(video >= 70, "client {c}: {video} video packets of 75");
    }

    // The viewer closes its channel: nothing more is written to it.
    let id = w.clients[with].channels[0].0;
    w.clients[with].rtc.direct_api().close_data_channel(id);
    assert!(w.run_until(Duration::from_secs(2), |w| {
        !w.clients[with].channel_open(CAPTIONS_LABEL)
    }));
    w.step(Duration::from_millis(100));
    w.sfu.send_captions(w.now, &session, "late");
    w.step(Duration::from_millis(100));
    assert_eq!(w.clients[with].messages.len(), 2);
    assert_eq!(w.sfu.stats().captions_sent.get(), 2);
}

/// A viewer that does not acknowledge (its path is gone) misses captions once its bounded
/// send buffer is full, instead of the SFU queueing for it.
#[test]
fn captions_to_a_stalled_viewer_are_dropped_and_counted() {
    let session = SessionId::new("s1");
    let mut w = World::new();
    let viewer = w.add_viewer_with_channel(5001, &session, AV, Some(CAPTIONS_LABEL));
    assert!(w.run_until(Duration::from_secs(5), |w| {
        w.clients[viewer].channel_open(CAPTIONS_LABEL)
    }));
    // The viewer's address no longer receives anything.
    w.clients[viewer].addr = ([127, 0, 0, 1], 1).into();
    let text = "x".repeat(1000);
    for _ in 0..100 {
        w.sfu.send_captions(w.now, &session, &text);
        w.step(Duration::from_millis(10));
    }
    let stats = w.sfu.stats();
    assert!(stats.captions_sent.get() > 0);
    assert!(stats.captions_dropped.get() > 0);
    assert!(
        stats.captions_sent.get() <= (super::sfu::DATA_CHANNEL_BUFFER / 1000) as u64,
        "sent {}",
        stats.captions_sent.get()
    );
    assert_eq!(
        stats.captions_sent.get() + stats.captions_dropped.get(),
        100
    );
}

/// A caption goes out on the driver's next pass, even to a viewer with nothing else going
/// on (no media, no timer due).
#[test]
fn a_caption_goes_out_at_once() {
    let session = SessionId::new("s1");
    let mut w = World::new();
    let viewer = w.add_viewer_with_channel(5001, &session, AV, Some(CAPTIONS_LABEL));
    assert!(w.run_until(Duration::from_secs(5), |w| {
        w.clients[viewer].channel_open(CAPTIONS_LABEL)
    }));
    for i in 0..20 {
        w.step(Duration::from_millis(97));
        let text = format!("caption {i}");
        w.sfu.send_captions(w.now, &session, &text);
        w.step(Duration::from_millis(1));
        assert_eq!(
            w.clients[viewer].messages.last().map(|m| m.1.as_str()),
            Some(text.as_str())
        );
    }
}

/// A player that opens a second `captions` channel (it recreated its own) gets each caption
/// once, on the new one; the old one is closed.
#[test]
fn a_second_captions_channel_replaces_the_first() {
    let session = SessionId::new("s1");
    let mut w = World::new();
    let viewer = w.add_viewer_with_channel(5001, &session, AV, Some(CAPTIONS_LABEL));
    assert!(w.run_until(Duration::from_secs(5), |w| {
        w.clients[viewer].channel_open(CAPTIONS_LABEL)
    }));
    let first = w.clients[viewer].channels[0].0;
    let second =
        w.clients[viewer]
            .rtc
            .direct_api()
            .create_data_channel(str0m::channel::ChannelConfig {
                label: CAPTIONS_LABEL.to_string(),
                ..Default::default()
            });
    assert!(w.run_until(Duration::from_secs(2), |w| {
        let c = &w.clients[viewer];
        c.closed_channels == [CAPTIONS_LABEL] && c.channels.iter().any(|ch| ch.0 == second)
    }));
    assert!(w.clients[viewer].channels.iter().all(|ch| ch.0 != first));
    w.sfu.send_captions(w.now, &session, "once");
    w.step(Duration::from_millis(20));
    assert_eq!(
        w.clients[viewer].messages,
        [(CAPTIONS_LABEL.to_string(), "once".to_string())]
    );
    assert_eq!(w.sfu.stats().captions_sent.get(), 1);
}

/// The hijack of issue 16: an unsigned binding request naming another peer's ufrag, sent
/// from the publisher's (spoofed) address. It is dropped and counted; the publisher keeps
/// its address, so the viewers keep receiving every packet.
#[test]
fn spoofed_binding_request_cannot_steal_the_publishers_address() {
    let session = SessionId::new("s1");
    let mut w = World::new();
    let victim = w.add_viewer(5001, &session, AV);
    // The attacker is an ordinary viewer: it learns its own server ufrag from its answer.
    let (_c, offer) = Client::new(5002, w.now, Direction::RecvOnly, AV);
    let answer = w
        .sfu
        .subscribe(w.now, session.clone(), &offer, Follow::Current)
        .expect("attacker's viewer");
    let attacker_ufrag = answer
        .sdp
        .lines()
        .find_map(|l| l.strip_prefix("a=ice-ufrag:"))
        .expect("ufrag in the answer")
        .to_owned();
    let p = w.add_publisher(5000, &session);
    assert!(w.run_until(
        Duration::from_secs(5),
        |w| w.clients[victim].rtc.is_connected() && w.clients[p].rtc.is_connected()
    ));
    let forged = crate::stun::tests::binding_request(format!("{attacker_ufrag}:x").as_bytes());
    let mut tick = 0;
    w.floor_ticks(p, &mut tick, 10);
    let before = seqs(&w.clients[victim], MediaKind::Audio).len();
    let publisher = w.clients[p].addr;
    for _ in 0..50 {
        let now = w.now;
        w.sfu.handle_datagram(
            now,
            publisher,
            SFU_ADDR.parse().unwrap(),
            &forged,
            &mut w.wire,
        );
        w.publish_tick(p, tick, FLOOR_BASE, 1000);
        tick += 1;
    }
    let received = seqs(&w.clients[victim], MediaKind::Audio).len() - before;
    assert!(received >= 48, "victim got {received} of 50 audio packets");
    assert_eq!(w.sfu.stats().stun_unauthenticated.get(), 50);
}

/// One session cannot take every peer slot of the node, and one peer cannot trickle
/// candidates without end.
#[test]
fn peers_per_session_and_candidates_per_peer_are_capped() {
    let mut w = World::with_config(MediaConfig {
        max_peers_per_session: 2,
        max_remote_candidates: 2,
        ..MediaConfig::default()
    });
    let full = SessionId::new("full");
    w.add_viewer(5001, &full, AV);
    w.add_viewer(5002, &full, AV);
    let (_c, offer) = Client::new(5003, w.now, Direction::RecvOnly, AV);
    let err = w
        .sfu
        .subscribe(w.now, full.clone(), &offer, Follow::Current)
        .unwrap_err();
    assert!(matches!(err, crate::MediaError::SessionFull(_, 2)), "{err}");
    let other = w
        .sfu
        .subscribe(w.now, SessionId::new("other"), &offer, Follow::Current)
        .expect("another session still has room");
    let candidate = "a=candidate:1 1 udp 2113937151 127.0.0.1 6000 typ host";
    w.sfu
        .add_candidate(w.now, other.peer, candidate)
        .expect("first");
    w.sfu
        .add_candidate(w.now, other.peer, candidate)
        .expect("second");
    let err = w
        .sfu
        .add_candidate(w.now, other.peer, candidate)
        .unwrap_err();
    assert!(
        matches!(err, crate::MediaError::TooManyCandidates(2)),
        "{err}"
    );
}

/// A viewer that sends a PLI every 20 ms causes one keyframe request to the publisher per
/// `viewer_keyframe_interval`, not one per publisher limit (300 ms): the others' picture is
/// not degraded by a stream of keyframes.
#[test]
fn one_viewers_keyframe_requests_are_spaced_out() {
    let session = SessionId::new("s1");
    let mut w = World::with_config(MediaConfig {
        viewer_keyframe_interval: Duration::from_secs(2),
        ..MediaConfig::default()
    });
    let v = w.add_viewer(5001, &session, AV);
    let p = w.add_publisher(5000, &session);
    assert!(w.run_until(Duration::from_secs(5), |w| connected(w, 2)));
    let mut tick = 0;
    w.floor_until(p, &mut tick, |w| {
        w.clients[v]
            .received
            .iter()
            .any(|r| r.kind == MediaKind::Video)
    });
    let mid = w.clients[v]
        .mids
        .iter()
        .find(|m| m.1 == MediaKind::Video)
        .expect("video mid")
        .0;
    let plis_before = w.clients[p].plis;
    let requests_before = w.sfu.stats().viewer_keyframe_requests.get();
    // 5 s of ticks with a PLI from the viewer on each.
    for _ in 0..250 {
        if let Some(rx) = w.clients[v].rtc.direct_api().stream_rx_by_mid(mid, None) {
            rx.request_keyframe(str0m::media::KeyframeRequestKind::Pli);
        }
        w.publish_tick(p, tick, FLOOR_BASE, 1000);
        tick += 1;
    }
    let asked = w.sfu.stats().viewer_keyframe_requests.get() - requests_before;
    let reached = w.clients[p].plis - plis_before;
    assert!(asked >= 20, "the viewer's PLIs reached the SFU: {asked}");
    assert!(
        (2..=4).contains(&reached),
        "{asked} PLIs in 5 s became {reached} requests to the publisher"
    );
    assert_eq!(
        w.sfu.stats().viewer_keyframe_requests_dropped.get(),
        asked - reached as u64
    );
}

/// Every scenario above, with the node split in two shards: a session's viewers on both,
/// datagrams landing on either socket whoever owns the peer.
fn scenarios() -> Vec<(&'static str, fn())> {
    vec![
        (
            "forwards_to_viewers_and_survives_publisher_restart",
            forwards_to_viewers_and_survives_publisher_restart,
        ),
        (
            "second_floor_publisher_is_refused",
            second_floor_publisher_is_refused,
        ),
        (
            "garbage_datagrams_are_counted_not_fatal",
            garbage_datagrams_are_counted_not_fatal,
        ),
        (
            "audio_only_speaker_replaces_floor_audio_and_keeps_floor_video",
            audio_only_speaker_replaces_floor_audio_and_keeps_floor_video,
        ),
        (
            "speaker_video_replaces_floor_video_from_a_keyframe_and_back",
            speaker_video_replaces_floor_video_from_a_keyframe_and_back,
        ),
        (
            "a_lost_video_packet_is_resent_after_the_viewers_nack",
            a_lost_video_packet_is_resent_after_the_viewers_nack,
        ),
        (
            "a_floor_viewer_keeps_the_floor_feed_while_a_speaker_holds_the_floor",
            a_floor_viewer_keeps_the_floor_feed_while_a_speaker_holds_the_floor,
        ),
        (
            "a_floor_viewer_joining_under_a_speaker_gets_a_floor_keyframe",
            a_floor_viewer_joining_under_a_speaker_gets_a_floor_keyframe,
        ),
        (
            "audio_tap_follows_the_current_audio_source",
            audio_tap_follows_the_current_audio_source,
        ),
        (
            "audio_tap_drops_and_counts_when_full",
            audio_tap_drops_and_counts_when_full,
        ),
        (
            "captions_reach_viewers_with_a_captions_channel",
            captions_reach_viewers_with_a_captions_channel,
        ),
        (
            "captions_to_a_stalled_viewer_are_dropped_and_counted",
            captions_to_a_stalled_viewer_are_dropped_and_counted,
        ),
        ("a_caption_goes_out_at_once", a_caption_goes_out_at_once),
        (
            "a_second_captions_channel_replaces_the_first",
            a_second_captions_channel_replaces_the_first,
        ),
        (
            "spoofed_binding_request_cannot_steal_the_publishers_address",
            spoofed_binding_request_cannot_steal_the_publishers_address,
        ),
        (
            "peers_per_session_and_candidates_per_peer_are_capped",
            peers_per_session_and_candidates_per_peer_are_capped,
        ),
        (
            "one_viewers_keyframe_requests_are_spaced_out",
            one_viewers_keyframe_requests_are_spaced_out,
        ),
        (
            "a_session_spreads_over_two_shards",
            a_session_spreads_over_two_shards,
        ),
        (
            "a_viewer_waiting_on_another_shard_asks_a_few_times_a_second",
            a_viewer_waiting_on_another_shard_asks_a_few_times_a_second,
        ),
    ]
}

#[test]
fn every_scenario_on_two_shards() {
    SHARDS.set(2);
    for (name, scenario) in scenarios() {
        eprintln!("two shards: {name}");
        scenario();
    }
    SHARDS.set(1);
}

/// Every scenario above with forwarded media written to str0m's send streams
/// (`app_egress = false`), the path our own egress replaced and which stays as the fallback.
#[test]
fn every_scenario_through_str0m_send_streams() {
    STR0M_EGRESS.set(true);
    for (name, scenario) in scenarios() {
        eprintln!("str0m egress: {name}");
        scenario();
    }
    STR0M_EGRESS.set(false);
}

/// Forwarded packets leave through our own egress by default, and only when it is on.
#[test]
fn forwarded_media_leaves_through_our_own_egress() {
    for str0m_egress in [false, true] {
        STR0M_EGRESS.set(str0m_egress);
        let (w, viewer) = one_viewer_of_the_floor(50);
        assert!(count_since(&w.clients[viewer], 0, MediaKind::Video, FLOOR_FILL) >= 40);
        let stats = w.sfu.stats();
        let (own, all) = (
            stats.app_egress_packets.get(),
            stats.rtp_out.packets(Kind::Audio) + stats.rtp_out.packets(Kind::Video),
        );
        if str0m_egress {
            assert_eq!(own, 0);
        } else {
            assert!(own > 0 && own == all, "own egress {own} of {all}");
        }
    }
    STR0M_EGRESS.set(false);
}

/// Two shards: the session's 200 viewers are spread over both, each receives the floor with
/// continuous sequence numbers (relayed once per packet to the other shard, not per viewer),
/// peers whose datagrams land on the other shard's socket are served, a speaker reaches
/// viewers on both, and closing the session frees every shard.
fn a_session_spreads_over_two_shards() {
    if SHARDS.get() != 2 {
        return; // runs from `every_scenario_on_two_shards`
    }
    let session = SessionId::new("s1");
    let mut w = World::new();
    const VIEWERS: u16 = 200;
    let viewers: Vec<usize> = (0..VIEWERS)
        .map(|i| w.add_viewer(5010 + i, &session, AV))
        .collect();
    let (floor, _) = w.add_publisher_as(5000, &session, Role::Floor, AV, FLOOR_FILL);
    let peers = usize::from(VIEWERS) + 1;
    assert!(w.run_until(Duration::from_secs(10), |w| connected(w, peers)));
    // Viewers go to the shards in turn; the publisher to the session's home.
    let half = usize::from(VIEWERS) / 2;
    for shard in &w.sfu.shards {
        let home = shard.shard_index() == home_shard(&session, 2);
        assert_eq!(shard.peer_count(), half + usize::from(home));
    }
    let mut ft = 0;
    w.floor_ticks(floor, &mut ft, 100);
    let stats = w.sfu.stats();
    let relayed = stats.shard_packets_relayed.get();
    let forwarded = stats.rtp_in.packets(Kind::Audio) + stats.rtp_in.packets(Kind::Video);
    assert!(
        relayed > 0 && relayed <= forwarded,
        "{relayed} relayed of {forwarded}"
    );
    assert!(
        stats.shard_datagrams_passed.get() > 0,
        "some datagrams landed on the other socket"
    );
    for &v in &viewers {
        let c = &w.clients[v];
        assert!(
            count_since(c, 0, MediaKind::Video, FLOOR_FILL) >= 100,
            "viewer {v}"
        );
        assert_continuous(&seqs(c, MediaKind::Audio));
        assert_continuous(&seqs(c, MediaKind::Video));
    }

    let (speaker, _) = w.add_publisher_as(5002, &session, Role::Speaker, AV, SPEAKER_FILL);
    let mut st = 0;
    w.floor_until(floor, &mut ft, |w| w.clients[speaker].rtc.is_connected());
    let from: Vec<usize> = viewers
        .iter()
        .map(|&v| w.clients[v].received.len())
        .collect();
    w.floor_and_speaker((floor, &mut ft), (speaker, &mut st), 100);
    for (&v, &from) in viewers.iter().zip(&from) {
        let c = &w.clients[v];
        assert!(
            count_since(c, from, MediaKind::Video, SPEAKER_FILL) > 50,
            "viewer {v}"
        );
        assert!(only_since_first(c, from, MediaKind::Video, SPEAKER_FILL));
        assert_continuous(&seqs(c, MediaKind::Video));
    }

    let now = w.now;
    w.sfu.close_session(now, &session);
    assert_eq!(w.sfu.peers(), 0);
    assert_eq!(w.sfu.stats().peers(), 0);
    assert!(w.sfu.shards.iter().all(|s| s.session_count() == 0));
}

/// Two shards: a viewer on the shard without the publisher, waiting for a keyframe the
/// publisher is slow to send, skips every video packet; its shard asks the publisher's shard
/// at most every 100 ms, not once per skipped packet, and the viewer starts with the keyframe.
fn a_viewer_waiting_on_another_shard_asks_a_few_times_a_second() {
    if SHARDS.get() != 2 {
        return; // runs from `every_scenario_on_two_shards`
    }
    let session = SessionId::new("s1");
    let mut w = World::new();
    let (floor, _) = w.add_publisher_as(5000, &session, Role::Floor, AV, FLOOR_FILL);
    assert!(w.run_until(Duration::from_secs(5), |w| connected(w, 1)));
    let mut ft = 0;
    w.floor_ticks(floor, &mut ft, 10);
    // Viewers go to the shards in turn: one of two lands away from the publisher.
    let late: Vec<usize> = (0..2)
        .map(|i| w.add_viewer(5010 + i, &session, AV))
        .collect();
    assert!(w.run_until(Duration::from_secs(5), |w| connected(w, 3)));
    let asks_before = w.sfu.keyframe_asks;
    // One second of frames (25 frames, 75 video packets) from a publisher ignoring PLIs.
    for _ in 0..50 {
        w.clients[floor].keyframe_requests = 0;
        w.publish_tick(floor, ft, FLOOR_BASE, 1000);
        ft += 1;
    }
    let asks = w.sfu.keyframe_asks - asks_before;
    assert!((1..=11).contains(&asks), "{asks} asks in one second");
    for &v in &late {
        assert_eq!(
            count_since(&w.clients[v], 0, MediaKind::Video, FLOOR_FILL),
            0
        );
    }
    // The publisher answers the next PLI (at most 500 ms away): both viewers start, from a
    // keyframe.
    w.floor_until(floor, &mut ft, |w| {
        late.iter()
            .all(|&v| count_since(&w.clients[v], 0, MediaKind::Video, FLOOR_FILL) > 0)
    });
    for &v in &late {
        let c = &w.clients[v];
        let first =
            first_since(c, 0, MediaKind::Video, FLOOR_FILL).expect("video after the keyframe");
        assert!(first.keyframe);
    }
}

/// Browsers trickle candidates this node cannot use: IPv6 (it listens on IPv4), TCP, mDNS
/// names. Each is accepted and skipped (counted); the peer connects and keeps its media. A
/// malformed candidate is still refused.
#[test]
fn unusable_trickled_candidates_are_skipped() {
    let session = SessionId::new("s1");
    let mut w = World::new();
    let (mut c, offer) = Client::new(5001, w.now, Direction::RecvOnly, AV);
    let answer = w
        .sfu
        .subscribe(w.now, session.clone(), &offer, Follow::Current)
        .unwrap();
    c.accept(&answer.sdp);
    w.clients.push(c);
    let (viewer, peer) = (w.clients.len() - 1, answer.peer);
    for candidate in [
        "a=candidate:1 1 udp 2113937151 ::1 50000 typ host",
        "a=candidate:2 1 tcp 1518280447 127.0.0.1 9 typ host tcptype active",
        "a=candidate:3 1 udp 2113937151 4a9c4d2e-1f0e-4c1b-9a7e-3b0f6c1d2e3f.local 50001 typ host",
    ] {
        w.sfu
            .add_candidate(w.now, peer, candidate)
            .expect(candidate);
    }
    assert_eq!(w.sfu.stats().remote_candidates_ignored.get(), 3);
    let err = w
        .sfu
        .add_candidate(
            w.now,
            peer,
            "a=candidate:4 1 udp 1 not-an-address 1 typ host",
        )
        .unwrap_err();
    assert!(
        matches!(err, crate::MediaError::InvalidCandidate(_)),
        "{err}"
    );
    let usable = "a=candidate:5 1 udp 2113937151 127.0.0.1 5001 typ host";
    w.sfu
        .add_candidate(w.now, peer, usable)
        .expect("a usable one");
    assert_eq!(w.sfu.stats().remote_candidates_ignored.get(), 3);

    let publisher = w.add_publisher(5000, &session);
    assert!(w.run_until(Duration::from_secs(5), |w| connected(w, 2)));
    for tick in 0..50 {
        w.publish_tick(publisher, tick, (1000, 5000), 1000);
    }
    assert_eq!(w.sfu.peers(), 2);
    let video = seqs(&w.clients[viewer], MediaKind::Video);
    assert!(video.len() > 30, "{} video packets", video.len());
}
