//! Hands: N distinct participants raise a hand as fast as the server takes them, with C
//! requests in flight, then a moderator grants the first hand. Reports raises/s and the
//! latency of each raise (p50/p99), the queue length the server then shows, the grant's
//! latency and — with `media` — grant → first speaker packet at a WHEP viewer.
//!
//! Tokens (one `viewer` per hand, distinct `sub`s) are minted before the clock starts, so
//! the figure is the server's, not HS256 signing. Requests go over HTTP/1.1 keep-alive: each
//! of the C workers sends its next raise as soon as the previous one answered, spread over a
//! few clients so no single connection pool is the bottleneck.
//!
//! The media measurement needs a session without a floor feed: the viewer cannot tell the
//! speaker's packets from the venue's (the SFU rewrites both onto the same SSRCs), so the
//! first packet after the grant must be the speaker's.
//!
//! A storm as conferences see it: `hub_share` of the hands are hubs (hub tokens, one hand
//! per hub, with a head-count), `withdraw_share` of the raised hands are then withdrawn by
//! their owners concurrently, and `watchers` light-mode viewers watch a floor feed through it
//! all, so the report says whether the storm cost the viewers anything (loss, freezes).
//!
//! The HTTP helpers ([`raise_all`], [`queue`], [`grant`], [`revoke`]) are also what the
//! server's floor tests drive it with.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use reqwest::header::{AUTHORIZATION, CONTENT_TYPE};
use reqwest::{Client, StatusCode};
use serde::Serialize;
use serde_json::Value;
use tokio::task::JoinSet;

use crate::peer::{Kinds, PeerError};
use crate::process_usage::{self, cpu_rate};
use crate::publisher::{Publisher, PublisherConfig};
use crate::stats::Summary;
use crate::token;
use crate::viewer::{Viewer, ViewerConfig};
use crate::whip::{self, SignalError};

/// Workers sharing one `Client` (and so one connection pool).
const WORKERS_PER_CLIENT: usize = 16;

/// A failed step of the scenario.
#[derive(Debug, thiserror::Error)]
pub enum HandsError {
    #[error("http: {0}")]
    Http(#[from] reqwest::Error),
    #[error("{what}: {status} {body}")]
    Status {
        what: &'static str,
        status: StatusCode,
        body: String,
    },
    #[error("{0}: unexpected answer {1}")]
    Shape(&'static str, String),
    #[error("peer: {0}")]
    Peer(#[from] PeerError),
    #[error("signalling: {0}")]
    Signal(#[from] SignalError),
    #[error("{0}")]
    Setup(String),
}

/// What to run.
#[derive(Debug, Clone)]
pub struct HandsOptions {
    /// Server base URL, e.g. `http://127.0.0.1:8080`.
    pub url: String,
    pub session: String,
    /// JWT secret: every token is minted here.
    pub secret: String,
    pub hands: usize,
    /// Raise requests in flight.
    pub concurrency: usize,
    /// Participants are named `{prefix}-{i}`; a fresh prefix per run keeps earlier runs'
    /// open hands from answering 409.
    pub name_prefix: String,
    /// Grant the first hand after the raises (and revoke it at the end).
    pub grant: bool,
    /// The grant's time limit, seconds.
    pub limit_s: u64,
    /// Measure grant → first speaker packet at a viewer (webrtc-crate peers).
    pub media: bool,
    /// Server process id, for its CPU during the raises.
    pub server_pid: Option<u32>,
    pub verbose: bool,
    /// Share (0..=1) of participants that are hubs.
    pub hub_share: f64,
    /// Share (0..=1) of raised hands withdrawn by their owners after the raises.
    pub withdraw_share: f64,
    /// Light-mode viewers watching a floor feed during the storm (not with `media`).
    pub watchers: usize,
}

impl HandsOptions {
    pub fn new(url: &str, session: &str, secret: &str) -> Self {
        Self {
            url: url.trim_end_matches('/').to_owned(),
            session: session.to_owned(),
            secret: secret.to_owned(),
            hands: 10_000,
            concurrency: 64,
            name_prefix: format!("hand-{:x}", token::unix_now()),
            grant: true,
            limit_s: 120,
            media: false,
            server_pid: None,
            verbose: false,
            hub_share: 0.0,
            withdraw_share: 0.0,
            watchers: 0,
        }
    }
}

/// Grant → media, measured from the moment the grant's answer arrived.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct MediaFigures {
    /// The speaker's WHIP POST answered (its offer was gathered before the grant).
    pub whip_answer_ms: f64,
    /// The speaker's ICE + DTLS completed.
    pub speaker_connected_ms: f64,
    /// The viewer received the speaker's first packet (audio or video).
    pub first_packet_ms: f64,
}

/// The result of one `hands` run, written with `--json`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct HandsReport {
    pub url: String,
    pub session: String,
    pub hands_requested: usize,
    pub concurrency: usize,
    /// Raises answered 201.
    pub raised: usize,
    pub failed: usize,
    /// Failures by `status error_code` (or transport error).
    pub errors: BTreeMap<String, usize>,
    /// First request sent → last answer received.
    pub duration_s: f64,
    pub raises_per_second: f64,
    /// Request sent → answer body read, per raise (201s only), milliseconds.
    pub raise_ms: Summary,
    /// Hands in `GET /queue` afterwards (before the grant).
    pub queue_length: usize,
    /// Every hand this run raised is in the queue.
    pub all_raised_in_queue: bool,
    /// `GET /queue` with all of them, milliseconds.
    pub queue_read_ms: f64,
    /// `POST /floor` answered, milliseconds.
    pub grant_ms: Option<f64>,
    pub media: Option<MediaFigures>,
    /// Server CPU seconds per second during the raises (with `server_pid`).
    pub server_cpu_seconds_per_second: Option<f64>,
    pub server_rss_bytes: Option<u64>,
    /// The generator's own CPU seconds per second during the raises.
    pub generator_cpu_seconds_per_second: f64,
    /// Hands raised by hub tokens.
    pub hub_hands: usize,
    /// Withdrawals answered 200, their latency, and whether the queue then held exactly
    /// the raised hands less the withdrawn ones.
    pub withdrawn: usize,
    pub withdraw_ms: Summary,
    pub queue_after_withdraw: Option<usize>,
    /// What the watchers saw from the start of the raises to the end of the withdrawals.
    pub watchers: Option<WatcherFigures>,
}

/// The viewers watching through the storm.
#[derive(Debug, Clone, Default, Serialize)]
pub struct WatcherFigures {
    pub viewers: usize,
    pub loss_percent: f64,
    pub video_freezes: u64,
    pub min_receive_mbps: f64,
}

/// One raised hand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RaisedHand {
    /// Index of the token in the list given to [`raise_all`].
    pub index: usize,
    pub id: u64,
    pub sub: String,
}

/// What [`raise_all`] saw.
#[derive(Debug, Clone, Default)]
pub struct RaiseResults {
    /// In the order the answers arrived.
    pub hands: Vec<RaisedHand>,
    /// Per 201, request → answer, milliseconds.
    pub latencies_ms: Vec<f64>,
    pub errors: BTreeMap<String, usize>,
    pub wall: Duration,
}

/// An HTTP client for the floor API (no proxy, bounded timeouts, keep-alive).
pub fn client() -> Client {
    Client::builder()
        .no_proxy()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(30))
        .tcp_nodelay(true)
        .build()
        .expect("reqwest client with static settings")
}

fn api(base: &str, session: &str, rest: &str) -> String {
    format!(
        "{}/api/sessions/{session}/{rest}",
        base.trim_end_matches('/')
    )
}

/// `status error_code` of a refusal, for counting.
fn failure_key(status: StatusCode, body: &str) -> String {
    match whip::error_code(body) {
        Some(code) => format!("{} {code}", status.as_u16()),
        None => status.as_u16().to_string(),
    }
}

/// Raises one hand per token, `concurrency` requests in flight; `body` is the JSON sent.
pub async fn raise_all(
    base: &str,
    session: &str,
    tokens: &[String],
    concurrency: usize,
    body: &str,
) -> RaiseResults {
    raise_all_with(base, session, tokens, concurrency, &[body.to_owned()]).await
}

/// [`raise_all`] with a body per token (`bodies[i]` for `tokens[i]`), or one for all.
pub async fn raise_all_with(
    base: &str,
    session: &str,
    tokens: &[String],
    concurrency: usize,
    bodies: &[String],
) -> RaiseResults {
    let url: Arc<str> = api(base, session, "hands").into();
    let tokens: Arc<[String]> = tokens.into();
    let body: Arc<[String]> = bodies.into();
    let next = Arc::new(AtomicUsize::new(0));
    let workers = concurrency.clamp(1, tokens.len().max(1));
    let clients: Vec<Client> = (0..workers.div_ceil(WORKERS_PER_CLIENT))
        .map(|_| client())
        .collect();
    let start = Instant::now();
    let mut set = JoinSet::new();
    for w in 0..workers {
        let client = clients[w / WORKERS_PER_CLIENT].clone();
        let (url, tokens, body, next) = (
            Arc::clone(&url),
            Arc::clone(&tokens),
            Arc::clone(&body),
            Arc::clone(&next),
        );
        set.spawn(async move {
            let mut out = RaiseResults::default();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(token) = tokens.get(i) else { break };
                let t0 = Instant::now();
                let sent = client
                    .post(&*url)
                    .header(AUTHORIZATION, format!("Bearer {token}"))
                    .header(CONTENT_TYPE, "application/json")
                    .body(body[if body.len() == 1 { 0 } else { i }].clone())
                    .send()
                    .await;
                let answer = match sent {
                    Ok(resp) => {
                        let status = resp.status();
                        resp.text().await.map(|text| (status, text))
                    }
                    Err(e) => Err(e),
                };
                let elapsed = t0.elapsed();
                match answer {
                    Ok((StatusCode::CREATED, text)) => {
                        let hand = serde_json::from_str::<Value>(&text)
                            .ok()
                            .and_then(|v| v.get("hand").cloned());
                        let id = hand.as_ref().and_then(|h| h["id"].as_u64());
                        let sub = hand.as_ref().and_then(|h| h["sub"].as_str());
                        match (id, sub) {
                            (Some(id), Some(sub)) => {
                                out.latencies_ms.push(elapsed.as_secs_f64() * 1000.0);
                                out.hands.push(RaisedHand {
                                    index: i,
                                    id,
                                    sub: sub.to_owned(),
                                });
                            }
                            _ => *out.errors.entry("201 without hand".into()).or_default() += 1,
                        }
                    }
                    Ok((status, text)) => {
                        *out.errors.entry(failure_key(status, &text)).or_default() += 1;
                    }
                    Err(e) => {
                        let key = if e.is_timeout() {
                            "timeout".to_owned()
                        } else {
                            "transport error".to_owned()
                        };
                        *out.errors.entry(key).or_default() += 1;
                    }
                }
            }
            out
        });
    }
    let mut all = RaiseResults::default();
    while let Some(r) = set.join_next().await {
        let r = r.expect("raise worker does not panic");
        all.hands.extend(r.hands);
        all.latencies_ms.extend(r.latencies_ms);
        for (k, n) in r.errors {
            *all.errors.entry(k).or_default() += n;
        }
    }
    all.wall = start.elapsed();
    all
}

async fn json_call(
    what: &'static str,
    req: reqwest::RequestBuilder,
    expect: StatusCode,
) -> Result<Value, HandsError> {
    let resp = req.send().await?;
    let status = resp.status();
    let body = resp.text().await?;
    if status != expect {
        return Err(HandsError::Status { what, status, body });
    }
    serde_json::from_str(&body).map_err(|_| HandsError::Shape(what, body))
}

/// `GET /api/sessions/{session}/queue`.
pub async fn queue(
    client: &Client,
    base: &str,
    session: &str,
    token: &str,
) -> Result<Value, HandsError> {
    json_call(
        "GET queue",
        client.get(api(base, session, "queue")).bearer_auth(token),
        StatusCode::OK,
    )
    .await
}

/// The hand ids of a queue JSON, in queue order.
pub fn queue_ids(queue: &Value) -> Vec<u64> {
    queue["hands"]
        .as_array()
        .map(|hands| hands.iter().filter_map(|h| h["id"].as_u64()).collect())
        .unwrap_or_default()
}

/// `POST /api/sessions/{session}/floor` (moderator): the Turn JSON.
pub async fn grant(
    client: &Client,
    base: &str,
    session: &str,
    moderator: &str,
    hand: Option<u64>,
    limit_s: Option<u64>,
) -> Result<Value, HandsError> {
    let mut body = serde_json::Map::new();
    if let Some(h) = hand {
        body.insert("hand".into(), h.into());
    }
    if let Some(l) = limit_s {
        body.insert("limit_s".into(), l.into());
    }
    json_call(
        "POST floor",
        client
            .post(api(base, session, "floor"))
            .bearer_auth(moderator)
            .json(&body),
        StatusCode::CREATED,
    )
    .await
}

/// `DELETE /api/sessions/{session}/floor` (moderator: revoke).
pub async fn revoke(
    client: &Client,
    base: &str,
    session: &str,
    moderator: &str,
) -> Result<Value, HandsError> {
    json_call(
        "DELETE floor",
        client
            .delete(api(base, session, "floor"))
            .bearer_auth(moderator),
        StatusCode::OK,
    )
    .await
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Runs the scenario. Raise failures are counted in the report, not returned; `Err` when a
/// step after the raises fails (queue, grant, media).
pub async fn run(opts: HandsOptions) -> Result<HandsReport, HandsError> {
    let names: Vec<String> = (0..opts.hands)
        .map(|i| format!("{}-{i}", opts.name_prefix))
        .collect();
    let hub_every = share_every(opts.hub_share);
    let is_hub = |i: usize| hub_every > 0 && i % hub_every == hub_every - 1;
    let tokens: Vec<String> = names
        .iter()
        .enumerate()
        .map(|(i, n)| {
            if is_hub(i) {
                let mut c = token::Claims::new("hub", &opts.session, n, Duration::from_secs(3600));
                c.hub = Some(format!("{n}-hub"));
                token::sign(&c, &opts.secret).expect("HS256 signing")
            } else {
                token::mint(&opts.secret, "viewer", &opts.session, n)
            }
        })
        .collect();
    let moderator = token::mint(
        &opts.secret,
        "moderator",
        &opts.session,
        &format!("{}-moderator", opts.name_prefix),
    );
    let http = client();
    let mut report = HandsReport {
        url: opts.url.clone(),
        session: opts.session.clone(),
        hands_requested: opts.hands,
        concurrency: opts.concurrency,
        ..Default::default()
    };

    // The viewer joins before the raises, so its handshake is not part of the figures.
    let watcher = if opts.media && opts.grant {
        let t = token::mint(
            &opts.secret,
            "viewer",
            &opts.session,
            &format!("{}-watch", opts.name_prefix),
        );
        let v = Viewer::whep(ViewerConfig::default(), &http, &opts.url, &opts.session, &t).await?;
        tokio::time::sleep(Duration::from_millis(500)).await;
        if v.stats().packets() > 0 {
            v.close().await;
            return Err(HandsError::Setup(
                "--media needs a session without a floor feed: the viewer already receives \
                 media, so the speaker's first packet cannot be told apart"
                    .into(),
            ));
        }
        Some(v)
    } else {
        None
    };

    if opts.verbose {
        eprintln!(
            "raising {} hands, {} in flight…",
            opts.hands, opts.concurrency
        );
    }
    let crowd = if opts.watchers > 0 && !opts.media {
        Some(Watchers::start(&opts, &http).await?)
    } else {
        None
    };
    let crowd_a = crowd.as_ref().map(Watchers::stats);
    let pid = opts.server_pid.map(|p| p.to_string());
    let server_a = pid.as_deref().and_then(process_usage::sample);
    let self_a = process_usage::sample("self");
    // Only hubs report a head-count (the server refuses it from anyone else).
    let bodies: Vec<String> = (0..tokens.len())
        .map(|i| {
            if is_hub(i) {
                r#"{"topic":"load test","head_count":12}"#.to_owned()
            } else {
                r#"{"topic":"load test"}"#.to_owned()
            }
        })
        .collect();
    let results =
        raise_all_with(&opts.url, &opts.session, &tokens, opts.concurrency, &bodies).await;
    report.hub_hands = results.hands.iter().filter(|h| is_hub(h.index)).count();
    let server_b = pid.as_deref().and_then(process_usage::sample);
    let self_b = process_usage::sample("self");
    if let (Some(a), Some(b)) = (server_a, server_b) {
        report.server_cpu_seconds_per_second = Some(cpu_rate(&a, &b));
        report.server_rss_bytes = Some(b.rss_bytes);
    }
    if let (Some(a), Some(b)) = (self_a, self_b) {
        report.generator_cpu_seconds_per_second = cpu_rate(&a, &b);
    }
    report.raised = results.hands.len();
    report.failed = opts.hands - results.hands.len();
    report.errors = results.errors.clone();
    report.duration_s = results.wall.as_secs_f64();
    report.raises_per_second = if report.duration_s > 0.0 {
        report.raised as f64 / report.duration_s
    } else {
        0.0
    };
    report.raise_ms = Summary::of(&results.latencies_ms);

    let t = Instant::now();
    let q = queue(&http, &opts.url, &opts.session, &moderator).await?;
    report.queue_read_ms = ms(t.elapsed());
    let mut ids = queue_ids(&q);
    report.queue_length = ids.len();
    let in_queue: std::collections::HashSet<u64> = ids.iter().copied().collect();
    report.all_raised_in_queue = results.hands.iter().all(|h| in_queue.contains(&h.id));

    let withdraw_every = share_every(opts.withdraw_share);
    if withdraw_every > 0 {
        let leaving: Vec<(String, u64)> = results
            .hands
            .iter()
            .enumerate()
            .filter(|(k, _)| k % withdraw_every == withdraw_every - 1)
            .map(|(_, h)| (tokens[h.index].clone(), h.id))
            .collect();
        let (done, latencies, errors) =
            withdraw_all(&opts.url, &opts.session, leaving, opts.concurrency).await;
        report.withdrawn = done;
        report.withdraw_ms = Summary::of(&latencies);
        for e in errors {
            *report.errors.entry(e).or_default() += 1;
        }
        let q = queue(&http, &opts.url, &opts.session, &moderator).await?;
        ids = queue_ids(&q);
        report.queue_after_withdraw = Some(ids.len());
    }
    if let (Some(crowd), Some(a)) = (crowd, crowd_a) {
        report.watchers = Some(crowd.figures(&a));
        crowd.close().await;
    }

    if !opts.grant || ids.is_empty() {
        if let Some(v) = watcher {
            v.close().await;
        }
        return Ok(report);
    }
    let first = ids[0];
    let by_id: HashMap<u64, &RaisedHand> = results.hands.iter().map(|h| (h.id, h)).collect();

    // The speaker's offer is ready before the grant (a browser has its camera open too).
    let speaker = match (&watcher, by_id.get(&first)) {
        (Some(_), Some(h)) => {
            let mut p = Publisher::new(PublisherConfig {
                kinds: Kinds::BOTH,
                ..PublisherConfig::default()
            })
            .await?;
            let offer = p.offer().await?;
            Some((p, offer, tokens[h.index].clone()))
        }
        (Some(_), None) => {
            return Err(HandsError::Setup(format!(
                "the first hand ({first}) was not raised by this run: use a fresh session"
            )));
        }
        _ => None,
    };

    let t = Instant::now();
    grant(
        &http,
        &opts.url,
        &opts.session,
        &moderator,
        Some(first),
        Some(opts.limit_s),
    )
    .await?;
    let granted = Instant::now();
    report.grant_ms = Some(ms(granted - t));

    if let (Some(viewer), Some((mut publisher, offer, speaker_token))) = (watcher, speaker) {
        viewer.mark_start();
        let figures = async {
            let resource =
                whip::publish(&http, &opts.url, &opts.session, &speaker_token, offer).await?;
            let whip_answer_ms = ms(granted.elapsed());
            publisher.accept_answer(resource.answer.clone()).await?;
            publisher.start().await?;
            let speaker_connected_ms = ms(granted.elapsed());
            let got = viewer
                .wait_until(Duration::from_secs(10), |s| s.packets() > 0)
                .await;
            let s = viewer.stats();
            let first = [s.audio.first_packet_after, s.video.first_packet_after]
                .into_iter()
                .flatten()
                .min();
            let _ = resource.delete().await;
            match (got, first) {
                (true, Some(d)) => Ok(MediaFigures {
                    whip_answer_ms,
                    speaker_connected_ms,
                    first_packet_ms: ms(d),
                }),
                _ => Err(HandsError::Setup(format!(
                    "the viewer got no speaker packet within 10 s: {s:?}"
                ))),
            }
        }
        .await;
        publisher.close().await;
        viewer.close().await;
        revoke(&http, &opts.url, &opts.session, &moderator).await?;
        report.media = Some(figures?);
    } else {
        revoke(&http, &opts.url, &opts.session, &moderator).await?;
    }
    Ok(report)
}

/// `1/share` rounded: every that-many-th item is picked (0: none).
fn share_every(share: f64) -> usize {
    if share > 0.0 {
        (1.0 / share.min(1.0)).round().max(1.0) as usize
    } else {
        0
    }
}

/// Withdraws each `(owner token, hand)` with `DELETE …/hands/{id}`, `concurrency` at a
/// time. Returns how many answered 200, their latencies (ms) and the failures.
pub async fn withdraw_all(
    base: &str,
    session: &str,
    hands: Vec<(String, u64)>,
    concurrency: usize,
) -> (usize, Vec<f64>, Vec<String>) {
    let gate = Arc::new(tokio::sync::Semaphore::new(concurrency.max(1)));
    let http = client();
    let mut set = JoinSet::new();
    for (token, id) in hands {
        let (gate, http, url) = (
            Arc::clone(&gate),
            http.clone(),
            api(base, session, &format!("hands/{id}")),
        );
        set.spawn(async move {
            let _permit = gate.acquire_owned().await;
            let t0 = Instant::now();
            let r = http
                .delete(&url)
                .header(AUTHORIZATION, format!("Bearer {token}"))
                .send()
                .await;
            match r {
                Ok(resp) if resp.status() == StatusCode::OK => Ok(ms(t0.elapsed())),
                Ok(resp) => {
                    let status = resp.status();
                    let body = resp.text().await.unwrap_or_default();
                    Err(format!("withdraw {}", failure_key(status, &body)))
                }
                Err(e) => Err(format!("withdraw: {e}")),
            }
        });
    }
    let (mut done, mut latencies, mut errors) = (0, Vec::new(), Vec::new());
    while let Some(r) = set.join_next().await {
        match r {
            Ok(Ok(ms)) => {
                done += 1;
                latencies.push(ms);
            }
            Ok(Err(e)) => errors.push(e),
            Err(e) => errors.push(format!("withdraw task: {e}")),
        }
    }
    (done, latencies, errors)
}

/// A floor publisher and light viewers that watch while the storm runs.
struct Watchers {
    publisher: Publisher,
    viewers: Vec<crate::light::LightViewer>,
}

impl Watchers {
    async fn start(opts: &HandsOptions, http: &Client) -> Result<Self, HandsError> {
        let venue = token::mint(&opts.secret, "venue", &opts.session, "storm-venue");
        let watcher = token::mint(&opts.secret, "viewer", &opts.session, "storm-watcher");
        let publisher = Publisher::whip(
            PublisherConfig::default(),
            http,
            &opts.url,
            &opts.session,
            &venue,
        )
        .await?;
        let target = crate::light::Target::Whep {
            url: opts.url.clone(),
            session: opts.session.clone(),
            token: watcher,
        };
        let mut viewers = Vec::new();
        for _ in 0..opts.watchers {
            let v = crate::light::LightViewer::connect(Default::default(), http, &target)
                .await
                .map_err(|e| HandsError::Setup(format!("watcher: {e}")))?;
            viewers.push(v);
        }
        for v in &viewers {
            if !v
                .wait_until(Duration::from_secs(10), |s| {
                    s.first_keyframe_after.is_some()
                })
                .await
            {
                return Err(HandsError::Setup("a watcher got no keyframe".into()));
            }
        }
        Ok(Watchers { publisher, viewers })
    }

    fn stats(&self) -> (Instant, Vec<crate::viewer::ViewerStats>) {
        (
            Instant::now(),
            self.viewers.iter().map(|v| v.stats()).collect(),
        )
    }

    fn figures(&self, before: &(Instant, Vec<crate::viewer::ViewerStats>)) -> WatcherFigures {
        let (then, before) = before;
        let (_, after) = self.stats();
        let secs = then.elapsed().as_secs_f64().max(1e-3);
        let (mut lost, mut expected, mut freezes) = (0u64, 0u64, 0u64);
        let mut min_mbps = f64::MAX;
        for (a, b) in before.iter().zip(&after) {
            for (x, y) in [(&a.audio, &b.audio), (&a.video, &b.video)] {
                lost += y.seq.lost.saturating_sub(x.seq.lost);
                expected += y.seq.expected.saturating_sub(x.seq.expected);
            }
            freezes += b.video.freezes - a.video.freezes;
            let bits = ((b.audio.bytes + b.video.bytes) - (a.audio.bytes + a.video.bytes)) * 8;
            min_mbps = min_mbps.min(bits as f64 / secs / 1e6);
        }
        WatcherFigures {
            viewers: self.viewers.len(),
            loss_percent: if expected == 0 {
                0.0
            } else {
                lost as f64 * 100.0 / expected as f64
            },
            video_freezes: freezes,
            min_receive_mbps: if min_mbps == f64::MAX { 0.0 } else { min_mbps },
        }
    }

    async fn close(self) {
        for v in self.viewers {
            v.close().await;
        }
        self.publisher.close().await;
    }
}

/// The human table printed by the binary.
pub fn render_table(r: &HandsReport) -> String {
    let mut out = String::new();
    let mut row = |k: &str, v: String| out.push_str(&format!("{k:<28} {v}\n"));
    row(
        "hands",
        format!(
            "{} raised / {} requested, {} in flight",
            r.raised, r.hands_requested, r.concurrency
        ),
    );
    if !r.errors.is_empty() {
        let list: Vec<String> = r.errors.iter().map(|(k, n)| format!("{k} ×{n}")).collect();
        row("failures", list.join(", "));
    }
    row("raises/s", format!("{:.0}", r.raises_per_second));
    if r.hub_hands > 0 {
        row("of which hubs", r.hub_hands.to_string());
    }
    if let Some(q) = r.queue_after_withdraw {
        row(
            "withdrawn",
            format!(
                "{} (p50 {:.1} / p99 {:.1} ms); queue then {q}",
                r.withdrawn, r.withdraw_ms.p50, r.withdraw_ms.p99
            ),
        );
    }
    if let Some(w) = &r.watchers {
        row(
            "watchers during the storm",
            format!(
                "{} viewers: loss {:.3} %, {} freezes, ≥ {:.2} Mbit/s each",
                w.viewers, w.loss_percent, w.video_freezes, w.min_receive_mbps
            ),
        );
    }
    row(
        "raise latency ms",
        format!(
            "p50 {:.2}  p99 {:.2}  max {:.2}",
            r.raise_ms.p50, r.raise_ms.p99, r.raise_ms.max
        ),
    );
    row(
        "queue",
        format!(
            "{} hands ({}), read in {:.1} ms",
            r.queue_length,
            if r.all_raised_in_queue {
                "all raised present"
            } else {
                "SOME RAISED HANDS MISSING"
            },
            r.queue_read_ms
        ),
    );
    if let Some(g) = r.grant_ms {
        row("grant ms", format!("{g:.2}"));
    }
    if let Some(m) = &r.media {
        row(
            "grant → speaker media ms",
            format!(
                "WHIP answer {:.0}, connected {:.0}, first packet at viewer {:.0}",
                m.whip_answer_ms, m.speaker_connected_ms, m.first_packet_ms
            ),
        );
    }
    if let Some(cpu) = r.server_cpu_seconds_per_second {
        row("server CPU s/s", format!("{cpu:.3}"));
    }
    if let Some(rss) = r.server_rss_bytes {
        row("server RSS", format!("{:.1} MiB", rss as f64 / 1_048_576.0));
    }
    row(
        "generator CPU s/s",
        format!("{:.3}", r.generator_cpu_seconds_per_second),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_ids_in_order() {
        let q = serde_json::json!({"hands": [{"id": 3}, {"id": 1}, {"id": 2}]});
        assert_eq!(queue_ids(&q), vec![3, 1, 2]);
        assert!(queue_ids(&serde_json::json!({})).is_empty());
    }

    #[test]
    fn failures_are_keyed_by_status_and_code() {
        assert_eq!(
            failure_key(
                StatusCode::CONFLICT,
                r#"{"error":"hand_already_open","message":"x"}"#
            ),
            "409 hand_already_open"
        );
        assert_eq!(failure_key(StatusCode::BAD_GATEWAY, "oops"), "502");
    }

    #[test]
    fn table_names_the_figures() {
        let r = HandsReport {
            raised: 10,
            hands_requested: 10,
            raises_per_second: 1234.0,
            all_raised_in_queue: true,
            ..Default::default()
        };
        let t = render_table(&r);
        assert!(t.contains("raises/s") && t.contains("1234"), "{t}");
        assert!(t.contains("all raised present"), "{t}");
    }
}
