//! Captions: a human captioner's CART client posts captions at a rate (`POST /cart/{session}`,
//! Zoom's seq rule) while N light viewers watch with the `captions` data channel open. Reports
//! the delivery latency from the POST leaving the captioner to the caption arriving at each
//! viewer, the share of captions × viewers delivered, and the POSTs' own round trip.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::Semaphore;

use super::crowd::{JOINS_IN_FLIGHT, close_all, floor_publisher, ramp};
use super::fanout::{FanoutOptions, Mode};
use crate::peer::PeerError;
use crate::stats::Summary;

#[derive(Debug, Clone, Default, Serialize)]
pub struct CaptionsReport {
    pub viewers_connected: usize,
    pub captions_per_second: f64,
    pub captions_posted: usize,
    pub posts_failed: usize,
    /// Captions × viewers that arrived, over captions posted × viewers, percent.
    pub delivered_percent: f64,
    /// POST sent → caption on a viewer's data channel, milliseconds (every viewer, every caption).
    pub latency_ms: Summary,
    /// The CART POST's round trip, milliseconds.
    pub post_ms: Summary,
    pub errors: Vec<String>,
}

pub async fn run(
    mut opts: FanoutOptions,
    captioner_token: &str,
    captions_per_second: f64,
) -> Result<CaptionsReport, PeerError> {
    opts.mode = Mode::Light;
    opts.captions = true;
    let opts = Arc::new(opts);
    let client = crate::whip::http_client();
    let mut report = CaptionsReport {
        captions_per_second,
        ..Default::default()
    };
    let publisher = floor_publisher(&client, &opts).await?;
    let gate = Arc::new(Semaphore::new(JOINS_IN_FLIGHT));
    let (viewers, _, errors) = ramp(&client, &opts, &gate).await;
    report.errors.extend(errors);
    report.viewers_connected = viewers.len();
    // The channel opens just after the media: give it a moment.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let base = opts.url.trim_end_matches('/');
    let seq_url = format!("{base}/cart/{}/seq?token={captioner_token}", opts.session);
    let mut seq: u64 = match client.get(&seq_url).send().await {
        Ok(r) => r
            .text()
            .await
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(0),
        Err(_) => 0,
    };
    let mut posted: HashMap<u64, Instant> = HashMap::new();
    let mut post_ms = Vec::new();
    let step = Duration::from_secs_f64(1.0 / captions_per_second.max(0.01));
    let start = Instant::now();
    let mut next = start;
    while start.elapsed() < opts.duration {
        tokio::time::sleep_until(next.into()).await;
        next += step;
        seq += 1;
        let url = format!(
            "{base}/cart/{}?token={captioner_token}&seq={seq}&lang=en-US",
            opts.session
        );
        let sent = Instant::now();
        match client
            .post(&url)
            .header("content-type", "text/plain; charset=utf-8")
            .body(format!("Load test caption number {seq}."))
            .send()
            .await
        {
            Ok(r) if r.status().is_success() => {
                posted.insert(seq, sent);
                post_ms.push(sent.elapsed().as_secs_f64() * 1000.0);
            }
            Ok(r) => {
                report.posts_failed += 1;
                report
                    .errors
                    .push(format!("cart post {seq}: {}", r.status()));
            }
            Err(e) => {
                report.posts_failed += 1;
                report.errors.push(format!("cart post {seq}: {e}"));
            }
        }
    }
    // The last captions' delivery.
    tokio::time::sleep(Duration::from_secs(2)).await;
    report.captions_posted = posted.len();
    report.post_ms = Summary::of(&post_ms);
    let mut latency = Vec::new();
    for j in &viewers {
        for (seq, at) in j.viewer.caption_arrivals() {
            if let Some(sent) = posted.get(&seq) {
                latency.push(at.saturating_duration_since(*sent).as_secs_f64() * 1000.0);
            }
        }
    }
    let due = posted.len() * viewers.len();
    report.delivered_percent = if due == 0 {
        0.0
    } else {
        latency.len() as f64 * 100.0 / due as f64
    };
    report.latency_ms = Summary::of(&latency);
    close_all(viewers, &gate).await;
    publisher.close().await;
    Ok(report)
}

pub fn render_table(r: &CaptionsReport) -> String {
    let mut out = String::new();
    let mut row = |k: &str, v: String| out.push_str(&format!("{k:<28} {v}\n"));
    row(
        "captions",
        format!(
            "{} posted at {:.1}/s ({} failed) to {} viewers",
            r.captions_posted, r.captions_per_second, r.posts_failed, r.viewers_connected
        ),
    );
    row("delivered", format!("{:.2} %", r.delivered_percent));
    row(
        "latency p50 / p95 / p99 / max",
        format!(
            "{:.0} / {:.0} / {:.0} / {:.0} ms",
            r.latency_ms.p50, r.latency_ms.p95, r.latency_ms.p99, r.latency_ms.max
        ),
    );
    row(
        "CART POST p50 / p95",
        format!("{:.0} / {:.0} ms", r.post_ms.p50, r.post_ms.p95),
    );
    if !r.errors.is_empty() {
        row(
            "errors",
            format!("{} (first: {})", r.errors.len(), r.errors[0]),
        );
    }
    out
}
