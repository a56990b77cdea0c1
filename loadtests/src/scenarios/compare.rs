//! Side by side with Janus: the same N light-mode viewers against Floorcast, then against
//! Janus's Streaming plugin, one after the other so each has the machine to itself. Floorcast
//! is started here (the `floorcast` binary, captions off: forwarding only) and fed by our
//! synthetic ≈1 Mbit/s publisher; Janus is started by the anchor's `run.sh --bg` with its own
//! ≈1 Mbit/s GStreamer sender, and stopped with `run.sh stop`. Server CPU is read from
//! `/proc/<pid>` for both.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde::Serialize;

use super::fanout::{self, FanoutOptions, Mode, ServerTarget};
use crate::server_process::{ServerOptions, ServerProcess};
use crate::stats::FanoutReport;
use crate::token;

#[derive(Debug, Clone)]
pub struct CompareOptions {
    pub viewers: usize,
    pub duration: Duration,
    pub ramp_per_second: f64,
    pub floorcast_bin: PathBuf,
    /// The Janus anchor directory (holds `run.sh`).
    pub janus_dir: PathBuf,
    pub sample_every: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum CompareError {
    #[error("floorcast: {0}")]
    Floorcast(String),
    #[error("janus: {0}")]
    Janus(String),
}

#[derive(Debug, Clone, Serialize)]
pub struct Side {
    pub target: String,
    pub viewers: usize,
    pub loss_percent: f64,
    pub join_p95_ms: f64,
    pub server_cpu_seconds_per_second: f64,
    /// Viewers ÷ server CPU cores used.
    pub viewers_per_core: f64,
    pub receive_mbps_per_viewer: f64,
    pub report: FanoutReport,
}

#[derive(Debug, Clone, Serialize)]
pub struct CompareReport {
    pub viewers: usize,
    pub duration_s: f64,
    pub floorcast: Side,
    pub janus: Side,
    /// Floorcast's viewers per core over Janus's.
    pub viewers_per_core_ratio: f64,
}

fn side(target: &str, r: FanoutReport) -> Side {
    let cpu = r.server.map_or(0.0, |s| s.cpu_seconds_per_second);
    Side {
        target: target.to_owned(),
        viewers: r.viewers_connected,
        loss_percent: r.loss_percent,
        join_p95_ms: r.join_ms.p95,
        server_cpu_seconds_per_second: cpu,
        viewers_per_core: if cpu > 0.0 {
            r.viewers_connected as f64 / cpu
        } else {
            0.0
        },
        receive_mbps_per_viewer: r.viewer_bits_per_second.p50 / 1e6,
        report: r,
    }
}

/// Where the Janus anchor is when none is given: `$FLOORCAST_JANUS_ANCHOR`,
/// `shared/anchors/janus` in the working directory or any above it, or
/// `/work/shared/anchors/janus`.
pub fn find_janus_anchor() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("FLOORCAST_JANUS_ANCHOR") {
        return Some(PathBuf::from(p));
    }
    let cwd = std::env::current_dir().ok()?;
    cwd.ancestors()
        .map(|d| d.join("shared/anchors/janus"))
        .chain(std::iter::once(PathBuf::from("/work/shared/anchors/janus")))
        .find(|d| d.join("run.sh").is_file())
}

pub async fn run(opts: CompareOptions) -> Result<CompareReport, CompareError> {
    let floorcast = run_floorcast(&opts).await?;
    let janus = run_janus(&opts).await?;
    let ratio = if janus.viewers_per_core > 0.0 {
        floorcast.viewers_per_core / janus.viewers_per_core
    } else {
        0.0
    };
    Ok(CompareReport {
        viewers: opts.viewers,
        duration_s: opts.duration.as_secs_f64(),
        floorcast,
        janus,
        viewers_per_core_ratio: ratio,
    })
}

fn viewer_options(opts: &CompareOptions, url: &str, viewer: &str, publish: &str) -> FanoutOptions {
    let mut o = FanoutOptions::new(url, "compare", viewer, publish);
    o.viewers = opts.viewers;
    o.duration = opts.duration;
    o.ramp_per_second = opts.ramp_per_second;
    o.mode = Mode::Light;
    o.sample_every = opts.sample_every;
    o
}

/// Floorcast's side alone (`opts.janus_dir` is not read): for runs where Janus is unavailable.
pub async fn run_floorcast(opts: &CompareOptions) -> Result<Side, CompareError> {
    let secret = format!("compare-{}", token::unix_now()) + &"x".repeat(32);
    let mut so = ServerOptions::new(&opts.floorcast_bin, &secret);
    so.env = vec![
        ("FLOORCAST_CAPTION_ENGINE".into(), "off".into()),
        ("RUST_LOG".into(), "warn".into()),
        // Every load viewer comes from this one machine: one address.
        (
            "FLOORCAST_CREATIONS_PER_MINUTE_PER_IP".into(),
            "1000000".into(),
        ),
        (
            "FLOORCAST_MAX_HTTP_CONNECTIONS_PER_IP".into(),
            "1000000".into(),
        ),
    ];
    let server = ServerProcess::start(so)
        .await
        .map_err(|e| CompareError::Floorcast(e.to_string()))?;
    let client = crate::whip::http_client();
    server
        .create_session(&client, "compare")
        .await
        .map_err(|e| CompareError::Floorcast(e.to_string()))?;
    let mut o = viewer_options(
        opts,
        &server.base_url,
        &server.token("viewer", "compare", "compare-viewer"),
        &server.token("venue", "compare", "compare-publisher"),
    );
    o.viewer_secret = Some(secret.clone());
    o.server_pid = Some(server.pid());
    let report = fanout::run(o)
        .await
        .map_err(|e| CompareError::Floorcast(e.to_string()))?;
    drop(server);
    Ok(side("floorcast", report))
}

/// `run.sh --bg` prints `url=…` and `janus_pid=…`; `run.sh stop` ends what it started.
struct Janus {
    dir: PathBuf,
    url: String,
    pid: u32,
}

impl Janus {
    fn start(dir: &Path) -> Result<Self, CompareError> {
        let out = Command::new("bash")
            .arg(dir.join("run.sh"))
            .arg("--bg")
            .output()
            .map_err(|e| CompareError::Janus(format!("run.sh: {e}")))?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        let value = |key: &str| {
            stdout
                .lines()
                .find_map(|l| l.strip_prefix(key).map(|v| v.trim().to_owned()))
        };
        match (out.status.success(), value("url="), value("janus_pid=")) {
            (true, Some(url), Some(pid)) => Ok(Janus {
                dir: dir.to_path_buf(),
                url,
                pid: pid
                    .parse()
                    .map_err(|_| CompareError::Janus(format!("janus_pid={pid}")))?,
            }),
            _ => Err(CompareError::Janus(format!(
                "run.sh --bg failed ({}): {}{}",
                out.status,
                stdout,
                String::from_utf8_lossy(&out.stderr)
            ))),
        }
    }
}

impl Drop for Janus {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(self.dir.join("run.sh"))
            .arg("stop")
            .output();
    }
}

async fn run_janus(opts: &CompareOptions) -> Result<Side, CompareError> {
    let janus = Janus::start(&opts.janus_dir)?;
    // The sender needs a moment before the mountpoint has media.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut o = viewer_options(opts, &janus.url, "", "");
    o.target = ServerTarget::Janus { mountpoint: 1 };
    o.server_pid = Some(janus.pid);
    let report = fanout::run(o)
        .await
        .map_err(|e| CompareError::Janus(e.to_string()))?;
    drop(janus);
    Ok(side("janus", report))
}

pub fn render_table(r: &CompareReport) -> String {
    let mut out = format!(
        "{:<10} {:>8} {:>8} {:>12} {:>14} {:>16} {:>14}\n",
        "target",
        "viewers",
        "loss %",
        "join p95 ms",
        "server CPU s/s",
        "viewers / core",
        "Mbit/s / view"
    );
    for s in [&r.floorcast, &r.janus] {
        out.push_str(&format!(
            "{:<10} {:>8} {:>8.3} {:>12.0} {:>14.3} {:>16.0} {:>14.2}\n",
            s.target,
            s.viewers,
            s.loss_percent,
            s.join_p95_ms,
            s.server_cpu_seconds_per_second,
            s.viewers_per_core,
            s.receive_mbps_per_viewer
        ));
    }
    out.push_str(&format!(
        "Floorcast : Janus viewers per core = {:.2} : 1\n",
        r.viewers_per_core_ratio
    ));
    out
}
