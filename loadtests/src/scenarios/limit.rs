//! Floorcast, Janus and this machine's egress limit in one run (issue 15). The limit comes
//! from limit-bench's `udp` binary (`shared/tools/limit-bench`, a separate Cargo project: its
//! aws-lc-sys build takes minutes, so it is built once, on first use), which times the full
//! per-viewer send path (header rewrite, AES-GCM, syscall) with no SFU around it. Then
//! `compare` measures both servers. The bench runs first and alone, so that neither server
//! nor the viewers perturb it; all of it shares this machine with the load generator.

mod udp_output;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde::Serialize;
use tokio::process::Command;

use super::compare::{self, CompareError, CompareOptions, Side};
pub use udp_output::{LimitLine, MalformedLine, parse_udp_output};

/// The README's "(a) crypto + sendmmsg to many destinations, measured together": GCM, then
/// sendmmsg in batches of 64 to 1,000 receiver sockets, i.e. what one SFU thread can do.
pub const SENDMMSG_MODE: &str = "gcm+sendmmsg_many_b64";
/// The README's "(a′) crypto + GSO": each viewer's 3–4-packet frame burst as one GSO message,
/// 16 viewers per sendmmsg (`sendmmsg_many_b16_gso4`, no crypto), plus the cost of GCM taken
/// in the same run as `gcm+sendmmsg_many_b64` − `sendmmsg_many_b64`. GSO only coalesces
/// packets to one viewer, so this (not the bench's 53 segments to one destination, which no
/// fan-out reaches) is the GSO limit the issue quotes.
pub const GSO_MODE: &str = "sendmmsg_many_b16_gso4";
/// The mode without crypto that, subtracted from [`SENDMMSG_MODE`], gives GCM's cost.
const PLAIN_SENDMMSG_MODE: &str = "sendmmsg_many_b64";
/// 5 × 100,000 packets keep both modes to a few seconds; the README's 300,000 add nothing
/// to the minimum, which is the figure we quote.
const BENCH_RUNS: &str = "5";
const BENCH_PACKETS: &str = "100000";

#[derive(Debug, Clone)]
pub struct LimitOptions {
    pub viewers: usize,
    pub duration: Duration,
    pub ramp_per_second: f64,
    pub sample_every: u32,
    pub floorcast_bin: PathBuf,
    /// The Janus anchor (its `run.sh`); `None` measures Floorcast alone.
    pub janus_dir: Option<PathBuf>,
    /// The limit-bench project directory (holds `Cargo.toml`).
    pub limit_bench: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum LimitError {
    #[error("no limit-bench project at {0} (give --limit-bench or $FLOORCAST_LIMIT_BENCH)")]
    BenchMissing(PathBuf),
    #[error("building limit-bench in {dir}: {reason}")]
    Build { dir: PathBuf, reason: String },
    #[error("running {bin}: {reason}")]
    Bench { bin: PathBuf, reason: String },
    #[error(transparent)]
    Malformed(#[from] MalformedLine),
    #[error("limit-bench printed no `{0}` line")]
    ModeMissing(&'static str),
    #[error(transparent)]
    Compare(#[from] CompareError),
}

/// One limit-bench mode as quoted in the report.
#[derive(Debug, Clone, Serialize)]
pub struct LimitFigure {
    pub mode: String,
    /// From the fastest run: the ratios use this one.
    pub viewers_per_core: f64,
    pub viewers_per_core_median: f64,
    pub ns_per_packet_min: f64,
}

/// Viewers per core over viewers per core; `None` when a side was not measured (or used no
/// CPU, which a ratio cannot express).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Ratios {
    pub floorcast_janus: Option<f64>,
    pub floorcast_sendmmsg: Option<f64>,
    pub floorcast_gso: Option<f64>,
    pub janus_gso: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LimitReport {
    pub viewers: usize,
    pub duration_s: f64,
    pub floorcast: Side,
    pub janus: Option<Side>,
    pub sendmmsg: LimitFigure,
    pub gso: LimitFigure,
    pub ratios: Ratios,
    /// How the limit figures were produced, to rerun them by hand.
    pub bench_command: String,
}

/// Where limit-bench is when none is given: `$FLOORCAST_LIMIT_BENCH`,
/// `shared/tools/limit-bench` in the working directory or any above it, or
/// `/work/shared/tools/limit-bench`.
pub fn find_limit_bench() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("FLOORCAST_LIMIT_BENCH") {
        return Some(PathBuf::from(p));
    }
    let cwd = std::env::current_dir().ok()?;
    cwd.ancestors()
        .map(|d| d.join("shared/tools/limit-bench"))
        .chain(std::iter::once(PathBuf::from(
            "/work/shared/tools/limit-bench",
        )))
        .find(|d| d.join("Cargo.toml").is_file())
}

pub async fn run(opts: LimitOptions) -> Result<LimitReport, LimitError> {
    let bin = build_bench(&opts.limit_bench).await?;
    let lines = run_bench(&bin).await?;
    let sendmmsg = figure(&lines, SENDMMSG_MODE)?;
    let gso = gso_figure(&lines)?;

    let compare_opts = CompareOptions {
        viewers: opts.viewers,
        duration: opts.duration,
        ramp_per_second: opts.ramp_per_second,
        floorcast_bin: opts.floorcast_bin,
        janus_dir: opts.janus_dir.clone().unwrap_or_default(),
        sample_every: opts.sample_every,
    };
    let (floorcast, janus) = if opts.janus_dir.is_some() {
        let r = compare::run(compare_opts).await?;
        (r.floorcast, Some(r.janus))
    } else {
        (compare::run_floorcast(&compare_opts).await?, None)
    };

    let janus_vpc = janus.as_ref().map(|j| j.viewers_per_core);
    let ratios = Ratios {
        floorcast_janus: ratio(Some(floorcast.viewers_per_core), janus_vpc),
        floorcast_sendmmsg: ratio(
            Some(floorcast.viewers_per_core),
            Some(sendmmsg.viewers_per_core),
        ),
        floorcast_gso: ratio(Some(floorcast.viewers_per_core), Some(gso.viewers_per_core)),
        janus_gso: ratio(janus_vpc, Some(gso.viewers_per_core)),
    };
    Ok(LimitReport {
        viewers: opts.viewers,
        duration_s: opts.duration.as_secs_f64(),
        floorcast,
        janus,
        sendmmsg,
        gso,
        ratios,
        bench_command: format!(
            "ONLY={PLAIN_SENDMMSG_MODE},{GSO_MODE} RUNS={BENCH_RUNS} PKTS={BENCH_PACKETS} {}",
            bin.display()
        ),
    })
}

/// The `udp` binary, built first if it is not there. Cargo's progress goes to our terminal:
/// the first build takes minutes and should not look like a hang.
async fn build_bench(dir: &Path) -> Result<PathBuf, LimitError> {
    if !dir.join("Cargo.toml").is_file() {
        return Err(LimitError::BenchMissing(dir.to_path_buf()));
    }
    // An explicit target dir: a CARGO_TARGET_DIR in the environment would put the binary
    // where we would not look.
    let target = dir.join("target");
    let bin = target.join("release/udp");
    if bin.is_file() {
        return Ok(bin);
    }
    let build_error = |reason: String| LimitError::Build {
        dir: dir.to_path_buf(),
        reason,
    };
    eprintln!("building limit-bench in {} (minutes, once)", dir.display());
    let status = Command::new("cargo")
        .args(["build", "--release", "--bin", "udp", "--target-dir"])
        .arg(&target)
        .current_dir(dir)
        .status()
        .await
        .map_err(|e| build_error(format!("cargo: {e}")))?;
    if !status.success() {
        return Err(build_error(format!("cargo build exited with {status}")));
    }
    if !bin.is_file() {
        return Err(build_error(format!("no {} after the build", bin.display())));
    }
    Ok(bin)
}

/// Runs the two limit modes; the bench pins its own threads (sender CPU 1, receiver CPU 0).
async fn run_bench(bin: &Path) -> Result<Vec<LimitLine>, LimitError> {
    let bench_error = |reason: String| LimitError::Bench {
        bin: bin.to_path_buf(),
        reason,
    };
    let out = Command::new(bin)
        .env("ONLY", format!("{PLAIN_SENDMMSG_MODE},{GSO_MODE}"))
        .env("RUNS", BENCH_RUNS)
        .env("PKTS", BENCH_PACKETS)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .await
        .map_err(|e| bench_error(e.to_string()))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(bench_error(format!("exited with {}: {stdout}", out.status)));
    }
    Ok(parse_udp_output(&stdout)?)
}

fn figure(lines: &[LimitLine], mode: &'static str) -> Result<LimitFigure, LimitError> {
    let l = lines
        .iter()
        .find(|l| l.mode == mode)
        .ok_or(LimitError::ModeMissing(mode))?;
    Ok(LimitFigure {
        mode: l.mode.clone(),
        viewers_per_core: l.viewers_per_core_min,
        viewers_per_core_median: l.viewers_per_core_median,
        ns_per_packet_min: l.min_ns,
    })
}

/// GSO per viewer burst plus GCM (see [`GSO_MODE`]), at the fastest and the median runs.
fn gso_figure(lines: &[LimitLine]) -> Result<LimitFigure, LimitError> {
    let find = |mode: &'static str| {
        lines
            .iter()
            .find(|l| l.mode == mode)
            .ok_or(LimitError::ModeMissing(mode))
    };
    let (gso, gcm, plain) = (
        find(GSO_MODE)?,
        find(SENDMMSG_MODE)?,
        find(PLAIN_SENDMMSG_MODE)?,
    );
    let min_ns = gso.min_ns + (gcm.min_ns - plain.min_ns).max(0.0);
    let median_ns = gso.median_ns + (gcm.median_ns - plain.median_ns).max(0.0);
    let viewers = |ns: f64| 1e9 / ns / PACKETS_PER_VIEWER;
    Ok(LimitFigure {
        mode: format!("{GSO_MODE} + GCM ({SENDMMSG_MODE} − {PLAIN_SENDMMSG_MODE})"),
        viewers_per_core: viewers(min_ns),
        viewers_per_core_median: viewers(median_ns),
        ns_per_packet_min: min_ns,
    })
}

/// limit-bench's viewer: about 1 Mbit/s of VP8 + Opus.
const PACKETS_PER_VIEWER: f64 = 150.0;

fn ratio(num: Option<f64>, den: Option<f64>) -> Option<f64> {
    match (num, den) {
        (Some(n), Some(d)) if n > 0.0 && d > 0.0 => Some(n / d),
        _ => None,
    }
}

pub fn render_table(r: &LimitReport) -> String {
    let dash = || "—".to_owned();
    let mut out = format!(
        "{:<30} {:>8} {:>8} {:>12} {:>16}\n",
        "", "viewers", "loss %", "join p95 ms", "viewers / core"
    );
    let servers = [
        ("Floorcast", Some(&r.floorcast)),
        ("Janus", r.janus.as_ref()),
    ];
    for (name, side) in servers {
        let row = match side {
            Some(s) => format!(
                "{:>8} {:>8.3} {:>12.0} {:>16.0}",
                s.viewers, s.loss_percent, s.join_p95_ms, s.viewers_per_core
            ),
            None => format!(
                "{:>8} {:>8} {:>12} {:>16}",
                dash(),
                dash(),
                dash(),
                "(skipped)"
            ),
        };
        out.push_str(&format!("{name:<30} {row}\n"));
    }
    for (name, f) in [
        ("limit: GCM + sendmmsg", &r.sendmmsg),
        ("limit: GCM + GSO", &r.gso),
    ] {
        out.push_str(&format!(
            "{:<30} {:>8} {:>8} {:>12} {:>16.0}   ({}, {:.0} ns/pkt; median run {:.0})\n",
            name,
            "",
            "",
            "",
            f.viewers_per_core,
            f.mode,
            f.ns_per_packet_min,
            f.viewers_per_core_median
        ));
    }
    let show = |v: Option<f64>| v.map_or_else(dash, |v| format!("{v:.2}"));
    let ratios = r.ratios;
    out.push_str(&format!(
        "ratios: Floorcast/Janus {}   Floorcast/sendmmsg {}   Floorcast/GSO {}   Janus/GSO {}\n",
        show(ratios.floorcast_janus),
        show(ratios.floorcast_sendmmsg),
        show(ratios.floorcast_gso),
        show(ratios.janus_gso)
    ));
    out.push_str(&format!(
        "{} viewers, {:.0} s each. Server viewers/core = viewers ÷ server CPU; the limits are at \
         150 pkt/s per viewer, from the fastest run.\nThe load generator (and the bench's \
         receiver) run on this same machine, sharing its cores with the server.\n",
        r.viewers, r.duration_s
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::FanoutReport;

    fn side(target: &str, viewers_per_core: f64) -> Side {
        Side {
            target: target.into(),
            viewers: 150,
            loss_percent: 0.0,
            join_p95_ms: 420.0,
            server_cpu_seconds_per_second: 150.0 / viewers_per_core,
            viewers_per_core,
            receive_mbps_per_viewer: 1.0,
            report: FanoutReport::default(),
        }
    }

    fn limit(mode: &str, viewers_per_core: f64) -> LimitFigure {
        LimitFigure {
            mode: mode.into(),
            viewers_per_core,
            viewers_per_core_median: viewers_per_core * 0.9,
            ns_per_packet_min: 1e9 / 150.0 / viewers_per_core,
        }
    }

    #[test]
    fn a_ratio_needs_both_sides_measured() {
        assert_eq!(ratio(Some(600.0), Some(1000.0)), Some(0.6));
        assert_eq!(ratio(Some(600.0), None), None);
        assert_eq!(ratio(Some(600.0), Some(0.0)), None);
    }

    #[test]
    fn the_table_shows_skipped_janus_as_dashes() {
        let report = LimitReport {
            viewers: 150,
            duration_s: 15.0,
            floorcast: side("floorcast", 600.0),
            janus: None,
            sendmmsg: limit(SENDMMSG_MODE, 1000.0),
            gso: limit(GSO_MODE, 2000.0),
            ratios: Ratios {
                floorcast_janus: None,
                floorcast_sendmmsg: Some(0.6),
                floorcast_gso: Some(0.3),
                janus_gso: None,
            },
            bench_command: String::new(),
        };
        let table = render_table(&report);
        assert!(table.contains("(skipped)"), "{table}");
        assert!(table.contains("Floorcast/Janus —"), "{table}");
        assert!(table.contains("Floorcast/sendmmsg 0.60"), "{table}");
        assert!(table.contains("same machine"), "{table}");
    }

    fn line(mode: &str, min_ns: f64, median_ns: f64) -> LimitLine {
        LimitLine {
            mode: mode.into(),
            min_ns,
            median_ns,
            viewers_per_core_min: 1e9 / min_ns / 150.0,
            viewers_per_core_median: 1e9 / median_ns / 150.0,
        }
    }

    #[test]
    fn the_gso_limit_adds_gcm_measured_in_the_same_run() {
        let lines = [
            line(PLAIN_SENDMMSG_MODE, 5000.0, 5500.0),
            line(SENDMMSG_MODE, 5600.0, 6300.0),
            line(GSO_MODE, 2000.0, 2400.0),
        ];
        let f = gso_figure(&lines).unwrap();
        assert_eq!(f.ns_per_packet_min, 2600.0);
        assert!((f.viewers_per_core - 1e9 / 2600.0 / 150.0).abs() < 1e-9);
        assert!((f.viewers_per_core_median - 1e9 / 3200.0 / 150.0).abs() < 1e-9);
        // Noise can make the crypto-free run the slower one: GCM then adds nothing.
        let noisy = [
            line(PLAIN_SENDMMSG_MODE, 6000.0, 6000.0),
            line(SENDMMSG_MODE, 5600.0, 6300.0),
            line(GSO_MODE, 2000.0, 2400.0),
        ];
        assert_eq!(gso_figure(&noisy).unwrap().ns_per_packet_min, 2000.0);
        assert!(matches!(
            gso_figure(&lines[..2]),
            Err(LimitError::ModeMissing(GSO_MODE))
        ));
    }
}
