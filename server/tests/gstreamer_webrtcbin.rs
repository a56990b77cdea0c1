//! GStreamer `webrtcbin` against the real `floorcast` binary (issue 18): the peer the
//! README's GStreamer recipe builds on, with its default DTLS identity, an RSA certificate
//! made by OpenSSL. Browsers and OBS present ECDSA certificates, so only this test covers
//! the server's DTLS accepting an RSA-signed client certificate (vendor/dimpl, see
//! vendor/README.md).
//!
//! A webrtcbin publisher sends VP8 + Opus over WHIP; a webrtc-rs viewer (`floorcast-load`)
//! and a webrtcbin viewer subscribe over WHEP. The webrtc-rs viewer must receive RTP of
//! both kinds, the webrtcbin viewer must decode video frames and audio buffers.
//!
//! Both GStreamer peers offer `a=setup:actpass`, so the server answers `passive` and is the
//! DTLS server for each of them. Negotiation is non-trickle: the offer is posted once ICE
//! gathering is complete, on 127.0.0.1 where the server listens. Pipelines are set to
//! `Null` on drop.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail, ensure};
use floorcast_load::server_process::{ServerOptions, ServerProcess};
use floorcast_load::whip::{self, Resource, http_client};
use floorcast_load::{Kinds, Viewer, ViewerConfig};
use gst::prelude::*;
use gst_webrtc::{WebRTCRTPTransceiverDirection, WebRTCSDPType, WebRTCSessionDescription};
use gstreamer as gst;
use gstreamer_sdp as gst_sdp;
use gstreamer_webrtc as gst_webrtc;

const BIN: &str = env!("CARGO_BIN_EXE_floorcast");
const SECRET: &str = "gstreamer-test-secret-0123456789abcdef";
const SESSION: &str = "gst";
const STEP_TIMEOUT: Duration = Duration::from_secs(20);

const VIDEO_CAPS: &str =
    "application/x-rtp,media=video,encoding-name=VP8,payload=96,clock-rate=90000";
const AUDIO_CAPS: &str = "application/x-rtp,media=audio,encoding-name=OPUS,payload=111,clock-rate=48000,encoding-params=(string)2";

/// Live VP8 (keyframe at least every 2 s) and Opus test sources into a sendonly webrtcbin.
const PUBLISHER: &str = "webrtcbin name=webrtc bundle-policy=max-bundle \
    videotestsrc is-live=true pattern=ball \
      ! video/x-raw,width=320,height=240,framerate=15/1 ! videoconvert \
      ! vp8enc deadline=1 keyframe-max-dist=30 ! rtpvp8pay pt=96 ! {VIDEO_CAPS} ! webrtc. \
    audiotestsrc is-live=true wave=ticks ! audioconvert ! audioresample \
      ! opusenc ! rtpopuspay pt=111 ! {AUDIO_CAPS} ! webrtc.";

/// A pipeline holding one `webrtcbin`; stopped on drop.
struct GstPeer {
    pipeline: gst::Pipeline,
    webrtc: gst::Element,
}

impl Drop for GstPeer {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

impl GstPeer {
    fn from_description(description: &str) -> Result<Self> {
        let pipeline = gst::parse::launch(description)
            .context("parse pipeline")?
            .downcast::<gst::Pipeline>()
            .map_err(|_| anyhow!("the description is not a pipeline"))?;
        let webrtc = pipeline
            .by_name("webrtc")
            .context("no element named webrtc")?;
        Self::new(pipeline, webrtc)
    }

    fn new(pipeline: gst::Pipeline, webrtc: gst::Element) -> Result<Self> {
        // libnice leaves loopback out of its host candidates, and the test server listens
        // on 127.0.0.1 only: gather on loopback alone.
        let ice = webrtc.property::<gst::Object>("ice-agent");
        let added = ice.emit_by_name::<bool>("add-local-ip-address", &[&"127.0.0.1"]);
        ensure!(
            added,
            "the ICE agent refused 127.0.0.1 as its local address"
        );
        Ok(Self { pipeline, webrtc })
    }

    fn publisher() -> Result<Self> {
        let description = PUBLISHER
            .replace("{VIDEO_CAPS}", VIDEO_CAPS)
            .replace("{AUDIO_CAPS}", AUDIO_CAPS);
        let peer = Self::from_description(&description)?;
        peer.set_directions(WebRTCRTPTransceiverDirection::Sendonly);
        Ok(peer)
    }

    /// A webrtcbin with one recvonly VP8 and one recvonly Opus transceiver; every incoming
    /// stream is depayloaded and decoded, and `frames` counts decoded buffers per kind.
    fn viewer(frames: &DecodedFrames) -> Result<Self> {
        let pipeline = gst::Pipeline::new();
        let webrtc = gst::ElementFactory::make("webrtcbin")
            .name("webrtc")
            .property_from_str("bundle-policy", "max-bundle")
            .build()?;
        pipeline.add(&webrtc)?;
        let peer = Self::new(pipeline, webrtc)?;
        for caps in [VIDEO_CAPS, AUDIO_CAPS] {
            let caps: gst::Caps = caps.parse().context("transceiver caps")?;
            peer.webrtc
                .emit_by_name::<gst_webrtc::WebRTCRTPTransceiver>(
                    "add-transceiver",
                    &[&WebRTCRTPTransceiverDirection::Recvonly, &caps],
                );
        }
        let pipeline = peer.pipeline.downgrade();
        let frames = frames.clone();
        peer.webrtc.connect_pad_added(move |_, pad| {
            let Some(pipeline) = pipeline.upgrade() else {
                return;
            };
            if let Err(e) = decode_incoming(&pipeline, pad, &frames) {
                eprintln!("webrtcbin viewer: cannot decode {}: {e:#}", pad.name());
            }
        });
        Ok(peer)
    }

    fn set_directions(&self, direction: WebRTCRTPTransceiverDirection) {
        for i in 0.. {
            let Some(transceiver) = self
                .webrtc
                .emit_by_name::<Option<gst_webrtc::WebRTCRTPTransceiver>>("get-transceiver", &[&i])
            else {
                break;
            };
            transceiver.set_property("direction", direction);
        }
    }

    fn play(&self) -> Result<()> {
        self.pipeline
            .set_state(gst::State::Playing)
            .context("set pipeline to Playing")?;
        Ok(())
    }

    /// The first error on the pipeline's bus, if any.
    fn bus_error(&self) -> Option<String> {
        let bus = self.pipeline.bus()?;
        while let Some(msg) = bus.pop_filtered(&[gst::MessageType::Error]) {
            if let gst::MessageView::Error(e) = msg.view() {
                return Some(format!("{}: {:?}", e.error(), e.debug()));
            }
        }
        None
    }

    fn states(&self) -> String {
        let ice = self
            .webrtc
            .property::<gst_webrtc::WebRTCICEConnectionState>("ice-connection-state");
        let pc = self
            .webrtc
            .property::<gst_webrtc::WebRTCPeerConnectionState>("connection-state");
        format!("ice {ice:?}, peer connection {pc:?}")
    }

    /// Waits until every sink pad of webrtcbin has caps carrying its SSRC: an offer made
    /// earlier has no `a=ssrc` line for that stream, and webrtcbin sends no MID header
    /// extension, so the server could not tell which m-line the packets belong to.
    async fn wait_sink_caps(&self) -> Result<()> {
        let deadline = Instant::now() + STEP_TIMEOUT;
        loop {
            let ready = self.webrtc.sink_pads().iter().all(|pad| {
                pad.current_caps()
                    .and_then(|caps| caps.structure(0).map(|s| s.has_field("ssrc")))
                    .unwrap_or(false)
            });
            if ready {
                return Ok(());
            }
            ensure!(
                Instant::now() < deadline,
                "no caps on webrtcbin's sink pads"
            );
            if let Some(e) = self.bus_error() {
                bail!("pipeline error before the offer: {e}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// create-offer, set it as local description, wait for ICE gathering; the complete SDP.
    async fn complete_offer(&self) -> Result<String> {
        self.wait_sink_caps().await?;
        let reply = promise(&self.webrtc, "create-offer").await?;
        let offer = reply
            .get::<WebRTCSessionDescription>("offer")
            .context("create-offer reply has no offer")?;
        self.webrtc
            .emit_by_name::<()>("set-local-description", &[&offer, &None::<gst::Promise>]);
        let deadline = Instant::now() + STEP_TIMEOUT;
        while self
            .webrtc
            .property::<gst_webrtc::WebRTCICEGatheringState>("ice-gathering-state")
            != gst_webrtc::WebRTCICEGatheringState::Complete
        {
            ensure!(Instant::now() < deadline, "ICE gathering not complete");
            if let Some(e) = self.bus_error() {
                bail!("pipeline error while gathering: {e}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let local = self
            .webrtc
            .property::<Option<WebRTCSessionDescription>>("local-description")
            .context("no local description")?;
        Ok(local.sdp().as_text()?)
    }

    fn apply_answer(&self, answer: &str) -> Result<()> {
        let sdp = gst_sdp::SDPMessage::parse_buffer(answer.as_bytes()).context("parse answer")?;
        let answer = WebRTCSessionDescription::new(WebRTCSDPType::Answer, sdp);
        self.webrtc
            .emit_by_name::<()>("set-remote-description", &[&answer, &None::<gst::Promise>]);
        Ok(())
    }

    /// Waits until the peer connection is `Connected` (ICE and DTLS done).
    async fn wait_connected(&self, server: &ServerProcess) -> Result<()> {
        let deadline = Instant::now() + STEP_TIMEOUT;
        loop {
            let state = self
                .webrtc
                .property::<gst_webrtc::WebRTCPeerConnectionState>("connection-state");
            match state {
                gst_webrtc::WebRTCPeerConnectionState::Connected => return Ok(()),
                gst_webrtc::WebRTCPeerConnectionState::Failed => {
                    bail!(
                        "peer connection failed ({})\n{}",
                        self.states(),
                        server.log_tail()
                    )
                }
                _ => {}
            }
            if let Some(e) = self.bus_error() {
                bail!(
                    "pipeline error ({}): {e}\n{}",
                    self.states(),
                    server.log_tail()
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "not connected within {STEP_TIMEOUT:?} ({})\n{}",
                    self.states(),
                    server.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Emits an action signal that takes `(options, promise)` and awaits the promise's reply.
async fn promise(webrtc: &gst::Element, signal: &str) -> Result<gst::Structure> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let promise = gst::Promise::with_change_func(move |reply| {
        let reply = match reply {
            Ok(Some(s)) => Ok(s.to_owned()),
            Ok(None) => Err(anyhow!("empty reply")),
            Err(e) => Err(anyhow!("promise {e:?}")),
        };
        let _ = tx.send(reply);
    });
    webrtc.emit_by_name::<()>(signal, &[&None::<gst::Structure>, &promise]);
    let reply = tokio::time::timeout(STEP_TIMEOUT, rx)
        .await
        .with_context(|| format!("{signal}: no reply"))?
        .with_context(|| format!("{signal}: promise dropped"))??;
    if let Ok(err) = reply.get::<gst::glib::Error>("error") {
        bail!("{signal}: {err}");
    }
    Ok(reply)
}

/// Decoded buffers counted per kind by the webrtcbin viewer.
#[derive(Clone, Default)]
struct DecodedFrames {
    video: Arc<AtomicU64>,
    audio: Arc<AtomicU64>,
}

impl DecodedFrames {
    fn video(&self) -> u64 {
        self.video.load(Ordering::Relaxed)
    }

    fn audio(&self) -> u64 {
        self.audio.load(Ordering::Relaxed)
    }
}

/// Links a new webrtcbin src pad to a depayloader, a decoder and a counting sink.
fn decode_incoming(pipeline: &gst::Pipeline, pad: &gst::Pad, frames: &DecodedFrames) -> Result<()> {
    if pad.direction() != gst::PadDirection::Src {
        return Ok(());
    }
    let caps = pad.current_caps().or_else(|| Some(pad.query_caps(None)));
    let media = caps
        .as_ref()
        .and_then(|c| c.structure(0))
        .and_then(|s| s.get::<String>("media").ok())
        .context("src pad without media in its caps")?;
    let (chain, counter) = match media.as_str() {
        "video" => ("rtpvp8depay ! vp8dec", frames.video.clone()),
        "audio" => ("rtpopusdepay ! opusdec", frames.audio.clone()),
        other => bail!("unexpected media {other}"),
    };
    let bin =
        gst::parse::bin_from_description(&format!("queue ! {chain} ! fakesink sync=false"), true)
            .context("decoder bin")?;
    let decoder_src = bin
        .iterate_recurse()
        .into_iter()
        .flatten()
        .find(|e| {
            e.factory()
                .is_some_and(|f| f.name() == "vp8dec" || f.name() == "opusdec")
        })
        .and_then(|e| e.static_pad("src"))
        .context("decoder src pad")?;
    decoder_src.add_probe(gst::PadProbeType::BUFFER, move |_, _| {
        counter.fetch_add(1, Ordering::Relaxed);
        gst::PadProbeReturn::Ok
    });
    pipeline.add(&bin)?;
    bin.sync_state_with_parent()?;
    let sink = bin.static_pad("sink").context("bin sink pad")?;
    pad.link(&sink).context("link webrtcbin src to decoder")?;
    Ok(())
}

async fn start_server() -> Result<(ServerProcess, reqwest::Client)> {
    let opts = ServerOptions {
        env: vec![("RUST_LOG".into(), "info,dimpl=debug,str0m=info".into())],
        ..ServerOptions::new(BIN, SECRET)
    };
    let server = ServerProcess::start(opts).await?;
    let client = http_client();
    server.create_session(&client, SESSION).await?;
    Ok((server, client))
}

/// Publishes over WHIP from webrtcbin; returns the peer and its resource.
async fn publish(server: &ServerProcess, client: &reqwest::Client) -> Result<(GstPeer, Resource)> {
    let publisher = GstPeer::publisher()?;
    publisher.play()?;
    let offer = publisher
        .complete_offer()
        .await
        .context("publisher offer")?;
    let token = server.token("venue", SESSION, "gst-publisher");
    let resource = whip::publish(client, &server.base_url, SESSION, &token, offer)
        .await
        .map_err(|e| anyhow!("WHIP POST: {e}\n{}", server.log_tail()))?;
    publisher.apply_answer(&resource.answer)?;
    publisher
        .wait_connected(server)
        .await
        .context("webrtcbin publisher")?;
    Ok((publisher, resource))
}

/// Watches over WHEP from webrtcbin; returns the peer and its resource.
async fn watch(
    server: &ServerProcess,
    client: &reqwest::Client,
    frames: &DecodedFrames,
) -> Result<(GstPeer, Resource)> {
    let viewer = GstPeer::viewer(frames)?;
    viewer.play()?;
    let offer = viewer.complete_offer().await.context("viewer offer")?;
    let token = server.token("viewer", SESSION, "gst-viewer");
    let endpoint = server.url(&format!("/whep/{SESSION}"));
    let resource = whip::post_offer(client, &endpoint, &token, offer)
        .await
        .map_err(|e| anyhow!("WHEP POST: {e}\n{}", server.log_tail()))?;
    viewer.apply_answer(&resource.answer)?;
    viewer
        .wait_connected(server)
        .await
        .context("webrtcbin viewer")?;
    Ok((viewer, resource))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webrtcbin_publishes_and_webrtc_rs_and_webrtcbin_viewers_receive() -> Result<()> {
    gst::init()?;
    let (server, client) = start_server().await?;

    let (publisher, publish_resource) = publish(&server, &client).await?;

    // An independent stack receives both kinds from the webrtcbin publisher.
    let token = server.token("viewer", SESSION, "rs-viewer");
    let cfg = ViewerConfig {
        kinds: Kinds {
            audio: true,
            video: true,
        },
        ..ViewerConfig::default()
    };
    let rs_viewer = Viewer::whep(cfg, &client, &server.base_url, SESSION, &token)
        .await
        .map_err(|e| anyhow!("webrtc-rs viewer: {e}\n{}", server.log_tail()))?;
    let got_both = rs_viewer
        .wait_until(STEP_TIMEOUT, |s| {
            s.audio.packets >= 50 && s.video.packets >= 20
        })
        .await;
    let stats = rs_viewer.stats();
    ensure!(
        got_both,
        "webrtc-rs viewer got {} audio and {} video packets from the webrtcbin publisher ({})\n{}",
        stats.audio.packets,
        stats.video.packets,
        publisher.states(),
        server.log_tail()
    );

    // A webrtcbin viewer decodes both kinds.
    let frames = DecodedFrames::default();
    let (viewer, view_resource) = watch(&server, &client, &frames).await?;
    let deadline = Instant::now() + STEP_TIMEOUT;
    while (frames.video() < 15 || frames.audio() < 25) && Instant::now() < deadline {
        if let Some(e) = viewer.bus_error() {
            bail!("webrtcbin viewer pipeline error: {e}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    ensure!(
        frames.video() >= 15 && frames.audio() >= 25,
        "webrtcbin viewer decoded {} video frames and {} audio buffers ({})\n{}",
        frames.video(),
        frames.audio(),
        viewer.states(),
        server.log_tail()
    );

    rs_viewer.close().await;
    view_resource.delete().await?;
    publish_resource.delete().await?;
    drop(viewer);
    drop(publisher);
    Ok(())
}
