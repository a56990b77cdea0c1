//! The audio tap: Opus RTP payloads, as the SFU forwards them, turned into the 16 kHz mono
//! PCM recognizers take.
//!
//! libopus decodes straight to 16 kHz mono (it resamples and downmixes stereo internally), so
//! the tap needs no resampler. Recognizers timestamp captions by counting samples, so the tap
//! keeps stream time continuous: lost packets are concealed with the decoder's PLC (the last
//! one from in-band FEC when the next packet carries it), and a timestamp jump without loss
//! (DTX) is filled with silence. Both fills are bounded, so a long outage costs a bounded
//! amount of memory and work; after it, time simply continues from the next packet.

use opus::{Channels, Decoder};

use crate::SAMPLE_RATE;

/// The RTP clock of Opus is always 48 kHz (RFC 7587), whatever the encoder's rate.
const RTP_CLOCK: u32 = 48_000;
/// 48 kHz RTP ticks per output sample.
const TICKS_PER_SAMPLE: u32 = RTP_CLOCK / SAMPLE_RATE;
/// The longest Opus packet is 120 ms.
const MAX_PACKET_SAMPLES: usize = SAMPLE_RATE as usize * 120 / 1000;
/// Assumed frame length before the first packet told us one (20 ms, WebRTC's default).
const DEFAULT_FRAME_SAMPLES: usize = SAMPLE_RATE as usize / 50;
/// At most this many lost frames are concealed; a longer loss is not filled.
pub const MAX_CONCEALED_FRAMES: u64 = 10;
/// At most this much silence fills a DTX pause: enough for a recognizer's end-of-speech
/// detection, without buffering a long pause sample by sample.
const MAX_DTX_FILL_SAMPLES: usize = SAMPLE_RATE as usize;
/// A timestamp jump beyond this is treated as a discontinuity, not a pause, and not filled.
const MAX_PLAUSIBLE_JUMP_SAMPLES: u64 = 10 * SAMPLE_RATE as u64;

#[derive(Debug, thiserror::Error)]
pub enum TapError {
    #[error("cannot create the Opus decoder: {0}")]
    Decoder(#[source] opus::Error),
    #[error("undecodable Opus packet (seq {seq}): {source}")]
    Packet {
        seq: u64,
        #[source]
        source: opus::Error,
    },
    #[error("empty Opus payload (seq {seq})")]
    EmptyPayload { seq: u64 },
}

/// What the tap has done with the packets it was given; the server turns it into metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TapCounters {
    /// Packets decoded normally.
    pub decoded: u64,
    /// Duplicates and packets older than the last accepted one: ignored.
    pub stale: u64,
    /// Frames synthesised for lost packets (PLC or FEC).
    pub concealed_frames: u64,
    /// Lost frames beyond [`MAX_CONCEALED_FRAMES`] that were not filled.
    pub unfilled_frames: u64,
    /// Undecodable or empty payloads, each replaced by a concealed frame.
    pub malformed: u64,
    /// Publisher switches (each resets the decoder).
    pub source_switches: u64,
}

/// The last packet accepted from the current source.
#[derive(Clone, Copy, Debug)]
struct LastPacket {
    seq: u64,
    rtp_timestamp: u32,
    /// Its duration in output samples; lost frames are assumed to be as long.
    samples: usize,
}

/// Decodes one audio stream at a time (the speaker being captioned) to 16 kHz mono.
pub struct OpusTap {
    decoder: Decoder,
    source: Option<u64>,
    last: Option<LastPacket>,
    /// One packet's worth of output, reused for every decode.
    scratch: Vec<i16>,
    counters: TapCounters,
    /// The last undecodable packet, kept for whoever looks after a malformed count rises.
    last_error: Option<TapError>,
}

impl std::fmt::Debug for OpusTap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpusTap")
            .field("source", &self.source)
            .field("last", &self.last)
            .finish_non_exhaustive()
    }
}

impl OpusTap {
    pub fn new() -> Result<Self, TapError> {
        Ok(OpusTap {
            decoder: Decoder::new(SAMPLE_RATE, Channels::Mono).map_err(TapError::Decoder)?,
            source: None,
            last: None,
            scratch: vec![0; MAX_PACKET_SAMPLES],
            counters: TapCounters::default(),
            last_error: None,
        })
    }

    pub fn counters(&self) -> TapCounters {
        self.counters
    }

    /// Takes the error of the latest undecodable packet, if one came since the last call.
    pub fn take_error(&mut self) -> Option<TapError> {
        self.last_error.take()
    }

    /// Appends the PCM of one RTP packet to `out` and returns how many samples it appended.
    ///
    /// `source` names the publisher: a new one resets the decoder and sequence state. `seq` is
    /// the extended (never wrapping) sequence number; a packet at or before the last accepted
    /// one is a duplicate or too late and appends nothing. Lost packets before this one are
    /// concealed first. An undecodable payload is concealed too (stream time still advances
    /// by a frame); it is counted in [`TapCounters::malformed`] and kept for [`Self::take_error`].
    pub fn push(
        &mut self,
        source: u64,
        seq: u64,
        rtp_timestamp: u32,
        payload: &[u8],
        out: &mut Vec<i16>,
    ) -> usize {
        if self.source != Some(source) {
            self.switch_to(source);
        }
        if self.last.is_some_and(|last| seq <= last.seq) {
            self.counters.stale += 1;
            return 0;
        }
        let before = out.len();
        if let Some(last) = self.last {
            self.fill_gap(last, seq, rtp_timestamp, payload, out);
        }
        let frame = self.last.map_or(DEFAULT_FRAME_SAMPLES, |l| l.samples);
        let samples = match self.decode(seq, payload, frame, out) {
            Ok(n) => {
                self.counters.decoded += 1;
                n
            }
            Err(err) => {
                // Per packet, so not at info: the counter is what gets watched.
                tracing::debug!(%err, "opus packet concealed");
                self.counters.malformed += 1;
                self.last_error = Some(err);
                frame
            }
        };
        self.last = Some(LastPacket {
            seq,
            rtp_timestamp,
            samples,
        });
        out.len() - before
    }

    fn switch_to(&mut self, source: u64) {
        if let Err(err) = self.decoder.reset_state() {
            // A reset of a valid decoder cannot fail in libopus; if it did, carry on with the
            // old state: at worst the first frames of the new source sound odd.
            tracing::warn!(%err, "opus decoder reset failed");
        }
        if self.source.is_some() {
            self.counters.source_switches += 1;
        }
        self.source = Some(source);
        self.last = None;
    }

    /// Conceals packets lost between `last` and `seq`, or fills a DTX pause.
    fn fill_gap(
        &mut self,
        last: LastPacket,
        seq: u64,
        rtp_timestamp: u32,
        payload: &[u8],
        out: &mut Vec<i16>,
    ) {
        let lost = seq - last.seq - 1;
        if lost > 0 {
            let concealed = lost.min(MAX_CONCEALED_FRAMES);
            self.counters.concealed_frames += concealed;
            self.counters.unfilled_frames += lost - concealed;
            // FEC in this packet describes the frame just before it, so it is usable only when
            // that frame is among the ones we conceal.
            let fec_usable = lost <= MAX_CONCEALED_FRAMES && !payload.is_empty();
            for i in 0..concealed {
                let fec = fec_usable && i + 1 == concealed;
                self.conceal(last.samples, if fec { payload } else { &[] }, out);
            }
            return;
        }
        // No packet lost but the clock ran on: the sender paused (DTX).
        let advanced = u64::from(rtp_timestamp.wrapping_sub(last.rtp_timestamp) / TICKS_PER_SAMPLE);
        let expected = last.samples as u64;
        if advanced > expected && advanced <= MAX_PLAUSIBLE_JUMP_SAMPLES {
            let fill = ((advanced - expected) as usize).min(MAX_DTX_FILL_SAMPLES);
            out.resize(out.len() + fill, 0);
        }
    }

    /// Appends one concealed frame: PLC with an empty `fec_payload`, else that packet's FEC.
    fn conceal(&mut self, samples: usize, fec_payload: &[u8], out: &mut Vec<i16>) {
        let samples = samples.min(self.scratch.len());
        let buf = &mut self.scratch[..samples];
        let decoded = match self
            .decoder
            .decode(fec_payload, buf, !fec_payload.is_empty())
        {
            Ok(n) if n == samples => n,
            // A PLC of a valid length does not fail; if it does, silence keeps the time right.
            _ => {
                buf.fill(0);
                samples
            }
        };
        out.extend_from_slice(&buf[..decoded]);
    }

    /// Decodes this packet; on failure conceals `frame` samples instead.
    fn decode(
        &mut self,
        seq: u64,
        payload: &[u8],
        frame: usize,
        out: &mut Vec<i16>,
    ) -> Result<usize, TapError> {
        if payload.is_empty() {
            self.conceal(frame, &[], out);
            return Err(TapError::EmptyPayload { seq });
        }
        match self.decoder.decode(payload, &mut self.scratch, false) {
            Ok(n) => {
                let n = n.min(self.scratch.len());
                out.extend_from_slice(&self.scratch[..n]);
                Ok(n)
            }
            Err(source) => {
                self.conceal(frame, &[], out);
                Err(TapError::Packet { seq, source })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opus::{Application, Encoder};

    const FRAME_48K: usize = 960;
    const FRAME_16K: usize = 320;

    /// 20 ms Opus packets of a 440 Hz tone at 48 kHz.
    fn tone_packets(channels: Channels, count: usize) -> Vec<Vec<u8>> {
        let mut enc = Encoder::new(48_000, channels, Application::Audio).expect("encoder");
        let ch = channels as usize;
        let mut phase = 0usize;
        (0..count)
            .map(|_| {
                let mut pcm = Vec::with_capacity(FRAME_48K * ch);
                for _ in 0..FRAME_48K {
                    let t = phase as f64 / 48_000.0;
                    let s = (8000.0 * (2.0 * std::f64::consts::PI * 440.0 * t).sin()) as i16;
                    pcm.extend(std::iter::repeat_n(s, ch));
                    phase += 1;
                }
                enc.encode_vec(&pcm, 4000).expect("encode")
            })
            .collect()
    }

    /// Power of `freq` in `samples` (16 kHz), normalised by length.
    fn goertzel(samples: &[i16], freq: f64) -> f64 {
        let w = 2.0 * std::f64::consts::PI * freq / f64::from(SAMPLE_RATE);
        let coeff = 2.0 * w.cos();
        let (mut s1, mut s2) = (0.0f64, 0.0f64);
        for &x in samples {
            let s0 = f64::from(x) + coeff * s1 - s2;
            s2 = s1;
            s1 = s0;
        }
        (s1 * s1 + s2 * s2 - coeff * s1 * s2) / (samples.len() as f64).powi(2)
    }

    fn assert_tone(samples: &[i16]) {
        let at_440 = goertzel(samples, 440.0);
        let at_1000 = goertzel(samples, 1000.0);
        let at_300 = goertzel(samples, 300.0);
        assert!(
            at_440 > 100.0 * at_1000 && at_440 > 100.0 * at_300,
            "440 Hz {at_440:.1} vs 1000 Hz {at_1000:.1}, 300 Hz {at_300:.1}"
        );
        // The amplitude survives: 8000 peak gives (8000/2)^2 = 1.6e7 in this normalisation.
        assert!(at_440 > 4.0e6, "440 Hz power {at_440:.1}");
    }

    #[test]
    fn decodes_a_tone_to_16k_mono() {
        let packets = tone_packets(Channels::Mono, 50);
        let mut tap = OpusTap::new().expect("decoder");
        let mut out = Vec::new();
        for (i, p) in packets.iter().enumerate() {
            assert_eq!(
                tap.push(1, i as u64, (i * FRAME_48K) as u32, p, &mut out),
                FRAME_16K
            );
        }
        assert_eq!(out.len(), 50 * FRAME_16K);
        assert_eq!(tap.counters().decoded, 50);
        // Skip the encoder's start-up.
        assert_tone(&out[10 * FRAME_16K..]);
    }

    #[test]
    fn stereo_is_downmixed() {
        let packets = tone_packets(Channels::Stereo, 30);
        let mut tap = OpusTap::new().expect("decoder");
        let mut out = Vec::new();
        for (i, p) in packets.iter().enumerate() {
            tap.push(7, i as u64, (i * FRAME_48K) as u32, p, &mut out);
        }
        assert_eq!(out.len(), 30 * FRAME_16K);
        assert_tone(&out[10 * FRAME_16K..]);
    }

    #[test]
    fn gap_duplicate_and_source_switch() {
        let packets = tone_packets(Channels::Mono, 60);
        let mut tap = OpusTap::new().expect("decoder");
        let mut out = Vec::new();
        let ts = |i: usize| (i * FRAME_48K) as u32 + 0xFFFF_0000; // wraps the RTP clock
        for (i, p) in packets.iter().enumerate().take(20) {
            tap.push(1, 1000 + i as u64, ts(i), p, &mut out);
        }
        assert_eq!(out.len(), 20 * FRAME_16K);

        // Packets 20 and 21 are lost: 22 brings two concealed frames and its own.
        assert_eq!(
            tap.push(1, 1022, ts(22), &packets[22], &mut out),
            3 * FRAME_16K
        );
        // A duplicate, and an old packet arriving late, append nothing.
        assert_eq!(tap.push(1, 1022, ts(22), &packets[22], &mut out), 0);
        assert_eq!(tap.push(1, 1021, ts(21), &packets[21], &mut out), 0);
        for (i, p) in packets.iter().enumerate().take(40).skip(23) {
            tap.push(1, 1000 + i as u64, ts(i), p, &mut out);
        }
        assert_eq!(out.len(), 40 * FRAME_16K, "stream time stays continuous");
        // The concealed stretch still sounds like the tone around it.
        assert_tone(&out[10 * FRAME_16K..40 * FRAME_16K]);
        let c = tap.counters();
        assert_eq!((c.decoded, c.stale, c.concealed_frames), (38, 2, 2));

        // A different publisher: its sequence numbers start low and are not "old".
        let mut out2 = Vec::new();
        for i in 0..20 {
            let n = tap.push(
                2,
                i as u64,
                (i * FRAME_48K) as u32,
                &packets[40 + i],
                &mut out2,
            );
            assert_eq!(n, FRAME_16K);
        }
        assert_eq!(out2.len(), 20 * FRAME_16K);
        assert_eq!(tap.counters().source_switches, 1);
        assert_tone(&out2[5 * FRAME_16K..]);
    }

    #[test]
    fn long_loss_is_concealed_only_up_to_the_bound() {
        let packets = tone_packets(Channels::Mono, 40);
        let mut tap = OpusTap::new().expect("decoder");
        let mut out = Vec::new();
        tap.push(1, 0, 0, &packets[0], &mut out);
        let n = tap.push(1, 31, 31 * FRAME_48K as u32, &packets[31], &mut out);
        assert_eq!(n, (MAX_CONCEALED_FRAMES as usize + 1) * FRAME_16K);
        let c = tap.counters();
        assert_eq!((c.concealed_frames, c.unfilled_frames), (10, 20));
    }

    #[test]
    fn dtx_pause_is_filled_with_bounded_silence() {
        let packets = tone_packets(Channels::Mono, 3);
        let mut tap = OpusTap::new().expect("decoder");
        let mut out = Vec::new();
        tap.push(1, 0, 0, &packets[0], &mut out);
        // Next packet 200 ms later with no sequence gap: 180 ms of silence, then the frame.
        assert_eq!(tap.push(1, 1, 9600, &packets[1], &mut out), 10 * FRAME_16K);
        assert!(out[FRAME_16K..FRAME_16K * 10].iter().all(|&s| s == 0));
        // A 5 s pause is filled with at most 1 s.
        let n = tap.push(1, 2, 9600 + 5 * 48_000, &packets[2], &mut out);
        assert_eq!(n, MAX_DTX_FILL_SAMPLES + FRAME_16K);
    }

    #[test]
    fn malformed_payloads_are_concealed_and_reported() {
        let packets = tone_packets(Channels::Mono, 3);
        let mut tap = OpusTap::new().expect("decoder");
        let mut out = Vec::new();
        tap.push(1, 0, 0, &packets[0], &mut out);
        // TOC code 3 without its frame-count byte.
        assert_eq!(tap.push(1, 1, 960, &[0x03], &mut out), FRAME_16K);
        let err = tap.take_error();
        assert!(
            matches!(err, Some(TapError::Packet { seq: 1, .. })),
            "{err:?}"
        );
        assert_eq!(tap.push(1, 2, 1920, &[], &mut out), FRAME_16K);
        let err = tap.take_error();
        assert!(
            matches!(err, Some(TapError::EmptyPayload { seq: 2 })),
            "{err:?}"
        );
        assert!(tap.take_error().is_none());
        assert_eq!(
            out.len(),
            3 * FRAME_16K,
            "bad packets still take their time"
        );
        assert_eq!(tap.push(1, 3, 2880, &packets[1], &mut out), FRAME_16K);
        assert_eq!(tap.counters().malformed, 2);
        assert_eq!(tap.counters().decoded, 2);
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let mut tap = OpusTap::new().expect("decoder");
        let mut out = Vec::new();
        let mut x: u32 = 0x1234_5678;
        for seq in 0..500u64 {
            let len = (seq % 40) as usize;
            let payload: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    x as u8
                })
                .collect();
            out.clear();
            let n = tap.push(seq / 100, seq * 3 % 7 + seq, x, &payload, &mut out);
            assert_eq!(n, out.len());
            // Bounded: one concealed stretch or pause fill plus one maximal packet.
            let bound = (MAX_CONCEALED_FRAMES as usize * MAX_PACKET_SAMPLES)
                .max(MAX_DTX_FILL_SAMPLES)
                + MAX_PACKET_SAMPLES;
            assert!(n <= bound, "{n} samples from one packet");
        }
    }
}
