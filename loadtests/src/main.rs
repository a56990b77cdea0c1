//! `floorcast-load`: load scenarios against a running Floorcast server.
//!
//! ```text
//! floorcast-load fanout --url http://127.0.0.1:8080 --session demo --viewers 50 \
//!     --ramp-per-second 10 --duration 30 --secret "$SECRET" --server-pid $(pidof floorcast) \
//!     --json fanout.json --max-loss 1
//! floorcast-load hands --url http://127.0.0.1:8080 --session bench --create-session \
//!     --secret "$SECRET" --hands 10000 --concurrency 64 --server-pid $(pidof floorcast) \
//!     --media --json hands.json
//! floorcast-load limit --viewers 150 --duration 15 --json limit.json
//! ```

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use floorcast_load::scenarios::attack::{self, Attack, AttackOptions};
use floorcast_load::scenarios::compare::{self, CompareOptions};
use floorcast_load::scenarios::fanout::{self, FanoutOptions, Mode, ServerTarget};
use floorcast_load::scenarios::hands::{self, HandsOptions};
use floorcast_load::scenarios::limit::{self, LimitOptions};
use floorcast_load::scenarios::{captions, churn};
use floorcast_load::token;

#[derive(Parser)]
#[command(
    name = "floorcast-load",
    about = "Floorcast load generator: real WebRTC viewers (webrtc-rs in full mode, str0m in light mode)"
)]
struct Cli {
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Subcommand)]
enum Scenario {
    /// One synthetic publisher, N WHEP viewers; prints throughput, loss, join time, server CPU.
    Fanout(FanoutArgs),
    /// Fan-out while viewers keep leaving and joining at a rate.
    Churn(ChurnArgs),
    /// CART captions posted at a rate; latency to light viewers' `captions` data channels.
    Captions(CaptionsArgs),
    /// A long fan-out (bounded by --duration) with a timeline of server CPU, RSS and loss.
    Soak(SoakArgs),
    /// The same N light viewers against Floorcast, then Janus (each alone); one table.
    Compare(CompareArgs),
    /// limit-bench's GCM + sendmmsg and GCM + GSO egress limits, then `compare`: viewers per
    /// core of each and their ratios in one table.
    Limit(LimitArgs),
    /// N participants raise hands (C in flight), a moderator grants the first; prints
    /// raises/s, raise latency p50/p99 and (with --media) grant → first speaker packet.
    Hands(HandsArgs),
    /// One viewer token attacks (STUN spoofing, offer or PATCH floods, PLI spam) while N
    /// victims watch; prints the victims' loss and freezes and the bystander's latency.
    Attack(AttackArgs),
}

#[derive(Clone, Copy, ValueEnum)]
enum AttackArg {
    StunSpoof,
    OfferFlood,
    PatchFlood,
    PliSpam,
}

#[derive(Args)]
struct AttackArgs {
    /// Server base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    #[arg(long, default_value = "demo")]
    session: String,
    /// JWT secret: the venue, victims, attacker and a newcomer get tokens minted here.
    #[arg(long, env = "FLOORCAST_JWT_SECRET")]
    secret: String,
    #[arg(long, value_enum)]
    attack: AttackArg,
    #[arg(long, default_value_t = 5)]
    victims: usize,
    /// Seconds the attack lasts.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Create the session first (operator token from --secret).
    #[arg(long)]
    create_session: bool,
    /// The server's pid (same machine): report its media thread's CPU during the attack.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Also write the report as JSON here.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
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
    /// Share (0..1) of the participants that are hubs (hub tokens, one hand per hub).
    #[arg(long, default_value_t = 0.0)]
    hub_share: f64,
    /// Share (0..1) of the raised hands withdrawn afterwards by their owners.
    #[arg(long, default_value_t = 0.0)]
    withdraw_share: f64,
    /// Light-mode viewers watching a floor feed through the storm (not with --media).
    #[arg(long, default_value_t = 0)]
    watchers: usize,
}

#[derive(Args)]
struct ChurnArgs {
    #[command(flatten)]
    base: FanoutArgs,
    /// Viewers that leave (and new ones that join) per second.
    #[arg(long, default_value_t = 2.0)]
    churn_per_second: f64,
}

#[derive(Args)]
struct CaptionsArgs {
    #[command(flatten)]
    base: FanoutArgs,
    #[arg(long, default_value_t = 1.0)]
    captions_per_second: f64,
    /// A captioner token (default: minted from --secret).
    #[arg(long)]
    captioner_token: Option<String>,
}

#[derive(Args)]
struct CompareArgs {
    #[arg(long, default_value_t = 50)]
    viewers: usize,
    #[arg(long, default_value_t = 15.0)]
    duration: f64,
    #[arg(long, default_value_t = 40.0)]
    ramp_per_second: f64,
    /// The floorcast binary (default: next to this one).
    #[arg(long)]
    floorcast_bin: Option<PathBuf>,
    /// The Janus anchor (its run.sh); default: $FLOORCAST_JANUS_ANCHOR, ../shared/anchors/janus
    /// from here or above, or /work/shared/anchors/janus.
    #[arg(long)]
    janus_dir: Option<PathBuf>,
    #[arg(long, default_value_t = 64)]
    sample_every: u32,
    #[arg(long)]
    json: Option<PathBuf>,
}

/// The `floorcast` binary given, or the one built next to this one.
fn floorcast_bin_or_sibling(given: Option<PathBuf>) -> std::io::Result<PathBuf> {
    match given {
        Some(p) => Ok(p),
        None => Ok(std::env::current_exe()?.with_file_name("floorcast")),
    }
}

async fn compare_main(a: CompareArgs) -> anyhow::Result<ExitCode> {
    let floorcast_bin = floorcast_bin_or_sibling(a.floorcast_bin)?;
    let janus_dir = match a.janus_dir {
        Some(p) => p,
        None => compare::find_janus_anchor().context("no Janus anchor found: give --janus-dir")?,
    };
    let report = compare::run(CompareOptions {
        viewers: a.viewers,
        duration: Duration::from_secs_f64(a.duration.max(1.0)),
        ramp_per_second: a.ramp_per_second,
        floorcast_bin,
        janus_dir,
        sample_every: a.sample_every.max(1),
    })
    .await?;
    print!("{}", compare::render_table(&report));
    write_json(&a.json, &report)?;
    Ok(
        if report.floorcast.viewers == a.viewers && report.janus.viewers == a.viewers {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        },
    )
}

#[derive(Args)]
struct LimitArgs {
    #[arg(long, default_value_t = 150)]
    viewers: usize,
    #[arg(long, default_value_t = 15.0)]
    duration: f64,
    #[arg(long, default_value_t = 40.0)]
    ramp_per_second: f64,
    /// The limit-bench project; default: $FLOORCAST_LIMIT_BENCH, shared/tools/limit-bench
    /// here or above, or /work/shared/tools/limit-bench. Built on first use (minutes).
    #[arg(long)]
    limit_bench: Option<PathBuf>,
    /// The floorcast binary (default: next to this one).
    #[arg(long)]
    floorcast_bin: Option<PathBuf>,
    /// The Janus anchor (its run.sh); default as for `compare`.
    #[arg(long, conflicts_with = "skip_janus")]
    janus_dir: Option<PathBuf>,
    /// Measure Floorcast alone (the ratios with Janus are shown as "—").
    #[arg(long)]
    skip_janus: bool,
    #[arg(long, default_value_t = 64)]
    sample_every: u32,
    #[arg(long)]
    json: Option<PathBuf>,
}

async fn limit_main(a: LimitArgs) -> anyhow::Result<ExitCode> {
    let floorcast_bin = floorcast_bin_or_sibling(a.floorcast_bin)?;
    let janus_dir = match (a.skip_janus, a.janus_dir) {
        (true, _) => None,
        (false, Some(p)) => Some(p),
        (false, None) => Some(
            compare::find_janus_anchor()
                .context("no Janus anchor found: give --janus-dir or --skip-janus")?,
        ),
    };
    let limit_bench = match a.limit_bench {
        Some(p) => p,
        None => limit::find_limit_bench().context("no limit-bench found: give --limit-bench")?,
    };
    let report = limit::run(LimitOptions {
        viewers: a.viewers,
        duration: Duration::from_secs_f64(a.duration.max(1.0)),
        ramp_per_second: a.ramp_per_second,
        sample_every: a.sample_every.max(1),
        floorcast_bin,
        janus_dir,
        limit_bench,
    })
    .await?;
    print!("{}", limit::render_table(&report));
    write_json(&a.json, &report)?;
    let all_joined = |s: &compare::Side| s.viewers == a.viewers;
    Ok(
        if all_joined(&report.floorcast) && report.janus.as_ref().is_none_or(all_joined) {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        },
    )
}

#[derive(Args)]
struct SoakArgs {
    #[command(flatten)]
    base: FanoutArgs,
    /// Seconds between timeline points.
    #[arg(long, default_value_t = 60.0)]
    timeline_every: f64,
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

/// The scenario options common to the viewer scenarios; mints tokens and creates the session.
async fn fanout_options(a: &FanoutArgs) -> anyhow::Result<FanoutOptions> {
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
    opts.viewer_secret = a.secret.clone().filter(|_| !janus);
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
    Ok(opts)
}

fn write_json(path: &Option<PathBuf>, report: &impl serde::Serialize) -> anyhow::Result<()> {
    if let Some(path) = path {
        std::fs::write(path, serde_json::to_vec_pretty(report)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

async fn fanout_main(a: FanoutArgs, timeline_every: Option<f64>) -> anyhow::Result<ExitCode> {
    let mut opts = fanout_options(&a).await?;
    opts.timeline_every = timeline_every.map(|s| Duration::from_secs_f64(s.max(1.0)));
    let report = fanout::run(opts).await.context("fanout")?;
    print!("{}", fanout::render_table(&report));
    for p in &report.timeline {
        println!(
            "  t+{:>6.0}s  {:>8.0} pkt/s  loss {:.3} %  freezes {}  server {}  RSS {}",
            p.t_s,
            p.packets_per_second,
            p.loss_percent,
            p.video_freezes,
            p.server_cpu_seconds_per_second
                .map_or("n/a".into(), |c| format!("{c:.3} s/s")),
            p.server_rss_bytes.map_or("n/a".into(), |b| format!(
                "{:.1} MiB",
                b as f64 / 1_048_576.0
            )),
        );
    }
    write_json(&a.json, &report)?;
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

async fn churn_main(a: ChurnArgs) -> anyhow::Result<ExitCode> {
    let opts = fanout_options(&a.base).await?;
    let report = churn::run(opts, a.churn_per_second)
        .await
        .context("churn")?;
    print!("{}", churn::render_table(&report));
    write_json(&a.base.json, &report)?;
    if let Some(max) = a.base.max_loss
        && report.stayers_loss_percent > max
    {
        eprintln!(
            "loss {:.3} % above --max-loss {max} %",
            report.stayers_loss_percent
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(if report.joins_ok == 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

async fn captions_main(a: CaptionsArgs) -> anyhow::Result<ExitCode> {
    let opts = fanout_options(&a.base).await?;
    let captioner = match (&a.captioner_token, &a.base.secret) {
        (Some(t), _) => t.clone(),
        (None, Some(secret)) => token::mint(secret, "captioner", &a.base.session, "load-cart"),
        (None, None) => bail!("give --secret or --captioner-token"),
    };
    let report = captions::run(opts, &captioner, a.captions_per_second)
        .await
        .context("captions")?;
    print!("{}", captions::render_table(&report));
    write_json(&a.base.json, &report)?;
    Ok(
        if report.captions_posted == 0 || report.latency_ms.count == 0 {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        },
    )
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
    opts.hub_share = a.hub_share.clamp(0.0, 1.0);
    opts.withdraw_share = a.withdraw_share.clamp(0.0, 1.0);
    opts.watchers = a.watchers;
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

async fn attack_main(a: AttackArgs) -> anyhow::Result<ExitCode> {
    if a.create_session {
        create_session(&a.url, &a.session, &a.secret).await?;
    }
    let report = attack::run(AttackOptions {
        url: a.url.clone(),
        session: a.session.clone(),
        secret: a.secret.clone(),
        attack: match a.attack {
            AttackArg::StunSpoof => Attack::StunSpoof,
            AttackArg::OfferFlood => Attack::OfferFlood,
            AttackArg::PatchFlood => Attack::PatchFlood,
            AttackArg::PliSpam => Attack::PliSpam,
        },
        victims: a.victims,
        duration: Duration::from_secs_f64(a.duration.max(1.0)),
        server_pid: a.server_pid,
    })
    .await
    .context("attack")?;
    println!("{}", attack::render_table(&report));
    if let Some(path) = &a.json {
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Raises the soft open-files limit to the hard one: every viewer holds a socket.
fn raise_nofile_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read and write the struct given; failures are reported by
    // the return value and leave the limit as it was.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

fn main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    raise_nofile_limit();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?;
    match cli.scenario {
        Scenario::Fanout(a) => rt.block_on(fanout_main(a, None)),
        Scenario::Churn(a) => rt.block_on(churn_main(a)),
        Scenario::Captions(a) => rt.block_on(captions_main(a)),
        Scenario::Compare(a) => rt.block_on(compare_main(a)),
        Scenario::Limit(a) => rt.block_on(limit_main(a)),
        Scenario::Soak(a) => rt.block_on(fanout_main(a.base, Some(a.timeline_every))),
        Scenario::Hands(a) => rt.block_on(hands_main(a)),
        Scenario::Attack(a) => rt.block_on(attack_main(a)),
    }
}
