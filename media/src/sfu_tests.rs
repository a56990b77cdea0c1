//! The SFU core on virtual time: str0m client peers (a publisher and viewers) connected to
//! the core through in-memory datagrams, no sockets, no sleeping. These check forwarding,
//! rewriting across a publisher restart, keyframe gating and PLI on join. The interop tests
//! against the `webrtc` crate live in `server/tests/`.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::change::{SdpAnswer, SdpPendingOffer};
use str0m::format::Codec;
use str0m::media::{Direction, MediaKind, Mid, Pt};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{RtpWrite, Ssrc};
use str0m::{Candidate, Event, Input, Output, Rtc};

use crate::config::MediaConfig;
use crate::handle::{MediaEvent, Takeover};
use crate::ids::{Role, SessionId};
use crate::sfu::{Sfu, Transmit};
use crate::stats::MediaStats;

const SFU_ADDR: &str = "127.0.0.1:40000";

#[derive(Default)]
struct Wire(VecDeque<(SocketAddr, Vec<u8>)>);

impl Transmit for Wire {
    fn send(&mut self, to: SocketAddr, datagram: Vec<u8>) {
        self.0.push_back((to, datagram));
    }
}

struct Client {
    rtc: Rtc,
    addr: SocketAddr,
    pending: Option<SdpPendingOffer>,
    mids: Vec<(Mid, MediaKind)>,
    received: Vec<(MediaKind, u64, u32, Ssrc)>,
    keyframe_requests: usize,
    timeout: Instant,
}

impl Client {
    fn new(port: u16, now: Instant, dir: Direction, kinds: &[MediaKind]) -> (Self, String) {
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let mut rtc = Rtc::builder()
            .set_rtp_mode(true)
            .clear_codecs()
            .enable_opus(true, false)
            .enable_vp8(true)
            .build(now);
        rtc.add_local_candidate(Candidate::host(addr, "udp").unwrap());
        let mut api = rtc.sdp_api();
        let mids = kinds
            .iter()
            .map(|k| (api.add_media(*k, dir, None, None, None), *k))
            .collect();
        let (offer, pending) = api.apply().unwrap();
        let client = Self {
            rtc,
            addr,
            pending: Some(pending),
            mids,
            received: Vec::new(),
            keyframe_requests: 0,
            timeout: now,
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
    fn pump(&mut self, now: Instant, sfu: &mut Sfu, wire: &mut Wire) {
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
                    let kind = if p.header.payload_type == self.pt(Codec::Opus) {
                        MediaKind::Audio
                    } else {
                        MediaKind::Video
                    };
                    self.received
                        .push((kind, *p.seq_no, p.header.timestamp, p.header.ssrc));
                }
                Output::Event(Event::KeyframeRequest(_)) => self.keyframe_requests += 1,
                Output::Event(_) => {}
            }
        }
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
    sfu: Sfu,
    wire: Wire,
    clients: Vec<Client>,
}

impl World {
    fn new() -> Self {
        let now = Instant::now();
        let config = MediaConfig {
            udp_addr: SFU_ADDR.parse().unwrap(),
            ..MediaConfig::default()
        };
        let sfu = Sfu::new(
            config,
            vec![SFU_ADDR.parse().unwrap()],
            Arc::new(MediaStats::default()),
        );
        Self {
            now,
            sfu,
            wire: Wire::default(),
            clients: Vec::new(),
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
        let (mut c, offer) = Client::new(
            port,
            self.now,
            Direction::SendOnly,
            &[MediaKind::Audio, MediaKind::Video],
        );
        let answer = self
            .sfu
            .publish(
                self.now,
                session.clone(),
                Role::Floor,
                &offer,
                Takeover::Refuse,
            )
            .unwrap();
        c.accept(&answer.sdp);
        self.clients.push(c);
        self.clients.len() - 1
    }

    fn add_viewer(&mut self, port: u16, session: &SessionId, kinds: &[MediaKind]) -> usize {
        let (mut c, offer) = Client::new(port, self.now, Direction::RecvOnly, kinds);
        let answer = self
            .sfu
            .subscribe(self.now, session.clone(), &offer)
            .unwrap();
        c.accept(&answer.sdp);
        self.clients.push(c);
        self.clients.len() - 1
    }

    /// One 20 ms tick of a synthetic publisher: an Opus packet and (every other tick) a
    /// 3-packet VP8 frame, a keyframe every `gop` frames or when asked.
    fn publish_tick(&mut self, p: usize, tick: u64, base: (u64, u32), gop: u64) {
        let now = self.now;
        let c = &mut self.clients[p];
        c.send(
            MediaKind::Audio,
            base.0 + tick,
            base.1.wrapping_add(tick as u32 * 960),
            &[0xfc; 80],
            now,
        );
        if tick.is_multiple_of(2) {
            let frame = tick / 2;
            let key = frame.is_multiple_of(gop) || c.keyframe_requests > 0;
            c.keyframe_requests = 0;
            for k in 0..3u64 {
                let descriptor = if k == 0 { 0x10 } else { 0x00 };
                let header = if key { 0x00 } else { 0x01 };
                let mut payload = vec![descriptor, header];
                payload.extend_from_slice(&[0x55; 400]);
                c.send(
                    MediaKind::Video,
                    base.0 * 3 + frame * 3 + k,
                    base.1.wrapping_add(frame as u32 * 3000),
                    &payload,
                    now,
                );
            }
        }
        self.step(Duration::from_millis(20));
    }
}

fn connected(w: &World, n: usize) -> bool {
    w.clients.iter().take(n).all(|c| c.rtc.is_connected())
}

fn seqs(c: &Client, kind: MediaKind) -> Vec<u64> {
    c.received
        .iter()
        .filter(|r| r.0 == kind)
        .map(|r| r.1)
        .collect()
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
            .filter(|r| r.0 == kind)
            .map(|r| r.3)
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
        self.sfu.source_of(session).unwrap()
    }
}
