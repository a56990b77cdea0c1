//! Every `floorcast-load` scenario, short, against the real `floorcast` binary: the reports'
//! fields are present and sensible (nothing lost at this size, joins measured, captions
//! delivered and timed, the soak's timeline filled, churn's joins and leaves counted), and the
//! side-by-side `compare` with Janus started by the anchor's `run.sh` at 5 viewers.
//! (`hands` is in floor_media.rs; the full-mode fan-out is `.ci/fanout-bench`.)

use std::time::Duration;

use floorcast_load::scenarios::compare::{self, CompareOptions};
use floorcast_load::scenarios::fanout::{self, FanoutOptions, Mode};
use floorcast_load::scenarios::{captions, churn, hands};
use floorcast_load::server_process::{ServerOptions, ServerProcess};

const BIN: &str = env!("CARGO_BIN_EXE_floorcast");
const SECRET: &str = "load-scenarios-test-secret-0123456789abcdef";

/// One scenario at a time: two on 2 cores would measure each other.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn server(session: &str) -> (ServerProcess, FanoutOptions) {
    let mut so = ServerOptions::new(BIN, SECRET);
    so.env = vec![("FLOORCAST_CAPTION_ENGINE".into(), "off".into())];
    let server = ServerProcess::start(so).await.expect("server");
    let client = floorcast_load::whip::http_client();
    server
        .create_session(&client, session)
        .await
        .expect("session");
    let mut o = FanoutOptions::new(
        &server.base_url,
        session,
        &server.token("viewer", session, "load-viewer"),
        &server.token("venue", session, "load-publisher"),
    );
    // A token per viewer, as real viewers have (the server limits what one token holds).
    o.viewer_secret = Some(SECRET.into());
    o.viewers = 6;
    o.ramp_per_second = 20.0;
    o.duration = Duration::from_secs(3);
    o.mode = Mode::Light;
    o.server_pid = Some(server.pid());
    (server, o)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn light_fanout_with_audio_only_viewers_reports_every_figure() {
    let _serial = SERIAL.lock().await;
    let (_server, mut o) = server("fanout").await;
    o.audio_only_share = 0.5;
    let r = fanout::run(o).await.expect("fanout");
    println!("{}", fanout::render_table(&r));
    assert_eq!((r.mode.as_str(), r.target.as_str()), ("light", "floorcast"));
    assert_eq!(r.viewers_connected, 6, "{:?}", r.errors);
    assert_eq!(r.audio_only_viewers, 3);
    assert_eq!(r.loss_percent, 0.0);
    assert!(
        r.delivered_percent.unwrap() > 99.0,
        "{:?}",
        r.delivered_percent
    );
    assert!(
        r.join_ms.count == 6 && r.join_ms.min > 0.0,
        "{:?}",
        r.join_ms
    );
    assert!(
        r.viewer_bits_per_second.min > 30_000.0,
        "audio-only viewers get audio"
    );
    assert!(
        r.viewer_bits_per_second.max > 700_000.0,
        "video viewers get ≈1 Mbit/s"
    );
    assert_eq!(r.video_freezes, 0);
    let auth = r
        .srtp_auth_sample
        .expect("light mode checks SRTP on a sample");
    assert!(auth.checked > 0 && auth.passed == auth.checked, "{auth:?}");
    let server = r.server.expect("server CPU from /proc");
    assert!(server.cpu_seconds_per_second > 0.0 && server.rss_bytes > 0);
    assert!(r.generator_cpu_per_viewer > 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_fills_its_timeline() {
    let _serial = SERIAL.lock().await;
    let (_server, mut o) = server("soak").await;
    o.duration = Duration::from_secs(4);
    o.timeline_every = Some(Duration::from_secs(1));
    // As from another machine: the server's CPU and RSS come from its /metrics.
    o.server_pid = None;
    let r = fanout::run(o).await.expect("soak");
    assert!(r.timeline.len() >= 3, "{:?}", r.timeline);
    let server = r.server.expect("server usage scraped from /metrics");
    assert!(server.cpu_seconds_per_second > 0.0 && server.rss_bytes > 10_000_000);
    for p in &r.timeline {
        assert!(p.packets_per_second > 500.0, "{p:?}");
        assert_eq!(p.loss_percent, 0.0, "{p:?}");
        assert!(p.server_rss_bytes.unwrap_or(0) > 0, "{p:?}");
        assert!(p.server_cpu_seconds_per_second.is_some(), "{p:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn churn_replaces_viewers_and_measures_the_joins() {
    let _serial = SERIAL.lock().await;
    let (_server, o) = server("churn").await;
    let r = churn::run(o, 2.0).await.expect("churn");
    println!("{}", churn::render_table(&r));
    assert!(r.joins_started >= 5, "{r:?}");
    assert_eq!(r.joins_ok, r.joins_started, "{:?}", r.errors);
    assert_eq!(r.leaves, r.joins_started);
    assert_eq!(r.viewers_at_end, 6);
    assert!(r.join_ms.min > 0.0 && r.join_ms.count == r.joins_ok);
    assert_eq!(r.stayers_loss_percent, 0.0);
    assert!(r.server_rss_end_bytes.unwrap_or(0) > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn captions_reach_every_viewer_and_are_timed() {
    let _serial = SERIAL.lock().await;
    let (server, o) = server("captions").await;
    let captioner = server.token("captioner", "captions", "load-cart");
    let r = captions::run(o, &captioner, 4.0).await.expect("captions");
    println!("{}", captions::render_table(&r));
    assert!(r.captions_posted >= 10, "{r:?}");
    assert_eq!(r.posts_failed, 0, "{:?}", r.errors);
    assert_eq!(r.delivered_percent, 100.0);
    assert_eq!(r.latency_ms.count, r.captions_posted * r.viewers_connected);
    assert!(
        r.latency_ms.min > 0.0 && r.latency_ms.p95 < 2000.0,
        "{:?}",
        r.latency_ms
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compare_with_janus_at_five_viewers() {
    let _serial = SERIAL.lock().await;
    let janus_dir = compare::find_janus_anchor().expect(
        "the Janus anchor (run.sh) was not found: set FLOORCAST_JANUS_ANCHOR to its directory",
    );
    let r = compare::run(CompareOptions {
        viewers: 5,
        duration: Duration::from_secs(4),
        ramp_per_second: 20.0,
        floorcast_bin: BIN.into(),
        janus_dir,
        sample_every: 64,
    })
    .await
    .expect("compare");
    println!("{}", compare::render_table(&r));
    for side in [&r.floorcast, &r.janus] {
        assert_eq!(side.viewers, 5, "{}: {:?}", side.target, side.report.errors);
        assert_eq!(side.loss_percent, 0.0, "{}", side.target);
        assert!(side.join_p95_ms > 0.0, "{}", side.target);
        assert!(side.server_cpu_seconds_per_second > 0.0, "{}", side.target);
        assert!(side.receive_mbps_per_viewer > 0.7, "{}", side.target);
    }
    assert!(r.viewers_per_core_ratio > 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hand_storm_from_hubs_with_withdrawals_while_viewers_watch() {
    let _serial = SERIAL.lock().await;
    let (server, _) = server("storm").await;
    let mut o = hands::HandsOptions::new(&server.base_url, "storm", SECRET);
    o.hands = 200;
    o.concurrency = 16;
    o.hub_share = 0.2;
    o.withdraw_share = 0.5;
    o.watchers = 3;
    o.server_pid = Some(server.pid());
    let r = hands::run(o).await.expect("hands");
    println!("{}", hands::render_table(&r));
    assert_eq!(r.raised, 200, "{:?}", r.errors);
    assert_eq!(r.hub_hands, 40);
    assert_eq!(r.withdrawn, 100, "{:?}", r.errors);
    assert_eq!(r.queue_after_withdraw, Some(100));
    assert!(r.withdraw_ms.count == 100 && r.withdraw_ms.min > 0.0);
    let w = r.watchers.expect("watchers");
    assert_eq!((w.viewers, w.loss_percent, w.video_freezes), (3, 0.0, 0));
    assert!(w.min_receive_mbps > 0.5, "{w:?}");
}
