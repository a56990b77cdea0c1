//! Whether one viewer's link can carry the video (issue 18, thin links).
//!
//! A hub on a shared school link that gets the room's video at 1 Mbit/s through 150 kbit/s
//! loses most of every frame and, with it, most of the audio that shares the queue. The gate
//! watches the viewer's loss (the NACKs it sends for the video, and its receiver reports) and
//! pauses that viewer's video when the link cannot carry it, so the audio and captions get
//! through. While paused it probes: short bursts of RTP padding on the video stream at a
//! rate that triples while the bursts arrive (the viewer NACKs the ones that do not), and
//! video comes back, from a keyframe, once a burst at the video's own rate gets through.
//!
//! Loss, not delay: without transport-wide feedback for the packets our own egress writes,
//! loss is the signal we have. Probes therefore cost the viewer some loss while its link is
//! thin; they are short and spaced so that audio with RED (distance 1) survives them.
//!
//! Pure state, clock passed in; one small struct per viewer, no allocation.

use std::time::{Duration, Instant};

/// A window whose loss is at least this is bad; two bad windows in a row pause the video.
const PAUSE_LOSS: f32 = 0.10;
/// One window this bad pauses at once (the video is plainly far above the link).
const PAUSE_LOSS_AT_ONCE: f32 = 0.30;
/// How much of a probe may be lost for the link to count as carrying its rate.
const PROBE_LOSS_OK: f32 = 0.10;
const WINDOW: Duration = Duration::from_secs(1);
/// Fewer packets than this say nothing about the loss.
const MIN_WINDOW_PACKETS: u32 = 20;
/// How long a probe sends. Long enough that a link slower than the probe overflows its
/// bottleneck queue (a 200 ms queue at 150 kbit/s holds ≈ 4 kB) and loses some of it.
const PROBE_LENGTH: Duration = Duration::from_millis(400);
/// After the probe, when its tail goes out: a receiver NACKs a loss only once a later packet
/// arrives, and losses on an overflowing queue come at the end of a burst.
const PROBE_TAIL_AFTER: Duration = Duration::from_millis(100);
const PROBE_TAIL_PACKETS: u64 = 2;
/// After the tail, how long the viewer's NACKs have to arrive.
const PROBE_SETTLE: Duration = Duration::from_millis(200);
/// The first probe after a pause, and the wait after a failed probe.
const FIRST_PROBE_AFTER: Duration = Duration::from_secs(1);
const PROBE_BACKOFF: Duration = Duration::from_secs(2);
const MIN_PROBE_BPS: u32 = 64_000;
/// A probe that got through is followed at once by one this many times faster: from a thin
/// link's rate to a video's in two or three steps once the link recovers.
const PROBE_GROWTH: u32 = 3;
const MAX_PROBE_BPS: u32 = 8_000_000;
/// Video comes back when a probe this much above the video's rate got through: headroom for
/// keyframes.
const RESUME_HEADROOM: f32 = 1.15;
/// The video's rate assumed before any has been measured.
const DEFAULT_VIDEO_BPS: u32 = 500_000;
/// One padding packet on the wire: 255 bytes of RTP padding (the most one packet carries),
/// its header and the SRTP tag.
const PADDING_WIRE_BYTES: u32 = 300;
/// Padding packets one probe may send (the size of its loss bitmap).
const MAX_PROBE_PACKETS: u64 = 256;
/// Padding packets sent in one go: the probe is paced by the packets that reach the viewer
/// anyway (audio every 20 ms), so a burst covers one such gap.
const MAX_PADDING_AT_ONCE: u32 = 16;
/// IP, UDP, RTP and SRTP overhead counted per video packet in the video's rate.
const PACKET_OVERHEAD_BYTES: u32 = 60;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum GateChange {
    Paused,
    Resumed,
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct VideoGate {
    state: State,
    window: LossWindow,
    /// The rate of the video this viewer would get (bits/s), measured over windows.
    video_bps: u32,
    video_window: (Instant, u64),
    /// The rate the next probe tries.
    probe_bps: u32,
}

#[derive(Clone, Copy, Debug)]
enum State {
    On,
    Paused { next_probe: Instant },
    Probing(Probe),
}

#[derive(Clone, Copy, Debug)]
struct LossWindow {
    start: Instant,
    sent: u32,
    nacked: u32,
    /// The worst loss a receiver report gave during the window.
    reported: f32,
    /// Bad windows in a row.
    bad: u8,
}

#[derive(Clone, Copy, Debug)]
struct Probe {
    bps: u32,
    started: Instant,
    /// When padding was last paced out.
    paced_at: Instant,
    /// Bytes owed to the probe's rate and not sent yet.
    owed: f64,
    first_seq: Option<u64>,
    sent: u64,
    /// Tail packets still to send after the burst.
    tail_due: u32,
    /// Bit per padding packet the viewer NACKed.
    lost: [u64; 4],
}

impl Probe {
    fn lost_count(&self) -> u32 {
        self.lost.iter().map(|w| w.count_ones()).sum()
    }
}

impl VideoGate {
    pub fn new(now: Instant) -> Self {
        Self {
            state: State::On,
            window: LossWindow::new(now),
            video_bps: DEFAULT_VIDEO_BPS,
            video_window: (now, 0),
            probe_bps: MIN_PROBE_BPS,
        }
    }

    /// Whether video goes to the viewer now.
    pub fn video_on(&self) -> bool {
        matches!(self.state, State::On)
    }

    /// A video packet for this viewer (sent or not): measures the video's rate.
    pub fn on_video_offered(&mut self, now: Instant, payload_len: usize) {
        let (start, bytes) = &mut self.video_window;
        *bytes += (payload_len as u32 + PACKET_OVERHEAD_BYTES) as u64;
        let elapsed = now.saturating_duration_since(*start);
        if elapsed >= WINDOW {
            let bps = (*bytes as f64 * 8.0 / elapsed.as_secs_f64()) as u32;
            // Smoothed: one window may hold a keyframe, the next none.
            self.video_bps = ((self.video_bps as u64 + bps as u64) / 2) as u32;
            *start = now;
            *bytes = 0;
        }
    }

    /// A video packet was sent to the viewer.
    pub fn on_video_sent(&mut self) {
        if self.video_on() {
            self.window.sent += 1;
        }
    }

    /// The viewer NACKed outgoing video sequence number `seq`. Returns whether it named a
    /// probe's padding (which is never resent).
    pub fn on_nack(&mut self, seq: u64) -> bool {
        match &mut self.state {
            State::On => {
                self.window.nacked += 1;
                false
            }
            State::Probing(p) => {
                if let Some(first) = p.first_seq
                    && seq >= first
                    && seq - first < p.sent.min(MAX_PROBE_PACKETS)
                {
                    let i = (seq - first) as usize;
                    p.lost[i / 64] |= 1 << (i % 64);
                }
                true
            }
            // Padding of a probe already judged, or video from before the pause.
            State::Paused { .. } => true,
        }
    }

    /// The fraction lost a receiver report of the viewer gave (any of its streams).
    pub fn on_reported_loss(&mut self, loss: f32) {
        if self.video_on() {
            self.window.reported = self.window.reported.max(loss);
        }
    }

    /// Moves the gate on; called whenever a packet reaches the viewer's fan-out.
    pub fn tick(&mut self, now: Instant) -> Option<GateChange> {
        match self.state {
            State::On => {
                if now.saturating_duration_since(self.window.start) < WINDOW {
                    return None;
                }
                let w = self.window;
                let counted = w.sent >= MIN_WINDOW_PACKETS;
                let nack_loss = if counted {
                    w.nacked as f32 / w.sent as f32
                } else {
                    0.0
                };
                let loss = nack_loss.max(w.reported);
                let bad = if loss >= PAUSE_LOSS { w.bad + 1 } else { 0 };
                self.window = LossWindow {
                    bad,
                    ..LossWindow::new(now)
                };
                if bad >= 2 || loss >= PAUSE_LOSS_AT_ONCE {
                    // Start probing well below the video's rate: the link just proved it
                    // cannot carry all of it.
                    self.probe_bps = (self.video_bps / 4).clamp(MIN_PROBE_BPS, MAX_PROBE_BPS);
                    self.state = State::Paused {
                        next_probe: now + FIRST_PROBE_AFTER,
                    };
                    return Some(GateChange::Paused);
                }
                None
            }
            State::Paused { next_probe } => {
                if now >= next_probe {
                    self.state = State::Probing(Probe {
                        bps: self.probe_bps,
                        started: now,
                        paced_at: now,
                        owed: 0.0,
                        first_seq: None,
                        sent: 0,
                        tail_due: PROBE_TAIL_PACKETS as u32,
                        lost: [0; 4],
                    });
                }
                None
            }
            State::Probing(p) => {
                if now < p.started + PROBE_LENGTH + PROBE_TAIL_AFTER + PROBE_SETTLE {
                    return None;
                }
                let lost = p.lost_count() as f32 / p.sent.max(1) as f32;
                if lost > PROBE_LOSS_OK || p.sent == 0 {
                    // Retried at the same rate: every probe fills the thin link's queue (a
                    // delay spike for the audio behind it), so a lower one that would pass
                    // is a cost that tells nothing about the video.
                    self.state = State::Paused {
                        next_probe: now + PROBE_BACKOFF,
                    };
                    return None;
                }
                let target = self.resume_bps();
                if p.bps >= target {
                    self.window = LossWindow::new(now);
                    self.state = State::On;
                    return Some(GateChange::Resumed);
                }
                self.probe_bps = (p.bps * PROBE_GROWTH).min(target);
                self.state = State::Paused { next_probe: now };
                None
            }
        }
    }

    /// The probe rate that must get through for video to come back.
    fn resume_bps(&self) -> u32 {
        ((self.video_bps as f32 * RESUME_HEADROOM) as u32).clamp(MIN_PROBE_BPS, MAX_PROBE_BPS)
    }

    /// How many padding packets the probe owes now (0 unless a probe is sending).
    pub fn padding_due(&mut self, now: Instant) -> u32 {
        let State::Probing(p) = &mut self.state else {
            return 0;
        };
        if now >= p.started + PROBE_LENGTH + PROBE_TAIL_AFTER {
            // The tail: sent once, after the burst has drained from the bottleneck.
            let tail = p.tail_due;
            p.tail_due = 0;
            return tail;
        }
        let until = now.min(p.started + PROBE_LENGTH);
        let elapsed = until.saturating_duration_since(p.paced_at);
        p.paced_at = p.paced_at.max(until);
        p.owed += p.bps as f64 / 8.0 * elapsed.as_secs_f64();
        let room = (MAX_PROBE_PACKETS - PROBE_TAIL_PACKETS).saturating_sub(p.sent) as u32;
        let due = ((p.owed / PADDING_WIRE_BYTES as f64) as u32)
            .min(MAX_PADDING_AT_ONCE)
            .min(room);
        p.owed -= (due * PADDING_WIRE_BYTES) as f64;
        if room == 0 {
            p.owed = 0.0;
        }
        due
    }

    /// A padding packet went out with outgoing sequence number `seq`.
    pub fn on_padding_sent(&mut self, seq: u64) {
        if let State::Probing(p) = &mut self.state {
            p.first_seq.get_or_insert(seq);
            p.sent += 1;
        }
    }

    #[cfg(test)]
    fn video_bps(&self) -> u32 {
        self.video_bps
    }
}

impl LossWindow {
    fn new(now: Instant) -> Self {
        Self {
            start: now,
            sent: 0,
            nacked: 0,
            reported: 0.0,
            bad: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// A viewer behind a link of `link_bps` that also drops `random_loss` of what gets
    /// through; video at `video_bps` is offered every 10 ms, audio-paced ticks every 20 ms.
    /// Returns when the gate changed, as (ms, change).
    struct Link {
        link_bps: u32,
        random_loss: f32,
        /// Deterministic "random" loss: every k-th packet.
        counter: u64,
    }

    impl Link {
        /// Whether a packet sent at a rate of `offered_bps` is lost.
        fn loses(&mut self, offered_bps: u32) -> bool {
            self.counter += 1;
            let over = if offered_bps > self.link_bps {
                1.0 - self.link_bps as f32 / offered_bps as f32
            } else {
                0.0
            };
            let p = 1.0 - (1.0 - over) * (1.0 - self.random_loss);
            // Spread losses evenly: lose when the running share falls behind p.
            (self.counter as f32 * p).floor() > ((self.counter - 1) as f32 * p).floor()
        }
    }

    fn run(
        gate: &mut VideoGate,
        link: &mut Link,
        start: Instant,
        from_ms: u64,
        to_ms: u64,
        video_bps: u32,
        seq: &mut u64,
    ) -> Vec<(u64, GateChange)> {
        let mut changes = Vec::new();
        let video_packet = (video_bps / 8 / 100) as usize; // one packet per 10 ms
        for ms in (from_ms..to_ms).step_by(10) {
            let now = start + Duration::from_millis(ms);
            gate.on_video_offered(now, video_packet);
            if gate.video_on() {
                *seq += 1;
                gate.on_video_sent();
                if link.loses(video_bps + 40_000) {
                    gate.on_nack(*seq);
                }
            }
            if ms % 20 == 0 {
                for _ in 0..gate.padding_due(now) {
                    *seq += 1;
                    gate.on_padding_sent(*seq);
                    let probing = match gate.state {
                        State::Probing(p) => p.bps,
                        _ => 0,
                    };
                    if link.loses(probing + 40_000) {
                        gate.on_nack(*seq);
                    }
                }
            }
            if let Some(c) = gate.tick(now) {
                changes.push((ms, c));
            }
        }
        changes
    }

    #[test]
    fn a_clean_link_keeps_video_and_measures_its_rate() {
        let t0 = Instant::now();
        let mut g = VideoGate::new(t0);
        let mut link = Link {
            link_bps: 10_000_000,
            random_loss: 0.0,
            counter: 0,
        };
        let changes = run(&mut g, &mut link, t0, 0, 10_000, 800_000, &mut 0);
        assert!(changes.is_empty(), "{changes:?}");
        assert!(g.video_on());
        let measured = g.video_bps() as f32;
        assert!((800_000.0..1_300_000.0).contains(&measured), "{measured}");
    }

    #[test]
    fn five_percent_random_loss_alone_keeps_video() {
        let t0 = Instant::now();
        let mut g = VideoGate::new(t0);
        let mut link = Link {
            link_bps: 10_000_000,
            random_loss: 0.05,
            counter: 0,
        };
        let changes = run(&mut g, &mut link, t0, 0, 10_000, 800_000, &mut 0);
        assert!(changes.is_empty(), "{changes:?}");
    }

    #[test]
    fn a_thin_link_pauses_video_then_probes_without_resuming_and_recovers_when_lifted() {
        let t0 = Instant::now();
        let mut g = VideoGate::new(t0);
        let mut link = Link {
            link_bps: 150_000,
            random_loss: 0.05,
            counter: 0,
        };
        let mut seq = 0;
        let changes = run(&mut g, &mut link, t0, 0, 20_000, 800_000, &mut seq);
        assert_eq!(
            changes.len(),
            1,
            "paused once and stays paused: {changes:?}"
        );
        assert_eq!(changes[0].1, GateChange::Paused);
        assert!(
            changes[0].0 <= 1_100,
            "paused within the first window: {changes:?}"
        );
        assert!(!g.video_on());
        // Probing goes on while paused: padding was sent (sequence numbers moved on).
        let before = seq;
        run(&mut g, &mut link, t0, 20_000, 25_000, 800_000, &mut seq);
        assert!(seq > before, "probes sent padding");

        link.link_bps = 10_000_000;
        let changes = run(&mut g, &mut link, t0, 25_000, 40_000, 800_000, &mut seq);
        let resumed = changes
            .iter()
            .find(|c| c.1 == GateChange::Resumed)
            .unwrap_or_else(|| panic!("video came back: {changes:?}"));
        assert!(
            resumed.0 - 25_000 <= 5_000,
            "back within 5 s of the link recovering: {changes:?}"
        );
        assert!(g.video_on());
    }

    #[test]
    fn probes_stay_short_and_rare_on_a_thin_link() {
        let t0 = Instant::now();
        let mut g = VideoGate::new(t0);
        let mut link = Link {
            link_bps: 150_000,
            random_loss: 0.0,
            counter: 0,
        };
        run(&mut g, &mut link, t0, 0, 5_000, 800_000, &mut 0);
        assert!(!g.video_on());
        // Padding over the next 20 s, in bits per second.
        let mut padding_bytes = 0u64;
        for ms in (5_000u64..25_000).step_by(20) {
            let now = t0 + Duration::from_millis(ms);
            let n = g.padding_due(now);
            padding_bytes += (n * PADDING_WIRE_BYTES) as u64;
            for i in 0..n {
                g.on_padding_sent(ms * 100 + i as u64);
            }
            g.tick(now);
        }
        let avg_bps = padding_bytes * 8 / 20;
        assert!(avg_bps < 60_000, "average probe rate {avg_bps} bit/s");
        assert!(avg_bps > 5_000, "still probing: {avg_bps} bit/s");
    }

    #[test]
    fn nacks_for_probe_padding_are_never_counted_twice_or_outside_the_probe() {
        let t0 = Instant::now();
        let mut g = VideoGate::new(t0);
        g.state = State::Paused { next_probe: t0 };
        g.probe_bps = 1_000_000;
        g.tick(t0);
        let n = g.padding_due(t0 + 100 * MS);
        assert!(n > 0);
        for s in 0..n as u64 {
            g.on_padding_sent(1000 + s);
        }
        assert!(g.on_nack(1000));
        assert!(g.on_nack(1000));
        assert!(g.on_nack(5));
        assert!(g.on_nack(1000 + 10_000));
        let State::Probing(p) = g.state else {
            panic!("probing")
        };
        assert_eq!(p.lost_count(), 1);
    }

    #[test]
    fn a_lossy_probe_is_retried_at_its_rate_after_a_wait() {
        let t0 = Instant::now();
        let mut g = VideoGate::new(t0);
        g.state = State::Paused { next_probe: t0 };
        g.probe_bps = 400_000;
        g.tick(t0);
        let n = g.padding_due(t0 + PROBE_LENGTH);
        for s in 0..n as u64 {
            g.on_padding_sent(s);
            if s % 2 == 0 {
                g.on_nack(s);
            }
        }
        let later = t0 + PROBE_LENGTH + PROBE_TAIL_AFTER + PROBE_SETTLE;
        assert_eq!(g.tick(later), None);
        assert_eq!(g.probe_bps, 400_000);
        assert!(
            matches!(g.state, State::Paused { next_probe } if next_probe == later + PROBE_BACKOFF)
        );
    }
}
