//! What operators watch, against the real binary:
//! - every metric the Grafana dashboard (`deploy/grafana/floorcast.json`) queries is on a
//!   running node's `/metrics`, with a publisher, a hub viewer and a plain viewer connected;
//! - a real Prometheus (Debian `prometheus`) on loopback scrapes the node, and its HTTP API
//!   reports the viewer gauge as the viewers connected, following one that leaves.

use std::collections::BTreeSet;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use floorcast_load::server_process::{ServerOptions, ServerProcess};
use floorcast_load::{Publisher, PublisherConfig, Viewer, ViewerConfig, whip};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_floorcast");
const SECRET: &str = "observability-test-secret-0123456789abcdef";
const SESSION: &str = "plenary";
/// Exported only in conditions this test does not make: the recognizer's real-time factor
/// while it runs on real speech (captions_asr.rs publishes that; the synthetic publisher here
/// sends random bytes as Opus), and RTT once a viewer's receiver report carries the
/// round-trip fields (webrtc-rs viewers leave them empty); the engine and fallback gauges
/// of a session being captioned (captions are off here; `captions_asr.rs` reads them while
/// its recognizer runs).
const NOT_MADE_HERE: &[&str] = &[
    "floorcast_asr_real_time_factor",
    "floorcast_rtt_seconds",
    "floorcast_asr_engine",
    "floorcast_asr_fallback",
];

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

/// `floorcast_*` and `process_*` names in a PromQL expression.
fn metric_names(expr: &str) -> Vec<String> {
    expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|t| t.starts_with("floorcast_") || t.starts_with("process_"))
        .map(str::to_owned)
        .collect()
}

fn exprs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                match (k.as_str(), x) {
                    ("expr", Value::String(e)) => out.push(e.clone()),
                    _ => exprs(x, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| exprs(x, out)),
        _ => {}
    }
}

/// Metric families with at least one sample in a text exposition.
fn families(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_queries_only_metrics_the_server_exports() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/grafana/floorcast.json"
    );
    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("dashboard")).expect("JSON");
    let mut all = Vec::new();
    exprs(&dashboard, &mut all);
    assert!(all.len() >= 20, "{} queries", all.len());
    let titles: Vec<&str> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["title"].as_str())
        .collect();
    for want in [
        "Overview",
        "Floor",
        "Captions",
        "Queue length",
        "Caption latency",
    ] {
        assert!(
            titles.iter().any(|t| t.contains(want)),
            "no panel titled {want}: {titles:?}"
        );
    }

    let (server, client) = start().await;
    let publisher = Publisher::whip(
        PublisherConfig::default(),
        &client,
        &server.base_url,
        SESSION,
        &server.token("venue", SESSION, "mixer"),
    )
    .await
    .expect("publisher");
    // Full-mode viewers send receiver reports like browsers: loss, RTT and jitter appear.
    let hub = Viewer::whep(
        ViewerConfig::default(),
        &client,
        &server.base_url,
        SESSION,
        &server.token("hub", SESSION, "Dakar"),
    )
    .await
    .expect("hub viewer");
    let viewer = Viewer::whep(
        ViewerConfig::default(),
        &client,
        &server.base_url,
        SESSION,
        &server.token("viewer", SESSION, "someone"),
    )
    .await
    .expect("viewer");
    // The moderator's page opens the floor (its queue length series starts at 0).
    let q = client
        .get(server.url(&format!("/api/sessions/{SESSION}/queue")))
        .bearer_auth(server.token("moderator", SESSION, "chair"))
        .send()
        .await
        .unwrap();
    assert!(q.status().is_success());
    let deadline = Instant::now() + Duration::from_secs(15);
    let text = loop {
        let text = server.metrics().await.expect("/metrics");
        if text.contains("floorcast_jitter_seconds{") || Instant::now() > deadline {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let exported = families(&text);
    let mut missing = BTreeSet::new();
    for e in &all {
        for name in metric_names(e) {
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .filter(|b| exported.contains(&format!("{b}_bucket")))
                .unwrap_or(&name)
                .to_owned();
            let found = exported.contains(&name)
                || exported.contains(&format!("{base}_bucket"))
                || NOT_MADE_HERE.contains(&name.as_str());
            if !found {
                missing.insert(name);
            }
        }
    }
    assert!(
        missing.is_empty(),
        "the dashboard queries metrics /metrics does not have: {missing:?}\n{text}"
    );
    // The one left out above is still a metric the server defines.
    let source = include_str!("../src/metrics.rs");
    for name in NOT_MADE_HERE {
        assert!(source.contains(name), "{name} is no longer defined");
    }
    assert!(text.contains(&format!(
        "floorcast_hub_viewers{{hub=\"Dakar\",session=\"{SESSION}\"}} 1"
    )));
    viewer.close().await;
    hub.close().await;
    publisher.close().await;
}

/// A Prometheus child process, killed on drop (before its data directory is removed).
struct Prometheus {
    child: Child,
    _dir: tempfile::TempDir,
    url: String,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_prometheus(target: std::net::SocketAddr) -> Prometheus {
    let bin = "/usr/bin/prometheus";
    assert!(
        std::path::Path::new(bin).exists(),
        "{bin} is missing: install the Debian `prometheus` package (make test does)"
    );
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  \
             - job_name: floorcast\n    static_configs:\n      - targets: ['{target}']\n"
        ),
    )
    .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(bin)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("prometheus");
    Prometheus {
        child,
        _dir: dir,
        url: format!("http://127.0.0.1:{port}"),
    }
}

/// Polls an instant query until its single value is `want` (bounded); the last value seen.
async fn query_until(client: &reqwest::Client, prom: &Prometheus, q: &str, want: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = String::from("(no answer)");
    while Instant::now() < deadline {
        if let Ok(r) = client
            .get(format!(
                "{}/api/v1/query?query={}",
                prom.url,
                form_urlencoded::byte_serialize(q.as_bytes()).collect::<String>()
            ))
            .send()
            .await
            && let Ok(v) = r.json::<Value>().await
        {
            last = v["data"]["result"][0]["value"][1]
                .as_str()
                .unwrap_or("(empty)")
                .to_owned();
            if last == want {
                return last;
            }
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    last
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_scrapes_the_viewer_count() {
    let (server, client) = start().await;
    let prom = start_prometheus(server.http_addr);
    let mut viewers = Vec::new();
    for i in 0..3 {
        let target = floorcast_load::light::Target::Whep {
            url: server.base_url.clone(),
            session: SESSION.into(),
            token: server.token("viewer", SESSION, &format!("v{i}")),
        };
        viewers.push(
            floorcast_load::light::LightViewer::connect(Default::default(), &client, &target)
                .await
                .expect("viewer"),
        );
    }
    let q = format!("floorcast_viewers{{job=\"floorcast\",session=\"{SESSION}\"}}");
    assert_eq!(query_until(&client, &prom, &q, "3").await, "3");
    viewers.pop().unwrap().close().await;
    assert_eq!(query_until(&client, &prom, &q, "2").await, "2");
    assert_eq!(
        query_until(&client, &prom, "up{job=\"floorcast\"}", "1").await,
        "1"
    );
    for v in viewers {
        v.close().await;
    }
}
