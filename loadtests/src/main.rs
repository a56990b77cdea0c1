//! `floorcast-load`: load scenarios against a running Floorcast server.
//!
//! ```text
//! floorcast-load fanout --url http://127.0.0.1:8080 --session demo --viewers 50 \
//!     --ramp-per-second 10 --duration 30 --secret "$SECRET" --server-pid $(pidof floorcast) \
//!     --json fanout.json --max-loss 1
//! floorcast-load hands --url http://127.0.0.1:8080 --session bench --create-session \
//!     --secret "$SECRET" --hands 10000 --concurrency 64 --server-pid $(pidof floorcast) \
//!     --media --json hands.json
//! ```

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use floorcast_load::scenarios::fanout::{self, FanoutOptions, Mode, ServerTarget};
use floorcast_load::scenarios::hands::{self, HandsOptions};
use floorcast_load::token;

#[derive(Parser)]
#[command(
    name = "floorcast-load",
    about = "Floorcast load generator (webrtc-rs peers)"
)]
struct Cli {
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Subcommand)]
enum Scenario {
    /// One synthetic publisher, N WHEP viewers; prints throughput, loss, join time, server CPU.
    Fanout(FanoutArgs),
    /// N participants raise hands (C in flight), a moderator grants the first; prints
    /// raises/s, raise latency p50/p99 and (with --media) grant → first speaker packet.
    Hands(HandsArgs),
}

#[derive(Args)]
struct HandsArgs {
    /// Server base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    #[arg(long, default_value = "demo")]
    session: String,
    /// JWT secret: every token (one viewer per hand, a moderator) is minted here.
    #[arg(long, env = "FLOORCAST_JWT_SECRET")]
    secret: String,
    #[arg(long, default_value_t = 10_000)]
    hands: usize,
    /// Raise requests in flight.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Create the session first (an existing session is fine).
    #[arg(long)]
    create_session: bool,
    /// Do not grant the first hand afterwards.
    #[arg(long)]
    no_grant: bool,
    /// The grant's time limit, seconds.
    #[arg(long, default_value_t = 120)]
    limit_s: u64,
    /// The first hand's holder publishes over WHIP; a WHEP viewer measures grant → first
    /// speaker packet (the session must have no floor feed).
    #[arg(long)]
    media: bool,
    /// Server process id, for its CPU and RSS from /proc.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Write the report as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    #[arg(long, short)]
    verbose: bool,
}

#[derive(Args)]
struct FanoutArgs {
    /// Server base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    #[arg(long, default_value = "demo")]
    session: String,
    #[arg(long, default_value_t = 10)]
    viewers: usize,
    #[arg(long, default_value_t = 10.0)]
    ramp_per_second: f64,
    /// Measurement window in seconds (after the ramp).
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Share of viewers (0..1) that offer audio only.
    #[arg(long, default_value_t = 0.0)]
    audio_only_share: f64,
    /// JWT secret: tokens are minted here (venue to publish, viewer to watch).
    #[arg(long, env = "FLOORCAST_JWT_SECRET", conflicts_with = "token")]
    secret: Option<String>,
    /// A ready-made viewer token (instead of --secret).
    #[arg(long)]
    token: Option<String>,
    /// Token to publish with (default: --token); needs role venue.
    #[arg(long)]
    publish_token: Option<String>,
    /// Create the session first (needs --secret; an existing session is fine).
    #[arg(long)]
    create_session: bool,
    /// Server process id, for CPU and RSS from /proc.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Video bitrate of the synthetic publisher, bits/s.
    #[arg(long, default_value_t = 1_000_000)]
    video_bitrate: u32,
    /// Write the report as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Exit with status 1 when window loss exceeds this percentage.
    #[arg(long)]
    max_loss: Option<f64>,
    #[arg(long, short)]
    verbose: bool,
    /// full: webrtc-rs viewers that decrypt every packet; light: str0m viewers that count
    /// media from RTP headers and check SRTP on a sample (for 1,000+ viewers).
    #[arg(long, value_enum, default_value_t = ModeArg::Full)]
    mode: ModeArg,
    /// floorcast (WHEP, our synthetic publisher) or janus (Streaming plugin; --url is its
    /// HTTP API root, e.g. http://127.0.0.1:8088/janus; needs --mode light).
    #[arg(long, value_enum, default_value_t = TargetArg::Floorcast)]
    target: TargetArg,
    /// Janus Streaming mountpoint id.
    #[arg(long, default_value_t = 1)]
    mountpoint: u64,
    /// Light mode: authenticate and decrypt one media packet in this many after the join.
    #[arg(long, default_value_t = 64)]
    sample_every: u32,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ModeArg {
    Full,
    Light,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum TargetArg {
    Floorcast,
    Janus,
}

async fn fanout_main(a: FanoutArgs) -> anyhow::Result<ExitCode> {
    let janus = a.target == TargetArg::Janus;
    let (viewer_token, publish_token) = match (&a.secret, &a.token) {
        _ if janus => (String::new(), String::new()),
        (Some(secret), _) => (
            token::mint(secret, "viewer", &a.session, "load-viewer"),
            a.publish_token
                .clone()
                .unwrap_or_else(|| token::mint(secret, "venue", &a.session, "load-publisher")),
        ),
        (None, Some(t)) => (
            t.clone(),
            a.publish_token.clone().unwrap_or_else(|| t.clone()),
        ),
        (None, None) => bail!("give --secret (or FLOORCAST_JWT_SECRET) or --token"),
    };
    if a.create_session {
        let secret = a
            .secret
            .as_deref()
            .context("--create-session needs --secret")?;
        create_session(&a.url, &a.session, secret).await?;
    }
    let mut opts = FanoutOptions::new(&a.url, &a.session, &viewer_token, &publish_token);
    opts.viewers = a.viewers;
    opts.ramp_per_second = a.ramp_per_second;
    opts.duration = Duration::from_secs_f64(a.duration.max(0.1));
    opts.audio_only_share = a.audio_only_share.clamp(0.0, 1.0);
    opts.server_pid = a.server_pid;
    opts.video_bitrate_bps = a.video_bitrate;
    opts.verbose = a.verbose;
    opts.mode = match a.mode {
        ModeArg::Full => Mode::Full,
        ModeArg::Light => Mode::Light,
    };
    opts.target = if janus {
        ServerTarget::Janus {
            mountpoint: a.mountpoint,
        }
    } else {
        ServerTarget::Floorcast
    };
    opts.sample_every = a.sample_every.max(1);
    let report = fanout::run(opts).await.context("fanout")?;
    print!("{}", fanout::render_table(&report));
    if let Some(path) = &a.json {
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if report.viewers_connected == 0 {
        eprintln!("no viewer connected");
        return Ok(ExitCode::FAILURE);
    }
    if let Some(max) = a.max_loss
        && report.loss_percent > max
    {
        eprintln!("loss {:.3} % above --max-loss {max} %", report.loss_percent);
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// `POST /api/sessions` with an operator token; an existing session (409) is fine.
async fn create_session(url: &str, session: &str, secret: &str) -> anyhow::Result<()> {
    let resp = floorcast_load::whip::http_client()
        .post(format!("{}/api/sessions", url.trim_end_matches('/')))
        .bearer_auth(token::mint(secret, "operator", "*", "load-operator"))
        .json(&serde_json::json!({"id": session, "title": "floorcast-load"}))
        .send()
        .await
        .context("POST /api/sessions")?;
    let s = resp.status();
    if !s.is_success() && s.as_u16() != 409 {
        bail!(
            "creating session: {s} {}",
            resp.text().await.unwrap_or_default()
        );
    }
    Ok(())
}

async fn hands_main(a: HandsArgs) -> anyhow::Result<ExitCode> {
    if a.create_session {
        create_session(&a.url, &a.session, &a.secret).await?;
    }
    let mut opts = HandsOptions::new(&a.url, &a.session, &a.secret);
    opts.hands = a.hands;
    opts.concurrency = a.concurrency.max(1);
    opts.grant = !a.no_grant;
    opts.limit_s = a.limit_s;
    opts.media = a.media;
    opts.server_pid = a.server_pid;
    opts.verbose = a.verbose;
    let report = hands::run(opts).await.context("hands")?;
    print!("{}", hands::render_table(&report));
    if let Some(path) = &a.json {
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if report.raised < report.hands_requested || !report.all_raised_in_queue {
        eprintln!(
            "{} of {} hands raised; all in the queue: {}",
            report.raised, report.hands_requested, report.all_raised_in_queue
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

fn main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?;
    match cli.scenario {
        Scenario::Fanout(a) => rt.block_on(fanout_main(a)),
        Scenario::Hands(a) => rt.block_on(hands_main(a)),
    }
}
