//! HTTPS in the binary (`tls_cert`/`tls_key`): the node serves its API over TLS with a
//! generated certificate, refuses plaintext on that port, and a client stalling in the
//! handshake is dropped after the header timeout without delaying others.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::{CertificateDer, ServerName};
use server::config::{CaptionEngine, Config};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsConnector;

struct Node {
    addr: SocketAddr,
    cert: CertificateDer<'static>,
    _dir: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

async fn start() -> Node {
    let dir = tempfile::tempdir().unwrap();
    let pair = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let cert_path = dir.path().join("cert.pem");
    let key_path = dir.path().join("key.pem");
    std::fs::write(&cert_path, pair.cert.pem()).unwrap();
    std::fs::write(&key_path, pair.signing_key.serialize_pem()).unwrap();
    let config = Config {
        data_dir: dir.path().join("data"),
        jwt_secret: Some("https-test-secret-0123456789abcdef0123".into()),
        media_udp_addr: "127.0.0.1:0".parse().unwrap(),
        caption_engine: CaptionEngine::Off,
        http_header_timeout_seconds: 1,
        tls_cert: Some(cert_path),
        tls_key: Some(key_path),
        ..Config::default()
    };
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let node = server::Server::new(config, listener)
        .await
        .expect("starts with TLS");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        node.serve(async {
            let _ = stopped.await;
        })
        .await
        .expect("serves");
    });
    Node {
        addr,
        cert: pair.cert.der().clone(),
        _dir: dir,
        stop: Some(stop),
        task,
    }
}

fn connector(cert: &CertificateDer<'static>) -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.clone()).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    TlsConnector::from(Arc::new(config))
}

/// `GET /healthz` over TLS: the status line.
async fn healthz(node: &Node) -> String {
    let tcp = TcpStream::connect(node.addr).await.unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let mut tls = connector(&node.cert)
        .connect(name, tcp)
        .await
        .expect("handshake");
    tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut out)).await;
    let text = String::from_utf8_lossy(&out).into_owned();
    text.lines().next().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn serves_https_and_only_https() {
    let mut node = start().await;
    assert_eq!(healthz(&node).await, "HTTP/1.1 200 OK");

    // Plaintext on the TLS port gets no HTTP answer.
    let mut plain = TcpStream::connect(node.addr).await.unwrap();
    plain
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), plain.read_to_end(&mut out)).await;
    assert!(
        !String::from_utf8_lossy(&out).contains("HTTP/1.1 200"),
        "{out:?}"
    );

    // Clients that connect and never finish a handshake: closed after the header timeout
    // (1 s here), and meanwhile a real client is served at once.
    let mut stalled = Vec::new();
    for _ in 0..20 {
        stalled.push(TcpStream::connect(node.addr).await.unwrap());
    }
    let started = Instant::now();
    assert_eq!(healthz(&node).await, "HTTP/1.1 200 OK");
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
    let mut buf = [0u8; 16];
    let early = tokio::time::timeout(Duration::from_millis(50), stalled[0].read(&mut buf)).await;
    assert!(early.is_err(), "still open before the timeout: {early:?}");
    let read = tokio::time::timeout(Duration::from_secs(5), stalled[0].read(&mut buf)).await;
    assert!(
        matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "a stalled handshake is closed by the node: {read:?}"
    );

    let _ = node.stop.take().unwrap().send(());
    tokio::time::timeout(Duration::from_secs(10), &mut node.task)
        .await
        .expect("stops")
        .unwrap();
}

#[tokio::test]
async fn a_wrong_key_stops_the_node_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let pair = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let cert_path = dir.path().join("cert.pem");
    std::fs::write(&cert_path, pair.cert.pem()).unwrap();
    let config = Config {
        data_dir: dir.path().join("data"),
        jwt_secret: Some("https-test-secret-0123456789abcdef0123".into()),
        media_udp_addr: "127.0.0.1:0".parse().unwrap(),
        caption_engine: CaptionEngine::Off,
        tls_cert: Some(cert_path.clone()),
        tls_key: Some(cert_path),
        ..Config::default()
    };
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let Err(err) = server::Server::new(config, listener).await else {
        panic!("a certificate as the key must not start");
    };
    assert!(err.to_string().contains("TLS key"), "{err}");
}

/// The binary takes the files by flag and says `https://` on its start-up line.
#[tokio::test]
async fn the_binary_announces_https() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let pair = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    std::fs::write(&cert, pair.cert.pem()).unwrap();
    std::fs::write(&key, pair.signing_key.serialize_pem()).unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_floorcast"))
        .args([
            "serve",
            "--http-addr",
            "127.0.0.1:0",
            "--media-udp-addr",
            "127.0.0.1:0",
        ])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg("--tls-cert")
        .arg(&cert)
        .arg("--tls-key")
        .arg(&key)
        .env(
            "FLOORCAST_JWT_SECRET",
            "https-test-secret-0123456789abcdef0123",
        )
        .env("FLOORCAST_CAPTION_ENGINE", "off")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let first = tokio::task::spawn_blocking(move || {
        std::io::BufReader::new(stdout)
            .lines()
            .next()
            .and_then(Result::ok)
    });
    let line = tokio::time::timeout(Duration::from_secs(30), first)
        .await
        .expect("a start-up line within 30 s")
        .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    let line = line.unwrap_or_default();
    assert!(
        line.starts_with("floorcast listening on https://127.0.0.1:"),
        "{line}"
    );
}
