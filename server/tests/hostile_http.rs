//! HTTP exhaustion without a token, against the real `floorcast` binary: connections that
//! never finish their headers, bodies trickled and abandoned, and floods of idle connections
//! from one address. Each attack runs beside a bystander whose requests must still be
//! answered quickly, and each is cut off by its limit (counted in
//! `floorcast_limit_refusals_total`).
//!
//! The limits are set low here (seconds, tens of connections) so the attacks are quick; the
//! defaults are in the README.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use floorcast_load::server_process::{ServerOptions, ServerProcess};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

const BIN: &str = env!("CARGO_BIN_EXE_floorcast");
const SECRET: &str = "hostile-http-test-secret-0123456789abcdef";
/// A bystander's request must be answered within this while an attack runs.
const BYSTANDER_WITHIN: Duration = Duration::from_secs(1);

async fn start(env: &[(&str, &str)]) -> ServerProcess {
    let mut so = ServerOptions::new(BIN, SECRET);
    so.env = env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .chain([("FLOORCAST_CAPTION_ENGINE".to_owned(), "off".to_owned())])
        .collect();
    ServerProcess::start(so).await.expect("floorcast starts")
}

/// A TCP connection to the server from a chosen loopback address (127.0.0.0/8 is all ours).
async fn connect_from(from: Ipv4Addr, to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(IpAddr::V4(from), 0))?;
    socket.connect(to).await
}

/// `GET /healthz` from `from` on a fresh connection; the status line and how long it took.
async fn healthz_from(from: Ipv4Addr, server: &ServerProcess) -> (String, Duration) {
    let started = Instant::now();
    let mut s = connect_from(from, server.http_addr)
        .await
        .expect("bystander connects");
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .expect("bystander writes");
    let text = read_all(&mut s, Duration::from_secs(5)).await;
    let status = text.lines().next().unwrap_or_default().to_owned();
    (status, started.elapsed())
}

/// Everything the server sends until it closes (or `limit` passes).
async fn read_all(s: &mut TcpStream, limit: Duration) -> String {
    let mut out = Vec::new();
    let _ = tokio::time::timeout(limit, s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether the server closed the connection (EOF or reset) within `limit`.
async fn closed_within(s: &mut TcpStream, limit: Duration) -> bool {
    let mut buf = [0u8; 512];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
        }
    }
}

async fn metric(server: &ServerProcess, series: &str) -> f64 {
    server
        .metric(series)
        .await
        .unwrap_or_else(|| panic!("no {series} in /metrics"))
}

fn assert_bystander(what: &str, (status, took): (String, Duration)) {
    assert!(status.contains(" 200 "), "{what}: bystander got {status:?}");
    assert!(
        took < BYSTANDER_WITHIN,
        "{what}: bystander waited {took:?} for /healthz"
    );
    println!("{what}: bystander /healthz in {took:?}");
}

/// 300 connections each send half a request head and stop (slowloris). The bystander is
/// served meanwhile, and the server closes every one of them at the header timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unfinished_headers_are_cut_off_at_the_timeout() {
    let server = start(&[("FLOORCAST_HTTP_HEADER_TIMEOUT_SECONDS", "2")]).await;
    let mut attackers = Vec::new();
    for i in 0..300u32 {
        let from = Ipv4Addr::new(127, 0, 1, (i % 200 + 1) as u8);
        let mut s = connect_from(from, server.http_addr)
            .await
            .expect("attacker connects");
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            .await
            .expect("attacker writes");
        attackers.push(s);
    }
    let started = Instant::now();
    assert_bystander(
        "slow headers",
        healthz_from(Ipv4Addr::new(127, 0, 2, 1), &server).await,
    );
    let mut closed = 0;
    for s in &mut attackers {
        if closed_within(s, Duration::from_secs(6)).await {
            closed += 1;
        }
    }
    println!(
        "slow headers: {closed}/300 closed by the server {:?} after they stalled",
        started.elapsed()
    );
    assert_eq!(closed, 300, "every stalled connection is closed");
    // An idle keep-alive connection is closed by the same timer.
    let mut idle = connect_from(Ipv4Addr::new(127, 0, 2, 2), server.http_addr)
        .await
        .expect("connects");
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("writes");
    assert!(
        closed_within(&mut idle, Duration::from_secs(6)).await,
        "an idle keep-alive connection is closed"
    );
    assert!(metric(&server, "floorcast_http_connections").await <= 2.0);
}

/// 100 clients declare a 60 kB body, send 1 kB of it and stall: each gets 408
/// `body_timeout` at the body deadline and its connection closed, so no buffer is held.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trickled_bodies_get_408_at_the_deadline() {
    let server = start(&[("FLOORCAST_HTTP_BODY_TIMEOUT_SECONDS", "2")]).await;
    let mut attackers = Vec::new();
    for i in 0..100u32 {
        let from = Ipv4Addr::new(127, 0, 3, (i % 200 + 1) as u8);
        let mut s = connect_from(from, server.http_addr)
            .await
            .expect("attacker connects");
        s.write_all(
            b"POST /api/sessions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
              Content-Length: 60000\r\n\r\n",
        )
        .await
        .expect("head");
        s.write_all(&[b' '; 1000]).await.expect("part of the body");
        attackers.push(s);
    }
    assert_bystander(
        "trickled bodies",
        healthz_from(Ipv4Addr::new(127, 0, 4, 1), &server).await,
    );
    for (i, s) in attackers.iter_mut().enumerate() {
        let answer = read_all(s, Duration::from_secs(8)).await;
        assert!(
            answer.starts_with("HTTP/1.1 408"),
            "attacker {i} got {answer:?}"
        );
        assert!(answer.contains("\"body_timeout\""), "{answer}");
    }
    let refused = metric(
        &server,
        "floorcast_limit_refusals_total{limit=\"http_body_timeout\"}",
    )
    .await;
    assert!(refused >= 100.0, "counted: {refused}");
}

/// One address opens 100 idle connections against a cap of 40 per address: 40 are held,
/// the other 60 get a 503 `too_many_connections` at once, and another address is served.
/// Then 4 more addresses fill the node's cap of 150: the next connection from anywhere is
/// refused until the flood's connections close, after which a bystander is served again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_caps_refuse_the_flood_and_serve_the_others() {
    let server = start(&[
        ("FLOORCAST_MAX_HTTP_CONNECTIONS_PER_IP", "40"),
        ("FLOORCAST_MAX_HTTP_CONNECTIONS", "150"),
        ("FLOORCAST_HTTP_HEADER_TIMEOUT_SECONDS", "30"),
    ])
    .await;
    let flood_ip = Ipv4Addr::new(127, 0, 5, 1);
    let mut held = Vec::new();
    let mut refused = 0;
    for _ in 0..100 {
        let mut s = connect_from(flood_ip, server.http_addr)
            .await
            .expect("connects");
        // A refused connection has its 503 waiting; a held one has nothing to read.
        let mut buf = vec![0u8; 512];
        match tokio::time::timeout(Duration::from_millis(100), s.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => {
                let text = String::from_utf8_lossy(&buf[..n]);
                assert!(text.starts_with("HTTP/1.1 503"), "{text}");
                assert!(text.contains("too_many_connections"), "{text}");
                assert!(text.to_lowercase().contains("retry-after: 5"), "{text}");
                refused += 1;
            }
            _ => held.push(s),
        }
    }
    println!("one address: {} held, {refused} refused", held.len());
    assert_eq!((held.len(), refused), (40, 60));
    assert_bystander(
        "per-address cap",
        healthz_from(Ipv4Addr::new(127, 0, 6, 1), &server).await,
    );
    let per_ip = metric(
        &server,
        "floorcast_limit_refusals_total{limit=\"http_connections_per_ip\"}",
    )
    .await;
    assert!(per_ip >= 60.0, "counted: {per_ip}");

    // Fill the node: 40 + 3 × 40 = 160 > 150.
    for host in 2..=4 {
        for _ in 0..40 {
            let s = connect_from(Ipv4Addr::new(127, 0, 5, host), server.http_addr)
                .await
                .expect("connects");
            held.push(s);
        }
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (status, _) = healthz_from(Ipv4Addr::new(127, 0, 6, 2), &server).await;
    assert!(status.contains(" 503 "), "node full: {status:?}");
    drop(held);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_bystander(
        "after the flood closed",
        healthz_from(Ipv4Addr::new(127, 0, 6, 3), &server).await,
    );
}
