//! The SFU core: peers, sessions, who receives what. Sans-I/O: the driver hands it datagrams,
//! commands and the current time; it hands back datagrams to send (through [`Transmit`]),
//! events, and the next instant it needs to be woken.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::hash::{BuildHasher, RandomState};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::change::{SdpAnswer, SdpOffer};
use str0m::channel::ChannelId;
use str0m::config::DtlsCert;
use str0m::media::{Direction, KeyframeRequestKind, MediaKind};
use str0m::net::{Protocol, Receive, TcpType};
use str0m::rtp::{Extension, SeqNo};
use str0m::{Candidate, Event, IceConnectionState, IceCreds, Input, Output, Rtc, RtcConfig};
use tracing::{debug, info, info_span, warn};

use crate::config::MediaConfig;
use crate::demux::{Demux, Route};
use crate::error::MediaError;
use crate::fan_out::{FanOutTally, Written, tell_viewer_of_gate, write_to_viewer};
use crate::forward::history::History;
use crate::forward::keyframe::starts_keyframe;
use crate::forward::red::{self, PrevOpus};
use crate::forward::rewrite::{Rewriter, SourceKey};
use crate::forward::rtp_head::{HeadFields, HeadTemplate};
use crate::handle::{Answer, Follow, MediaEvent, Takeover};
use crate::ids::{PeerId, PeerMap, Role, SessionId};
use crate::peer::{FwdCodec, OutBinding, Peer, PeerKind, PublisherState, ViewerState};
use crate::sdp_check::check_offer;
use crate::shard::{Relayed, Shard, ShardMsg, home_shard, shard_of_peer};
use crate::stats::{Kind, MediaStats, ViewerLink};
use crate::tap;
use crate::tcp::TcpWriter;
use crate::tcp_links::{LinkRoute, TcpLinks};
use crate::viewer_egress::{ResendBudget, SendTally, ViewerEgress};

/// Where the core's outgoing datagrams go. The driver implements it on the socket; tests
/// collect into memory.
pub(crate) trait Transmit {
    /// Takes the datagram by value: str0m allocated it, the sender frees it after the send.
    fn send(&mut self, to: SocketAddr, datagram: Vec<u8>);

    /// A datagram for the ICE-TCP connection from `to`. Transports without TCP (the
    /// in-memory tests) drop it.
    fn send_tcp(&mut self, _to: SocketAddr, _datagram: Vec<u8>) {}

    /// A connection of this shard opened: `writer` is where its datagrams go.
    fn tcp_opened(&mut self, _remote: SocketAddr, _writer: TcpWriter) {}

    /// An empty buffer for a datagram we build ourselves: the driver hands back one it sent
    /// before, so our own egress allocates nothing per packet once warm.
    fn buffer(&mut self) -> Vec<u8> {
        Vec::new()
    }
}

/// Events kept for the server; beyond this they are dropped (the server lags, media does not).
const MAX_PENDING_EVENTS: usize = 4096;
/// Outputs drained from one peer per call; str0m reaches a timeout long before this.
const MAX_OUTPUTS_PER_POLL: usize = 10_000;
/// How often one shard may ask another shard's publisher for a keyframe: well under the
/// owner's own limit per publisher (`keyframe_min_interval`), so it never delays a PLI.
const REMOTE_KEYFRAME_ASK_INTERVAL: Duration = Duration::from_millis(100);
const HOUSEKEEPING_INTERVAL: Duration = Duration::from_secs(1);
/// A source's retransmission history is dropped after this long without a packet.
const HISTORY_IDLE: Duration = Duration::from_secs(10);
/// Source streams with a retransmission history on one shard (≈ 24 kB each); a room has two
/// per publisher.
const MAX_HISTORIES: usize = 512;
/// The label of the data channel a viewer opens to receive captions. The viewer creates it
/// (an m=application section in its WHEP offer), so viewers that want no captions cost
/// nothing, and the SFU never has to renegotiate to add one.
pub(crate) const CAPTIONS_LABEL: &str = "captions";
/// Data channel bytes a peer may have unacknowledged (str0m's default is 128 KiB). Captions
/// are a few hundred bytes a few times a second, so this is many seconds of them; a viewer
/// further behind misses captions instead of holding memory, with thousands of viewers.
pub(crate) const DATA_CHANNEL_BUFFER: usize = 32 * 1024;
/// How far back a viewer's NACK can be answered. A retransmission is useful only if it
/// arrives before the viewer's jitter buffer gives the packet up (browsers hold a few hundred
/// ms), so a packet older than a second is never worth resending; str0m's default keeps 3 s,
/// which at ≈ 1 Mbit/s is ≈ 400 KB of copies per viewer (most of a viewer's memory).
const RTX_CACHE_AGE: Duration = Duration::from_secs(1);
/// A second of video at 1080p rates with room to spare; the age limit binds first.
const RTX_CACHE_PACKETS: usize = 1024;
/// str0m's default: stop resending when retransmissions exceed 15 % of what a stream sends.
const RTX_RATIO_CAP: f32 = 0.15;

#[derive(Default)]
struct SessionPeers {
    floor: Option<PeerId>,
    speaker: Option<PeerId>,
    /// Whether the speaker's offer has a sendable audio (video) m-line. Known only when str0m
    /// reports its m-lines (`on_media_added`, once ICE and DTLS are up); kept here so the hot
    /// path decides per packet without looking the speaker up.
    speaker_audio: bool,
    speaker_video: bool,
    /// Viewers of whatever the session shows now (`Follow::Current`).
    viewers: Vec<PeerId>,
    /// Viewers of the floor feed only (`Follow::Floor`).
    floor_viewers: Vec<PeerId>,
    /// On the session's home shard: the other shards that have viewers of it (bit per
    /// shard), to which each publisher packet is relayed.
    remote_viewers: u64,
}

/// Which publisher a session's viewers receive, per media kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Sources {
    audio: Option<PeerId>,
    video: Option<PeerId>,
    floor: Option<PeerId>,
}

impl SessionPeers {
    /// What viewers receive of one kind: the speaker holding the floor if it publishes that
    /// kind, else the floor feed. A hub's microphone replaces the room's audio only; the room's
    /// camera stays on.
    fn source_for(&self, kind: MediaKind) -> Option<PeerId> {
        let speaker_sends = match kind {
            MediaKind::Audio => self.speaker_audio,
            MediaKind::Video => self.speaker_video,
        };
        match self.speaker {
            Some(speaker) if speaker_sends => Some(speaker),
            _ => self.floor,
        }
    }

    fn sources(&self) -> Sources {
        Sources {
            audio: self.source_for(MediaKind::Audio),
            video: self.source_for(MediaKind::Video),
            floor: self.floor,
        }
    }

    /// A new speaker (or none) publishes nothing until its offer is applied.
    fn set_speaker(&mut self, speaker: Option<PeerId>) {
        self.speaker = speaker;
        self.speaker_audio = false;
        self.speaker_video = false;
    }

    fn is_empty(&self) -> bool {
        self.floor.is_none()
            && self.speaker.is_none()
            && !self.has_viewers()
            && self.remote_viewers == 0
    }

    /// Whether this shard has viewers of the session.
    fn has_viewers(&self) -> bool {
        !self.viewers.is_empty() || !self.floor_viewers.is_empty()
    }

    /// The publisher a viewer following `follow` receives video from now.
    fn video_source_for(&self, follow: Follow) -> Option<PeerId> {
        match follow {
            Follow::Current => self.source_for(MediaKind::Video),
            Follow::Floor => self.floor,
        }
    }

    fn all_viewers(&self) -> impl Iterator<Item = &PeerId> {
        self.viewers.iter().chain(&self.floor_viewers)
    }
}

pub(crate) struct Sfu {
    config: MediaConfig,
    shard: Shard,
    /// One DTLS certificate for every peer of the node: generating a key pair per offer cost
    /// ≈ 3 ms of the media thread, which an offer flood turned into freezes for everyone.
    /// Peers still get their own DTLS keys per handshake; only the identity is shared.
    dtls_cert: Option<DtlsCert>,
    local_candidates: Vec<SocketAddr>,
    /// ICE-TCP passive candidates (empty: no TCP).
    tcp_candidates: Vec<SocketAddr>,
    tcp_links: TcpLinks,
    peers: PeerMap<Peer>,
    sessions: HashMap<SessionId, SessionPeers>,
    demux: Demux,
    deadlines: BTreeSet<(Instant, PeerId)>,
    ids: RandomState,
    next_id: u64,
    stats: Arc<MediaStats>,
    events: VecDeque<MediaEvent>,
    dead: Vec<PeerId>,
    next_housekeeping: Option<Instant>,
    /// Messages for other shards, in order, drained by the driver.
    outbox: Vec<(usize, ShardMsg)>,
    /// Datagrams and bytes handed to `Transmit` since the counters were last published:
    /// one atomic add per turn instead of two per datagram (shared cache lines between
    /// shards).
    tx_datagrams: u64,
    tx_bytes: u64,
    /// When this shard last asked another shard's publisher for a keyframe: viewers waiting
    /// for one skip every video packet until it comes, and each skip would otherwise be a
    /// message. Pruned in housekeeping.
    remote_keyframe_asks: PeerMap<Instant>,
    /// Publisher packets received this turn, fanned out viewer by viewer at the turn's end
    /// (see [`Sfu::fan_out_turn`]).
    turn: Vec<Arc<Relayed>>,
    /// Recent packets of each source stream on this shard, for NACKs answered by our own
    /// egress; with when each last got one (idle ones are pruned).
    histories: HashMap<SourceKey, (Instant, History<Relayed>)>,
    /// Scratch for one NACK's sequence numbers.
    nacked: Vec<SeqNo>,
}

impl Sfu {
    pub fn new(
        config: MediaConfig,
        local_candidates: Vec<SocketAddr>,
        stats: Arc<MediaStats>,
        shard: Shard,
    ) -> Self {
        let dtls_cert = str0m::crypto::from_feature_flags()
            .dtls_provider
            .generate_certificate();
        if dtls_cert.is_none() {
            warn!("no shared DTLS certificate: each peer generates its own");
        }
        Self {
            config,
            shard,
            dtls_cert,
            local_candidates,
            tcp_candidates: Vec::new(),
            tcp_links: TcpLinks::default(),
            peers: PeerMap::default(),
            sessions: HashMap::new(),
            demux: Demux::new(shard),
            deadlines: BTreeSet::new(),
            ids: RandomState::new(),
            next_id: 0,
            stats,
            events: VecDeque::new(),
            dead: Vec::new(),
            next_housekeeping: None,
            outbox: Vec::new(),
            tx_datagrams: 0,
            tx_bytes: 0,
            remote_keyframe_asks: PeerMap::default(),
            turn: Vec::new(),
            histories: HashMap::new(),
            nacked: Vec::new(),
        }
    }

    /// Announces ICE-TCP passive candidates in the answers to later offers.
    pub fn set_tcp_candidates(&mut self, addrs: Vec<SocketAddr>) {
        self.tcp_candidates = addrs;
    }

    /// An ICE-TCP connection this core wants closed (its peer left, or it proved nobody).
    pub fn poll_tcp_close(&mut self) -> Option<SocketAddr> {
        self.tcp_links.poll_close()
    }

    /// Messages for other shards produced since the last call, in the order produced.
    pub fn drain_shard_msgs(&mut self) -> std::vec::Drain<'_, (usize, ShardMsg)> {
        self.outbox.drain(..)
    }

    pub fn stats(&self) -> Arc<MediaStats> {
        self.stats.clone()
    }

    // ---------------------------------------------------------------- commands

    pub fn publish(
        &mut self,
        now: Instant,
        session: SessionId,
        role: Role,
        offer: &str,
        takeover: Takeover,
    ) -> Result<Answer, MediaError> {
        let existing = self.sessions.get(&session).and_then(|s| match role {
            Role::Speaker => s.speaker,
            _ => s.floor,
        });
        if let Some(old) = existing {
            match (role, takeover) {
                (Role::Floor, Takeover::Refuse) => {
                    return Err(MediaError::PublisherExists(session));
                }
                _ => {
                    info!(%session, peer = %old, "publisher replaced");
                    self.dead.push(old);
                    self.reap(now);
                }
            }
        }
        let kind = PeerKind::Publisher(PublisherState::new(self.config.keyframe_min_interval));
        let answer = self.add_peer(now, session.clone(), role, offer, kind)?;
        let s = self.sessions.entry(session.clone()).or_default();
        let before = s.sources();
        match role {
            // Its kinds are unknown until str0m reports its m-lines: viewers stay on the
            // floor feed until then (`on_media_added` switches them).
            Role::Speaker => {
                s.set_speaker(Some(answer.peer));
                self.stats.set_speaker_video(&session, false);
            }
            _ => s.floor = Some(answer.peer),
        }
        self.sources_changed(&session, before, now);
        Ok(answer)
    }

    pub fn subscribe(
        &mut self,
        now: Instant,
        session: SessionId,
        offer: &str,
        follow: Follow,
    ) -> Result<Answer, MediaError> {
        let kind = PeerKind::Viewer(ViewerState::new(now, follow));
        let answer = self.add_peer(now, session.clone(), Role::Viewer, offer, kind)?;
        let s = self.sessions.entry(session.clone()).or_default();
        let first_here = !s.has_viewers();
        match follow {
            Follow::Current => s.viewers.push(answer.peer),
            Follow::Floor => s.floor_viewers.push(answer.peer),
        }
        if first_here {
            self.tell_home(&session, true);
        }
        Ok(answer)
    }

    pub fn add_candidate(
        &mut self,
        now: Instant,
        peer: PeerId,
        candidate: &str,
    ) -> Result<(), MediaError> {
        let p = self
            .peers
            .get_mut(&peer)
            .ok_or(MediaError::PeerNotFound(peer))?;
        let line = candidate.trim();
        let line = line.strip_prefix("a=").unwrap_or(line);
        if p.remote_candidates >= self.config.max_remote_candidates {
            return Err(MediaError::TooManyCandidates(
                self.config.max_remote_candidates,
            ));
        }
        p.remote_candidates += 1;
        // Browsers trickle every candidate they gather; those this node cannot reach (mDNS
        // names it does not resolve, TCP, the other IP family) are skipped, not refused: the
        // peer connects through the others.
        if is_mdns_candidate(line) {
            self.stats.remote_candidates_ignored.add(1);
            return Ok(());
        }
        let c = Candidate::from_sdp_string(line)
            .map_err(|e| MediaError::InvalidCandidate(e.to_string()))?;
        let same_family = self
            .local_candidates
            .iter()
            .any(|l| l.is_ipv4() == c.addr().is_ipv4());
        if c.proto() != Protocol::Udp || !same_family {
            self.stats.remote_candidates_ignored.add(1);
            return Ok(());
        }
        p.rtc.add_remote_candidate(c);
        self.schedule(peer, Some(now));
        Ok(())
    }

    pub fn close_peer(&mut self, now: Instant, peer: PeerId) -> Result<(), MediaError> {
        if !self.peers.contains_key(&peer) {
            return Err(MediaError::PeerNotFound(peer));
        }
        self.dead.push(peer);
        self.reap(now);
        Ok(())
    }

    pub fn close_session(&mut self, now: Instant, session: &SessionId) {
        if let Some(s) = self.sessions.get(session) {
            self.dead.extend(s.floor);
            self.dead.extend(s.speaker);
            self.dead.extend(s.all_viewers().copied());
        }
        self.reap(now);
    }

    /// Writes a caption message to each viewer of the session with an open `captions`
    /// channel. Per-viewer writes are fine here: a few messages a second, not 50 per stream.
    /// A channel whose send buffer is full drops this message (counted); nothing is queued
    /// beyond str0m's bounded buffer.
    pub fn send_captions(&mut self, now: Instant, session: &SessionId, text: &str) {
        let Some(s) = self.sessions.get(session) else {
            return;
        };
        let mut written = Vec::new();
        for &vid in s.all_viewers() {
            let Some(peer) = self.peers.get_mut(&vid) else {
                continue;
            };
            let PeerKind::Viewer(v) = &peer.kind else {
                continue;
            };
            let Some(id) = v.captions else {
                continue;
            };
            // `None`: closing, or the peer is going away; `ChannelClose` forgets it.
            let Some(mut channel) = peer.rtc.channel(id) else {
                continue;
            };
            match channel.write(false, text.as_bytes()) {
                Ok(true) => {
                    self.stats.captions_sent.add(1);
                    written.push(vid);
                }
                Ok(false) => self.stats.captions_dropped.add(1),
                Err(e) => {
                    // Larger than the viewer accepts, or the association is closing.
                    peer.span
                        .in_scope(|| debug!(error = %e, "caption not written"));
                    self.stats.captions_dropped.add(1);
                }
            }
        }
        // The writes are only queued in str0m: poll these viewers on the next timeout pass
        // to put them on the wire.
        for vid in written {
            self.schedule(vid, Some(now));
        }
    }

    #[cfg(test)]
    pub fn peer_count(&self) -> usize {
        self.peers.len()
    }

    #[cfg(test)]
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    pub fn shard_index(&self) -> usize {
        self.shard.index
    }

    /// The peer whose media of this kind a session's viewers receive now.
    #[cfg(test)]
    pub fn source_of(&self, session: &SessionId, kind: MediaKind) -> Option<PeerId> {
        self.sessions.get(session).and_then(|s| s.source_for(kind))
    }

    pub fn poll_event(&mut self) -> Option<MediaEvent> {
        self.events.pop_front()
    }

    // ---------------------------------------------------------------- input

    /// One datagram from this shard's socket.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        source: SocketAddr,
        destination: SocketAddr,
        data: &[u8],
        tx: &mut dyn Transmit,
    ) {
        self.stats.udp_rx_datagrams.add(1);
        self.stats.udp_rx_bytes.add(data.len() as u64);
        self.receive(now, self.shard.index, source, destination, data, tx);
    }

    /// A message from another shard.
    pub fn handle_shard_msg(&mut self, now: Instant, msg: ShardMsg, tx: &mut dyn Transmit) {
        match msg {
            ShardMsg::Datagram {
                via,
                source,
                destination,
                data,
            } => self.receive(now, via, source, destination, &data, tx),
            ShardMsg::Route { addr, owner } => self.demux.set_foreign(addr, owner),
            ShardMsg::Media(packet) => self.turn.push(packet),
            ShardMsg::TcpOpen { remote, writer } => {
                self.tcp_links.opened(remote);
                tx.tcp_opened(remote, writer);
            }
            ShardMsg::TcpFrame {
                remote,
                local,
                data,
            } => self.receive_tcp(now, remote, local, &data, tx),
            ShardMsg::TcpClosed { remote } => self.tcp_closed(remote, now),
            ShardMsg::Interest {
                session,
                shard,
                viewers,
            } => {
                if !self.shard.is_home_of(&session) || shard >= self.shard.count {
                    return;
                }
                let bit = 1u64 << shard;
                if viewers {
                    self.sessions.entry(session).or_default().remote_viewers |= bit;
                } else if let Some(s) = self.sessions.get_mut(&session) {
                    s.remote_viewers &= !bit;
                    if s.is_empty() {
                        self.sessions.remove(&session);
                    }
                }
            }
            ShardMsg::Keyframe { session, follow } => self.request_keyframe(&session, follow, now),
            ShardMsg::KeyframeFrom { peer } => self.request_keyframe_from(peer, now),
        }
    }

    /// Routes a datagram received on shard `via`'s socket and feeds it to its peer.
    fn receive(
        &mut self,
        now: Instant,
        via: usize,
        source: SocketAddr,
        destination: SocketAddr,
        data: &[u8],
        tx: &mut dyn Transmit,
    ) {
        let route = self.demux.route(source, data, via);
        while let Some(notice) = self.demux.poll_notice() {
            self.outbox.push(notice);
        }
        let id = match route {
            Route::Peer(id) => id,
            Route::Shard(owner) => {
                self.stats.shard_datagrams_passed.add(1);
                self.outbox.push((
                    owner,
                    ShardMsg::Datagram {
                        via,
                        source,
                        destination,
                        data: data.into(),
                    },
                ));
                return;
            }
            Route::Unknown => {
                self.stats.unroutable_datagrams.add(1);
                return;
            }
            Route::Unauthenticated => {
                self.stats.stun_unauthenticated.add(1);
                return;
            }
        };
        self.feed(now, id, Protocol::Udp, source, destination, data, tx);
    }

    /// A frame from an ICE-TCP connection of this shard: the connection's first frame must
    /// prove a peer (see [`crate::tcp_links`]), later ones go to that peer.
    fn receive_tcp(
        &mut self,
        now: Instant,
        remote: SocketAddr,
        local: SocketAddr,
        data: &[u8],
        tx: &mut dyn Transmit,
    ) {
        self.stats.tcp.rx_frames.add(1);
        let id = match self.tcp_links.route(remote) {
            LinkRoute::Peer(id) => id,
            LinkRoute::Unknown => return,
            LinkRoute::Unbound => match self.demux.authenticate(data) {
                Some(id) if self.peers.contains_key(&id) => {
                    self.tcp_links.bind(remote, id);
                    id
                }
                _ => {
                    self.stats.tcp.unauthenticated.add(1);
                    self.tcp_links.close(remote);
                    return;
                }
            },
        };
        self.feed(now, id, Protocol::Tcp, remote, local, data, tx);
    }

    /// The remote closed an ICE-TCP connection. A peer that reached us only over TCP and
    /// has no connection left cannot be reached any more: it goes now, not after the ICE
    /// timeout.
    fn tcp_closed(&mut self, remote: SocketAddr, now: Instant) {
        if let Some((peer, false)) = self.tcp_links.closed(remote)
            && !self.demux.has_udp_path(peer)
        {
            self.dead.push(peer);
            self.reap(now);
        }
    }

    /// Hands one routed datagram to its peer and drains what the peer produces.
    #[allow(clippy::too_many_arguments)]
    fn feed(
        &mut self,
        now: Instant,
        id: PeerId,
        proto: Protocol,
        source: SocketAddr,
        destination: SocketAddr,
        data: &[u8],
        tx: &mut dyn Transmit,
    ) {
        let Ok(contents) = data.try_into() else {
            self.stats.unroutable_datagrams.add(1);
            return;
        };
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        let input = Input::Receive(
            now,
            Receive {
                proto,
                source,
                destination,
                contents,
            },
        );
        let _span = peer.span.clone().entered();
        if let Err(e) = peer.rtc.handle_input(input) {
            // Malformed or hostile input for this peer: str0m refuses it, the peer lives on.
            debug!(error = %e, "datagram refused");
            self.stats.unroutable_datagrams.add(1);
        }
        self.answer_nacks(id, now, tx);
        self.poll_peer(id, now, tx);
        self.reap(now);
    }

    /// Drives every peer whose deadline has passed.
    pub fn handle_timeout(&mut self, now: Instant, tx: &mut dyn Transmit) {
        self.fan_out_turn(now, tx);
        // Each due peer is handled once per call, even if str0m asks for `now` again.
        let due: usize = self.deadlines.range(..=(now, PeerId(u64::MAX))).count();
        for _ in 0..due {
            let Some(&(at, id)) = self.deadlines.first() else {
                break;
            };
            if at > now {
                break;
            }
            self.deadlines.pop_first();
            let Some(peer) = self.peers.get_mut(&id) else {
                continue;
            };
            peer.deadline = None;
            let _span = peer.span.clone().entered();
            Self::hand_over_tallies(peer);
            if let Some(p) = peer.publisher()
                && p.keyframes.handle_timeout(now)
            {
                Self::send_keyframe_request(peer, &self.stats);
            }
            if let Err(e) = peer.rtc.handle_input(Input::Timeout(now)) {
                warn!(error = %e, "peer failed on timeout");
                self.dead.push(id);
                continue;
            }
            self.poll_peer(id, now, tx);
        }
        if self.next_housekeeping.is_none_or(|t| now >= t) {
            self.housekeeping(now);
            self.next_housekeeping = Some(now + HOUSEKEEPING_INTERVAL);
        }
        self.reap(now);
        self.publish_tx_counters();
    }

    fn publish_tx_counters(&mut self) {
        if self.tx_datagrams > 0 {
            self.stats
                .udp_tx_datagrams
                .add(std::mem::take(&mut self.tx_datagrams));
            self.stats
                .udp_tx_bytes
                .add(std::mem::take(&mut self.tx_bytes));
        }
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        let peer = self.deadlines.first().map(|(t, _)| *t);
        match (peer, self.next_housekeeping) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    // ---------------------------------------------------------------- internals

    fn new_rtc(&self, now: Instant, red: bool) -> Rtc {
        let rtc = RtcConfig::new()
            .set_rtp_mode(true)
            .set_ice_lite(true)
            .clear_codecs()
            .enable_opus(true, red)
            .enable_vp8(true)
            .enable_h264(true)
            .set_sctp_max_buffered_amount(DATA_CHANNEL_BUFFER)
            .set_stats_interval(Some(Duration::from_secs(1)));
        let rtc = match &self.dtls_cert {
            Some(cert) => rtc.set_dtls_cert(cert.clone()),
            None => rtc,
        };
        // The ufrag names this shard, so any shard can pass a new peer's first STUN request
        // to its owner.
        let random = IceCreds::new();
        let rtc = rtc.set_local_ice_credentials(IceCreds {
            ufrag: self.shard.ufrag(&random.ufrag),
            pass: random.pass,
        });
        let mut rtc = rtc.build(now);
        // UDP first; TCP host candidates get a lower priority by their type preference
        // (RFC 6544 §4.2), so a client uses TCP only when UDP fails.
        let udp = self
            .local_candidates
            .iter()
            .map(|a| Candidate::host(*a, "udp"));
        let tcp = self.tcp_candidates.iter().map(|a| {
            Candidate::builder()
                .tcp()
                .host(*a)
                .tcptype(TcpType::Passive)
                .build()
        });
        for c in udp.chain(tcp) {
            match c {
                Ok(c) => {
                    rtc.add_local_candidate(c);
                }
                Err(e) => warn!(error = %e, "unusable host candidate"),
            }
        }
        rtc
    }

    fn add_peer(
        &mut self,
        now: Instant,
        session: SessionId,
        role: Role,
        offer: &str,
        kind: PeerKind,
    ) -> Result<Answer, MediaError> {
        // Counted first, so a full node refuses a flood of offers before parsing any.
        self.stats.admit(
            &session,
            role,
            self.config.max_peers,
            self.config.max_peers_per_session,
        )?;
        let red = matches!(kind, PeerKind::Viewer(_));
        let (mut rtc, answer) = match self.accept(now, offer, red) {
            Ok(accepted) => accepted,
            Err(e) => {
                self.stats.peer_removed(&session, role);
                return Err(e);
            }
        };
        let id = self.new_peer_id();
        let creds = rtc.direct_api().local_ice_credentials();
        let span = info_span!("peer", %session, peer = %id, role = role.as_str());
        span.in_scope(|| info!("peer created"));
        self.demux.insert(id, creds.ufrag, creds.pass);
        self.peers.insert(
            id,
            Peer {
                id,
                session,
                role,
                rtc,
                span,
                created: now,
                connected: false,
                remote_candidates: 0,
                deadline: None,
                kind,
            },
        );
        self.schedule(id, Some(now));
        Ok(Answer {
            peer: id,
            sdp: answer.to_sdp_string(),
        })
    }

    /// `red`: answer Opus with RED (RFC 2198) where the offer has it. For viewers only: a
    /// publisher sending RED would need it unwrapped for the viewers without it.
    fn accept(&self, now: Instant, offer: &str, red: bool) -> Result<(Rtc, SdpAnswer), MediaError> {
        check_offer(offer)?;
        let offer =
            SdpOffer::from_sdp_string(offer).map_err(|e| MediaError::InvalidSdp(e.to_string()))?;
        let mut rtc = self.new_rtc(now, red);
        let answer = rtc
            .sdp_api()
            .accept_offer(offer)
            .map_err(|e| MediaError::InvalidSdp(e.to_string()))?;
        Ok((rtc, answer))
    }

    fn new_peer_id(&mut self) -> PeerId {
        // Unguessable resource ids: a WHIP/WHEP Location must not be enumerable. The top
        // byte names the shard, 56 bits are random.
        loop {
            self.next_id += 1;
            let id = self.shard.peer_id(self.ids.hash_one(self.next_id));
            if !self.peers.contains_key(&id) {
                return id;
            }
        }
    }

    fn schedule(&mut self, id: PeerId, at: Option<Instant>) {
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        if let Some(old) = peer.deadline.take() {
            self.deadlines.remove(&(old, id));
        }
        if let Some(at) = at {
            peer.deadline = Some(at);
            self.deadlines.insert((at, id));
        }
    }

    /// Drains a peer's output until str0m asks to be woken later.
    fn poll_peer(&mut self, id: PeerId, now: Instant, tx: &mut dyn Transmit) {
        for _ in 0..MAX_OUTPUTS_PER_POLL {
            let Some(peer) = self.peers.get_mut(&id) else {
                return;
            };
            if !peer.rtc.is_alive() {
                self.dead.push(id);
                return;
            }
            let output = match peer.rtc.poll_output() {
                Ok(o) => o,
                Err(e) => {
                    peer.span.in_scope(|| warn!(error = %e, "peer failed"));
                    self.dead.push(id);
                    return;
                }
            };
            match output {
                Output::Timeout(at) => {
                    if let PeerKind::Viewer(v) = &mut peer.kind
                        && let Some(egress) = &mut v.egress
                        && let Some((proto, _, dest)) = peer.rtc.send_addr()
                    {
                        egress.set_route(proto, dest);
                    }
                    let kf = peer.publisher().and_then(|p| p.keyframes.poll_timeout());
                    let at = kf.map_or(at, |k| k.min(at));
                    // A timer already due earlier stays: str0m's answer after a datagram can
                    // lie later than a timer it named before (the viewer's stats and sender
                    // reports then never came while it kept sending RTCP), and a timeout
                    // that finds nothing due costs one poll.
                    let at = peer.deadline.map_or(at, |d| d.min(at));
                    self.schedule(id, Some(at));
                    return;
                }
                Output::Transmit(t) => {
                    self.tx_datagrams += 1;
                    self.tx_bytes += t.contents.len() as u64;
                    match t.proto {
                        Protocol::Tcp => tx.send_tcp(t.destination, t.contents.into()),
                        _ => tx.send(t.destination, t.contents.into()),
                    }
                }
                Output::Event(e) => self.on_event(id, e, now),
            }
        }
        warn!(peer = %id, "peer produced too much output in one poll");
        self.schedule(id, Some(now));
    }

    fn on_event(&mut self, id: PeerId, event: Event, now: Instant) {
        match event {
            Event::RtpPacket(pkt) => self.forward(id, pkt),
            Event::Connected => {
                let Some(peer) = self.peers.get_mut(&id) else {
                    return;
                };
                peer.connected = true;
                let (session, role) = (peer.session.clone(), peer.role);
                peer.span
                    .in_scope(|| info!(after_ms = (now - peer.created).as_millis(), "connected"));
                let wants_video = peer
                    .viewer()
                    .and_then(|v| v.video.is_some().then_some(v.follow));
                self.push_event(MediaEvent::Connected {
                    peer: id,
                    session: session.clone(),
                    role,
                });
                self.start_app_egress(id);
                if let Some(follow) = wants_video {
                    self.request_keyframe(&session, follow, now);
                }
            }
            Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                self.dead.push(id);
            }
            Event::Closed => self.dead.push(id),
            Event::MediaAdded(m) => self.on_media_added(id, m.mid, m.kind, m.direction, now),
            Event::ChannelOpen(channel, label) => self.on_channel_open(id, channel, &label),
            Event::ChannelClose(channel) => {
                if let Some(v) = self.peers.get_mut(&id).and_then(|p| p.viewer())
                    && v.captions == Some(channel)
                {
                    v.captions = None;
                }
            }
            Event::KeyframeRequest(_) => {
                self.stats.viewer_keyframe_requests.add(1);
                let interval = self.config.viewer_keyframe_interval;
                let Some(peer) = self.peers.get_mut(&id) else {
                    return;
                };
                let session = peer.session.clone();
                let Some(v) = peer.viewer() else {
                    return;
                };
                // One viewer's requests are spaced out on their own, before the publisher's
                // shared limit: a viewer spamming PLIs must not spend the others' budget.
                if v.last_keyframe_request.is_some_and(|t| now < t + interval) {
                    self.stats.viewer_keyframe_requests_dropped.add(1);
                    return;
                }
                v.last_keyframe_request = Some(now);
                let follow = v.follow;
                self.request_keyframe(&session, follow, now);
            }
            Event::MediaEgressStats(s) => {
                // RFC 3550 jitter is in the stream's RTP clock units.
                let kind = self
                    .peers
                    .get_mut(&id)
                    .and_then(|p| p.rtc.media(s.mid))
                    .map(|m| m.kind());
                let clock = kind.map(|k| {
                    if k == MediaKind::Audio {
                        48_000.0
                    } else {
                        90_000.0
                    }
                });
                if let Some(v) = self.peers.get_mut(&id).and_then(|p| p.viewer()) {
                    let d = v.nack_delta(s.mid, s.nacks);
                    self.stats.nacks.add(d);
                    if let Some(kind) = kind {
                        let rtx = v.rtx_delta(s.mid, kind, s.packets);
                        self.stats.retransmitted.add(rtx);
                    }
                    let jitter = s
                        .remote
                        .as_ref()
                        .zip(clock)
                        .map(|(r, clock)| v.worst_jitter(s.mid, r.jitter as f32 / clock));
                    if let Some(loss) = s.loss {
                        v.gate.on_reported_loss(loss.clamp(0.0, 1.0));
                        let link = ViewerLink {
                            loss: v.worst_loss(s.mid, loss.clamp(0.0, 1.0)),
                            rtt_ms: s.rtt.map(|r| r.as_millis().min(u32::MAX as u128) as u32),
                            jitter_s: jitter,
                        };
                        self.stats.viewer_link(id, link);
                    }
                }
            }
            _ => {}
        }
    }

    fn on_media_added(
        &mut self,
        id: PeerId,
        mid: str0m::media::Mid,
        kind: MediaKind,
        direction: Direction,
        now: Instant,
    ) {
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        match &mut peer.kind {
            PeerKind::Publisher(p) => {
                // Our direction: a publisher's sendable m-line is one we receive on.
                if !direction.is_receiving() {
                    return;
                }
                match kind {
                    MediaKind::Audio => p.audio_mid = Some(mid),
                    MediaKind::Video => p.video_mid = Some(mid),
                }
                let (audio, video) = (p.audio_mid.is_some(), p.video_mid.is_some());
                let session = peer.session.clone();
                let Some(s) = self.sessions.get_mut(&session) else {
                    return;
                };
                let before = s.sources();
                if s.speaker == Some(id) {
                    s.speaker_audio = audio;
                    s.speaker_video = video;
                    self.stats.set_speaker_video(&session, video);
                }
                let is_floor = s.floor == Some(id);
                let video_source = s.source_for(MediaKind::Video);
                if !self.sources_changed(&session, before, now) && kind == MediaKind::Video {
                    // The video source became askable only now (its viewers were marked
                    // waiting when it became the source).
                    if video_source == Some(id) {
                        self.request_keyframe(&session, Follow::Current, now);
                    } else if is_floor {
                        self.request_keyframe(&session, Follow::Floor, now);
                    }
                }
            }
            PeerKind::Viewer(_) => {
                if !matches!(direction, Direction::SendOnly | Direction::SendRecv) {
                    return;
                }
                let Some(media) = peer.rtc.media(mid) else {
                    return;
                };
                let remote = media.remote_pts().to_vec();
                let mid_ext = media
                    .remote_extmap()
                    .id_of(Extension::RtpMid)
                    .map(|id| (id, mid.to_string()));
                let mut pts = [None; 3];
                let mut red_pt = None;
                for p in peer.rtc.codec_config().params() {
                    if let Some(c) = FwdCodec::from_str0m(p.spec().codec)
                        && (remote.is_empty() || remote.contains(&p.pt()))
                        && pts[c as usize].is_none()
                    {
                        pts[c as usize] = Some(p.pt());
                        // RED blocks name the Opus payload type browsers use (see `red`).
                        // Negotiation leaves `red()` set only when the offer had it.
                        if c == FwdCodec::Opus && *p.pt() == red::RED_OPUS_PT {
                            red_pt = p.red();
                        }
                    }
                }
                let Some(ssrc) = peer.rtc.direct_api().stream_tx_by_mid(mid, None).map(|s| {
                    s.set_rtx_cache(RTX_CACHE_PACKETS, RTX_CACHE_AGE, Some(RTX_RATIO_CAP));
                    s.ssrc()
                }) else {
                    peer.span
                        .in_scope(|| warn!(%mid, "no send stream for viewer media"));
                    return;
                };
                let (clock, waiting) = match kind {
                    MediaKind::Audio => (48_000, false),
                    MediaKind::Video => (90_000, true),
                };
                let head =
                    HeadTemplate::new(*ssrc, mid_ext.as_ref().map(|(id, m)| (*id, m.as_bytes())));
                let binding = OutBinding {
                    ssrc,
                    pts,
                    red_pt,
                    rewriter: Rewriter::new(clock),
                    waiting_keyframe: waiting,
                    video_source: None,
                    forwarded: 0,
                    clock,
                    head,
                    tally: SendTally::default(),
                    resends: ResendBudget::default(),
                };
                let app_egress = peer.viewer().is_some_and(|v| v.egress.is_some());
                if app_egress && let Some(stream) = peer.rtc.direct_api().stream_tx(&ssrc) {
                    stream.set_app_egress();
                }
                let v = peer.viewer().expect("viewer kind checked above");
                match kind {
                    MediaKind::Audio => v.audio = Some(binding),
                    MediaKind::Video => v.video = Some(binding),
                }
            }
        }
    }

    /// A data channel the remote opened. A viewer's `captions` channel is remembered for
    /// [`Sfu::send_captions`]; any other channel is closed, since nothing would ever be
    /// written to it or read from it.
    fn on_channel_open(&mut self, id: PeerId, channel: ChannelId, label: &str) {
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        let _span = peer.span.enter();
        match &mut peer.kind {
            PeerKind::Viewer(v) if label == CAPTIONS_LABEL => {
                // A second one replaces the first (a player that recreated it): one copy of
                // each caption per viewer.
                if let Some(old) = v.captions.replace(channel) {
                    peer.rtc.direct_api().close_data_channel(old);
                }
                debug!("captions channel open");
            }
            _ => {
                debug!(label, "data channel not served; closing it");
                peer.rtc.direct_api().close_data_channel(channel);
            }
        }
    }

    /// One publisher packet (on its session's home shard) to every viewer of its session:
    /// decides who receives it, then writes it to this shard's viewers and relays it once to
    /// each other shard that has viewers.
    fn forward(&mut self, from: PeerId, pkt: str0m::rtp::RtpPacket) {
        let Some(publisher) = self.peers.get_mut(&from) else {
            return;
        };
        if publisher.publisher().is_none() {
            return; // a viewer sending media: ignored
        }
        let Some(codec) = publisher.codec_of(pkt.header.payload_type) else {
            return;
        };
        let kind = codec.kind();
        let media_kind = match kind {
            Kind::Audio => MediaKind::Audio,
            Kind::Video => MediaKind::Video,
        };
        self.stats.rtp_in.record(kind, 1, pkt.payload.len() as u64);
        let Some(session) = self.sessions.get(&publisher.session) else {
            return;
        };
        let to_current = session.source_for(media_kind) == Some(from);
        let to_floor = session.floor == Some(from);
        if !to_current && !to_floor {
            return;
        }
        let remote = session.remote_viewers;
        let session_id = publisher.session.clone();
        // What viewers hear, once per packet (not per viewer), for speech recognition.
        if kind == Kind::Audio
            && to_current
            && let Some(tap) = &self.config.audio_tap
        {
            tap::offer(tap, &session_id, from, &pkt, &self.stats);
        }
        let keyframe = codec
            .video()
            .is_some_and(|v| starts_keyframe(v, &pkt.payload));
        let payload = pkt.payload;
        let red = (codec == FwdCodec::Opus).then(|| {
            let ssrc = *pkt.header.ssrc;
            let seq = *pkt.seq_no;
            let p = publisher.publisher().expect("publisher checked above");
            let red = red::encode(
                p.last_opus.as_ref(),
                ssrc,
                seq,
                pkt.header.timestamp,
                &payload,
            );
            p.last_opus = Some(PrevOpus {
                ssrc,
                seq,
                timestamp: pkt.header.timestamp,
                payload: payload.clone(),
            });
            red
        });
        let packet = Relayed {
            session: session_id,
            source: SourceKey {
                peer: from.0,
                ssrc: *pkt.header.ssrc,
            },
            codec,
            keyframe,
            to_current,
            to_floor,
            seq: *pkt.seq_no,
            timestamp: pkt.header.timestamp,
            marker: pkt.header.marker,
            payload,
            red,
        };
        let packet = Arc::new(packet);
        for shard in (0..self.shard.count).filter(|s| remote & (1 << s) != 0) {
            self.stats.shard_packets_relayed.add(1);
            self.outbox.push((shard, ShardMsg::Media(packet.clone())));
        }
        self.turn.push(packet);
    }

    /// Writes the turn's publisher packets to this shard's viewers: the hot path.
    ///
    /// Viewer by viewer, each getting all of the turn's packets for it at once: its state
    /// is touched once per turn, and its datagrams leave back to back, which the send batch
    /// turns into one UDP GSO message.
    fn fan_out_turn(&mut self, now: Instant, tx: &mut dyn Transmit) {
        if self.turn.is_empty() {
            return;
        }
        let mut turn = std::mem::take(&mut self.turn);
        if self.config.app_egress {
            for p in &turn {
                let full = self.histories.len() >= MAX_HISTORIES;
                let h = match self.histories.get_mut(&p.source) {
                    Some(h) => h,
                    // A publisher spraying SSRCs gets no history for the extra ones (their
                    // NACKs go unanswered, counted), not our memory.
                    None if full => continue,
                    None => self
                        .histories
                        .entry(p.source)
                        .or_insert_with(|| (now, History::new())),
                };
                h.0 = now;
                h.1.push(p.seq, p.clone());
            }
        }
        if turn.iter().all(|p| p.session == turn[0].session) {
            // The usual turn: one session's packets.
            let session = turn[0].session.clone();
            self.fan_out_session(&session, &turn, now, tx);
            turn.clear();
            self.turn = turn;
        } else {
            // Session by session, in the order their first packet came (a turn holds a
            // handful), each session's packets in arrival order.
            while !turn.is_empty() {
                let session = turn[0].session.clone();
                let (mine, others): (Vec<_>, Vec<_>) =
                    turn.drain(..).partition(|p| p.session == session);
                self.fan_out_session(&session, &mine, now, tx);
                turn = others;
            }
        }
        self.reap(now);
    }

    fn fan_out_session(
        &mut self,
        session_id: &SessionId,
        packets: &[Arc<Relayed>],
        now: Instant,
        tx: &mut dyn Transmit,
    ) {
        let Some(session) = self.sessions.get_mut(session_id) else {
            return;
        };
        // Taken out so viewers can be reached (and `self` borrowed) inside the loop;
        // nothing adds viewers meanwhile, and removals wait in `dead`. An empty Vec
        // allocates nothing.
        let take = |list: &mut Vec<PeerId>, wanted: bool| {
            if wanted {
                std::mem::take(list)
            } else {
                Vec::new()
            }
        };
        let to_current = packets.iter().any(|p| p.to_current);
        let to_floor = packets.iter().any(|p| p.to_floor);
        let viewers = take(&mut session.viewers, to_current);
        let floor_viewers = take(&mut session.floor_viewers, to_floor);
        let mut out = FanOutTally::default();
        for (list, floor) in [(&viewers, false), (&floor_viewers, true)] {
            for &vid in list {
                let Some(viewer) = self.peers.get_mut(&vid) else {
                    continue;
                };
                if !viewer.connected {
                    continue;
                }
                let mut via_str0m = false;
                for p in packets
                    .iter()
                    .filter(|p| if floor { p.to_floor } else { p.to_current })
                {
                    let written = write_to_viewer(viewer, p, now, tx, &mut self.events);
                    via_str0m |= matches!(written, Written::Str0m);
                    out.count(p, &written);
                }
                if let Some(change) = viewer.viewer().and_then(|v| v.gate_notice.take()) {
                    // The data channel write is released by str0m's next poll.
                    via_str0m |= tell_viewer_of_gate(viewer, change, &self.stats);
                }
                if via_str0m {
                    // str0m releases written packets on its next timeout: the viewer is made
                    // due now, and `handle_timeout` polls it once for all it got this turn.
                    if viewer.deadline.is_none_or(|d| d > now) {
                        if let Some(old) = viewer.deadline.replace(now) {
                            self.deadlines.remove(&(old, vid));
                        }
                        self.deadlines.insert((now, vid));
                    }
                }
            }
        }
        if let Some(session) = self.sessions.get_mut(session_id) {
            if to_current {
                debug_assert!(session.viewers.is_empty());
                session.viewers = viewers;
            }
            if to_floor {
                debug_assert!(session.floor_viewers.is_empty());
                session.floor_viewers = floor_viewers;
            }
        }
        for (kind, (packets, payload_bytes)) in [(Kind::Audio, out.audio), (Kind::Video, out.video)]
        {
            self.stats.rtp_out.record(kind, packets, payload_bytes);
        }
        self.stats.app_egress_packets.add(out.direct_datagrams);
        self.stats.video_paused_packets.add(out.paused);
        self.tx_datagrams += out.direct_datagrams;
        self.tx_bytes += out.direct_bytes;
        // Whoever waits gets this publisher's video: ask it.
        for source in out.waiting {
            self.request_keyframe_from(source, now);
        }
    }

    /// Answers the NACKs str0m took from a viewer's RTCP, for streams our own egress sends:
    /// the packet is found in its source's history through the viewer's rewriter, and sent
    /// again with the sequence number and timestamp it had.
    fn answer_nacks(&mut self, id: PeerId, now: Instant, tx: &mut dyn Transmit) {
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        let Peer { rtc, kind, .. } = peer;
        let PeerKind::Viewer(v) = kind else {
            return;
        };
        let ViewerState {
            audio,
            video,
            egress,
            gate,
            ..
        } = v;
        let Some(egress) = egress else {
            return;
        };
        for (b, is_video) in [(audio, false), (video, true)]
            .into_iter()
            .filter_map(|(b, v)| b.as_mut().map(|b| (b, v)))
        {
            if let Some(stream) = rtc.direct_api().stream_tx(&b.ssrc) {
                stream.take_app_nacks(&mut self.nacked);
            }
            for seq in self.nacked.drain(..) {
                let out_seq = *seq;
                // The gate learns the video's loss from its NACKs; a probe's padding is
                // never resent.
                if is_video && gate.on_nack(out_seq) {
                    continue;
                }
                let Some((source, in_seq, ts_offset)) = b.rewriter.source_of(out_seq) else {
                    self.stats.nacks_unanswered.add(1);
                    continue;
                };
                let Some(p) = self.histories.get(&source).and_then(|h| h.1.get(in_seq)) else {
                    self.stats.nacks_unanswered.add(1);
                    continue;
                };
                let Some(pt) = b.pts[p.codec as usize] else {
                    continue;
                };
                if !b.resends.spend() {
                    self.stats.resends_refused.add(1);
                    continue;
                }
                let timestamp = p.timestamp.wrapping_add(ts_offset);
                let fields = HeadFields {
                    pt: *pt,
                    marker: p.marker,
                    seq: out_seq as u16,
                    timestamp,
                };
                let bytes = egress.send(&b.head, fields, *b.ssrc, out_seq, &p.payload, tx);
                b.tally.add(out_seq, timestamp, p.payload.len(), now);
                self.tx_datagrams += 1;
                self.tx_bytes += bytes as u64;
            }
        }
    }

    /// Tells str0m what our own egress sent on a viewer's streams, for its sender reports.
    fn hand_over_tallies(peer: &mut Peer) {
        let Peer { rtc, kind, .. } = peer;
        let PeerKind::Viewer(v) = kind else {
            return;
        };
        if v.egress.is_none() {
            return;
        }
        for b in [v.audio.as_mut(), v.video.as_mut()].into_iter().flatten() {
            if b.tally.is_pending()
                && let Some(stream) = rtc.direct_api().stream_tx(&b.ssrc)
            {
                b.tally.hand_to(stream, b.clock);
            }
        }
    }

    /// Once a viewer is connected, our own egress sends its forwarded media, with the SRTP
    /// keys str0m negotiated and to the address ICE nominated.
    fn start_app_egress(&mut self, id: PeerId) {
        if !self.config.app_egress {
            return;
        }
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        let Some((proto, _, dest)) = peer.rtc.send_addr() else {
            return;
        };
        let Peer {
            rtc, kind, span, ..
        } = peer;
        let PeerKind::Viewer(v) = kind else {
            return;
        };
        let mut api = rtc.direct_api();
        let Some(srtp) = api.take_app_srtp_tx() else {
            span.in_scope(|| warn!("no SRTP context for our own egress; str0m sends"));
            return;
        };
        for b in [v.audio.as_ref(), v.video.as_ref()].into_iter().flatten() {
            if let Some(stream) = api.stream_tx(&b.ssrc) {
                stream.set_app_egress();
            }
        }
        v.egress = Some(ViewerEgress::new(srtp, proto, dest));
    }

    /// Tells the session's home shard whether this shard has viewers of it (it relays the
    /// session's packets here only while it does).
    fn tell_home(&mut self, session: &SessionId, viewers: bool) {
        let home = home_shard(session, self.shard.count);
        if home != self.shard.index {
            self.outbox.push((
                home,
                ShardMsg::Interest {
                    session: session.clone(),
                    shard: self.shard.index,
                    viewers,
                },
            ));
        }
    }

    /// Asks the video source of the viewers following `follow` for a keyframe.
    fn request_keyframe(&mut self, session: &SessionId, follow: Follow, now: Instant) {
        let home = home_shard(session, self.shard.count);
        if home != self.shard.index {
            let msg = ShardMsg::Keyframe {
                session: session.clone(),
                follow,
            };
            self.outbox.push((home, msg));
            return;
        }
        if let Some(source) = self
            .sessions
            .get(session)
            .and_then(|s| s.video_source_for(follow))
        {
            self.request_keyframe_from(source, now);
        }
    }

    /// Asks a publisher for a keyframe (rate-limited per publisher).
    fn request_keyframe_from(&mut self, source: PeerId, now: Instant) {
        let owner = shard_of_peer(source);
        if owner != self.shard.index {
            // The owner rate-limits the publisher's PLIs itself; this only keeps the asking
            // to a few messages per second instead of one per skipped packet.
            let last = self.remote_keyframe_asks.get(&source);
            if last
                .is_none_or(|t| now.saturating_duration_since(*t) >= REMOTE_KEYFRAME_ASK_INTERVAL)
            {
                self.remote_keyframe_asks.insert(source, now);
                self.outbox
                    .push((owner, ShardMsg::KeyframeFrom { peer: source }));
            }
            return;
        }
        let Some(peer) = self.peers.get_mut(&source) else {
            return;
        };
        let Some(p) = peer.publisher() else {
            return;
        };
        if p.video_mid.is_none() {
            // Not negotiated yet: nothing to ask, and the limiter must not count it as sent.
            // `on_media_added` asks once the video m-line is known.
            return;
        }
        if p.keyframes.request(now) {
            Self::send_keyframe_request(peer, &self.stats);
        }
        // Either way the publisher must be polled: to send the PLI now, or to be woken when a
        // deferred one is due.
        let at = peer
            .publisher()
            .and_then(|p| p.keyframes.poll_timeout())
            .unwrap_or(now);
        let at = peer.deadline.map_or(at, |d| d.min(at));
        self.schedule(source, Some(at));
    }

    fn send_keyframe_request(peer: &mut Peer, stats: &MediaStats) {
        let Some(mid) = peer.publisher().and_then(|p| p.video_mid) else {
            return;
        };
        if let Some(rx) = peer.rtc.direct_api().stream_rx_by_mid(mid, None) {
            rx.request_keyframe(KeyframeRequestKind::Pli);
            stats.plis.add(1);
        }
    }

    /// Applies a change of the session's sources (`before` → now). When the video source
    /// changed, the new source is asked for a keyframe (each viewer's video waits for one when
    /// its first packet from a new source comes, on whichever shard: see `fan_out`); audio
    /// just switches on the next packet. The rewriters keep both kinds' sequence numbers
    /// continuous either way. Returns whether any source changed.
    fn sources_changed(&mut self, session: &SessionId, before: Sources, now: Instant) -> bool {
        let Some(s) = self.sessions.get(session) else {
            return false;
        };
        let after = s.sources();
        if after == before {
            return false;
        }
        let name = |p: Option<PeerId>| p.map_or_else(|| "none".to_string(), |p| p.to_string());
        for (kind, from, to) in [
            ("audio", before.audio, after.audio),
            ("video", before.video, after.video),
        ] {
            if from != to {
                info!(%session, kind, from = name(from), to = name(to), "source switched");
            }
        }
        let mut ask = [None, None];
        for (i, (follow, changed)) in [
            (Follow::Current, after.video != before.video),
            (Follow::Floor, after.floor != before.floor),
        ]
        .into_iter()
        .enumerate()
        {
            if changed {
                ask[i] = s.video_source_for(follow);
            }
        }
        // The floor may be both lists' source: the limiter sends one request for both.
        for source in ask.into_iter().flatten() {
            self.request_keyframe_from(source, now);
        }
        true
    }

    fn housekeeping(&mut self, now: Instant) {
        // Said again every second: a message lost to a full queue heals by itself.
        let watched: Vec<SessionId> = self
            .sessions
            .iter()
            .filter(|(id, s)| s.has_viewers() && !self.shard.is_home_of(id))
            .map(|(id, _)| id.clone())
            .collect();
        for session in watched {
            self.tell_home(&session, true);
        }
        self.remote_keyframe_asks
            .retain(|_, t| now.saturating_duration_since(*t) < REMOTE_KEYFRAME_ASK_INTERVAL);
        self.histories
            .retain(|_, (t, _)| now.saturating_duration_since(*t) < HISTORY_IDLE);
        let limit = self.config.connect_timeout;
        for peer in self.peers.values() {
            if !peer.connected && now.saturating_duration_since(peer.created) > limit {
                peer.span
                    .in_scope(|| info!("no ICE/DTLS connection in time; dropping"));
                self.dead.push(peer.id);
            }
        }
    }

    fn push_event(&mut self, e: MediaEvent) {
        push_capped(&mut self.events, e);
    }

    /// Removes dead peers and everything that points at them.
    fn reap(&mut self, now: Instant) {
        while let Some(id) = self.dead.pop() {
            self.schedule(id, None);
            let Some(mut peer) = self.peers.remove(&id) else {
                continue;
            };
            peer.rtc.disconnect();
            peer.span.in_scope(|| info!("peer closed"));
            self.demux.remove(id);
            self.tcp_links.peer_removed(id);
            while let Some(notice) = self.demux.poll_notice() {
                self.outbox.push(notice);
            }
            self.stats.peer_removed(&peer.session, peer.role);
            self.stats.forget_link(id);
            if let Some(s) = self.sessions.get_mut(&peer.session) {
                let before = s.sources();
                if s.floor == Some(id) {
                    s.floor = None;
                }
                if s.speaker == Some(id) {
                    // Viewers go back to the floor feed for both kinds.
                    s.set_speaker(None);
                }
                let had_viewers = s.has_viewers();
                s.viewers.retain(|v| *v != id);
                s.floor_viewers.retain(|v| *v != id);
                let last_viewer_here = had_viewers && !s.has_viewers();
                if s.is_empty() {
                    self.sessions.remove(&peer.session);
                } else {
                    self.sources_changed(&peer.session, before, now);
                }
                if last_viewer_here {
                    self.tell_home(&peer.session, false);
                }
            }
            self.push_event(MediaEvent::Closed {
                peer: id,
                session: peer.session.clone(),
                role: peer.role,
            });
        }
    }
}

/// A candidate whose address is an mDNS name (`<uuid>.local`), which hides a browser's IP.
fn is_mdns_candidate(line: &str) -> bool {
    line.split_whitespace()
        .nth(4)
        .is_some_and(|addr| addr.to_ascii_lowercase().ends_with(".local"))
}

/// Events wait here only until the end of the loop turn; the cap bounds what one turn can
/// pile up (a burst of first packets to thousands of viewers joining together).
pub(crate) fn push_capped(events: &mut VecDeque<MediaEvent>, e: MediaEvent) {
    if events.len() < MAX_PENDING_EVENTS {
        events.push_back(e);
    }
}
