//! Graceful drain on the real binary: after SIGTERM the viewers already watching keep
//! receiving media, `/readyz` and new WHEP requests answer 503 (`draining`, with
//! `Retry-After`), and the process exits by itself when the last peer has left. A second
//! SIGTERM stops it at once, peers or not.

use std::time::{Duration, Instant};

use floorcast_load::light::{LightConfig, LightViewer, Target};
use floorcast_load::server_process::{ServerOptions, ServerProcess};
use floorcast_load::{Publisher, PublisherConfig, whip};
use reqwest::StatusCode;

const BIN: &str = env!("CARGO_BIN_EXE_floorcast");
const SECRET: &str = "drain-test-secret-0123456789abcdef0123456789";
const SESSION: &str = "closing";

async fn start() -> (ServerProcess, reqwest::Client) {
    let mut so = ServerOptions::new(BIN, SECRET);
    so.env = vec![("FLOORCAST_CAPTION_ENGINE".into(), "off".into())];
    let server = ServerProcess::start(so).await.expect("server");
    let client = whip::http_client();
    server
        .create_session(&client, SESSION)
        .await
        .expect("session");
    (server, client)
}

async fn viewer(server: &ServerProcess, client: &reqwest::Client, name: &str) -> LightViewer {
    let target = Target::Whep {
        url: server.base_url.clone(),
        session: SESSION.into(),
        token: server.token("viewer", SESSION, name),
    };
    LightViewer::connect(LightConfig::default(), client, &target)
        .await
        .expect("viewer")
}

fn sigterm(server: &ServerProcess) {
    // SAFETY: kill(2) with a pid we spawned and a valid signal number.
    let rc = unsafe { libc::kill(server.pid() as libc::pid_t, libc::SIGTERM) };
    assert_eq!(rc, 0, "kill");
}

/// Polls until the process has exited; its exit status and how long it took.
async fn wait_exit(server: &mut ServerProcess, within: Duration) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < within {
        if server.exited().is_some() {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_then_exits_when_the_last_viewer_leaves() {
    let (mut server, client) = start().await;
    let publisher = Publisher::whip(
        PublisherConfig::default(),
        &client,
        &server.base_url,
        SESSION,
        &server.token("venue", SESSION, "mixer"),
    )
    .await
    .expect("publisher");
    let a = viewer(&server, &client, "a").await;
    let b = viewer(&server, &client, "b").await;
    for v in [&a, &b] {
        assert!(
            v.wait_until(Duration::from_secs(10), |s| s
                .first_keyframe_after
                .is_some())
                .await,
            "media before the drain"
        );
    }

    sigterm(&server);
    let readyz = server.url("/readyz");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = client.get(&readyz).send().await.expect("readyz");
        if r.status() == StatusCode::SERVICE_UNAVAILABLE {
            assert!(r.headers().contains_key("retry-after"));
            let body: serde_json::Value = r.json().await.unwrap();
            assert_eq!(body["error"], "draining");
            break;
        }
        assert!(Instant::now() < deadline, "/readyz never turned 503");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let metrics = server.metrics().await.expect("/metrics");
    assert!(metrics.contains("floorcast_draining 1"), "{metrics}");

    // The viewers already watching keep receiving.
    let before = a.stats().packets();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = a.stats().packets();
    assert!(
        after > before + 100,
        "media kept flowing: {before} → {after}"
    );

    // Nobody new: a WHEP offer gets 503 draining with Retry-After.
    let offer = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n\
                 a=ice-ufrag:offr\r\na=ice-pwd:0123456789012345678901\r\na=rtpmap:111 opus/48000/2\r\n";
    match floorcast_load::whep::subscribe(
        &client,
        &server.base_url,
        SESSION,
        &server.token("viewer", SESSION, "late"),
        offer.into(),
    )
    .await
    {
        Err(whip::SignalError::Status { status, code, .. }) => {
            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
            assert_eq!(code.as_deref(), Some("draining"));
        }
        other => panic!("a new viewer during the drain: {:?}", other.map(|r| r.url)),
    }

    // One viewer leaves: the node stays for the others.
    a.close().await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(server.exited().is_none(), "exited with peers still there");
    // The last ones leave: it stops by itself.
    b.close().await;
    publisher.close().await;
    let took = wait_exit(&mut server, Duration::from_secs(10))
        .await
        .expect("the node did not exit after its last peer left");
    println!("exited {took:?} after the last peer left");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_sigterm_stops_at_once() {
    let (mut server, client) = start().await;
    let v = viewer(&server, &client, "stays").await;
    sigterm(&server);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(server.exited().is_none(), "the first SIGTERM only drains");
    sigterm(&server);
    wait_exit(&mut server, Duration::from_secs(10))
        .await
        .expect("a second SIGTERM stops the node");
    drop(v);
}
