//! Storage against the real binary (issue 16, items 6 and 7):
//! - a database that stops taking writes while the node runs: `/readyz` 503, writes 503
//!   `storage_unavailable`, and live captions still reach an SSE viewer (counted as unsaved);
//!   all of it recovers when the database takes writes again;
//! - a database that does not take writes at start: a clear start-up error;
//! - ten viewers looping over a 30,000-segment `transcript.json` of one session do not delay
//!   CART posts in another (the read pool), with the latencies printed.
//!
//! "Unwritable" as root: permissions do not stop root, and a file already open stays
//! writable through its descriptor whatever its mode; the immutable attribute (`chattr +i`,
//! ext4) does stop writes through open descriptors. The `-shm` file is left alone: SQLite
//! maps it, and a write to an immutable mapping is a SIGBUS. Where `chattr` is not permitted
//! (no CAP_LINUX_IMMUTABLE, another filesystem) those two tests say so and pass.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use floorcast_load::server_process::{ServerOptions, ServerProcess};
use floorcast_load::whip::{error_code, http_client};
use reqwest::{Client, StatusCode};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_floorcast");
const SECRET: &str = "storage-test-secret-0123456789abcdef";

fn options() -> ServerOptions {
    let mut o = ServerOptions::new(BIN, SECRET);
    o.env = vec![("FLOORCAST_CAPTION_ENGINE".into(), "off".into())];
    o
}

fn db_file(server: &ServerProcess) -> PathBuf {
    server
        .data_dir()
        .expect("a temporary data dir")
        .join("data/floorcast.db")
}

/// Makes files immutable for its lifetime (`chattr +i`), and writable again on drop.
struct Immutable {
    files: Vec<PathBuf>,
}

impl Immutable {
    /// None when the attribute cannot be set here.
    fn set(files: &[PathBuf]) -> Option<Immutable> {
        let mut done = Immutable { files: Vec::new() };
        for f in files {
            let ok = Command::new("chattr")
                .arg("+i")
                .arg(f)
                .status()
                .is_ok_and(|s| s.success());
            if !ok {
                return None; // `done` restores what was set
            }
            done.files.push(f.clone());
        }
        Some(done)
    }

    fn clear(&mut self) {
        for f in self.files.drain(..) {
            let _ = Command::new("chattr").arg("-i").arg(&f).status();
        }
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        self.clear();
    }
}

fn existing(paths: &[&Path]) -> Vec<PathBuf> {
    paths
        .iter()
        .filter(|p| p.exists())
        .map(|p| p.to_path_buf())
        .collect()
}

fn with_suffix(db: &Path, suffix: &str) -> PathBuf {
    let mut s = db.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

async fn post_cart(
    client: &Client,
    server: &ServerProcess,
    session: &str,
    token: &str,
    seq: u64,
    text: &str,
) -> (StatusCode, String) {
    let r = client
        .post(server.url(&format!(
            "/cart/{session}?token={token}&seq={seq}&lang=en-US"
        )))
        .header("content-type", "text/plain")
        .body(text.to_owned())
        .send()
        .await
        .expect("cart post");
    (r.status(), r.text().await.unwrap_or_default())
}

/// `caption` events of a session's SSE stream, as their `text`, through a channel.
fn caption_texts(
    client: &Client,
    server: &ServerProcess,
    session: &str,
) -> tokio::sync::mpsc::UnboundedReceiver<String> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let req = client
        .get(server.url(&format!("/api/sessions/{session}/events")))
        .bearer_auth(server.token("viewer", session, "sse-viewer"));
    tokio::spawn(async move {
        let Ok(mut resp) = req.send().await else {
            return;
        };
        let mut buf = String::new();
        while let Ok(Some(chunk)) = resp.chunk().await {
            buf.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buf.find("\n\n") {
                let block: String = buf.drain(..end + 2).collect();
                if !block.lines().any(|l| l.trim() == "event: caption") {
                    continue;
                }
                for line in block.lines() {
                    if let Some(data) = line.strip_prefix("data:")
                        && let Ok(v) = serde_json::from_str::<Value>(data.trim())
                        && let Some(text) = v["text"].as_str()
                    {
                        let _ = tx.send(text.to_owned());
                    }
                }
            }
        }
    });
    rx
}

async fn next_caption(rx: &mut tokio::sync::mpsc::UnboundedReceiver<String>) -> Option<String> {
    tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .ok()
        .flatten()
}

async fn readyz(client: &Client, server: &ServerProcess) -> (StatusCode, String) {
    let r = client.get(server.url("/readyz")).send().await.unwrap();
    (r.status(), r.text().await.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unwritable_database_answers_503_and_captions_still_go_live() {
    let server = ServerProcess::start(options()).await.expect("server");
    let client = http_client();
    server.create_session(&client, "s1").await.unwrap();
    let cart = server.token("captioner", "s1", "cart");
    let mut live = caption_texts(&client, &server, "s1");
    // The stream is subscribed once a caption comes through.
    let mut seq = 0;
    loop {
        seq += 1;
        let (status, body) = post_cart(&client, &server, "s1", &cart, seq, "before").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        if tokio::time::timeout(Duration::from_millis(500), live.recv())
            .await
            .is_ok()
        {
            break;
        }
        assert!(seq < 10, "the SSE stream never delivered a caption");
    }
    assert_eq!(readyz(&client, &server).await.0, StatusCode::OK);

    let db = db_file(&server);
    let wal = with_suffix(&db, "-wal");
    let Some(mut frozen) = Immutable::set(&existing(&[&db, &wal])) else {
        eprintln!("skipping: `chattr +i` is not permitted here, the database cannot be frozen");
        return;
    };

    // Readiness reports the database.
    let (status, body) = readyz(&client, &server).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(error_code(&body).as_deref(), Some("not_ready"), "{body}");
    assert!(body.contains("database"), "{body}");

    // A caption is refused for storage but reaches the viewer all the same.
    seq += 1;
    let (status, body) = post_cart(&client, &server, "s1", &cart, seq, "during the outage").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(
        error_code(&body).as_deref(),
        Some("storage_unavailable"),
        "{body}"
    );
    assert_eq!(
        next_caption(&mut live).await.as_deref(),
        Some("during the outage"),
        "live captions stopped with the database"
    );
    // Its retry is a retry (acknowledged), not a second caption on the viewers' screens.
    let (status, body) = post_cart(&client, &server, "s1", &cart, seq, "during the outage").await;
    assert_eq!(
        (status, body.as_str()),
        (
            StatusCode::OK,
            &*format!("{{\"seq\":{seq},\"stored\":false}}")
        )
    );
    assert_eq!(
        server
            .metric("floorcast_caption_store_failures_total{source=\"cart\"}")
            .await,
        Some(1.0)
    );

    // Other writes: 503 storage_unavailable, never 500 internal.
    let r = client
        .post(server.url("/api/sessions"))
        .bearer_auth(server.token("operator", "*", "op"))
        .json(&serde_json::json!({"id": "s2", "title": "Two"}))
        .send()
        .await
        .unwrap();
    let (status, body) = (r.status(), r.text().await.unwrap());
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(
        error_code(&body).as_deref(),
        Some("storage_unavailable"),
        "{body}"
    );
    let r = client
        .post(server.url("/api/sessions/s1/hands"))
        .bearer_auth(server.token("viewer", "s1", "raiser"))
        .json(&serde_json::json!({"topic": "storage"}))
        .send()
        .await
        .unwrap();
    let (status, body) = (r.status(), r.text().await.unwrap());
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(
        error_code(&body).as_deref(),
        Some("storage_unavailable"),
        "{body}"
    );
    // Reads still work.
    let r = client
        .get(server.url("/api/sessions/s1/transcript.txt"))
        .bearer_auth(server.token("viewer", "s1", "reader"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    // Writable again: ready, and captions are stored again.
    frozen.clear();
    let deadline = Instant::now() + Duration::from_secs(10);
    while readyz(&client, &server).await.0 != StatusCode::OK {
        assert!(
            Instant::now() < deadline,
            "not ready after the database came back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    seq += 1;
    let (status, body) = post_cart(&client, &server, "s1", &cart, seq, "after").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains("\"stored\":true"), "{body}");
    let transcript = client
        .get(server.url("/api/sessions/s1/transcript.txt"))
        .bearer_auth(server.token("viewer", "s1", "reader"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(transcript.contains("after"), "{transcript}");
    assert!(!transcript.contains("during the outage"), "{transcript}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unwritable_database_stops_the_start_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut opts = options();
    opts.data_dir = Some(data.clone());
    // A first start creates the database; stopping it leaves the files behind.
    drop(
        ServerProcess::start(opts.clone())
            .await
            .expect("first start"),
    );
    let db = data.join("floorcast.db");
    let wal = with_suffix(&db, "-wal");
    let Some(_frozen) = Immutable::set(&existing(&[&db, &wal])) else {
        eprintln!("skipping: `chattr +i` is not permitted here, the database cannot be frozen");
        return;
    };
    let out = Command::new(BIN)
        .current_dir(dir.path())
        .env_remove("FLOORCAST_CONFIG")
        .env("FLOORCAST_CAPTION_ENGINE", "off")
        .args([
            "serve",
            "--http-addr",
            "127.0.0.1:0",
            "--media-udp-addr",
            "127.0.0.1:0",
        ])
        .args(["--jwt-secret", SECRET, "--data-dir"])
        .arg(&data)
        .output()
        .expect("run floorcast");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "started on an unwritable database");
    assert!(
        stderr.contains("does not take writes") && stderr.contains("floorcast.db"),
        "unclear start-up error: {stderr}"
    );
    eprintln!("start-up error as printed: {}", stderr.trim());
}

/// Segments in the long transcript (the figure).
const SEGMENTS: usize = 30_000;
const READERS: usize = 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_long_transcript_export_does_not_delay_captions_in_another_session() {
    let server = ServerProcess::start(options()).await.expect("server");
    let client = http_client();
    server.create_session(&client, "long").await.unwrap();
    server.create_session(&client, "live").await.unwrap();
    // 30,000 stored segments, written beside the running node (WAL lets both write).
    {
        let mut conn = rusqlite::Connection::open(db_file(&server)).unwrap();
        conn.busy_timeout(Duration::from_secs(10)).unwrap();
        let tx = conn.transaction().unwrap();
        {
            let mut insert = tx
                .prepare(
                    "INSERT INTO caption_segments
                       (session, source, lang, start_ms, end_ms, text, shown, confidence)
                     VALUES ('long', 'asr', 'en-US', ?1, ?2, ?3, 1, 0.9)",
                )
                .unwrap();
            for i in 0..SEGMENTS as i64 {
                let text = format!("segment {i} of a long day of plenary statements and replies");
                insert
                    .execute(rusqlite::params![
                        1_000_000 + i * 2_000,
                        1_001_500 + i * 2_000,
                        text
                    ])
                    .unwrap();
            }
        }
        tx.commit().unwrap();
    }
    let reader_token = server.token("viewer", "long", "reader");
    let url = server.url("/api/sessions/long/transcript.json");
    let first: Value = client
        .get(&url)
        .bearer_auth(&reader_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .expect("transcript.json parses");
    assert_eq!(first["segments"].as_array().unwrap().len(), SEGMENTS);

    let cart = server.token("captioner", "live", "cart");
    let mut seq = 0;
    let post = async |seq: u64| {
        let t = Instant::now();
        let (status, body) = post_cart(&client, &server, "live", &cart, seq, "a caption").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        t.elapsed()
    };
    let mut idle = Vec::new();
    for _ in 0..10 {
        seq += 1;
        idle.push(post(seq).await);
    }

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut readers = Vec::new();
    for _ in 0..READERS {
        let (client, url, token, stop) = (
            client.clone(),
            url.clone(),
            reader_token.clone(),
            stop.clone(),
        );
        readers.push(tokio::spawn(async move {
            let mut exports = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let body = client
                    .get(&url)
                    .bearer_auth(&token)
                    .send()
                    .await
                    .unwrap()
                    .bytes()
                    .await
                    .unwrap();
                assert!(body.ends_with(b"]}"), "a cut-short export");
                exports += 1;
            }
            exports
        }));
    }
    // Let the readers get going, then post captions in the other session while they loop.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut busy = Vec::new();
    for _ in 0..20 {
        seq += 1;
        busy.push(post(seq).await);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut exports = 0;
    for r in readers {
        exports += r.await.unwrap();
    }
    let ms = |mut v: Vec<Duration>| {
        v.sort();
        let p = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize].as_secs_f64() * 1e3;
        (p(0.5), p(1.0))
    };
    let (idle_p50, idle_max) = ms(idle);
    let (busy_p50, busy_max) = ms(busy.clone());
    println!(
        "{{\"bench\":\"cart_post_during_transcript_exports\",\"segments\":{SEGMENTS},\
         \"readers\":{READERS},\"exports_done\":{exports},\"idle_ms\":{{\"p50\":{idle_p50:.1},\
         \"max\":{idle_max:.1}}},\"busy_ms\":{{\"p50\":{busy_p50:.1},\"max\":{busy_max:.1}}}}}"
    );
    assert!(
        exports >= READERS as u32,
        "the readers did not loop ({exports} exports)"
    );
    assert!(
        busy.iter().all(|d| *d < Duration::from_secs(1)),
        "a CART post waited behind transcript exports: {busy:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cart_sequences_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = options();
    opts.data_dir = Some(dir.path().join("data"));
    let client = http_client();
    let cart_text = |seq: u64| format!("caption {seq}");
    {
        let server = ServerProcess::start(opts.clone())
            .await
            .expect("first start");
        server.create_session(&client, "s1").await.unwrap();
        let cart = server.token("captioner", "s1", "cart");
        for seq in 1..=3 {
            let (status, body) =
                post_cart(&client, &server, "s1", &cart, seq, &cart_text(seq)).await;
            assert_eq!(status, StatusCode::OK, "{body}");
        }
    }
    let server = ServerProcess::start(opts).await.expect("second start");
    let cart = server.token("captioner", "s1", "cart");
    let seq_now = client
        .get(server.url(&format!("/cart/s1/seq?token={cart}&lang=en-US")))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(seq_now, "3");
    // The retry of the last caption is still a retry, an older one still stale.
    let (status, body) = post_cart(&client, &server, "s1", &cart, 3, &cart_text(3)).await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::OK, "{\"seq\":3,\"stored\":false}")
    );
    let (status, body) = post_cart(&client, &server, "s1", &cart, 2, &cart_text(2)).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(body.contains("\"last_seq\":3"), "{body}");
    let (status, body) = post_cart(&client, &server, "s1", &cart, 4, &cart_text(4)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains("\"stored\":true"), "{body}");
}
