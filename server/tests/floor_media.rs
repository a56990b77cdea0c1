//! Speaker media through the floor, with the real `floorcast` binary and webrtc-rs peers:
//! a venue publishes the floor feed, a viewer watches, a remote participant raises a hand.
//! Before the grant their WHIP publish is refused (403 `not_floor_holder`); once granted it
//! is accepted and the viewer receives their packets (grant → first packet is printed); after
//! the moderator revokes, the viewer receives none of them later than 200 ms after the
//! DELETE answered, and the speaker's WHIP resource is gone.
//!
//! Telling the speaker's packets from the floor's: the SFU rewrites both onto the viewer's
//! same SSRCs, so the two sources differ by kind instead. The floor feed sends video only,
//! the speaker audio only: every audio packet the viewer receives is the speaker's.

use std::time::{Duration, Instant};

use floorcast_load::scenarios::hands;
use floorcast_load::server_process::{ServerOptions, ServerProcess};
use floorcast_load::whip::{self, SignalError};
use floorcast_load::{Kinds, Publisher, PublisherConfig, Viewer, ViewerConfig};
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_floorcast");
const SECRET: &str = "floor-media-test-secret-0123456789abcdef";
const SESSION: &str = "town-hall";
/// After the DELETE answered, the viewer may still get speaker packets this long.
const STOP_WITHIN: Duration = Duration::from_millis(200);
const VIDEO_ONLY: Kinds = Kinds {
    audio: false,
    video: true,
};

fn speaker_cfg() -> PublisherConfig {
    PublisherConfig {
        kinds: Kinds::AUDIO_ONLY,
        ..PublisherConfig::default()
    }
}

/// A WHIP publish that must be refused with 403 `not_floor_holder`.
async fn assert_refused(client: &Client, server: &ServerProcess, token: &str, what: &str) {
    let mut p = Publisher::new(speaker_cfg()).await.expect("peer");
    let offer = p.offer().await.expect("offer");
    match whip::publish(client, &server.base_url, SESSION, token, offer).await {
        Err(SignalError::Status { status, code, body }) => {
            assert_eq!(status, StatusCode::FORBIDDEN, "{what}: {body}");
            assert_eq!(code.as_deref(), Some("not_floor_holder"), "{what}: {body}");
            assert!(
                body.contains("floor"),
                "{what}: the message says why: {body}"
            );
        }
        Ok(r) => panic!("{what}: publish accepted at {}", r.url),
        Err(e) => panic!("{what}: {e}"),
    }
    p.close().await;
}

/// Polls the viewer's audio count every 2 ms from `from` for `window`: the latest packet
/// arrived after `.0` and by `.1` (both since `from`; zero when none arrived), `.2` the
/// final count.
async fn last_audio_arrival(
    viewer: &Viewer,
    from: Instant,
    window: Duration,
) -> (Duration, Duration, u64) {
    let mut count = viewer.stats().audio.packets;
    let mut prev_poll = from;
    let mut last = (from, from);
    while from.elapsed() < window {
        tokio::time::sleep(Duration::from_millis(2)).await;
        let now = Instant::now();
        let c = viewer.stats().audio.packets;
        if c != count {
            count = c;
            last = (prev_poll, now);
        }
        prev_poll = now;
    }
    (last.0 - from, last.1 - from, count)
}

async fn raise(client: &Client, server: &ServerProcess, token: &str) -> u64 {
    let resp = client
        .post(server.url(&format!("/api/sessions/{SESSION}/hands")))
        .bearer_auth(token)
        .json(&json!({"topic": "a remark from afar"}))
        .send()
        .await
        .expect("raise");
    assert_eq!(resp.status(), StatusCode::CREATED);
    let v: Value = resp.json().await.expect("JSON");
    v["hand"]["id"].as_u64().expect("hand id")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn granted_speaker_reaches_viewers_until_revoked() {
    tokio::time::timeout(Duration::from_secs(60), body())
        .await
        .expect("finished within its time limit");
}

async fn body() {
    let server = ServerProcess::start(ServerOptions::new(BIN, SECRET))
        .await
        .expect("floorcast starts");
    let client = hands::client();
    server
        .create_session(&client, SESSION)
        .await
        .expect("session");
    let moderator = server.token("moderator", SESSION, "chair");

    // The floor feed (video only) and a viewer that asks for both kinds.
    let floor = Publisher::whip(
        PublisherConfig {
            kinds: VIDEO_ONLY,
            ..PublisherConfig::default()
        },
        &client,
        &server.base_url,
        SESSION,
        &server.token("venue", SESSION, "venue"),
    )
    .await
    .unwrap_or_else(|e| panic!("floor feed: {e}\n{}", server.log_tail()));
    let viewer = Viewer::whep(
        ViewerConfig::default(),
        &client,
        &server.base_url,
        SESSION,
        &server.token("viewer", SESSION, "watcher"),
    )
    .await
    .unwrap_or_else(|e| panic!("viewer: {e}\n{}", server.log_tail()));
    assert!(
        viewer
            .wait_until(Duration::from_secs(10), |s| s
                .first_keyframe_after
                .is_some()
                && s.video.packets > 30)
            .await,
        "the viewer gets the floor feed: {:?}\n{}",
        viewer.stats(),
        server.log_tail()
    );
    assert_eq!(
        viewer.stats().audio.packets,
        0,
        "no audio before the speaker"
    );

    // A remote participant raises a hand; publishing before the grant is refused.
    let remote = server.token("viewer", SESSION, "remote");
    let hand = raise(&client, &server, &remote).await;
    assert_refused(&client, &server, &remote, "publish before the grant").await;

    // The speaker's offer is ready before the grant, as a browser's would be.
    let mut speaker = Publisher::new(speaker_cfg()).await.expect("speaker peer");
    let offer = speaker.offer().await.expect("offer");
    let turn = hands::grant(
        &client,
        &server.base_url,
        SESSION,
        &moderator,
        Some(hand),
        Some(60),
    )
    .await
    .unwrap_or_else(|e| panic!("grant: {e}"));
    let granted = Instant::now();
    assert_eq!(turn["hand"]["id"], hand);
    viewer.mark_start();

    // Someone else still may not publish.
    let bystander = server.token("viewer", SESSION, "bystander");
    let resource = whip::publish(&client, &server.base_url, SESSION, &remote, offer)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "speaker publish after the grant: {e}\n{}",
                server.log_tail()
            )
        });
    let answered = granted.elapsed();
    speaker
        .accept_answer(resource.answer.clone())
        .await
        .expect("answer applies");
    speaker.start().await.expect("speaker connects");
    let connected = granted.elapsed();
    assert!(
        viewer
            .wait_until(Duration::from_secs(10), |s| s.audio.packets >= 25)
            .await,
        "the viewer receives the speaker: {:?}; speaker {:?}\n{}",
        viewer.stats(),
        speaker.stats(),
        server.log_tail()
    );
    let first = viewer
        .stats()
        .audio
        .first_packet_after
        .expect("first speaker packet");
    println!(
        "grant → speaker WHIP answer {:.0} ms, connected {:.0} ms, \
         first speaker packet at the viewer {:.0} ms",
        answered.as_secs_f64() * 1000.0,
        connected.as_secs_f64() * 1000.0,
        first.as_secs_f64() * 1000.0
    );
    assert!(first < Duration::from_secs(3), "grant → media {first:?}");
    assert_refused(
        &client,
        &server,
        &bystander,
        "publish by someone not holding the floor",
    )
    .await;
    let s = viewer.stats();
    assert_eq!(
        s.audio.tracks, 1,
        "speaker audio on the track negotiated up front: {s:?}"
    );
    assert_eq!(s.audio.seq.discontinuities, 0, "{s:?}");

    // The same watch while the speaker holds the floor sees packets into the second half
    // of its window (one is due every 20 ms): the measurement below can see a late packet.
    let watch = Duration::from_millis(500);
    let (_, by, _) = last_audio_arrival(&viewer, Instant::now(), watch).await;
    assert!(
        by >= Duration::from_millis(300),
        "speaker audio flows until the revoke; last packet {by:?} into a 500 ms watch"
    );

    // Revoke, then watch the viewer's audio count: it must stop within 200 ms.
    let sent_before = speaker.stats();
    let resp = client
        .delete(server.url(&format!("/api/sessions/{SESSION}/floor")))
        .bearer_auth(&moderator)
        .send()
        .await
        .expect("revoke");
    let revoked = Instant::now();
    assert_eq!(resp.status(), StatusCode::OK, "{:?}", resp.text().await);
    let (after, by, count) =
        last_audio_arrival(&viewer, revoked, Duration::from_millis(1500)).await;
    let sent_after = speaker.stats();
    println!(
        "revoke: last speaker packet at the viewer between {:.1} and {:.1} ms \
         after the DELETE answered",
        after.as_secs_f64() * 1000.0,
        by.as_secs_f64() * 1000.0
    );
    // The speaker kept sending (or trying): the silence is the server's doing.
    let attempts = |s: floorcast_load::PublisherStats| s.audio_packets + s.send_errors;
    assert!(
        attempts(sent_after) >= attempts(sent_before) + 25,
        "the speaker went on sending: {sent_before:?} → {sent_after:?}"
    );
    assert!(
        after <= STOP_WITHIN,
        "the viewer received a speaker packet {after:?} after the revoke (limit {STOP_WITHIN:?})"
    );

    // The speaker's WHIP resource is gone: the client's own DELETE of what the server ended
    // succeeds once (as after any peer that closed), then the URL is unknown; publishing
    // again is refused.
    let status = resource.delete().await.expect("DELETE reaches the server");
    assert_eq!(status, StatusCode::OK, "ending an ended resource is done");
    let status = resource.delete().await.expect("DELETE reaches the server");
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "the speaker's WHIP resource was removed"
    );
    assert_refused(&client, &server, &remote, "publish after the revoke").await;

    // The floor feed is what viewers get again.
    let video = viewer.stats().video.packets;
    assert!(
        viewer
            .wait_until(Duration::from_secs(5), |s| s.video.packets > video + 30)
            .await,
        "floor video flows after the turn: {:?}",
        viewer.stats()
    );
    assert_eq!(
        viewer.stats().audio.packets,
        count,
        "no audio after the turn"
    );
    speaker.close().await;
    viewer.close().await;
    floor.close().await;
}
