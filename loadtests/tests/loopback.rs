//! The test peers against each other, no server: proves the publisher sends what it claims
//! (Opus + VP8 with keyframes the SFU's detector recognises), the viewer measures it, and a
//! PLI from the viewer reaches the publisher and yields a keyframe. If these fail, the
//! interop tests against the SFU would be meaningless.

use std::time::Duration;

use floorcast_load::{Kinds, Publisher, PublisherConfig, Viewer, ViewerConfig};

const LIMIT: Duration = Duration::from_secs(45);

async fn pair(pub_cfg: PublisherConfig) -> (Publisher, Viewer) {
    let video = pub_cfg.kinds.video;
    let mut publisher = Publisher::new(pub_cfg).await.expect("publisher");
    let offer = publisher.offer().await.expect("offer");
    assert!(
        offer.contains("a=candidate"),
        "non-trickle offer carries candidates:\n{offer}"
    );
    assert!(offer.contains("opus/48000"));
    assert_eq!(offer.contains("VP8/90000"), video);
    let (mut viewer, answer) = Viewer::answering(ViewerConfig::default(), offer)
        .await
        .expect("viewer answers");
    publisher
        .accept_answer(answer)
        .await
        .expect("answer applies");
    publisher.start().await.expect("publisher connects");
    viewer.wait_connected().await.expect("viewer connects");
    (publisher, viewer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publisher_to_viewer_loopback() {
    tokio::time::timeout(LIMIT, async {
        let (publisher, viewer) = pair(PublisherConfig::default()).await;
        assert!(
            viewer
                .wait_until(Duration::from_secs(10), |s| s.video.packets > 300
                    && s.audio.packets > 100)
                .await,
            "media flows: {:?}",
            viewer.stats()
        );
        // Pause, let in-flight packets land, compare exact counts.
        publisher.set_paused(true);
        tokio::time::sleep(Duration::from_millis(300)).await;
        let p = publisher.stats();
        let v = viewer.stats();
        println!("publisher {p:?}\nviewer {v:?}");
        assert!(
            v.first_keyframe_after.is_some(),
            "first frame is a keyframe"
        );
        assert!(v.video.keyframes >= 1);
        assert_eq!(v.video.seq.discontinuities, 0);
        assert_eq!(v.audio.seq.discontinuities, 0);
        assert_eq!(v.video.ssrc_changes + v.audio.ssrc_changes, 0);
        assert_eq!((v.audio.tracks, v.video.tracks), (1, 1));
        assert_eq!(publisher.ssrcs(), (v.audio.ssrc, v.video.ssrc));
        // Loopback: nothing lost, everything counted (≥ 99 % to allow a straggler).
        assert!(
            v.video.packets * 100 >= p.video_packets * 99,
            "{v:?} vs {p:?}"
        );
        assert!(
            v.audio.packets * 100 >= p.audio_packets * 99,
            "{v:?} vs {p:?}"
        );
        assert_eq!(v.video.seq.lost, 0);
        // Rate: ~50 audio packets/s, ~1 Mbit/s video.
        let secs = p.audio_packets as f64 / 50.0;
        let video_bps = p.video_bytes as f64 * 8.0 / secs;
        assert!(
            (500_000.0..1_600_000.0).contains(&video_bps),
            "video {video_bps} bit/s"
        );
        assert!(v.video.jitter_ms < 50.0, "jitter {}", v.video.jitter_ms);

        // A PLI from the viewer reaches the publisher and forces a keyframe.
        publisher.set_paused(false);
        let before = publisher.stats();
        let kf_before = viewer.stats().video.keyframes;
        assert!(viewer.send_pli().await, "PLI sent");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while publisher.stats().pli == before.pli && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(publisher.stats().pli > before.pli, "publisher saw the PLI");
        assert!(
            viewer
                .wait_until(Duration::from_secs(3), |s| s.video.keyframes > kf_before)
                .await,
            "a keyframe followed the PLI"
        );
        viewer.close().await;
        publisher.close().await;
    })
    .await
    .expect("loopback test finishes in time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audio_only_publisher_loopback() {
    tokio::time::timeout(LIMIT, async {
        let (publisher, viewer) = pair(PublisherConfig {
            kinds: Kinds::AUDIO_ONLY,
            ..PublisherConfig::default()
        })
        .await;
        assert!(
            viewer
                .wait_until(Duration::from_secs(10), |s| s.audio.packets > 50)
                .await
        );
        let v = viewer.stats();
        assert_eq!(v.video.packets, 0);
        assert_eq!(v.video.tracks, 0);
        viewer.close().await;
        publisher.close().await;
    })
    .await
    .expect("finishes in time");
}
