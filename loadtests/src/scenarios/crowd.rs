//! What every viewer scenario shares: the two viewer modes behind one type, one join (POST →
//! first keyframe, or first audio packet for an audio-only viewer), a ramp at a fixed rate
//! with a bound on handshakes in flight, and a bounded teardown.

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::Client;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::fanout::FanoutOptions;
use crate::light::{AuthSample, LightConfig, LightViewer, Target};
use crate::peer::Kinds;
use crate::publisher::{Publisher, PublisherConfig};
use crate::viewer::{Viewer, ViewerConfig, ViewerStats};

/// Handshakes (HTTP + ICE + DTLS) in flight at once.
pub const JOINS_IN_FLIGHT: usize = 64;

/// How viewers are built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// webrtc-rs peers; every packet authenticated and decrypted.
    #[default]
    Full,
    /// str0m peers; media counted from RTP headers, SRTP checked on a sample.
    Light,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Full => "full",
            Mode::Light => "light",
        }
    }
}

/// Who serves the viewers.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ServerTarget {
    /// Floorcast: WHEP viewers, and our synthetic publisher over WHIP.
    #[default]
    Floorcast,
    /// Janus's Streaming plugin, `url` its HTTP API root: viewers watch `mountpoint`, which
    /// its own sender feeds.
    Janus { mountpoint: u64 },
}

/// A viewer of either mode.
pub enum AnyViewer {
    Full(Viewer),
    Light(LightViewer),
}

impl AnyViewer {
    pub fn stats(&self) -> ViewerStats {
        match self {
            AnyViewer::Full(v) => v.stats(),
            AnyViewer::Light(v) => v.stats(),
        }
    }

    /// CART captions received (light viewers with a captions channel; none otherwise).
    pub fn caption_arrivals(&self) -> Vec<(u64, Instant)> {
        match self {
            AnyViewer::Full(_) => Vec::new(),
            AnyViewer::Light(v) => v.caption_arrivals(),
        }
    }

    pub fn auth(&self) -> Option<AuthSample> {
        match self {
            AnyViewer::Full(_) => None,
            AnyViewer::Light(v) => Some(v.auth()),
        }
    }

    pub fn forget_gaps(&self) {
        match self {
            AnyViewer::Full(v) => v.forget_gaps(),
            AnyViewer::Light(v) => v.forget_gaps(),
        }
    }

    pub async fn wait_until(&self, timeout: Duration, pred: impl Fn(&ViewerStats) -> bool) -> bool {
        match self {
            AnyViewer::Full(v) => v.wait_until(timeout, pred).await,
            AnyViewer::Light(v) => v.wait_until(timeout, pred).await,
        }
    }

    pub async fn close(self) {
        match self {
            AnyViewer::Full(v) => {
                v.close().await;
            }
            AnyViewer::Light(v) => v.close().await,
        }
    }
}

pub struct Joined {
    pub viewer: AnyViewer,
    pub audio_only: bool,
    pub join: Duration,
}

pub async fn join_one(
    client: Client,
    opts: Arc<FanoutOptions>,
    audio_only: bool,
) -> Result<Joined, String> {
    let kinds = if audio_only {
        Kinds::AUDIO_ONLY
    } else {
        Kinds::BOTH
    };
    let viewer = match (opts.mode, &opts.target) {
        (Mode::Full, ServerTarget::Floorcast) => {
            let cfg = ViewerConfig {
                kinds,
                ..ViewerConfig::default()
            };
            let token = opts.next_viewer_token();
            let v = Viewer::whep(cfg, &client, &opts.url, &opts.session, &token)
                .await
                .map_err(|e| format!("join: {e}"))?;
            AnyViewer::Full(v)
        }
        (Mode::Full, ServerTarget::Janus { .. }) => {
            return Err("the janus target needs --mode light".into());
        }
        (Mode::Light, target) => {
            let cfg = LightConfig {
                kinds,
                sample_every: opts.sample_every,
                captions: opts.captions,
                ..LightConfig::default()
            };
            let target = match target {
                ServerTarget::Floorcast => Target::Whep {
                    url: opts.url.clone(),
                    session: opts.session.clone(),
                    token: opts.next_viewer_token(),
                },
                ServerTarget::Janus { mountpoint } => Target::Janus {
                    url: opts.url.clone(),
                    mountpoint: *mountpoint,
                },
            };
            let v = LightViewer::connect(cfg, &client, &target)
                .await
                .map_err(|e| format!("join: {e}"))?;
            AnyViewer::Light(v)
        }
    };
    let got_media = viewer
        .wait_until(opts.join_timeout, |s| {
            if audio_only {
                s.audio.first_packet_after.is_some()
            } else {
                s.first_keyframe_after.is_some()
            }
        })
        .await;
    let s = viewer.stats();
    let join = if audio_only {
        s.audio.first_packet_after
    } else {
        s.first_keyframe_after
    };
    match (got_media, join) {
        (true, Some(join)) => Ok(Joined {
            viewer,
            audio_only,
            join,
        }),
        _ => {
            let detail = format!(
                "no {} within {:?} (audio {} pkts, video {} pkts, state {})",
                if audio_only { "audio" } else { "keyframe" },
                opts.join_timeout,
                s.audio.packets,
                s.video.packets,
                s.state
            );
            viewer.close().await;
            Err(detail)
        }
    }
}

/// The synthetic floor feed over WHIP (VP8 at `opts.video_bitrate_bps` + Opus), given half a
/// second to start before viewers join.
pub async fn floor_publisher(
    client: &Client,
    opts: &FanoutOptions,
) -> Result<Publisher, crate::peer::PeerError> {
    let publisher = Publisher::whip(
        PublisherConfig {
            video_bitrate_bps: opts.video_bitrate_bps,
            ..PublisherConfig::default()
        },
        client,
        &opts.url,
        &opts.session,
        &opts.publish_token,
    )
    .await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    Ok(publisher)
}

/// Starts `opts.viewers` joins at `opts.ramp_per_second` (every `1/share`-th audio-only) and
/// waits for all; returns the joined viewers, their join times (ms) and the failures.
pub async fn ramp(
    client: &Client,
    opts: &Arc<FanoutOptions>,
    gate: &Arc<Semaphore>,
) -> (Vec<Joined>, Vec<f64>, Vec<String>) {
    let mut joins = JoinSet::new();
    let step = Duration::from_secs_f64(1.0 / opts.ramp_per_second.max(0.01));
    let audio_only_every = if opts.audio_only_share > 0.0 {
        (1.0 / opts.audio_only_share.min(1.0)).round().max(1.0) as usize
    } else {
        0
    };
    let ramp_start = Instant::now();
    for i in 0..opts.viewers {
        let due = ramp_start + step.mul_f64(i as f64);
        tokio::time::sleep_until(due.into()).await;
        let audio_only = audio_only_every > 0 && i % audio_only_every == audio_only_every - 1;
        let (client, opts, gate) = (client.clone(), Arc::clone(opts), Arc::clone(gate));
        joins.spawn(async move {
            let _permit = gate.acquire_owned().await;
            join_one(client, opts, audio_only).await
        });
    }
    let mut viewers = Vec::new();
    let mut join_ms = Vec::new();
    let mut errors = Vec::new();
    while let Some(r) = joins.join_next().await {
        match r {
            Ok(Ok(j)) => {
                join_ms.push(j.join.as_secs_f64() * 1000.0);
                viewers.push(j);
            }
            Ok(Err(e)) => errors.push(e),
            Err(e) => errors.push(format!("join task: {e}")),
        }
    }
    (viewers, join_ms, errors)
}

/// DELETEs every viewer, a few at a time; gives up after 30 s.
pub async fn close_all(viewers: Vec<Joined>, gate: &Arc<Semaphore>) {
    let mut closes = JoinSet::new();
    for j in viewers {
        let gate = Arc::clone(gate);
        closes.spawn(async move {
            let _permit = gate.acquire_owned().await;
            j.viewer.close().await
        });
    }
    let _ = tokio::time::timeout(Duration::from_secs(30), async {
        while closes.join_next().await.is_some() {}
    })
    .await;
}
