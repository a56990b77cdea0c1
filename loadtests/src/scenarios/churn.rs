//! Churn: N viewers watch while others keep arriving and leaving (hubs reconnecting, people
//! dropping in and out of a plenary). After the ramp, every `1/rate` seconds the longest-
//! connected viewer leaves (WHEP DELETE) and a new one joins. Reports the joins made during
//! the churn and their times, the leaves, failures, the loss seen by viewers present the whole
//! window, and the server's CPU and RSS at the start and end of the window (RSS that keeps
//! rising under churn is a leak).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::crowd::{JOINS_IN_FLIGHT, Joined, close_all, floor_publisher, join_one, ramp};
use super::fanout::FanoutOptions;
use crate::peer::PeerError;
use crate::process_usage::{self, cpu_rate};
use crate::stats::Summary;

#[derive(Debug, Clone, Default, Serialize)]
pub struct ChurnReport {
    pub mode: String,
    pub viewers: usize,
    pub churn_per_second: f64,
    pub duration_s: f64,
    /// Joins started during the window, and those that reached media in time.
    pub joins_started: usize,
    pub joins_ok: usize,
    pub leaves: usize,
    /// POST → first keyframe of the joins during the window, milliseconds.
    pub join_ms: Summary,
    /// Viewers connected at the end of the window.
    pub viewers_at_end: usize,
    /// Loss over the window of the viewers that stayed through it, percent.
    pub stayers: usize,
    pub stayers_loss_percent: f64,
    pub server_cpu_seconds_per_second: Option<f64>,
    pub server_rss_start_bytes: Option<u64>,
    pub server_rss_end_bytes: Option<u64>,
    pub errors: Vec<String>,
}

pub async fn run(opts: FanoutOptions, churn_per_second: f64) -> Result<ChurnReport, PeerError> {
    let opts = Arc::new(opts);
    let client = crate::whip::http_client();
    let mut report = ChurnReport {
        mode: opts.mode.as_str().to_owned(),
        viewers: opts.viewers,
        churn_per_second,
        duration_s: opts.duration.as_secs_f64(),
        ..Default::default()
    };
    let publisher = floor_publisher(&client, &opts).await?;
    let gate = Arc::new(Semaphore::new(JOINS_IN_FLIGHT));
    let (joined, _, errors) = ramp(&client, &opts, &gate).await;
    report.errors.extend(errors);
    // Oldest first; each carries whether it was there when the window began.
    let mut pool: VecDeque<(Joined, bool)> = joined.into_iter().map(|j| (j, true)).collect();
    let before: Vec<_> = pool.iter().map(|(j, _)| j.viewer.stats()).collect();

    let pid = opts.server_pid.map(|p| p.to_string());
    let server_a = pid.as_deref().and_then(process_usage::sample);
    let start = Instant::now();
    let end = start + opts.duration;
    let step = Duration::from_secs_f64(1.0 / churn_per_second.max(0.01));
    let mut joins = JoinSet::new();
    let mut leaves = JoinSet::new();
    let mut join_ms = Vec::new();
    let mut next = start + step;
    while Instant::now() < end {
        tokio::select! {
            _ = tokio::time::sleep_until(next.into()) => {
                next += step;
                if let Some((old, _)) = pool.pop_front() {
                    report.leaves += 1;
                    leaves.spawn(old.viewer.close());
                }
                report.joins_started += 1;
                let (client, opts, gate) = (client.clone(), Arc::clone(&opts), Arc::clone(&gate));
                joins.spawn(async move {
                    let _permit = gate.acquire_owned().await;
                    join_one(client, opts, false).await
                });
            }
            Some(r) = joins.join_next(), if !joins.is_empty() => match r {
                Ok(Ok(j)) => {
                    join_ms.push(j.join.as_secs_f64() * 1000.0);
                    report.joins_ok += 1;
                    pool.push_back((j, false));
                }
                Ok(Err(e)) => report.errors.push(e),
                Err(e) => report.errors.push(format!("join task: {e}")),
            },
            Some(_) = leaves.join_next(), if !leaves.is_empty() => {}
        }
    }
    let server_b = pid.as_deref().and_then(process_usage::sample);
    // Joins still under way finish (bounded by the join timeout) and count.
    while let Some(r) = joins.join_next().await {
        match r {
            Ok(Ok(j)) => {
                join_ms.push(j.join.as_secs_f64() * 1000.0);
                report.joins_ok += 1;
                pool.push_back((j, false));
            }
            Ok(Err(e)) => report.errors.push(e),
            Err(e) => report.errors.push(format!("join task: {e}")),
        }
    }
    while leaves.join_next().await.is_some() {}
    report.join_ms = Summary::of(&join_ms);
    report.viewers_at_end = pool.len();

    // The stayers are the front of the initial pool that was never popped.
    let gone = before
        .len()
        .saturating_sub(pool.iter().filter(|(_, s)| *s).count());
    let (mut lost, mut expected) = (0u64, 0u64);
    for ((j, _), a) in pool
        .iter()
        .filter(|(_, s)| *s)
        .zip(before.iter().skip(gone))
    {
        let b = j.viewer.stats();
        report.stayers += 1;
        for (x, y) in [(&a.audio, &b.audio), (&a.video, &b.video)] {
            lost += y.seq.lost.saturating_sub(x.seq.lost);
            expected += y.seq.expected.saturating_sub(x.seq.expected);
        }
    }
    report.stayers_loss_percent = if expected == 0 {
        0.0
    } else {
        lost as f64 * 100.0 / expected as f64
    };
    if let (Some(a), Some(b)) = (server_a, server_b) {
        report.server_cpu_seconds_per_second = Some(cpu_rate(&a, &b));
        report.server_rss_start_bytes = Some(a.rss_bytes);
        report.server_rss_end_bytes = Some(b.rss_bytes);
    }
    close_all(pool.into_iter().map(|(j, _)| j).collect(), &gate).await;
    publisher.close().await;
    Ok(report)
}

pub fn render_table(r: &ChurnReport) -> String {
    let mut out = String::new();
    let mut row = |k: &str, v: String| out.push_str(&format!("{k:<28} {v}\n"));
    row(
        "churn",
        format!(
            "{} viewers ({} mode), {:.1} leave + join per second for {:.0} s",
            r.viewers, r.mode, r.churn_per_second, r.duration_s
        ),
    );
    row(
        "joins during churn",
        format!(
            "{} ok of {} started, {} leaves",
            r.joins_ok, r.joins_started, r.leaves
        ),
    );
    row(
        "join p50 / p95 / p99",
        format!(
            "{:.0} / {:.0} / {:.0} ms",
            r.join_ms.p50, r.join_ms.p95, r.join_ms.p99
        ),
    );
    row(
        "stayers' loss",
        format!("{:.3} % ({} viewers)", r.stayers_loss_percent, r.stayers),
    );
    if let Some(cpu) = r.server_cpu_seconds_per_second {
        row("server CPU s/s", format!("{cpu:.3}"));
    }
    if let (Some(a), Some(b)) = (r.server_rss_start_bytes, r.server_rss_end_bytes) {
        row(
            "server RSS start → end",
            format!(
                "{:.1} → {:.1} MiB",
                a as f64 / 1_048_576.0,
                b as f64 / 1_048_576.0
            ),
        );
    }
    if !r.errors.is_empty() {
        row(
            "errors",
            format!("{} (first: {})", r.errors.len(), r.errors[0]),
        );
    }
    out
}
