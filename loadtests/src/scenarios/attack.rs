//! One viewer attacking the others: a live floor feed, `victims` webrtc-rs viewers (each
//! with its own token), a bystander polling `/healthz`, and one attacker with an ordinary
//! viewer token doing one of the attacks of issue 16 for `duration`:
//!
//! - `stun-spoof`: unsigned STUN binding requests naming the attacker's own ICE session,
//!   sent from the publisher's address (forged with a raw socket; needs root), so an SFU
//!   that learns addresses without checking MESSAGE-INTEGRITY sends the floor feed's
//!   packets to the attacker's peer;
//! - `offer-flood`: WHEP offers from one token, as fast as 16 requests in flight allow;
//! - `patch-flood`: trickle PATCHes of 64 candidates each on the attacker's resource;
//! - `pli-spam`: a PLI from the attacker's viewer every 20 ms.
//!
//! The report says what the attacker managed (requests, answers by status) and what the
//! victims saw during the attack: packet loss, freezes, the publisher's keyframe requests,
//! the bystander's `/healthz` latency, and whether a newcomer could still join.

use std::collections::BTreeMap;
use std::net::{SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use reqwest::Client;
use serde::Serialize;
use tokio::sync::Mutex;
use tokio::task::JoinSet;

use crate::hostile::{SpoofingSocket, forged_binding_request, ice_ufrag};
use crate::process_usage::sample;
use crate::publisher::{Publisher, PublisherConfig};
use crate::stats::Summary;
use crate::synthetic::SplitMix64;
use crate::token;
use crate::viewer::{Viewer, ViewerConfig, ViewerStats};
use crate::whip;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Attack {
    StunSpoof,
    OfferFlood,
    PatchFlood,
    PliSpam,
}

impl Attack {
    pub fn as_str(self) -> &'static str {
        match self {
            Attack::StunSpoof => "stun-spoof",
            Attack::OfferFlood => "offer-flood",
            Attack::PatchFlood => "patch-flood",
            Attack::PliSpam => "pli-spam",
        }
    }
}

#[derive(Clone, Debug)]
pub struct AttackOptions {
    pub url: String,
    /// An existing session (the caller creates it).
    pub session: String,
    /// Mints the venue, victim, attacker and newcomer tokens.
    pub secret: String,
    pub attack: Attack,
    pub victims: usize,
    pub duration: Duration,
    /// The server's process id, for its media thread's CPU during the attack (same machine).
    pub server_pid: Option<u32>,
}

#[derive(Debug, Clone, Serialize)]
pub struct AttackReport {
    pub attack: Attack,
    pub duration_s: f64,
    /// Requests (or datagrams, or PLIs) the attacker sent, and per second.
    pub attacker_sent: u64,
    pub attacker_rate_per_s: f64,
    /// The attacker's answers by HTTP status (`"201"`, `"429 too_many_creations"`, …).
    pub attacker_answers: BTreeMap<String, u64>,
    pub victims: usize,
    /// Victims' packets lost during the attack, in percent of those expected.
    pub victim_loss_percent: f64,
    /// Video freezes (gaps over 500 ms) summed over the victims, and their total length.
    pub victim_freezes: u64,
    pub victim_frozen_ms: f64,
    /// Keyframe requests the publisher received during the attack, per second.
    pub publisher_keyframe_requests_per_s: f64,
    /// The bystander's `/healthz` round trips during the attack.
    pub healthz_ms: Summary,
    /// CPU seconds per second of the server's media thread(s) during the attack, when the
    /// server's pid was given (1.0 = one core busy: every peer of the node waits).
    pub media_thread_cpu: Option<f64>,
    /// A viewer with its own token joining mid-attack: time to its first keyframe, or why not.
    pub newcomer_join_ms: Option<f64>,
    pub newcomer_error: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum AttackError {
    #[error("floor publisher: {0}")]
    Publisher(String),
    #[error("victim viewer: {0}")]
    Victim(String),
    #[error("attacker setup: {0}")]
    Setup(String),
}

type Answers = Arc<Mutex<BTreeMap<String, u64>>>;

pub async fn run(opts: AttackOptions) -> Result<AttackReport, AttackError> {
    let client = whip::http_client();
    let mint = |role: &str, name: &str| token::mint(&opts.secret, role, &opts.session, name);

    // The floor feed, with its own address known (the spoofing attack forges it).
    let mut publisher = Publisher::new(PublisherConfig::default())
        .await
        .map_err(|e| AttackError::Publisher(e.to_string()))?;
    let offer = publisher
        .offer()
        .await
        .map_err(|e| AttackError::Publisher(e.to_string()))?;
    let publisher_addr = host_candidate(&offer);
    let resource = whip::publish(
        &client,
        &opts.url,
        &opts.session,
        &mint("venue", "attack-venue"),
        offer,
    )
    .await
    .map_err(|e| AttackError::Publisher(e.to_string()))?;
    publisher
        .accept_answer(resource.answer.clone())
        .await
        .map_err(|e| AttackError::Publisher(e.to_string()))?;
    publisher
        .start()
        .await
        .map_err(|e| AttackError::Publisher(e.to_string()))?;

    let mut victims = Vec::new();
    for i in 0..opts.victims {
        let v = Viewer::whep(
            ViewerConfig::default(),
            &client,
            &opts.url,
            &opts.session,
            &mint("viewer", &format!("victim-{i}")),
        )
        .await
        .map_err(|e| AttackError::Victim(e.to_string()))?;
        victims.push(v);
    }
    for v in &victims {
        if !v
            .wait_until(Duration::from_secs(10), |s| s.video.packets > 30)
            .await
        {
            return Err(AttackError::Victim(format!("no video: {:?}", v.stats())));
        }
    }
    let attacker_token = mint("viewer", "attacker");
    let attacker = Viewer::whep(
        ViewerConfig::default(),
        &client,
        &opts.url,
        &opts.session,
        &attacker_token,
    )
    .await
    .map_err(|e| AttackError::Setup(e.to_string()))?;
    let attacker_resource = attacker
        .resource()
        .ok_or_else(|| AttackError::Setup("the attacker has no resource".into()))?;
    let attacker_answer = attacker_resource.answer.clone();
    let attacker_url = attacker_resource.url.clone();
    let template_offer = {
        let mut v = Viewer::new(ViewerConfig::default())
            .await
            .map_err(|e| AttackError::Setup(e.to_string()))?;
        let offer = v
            .offer()
            .await
            .map_err(|e| AttackError::Setup(e.to_string()))?;
        v.close().await;
        offer
    };

    // The measured window.
    for v in &victims {
        v.forget_gaps();
    }
    let before: Vec<ViewerStats> = victims.iter().map(Viewer::stats).collect();
    let keyframes_before = publisher.stats().keyframe_requests();
    let media_threads = opts.server_pid.map(media_threads).unwrap_or_default();
    let cpu_before = media_cpu(&media_threads);
    let stop = Arc::new(AtomicBool::new(false));
    let answers: Answers = Arc::default();
    let started = Instant::now();
    let bystander = tokio::spawn(poll_healthz(client.clone(), opts.url.clone(), stop.clone()));
    let newcomer = {
        let (client, url, session) = (client.clone(), opts.url.clone(), opts.session.clone());
        let token = mint("viewer", "newcomer");
        let delay = opts.duration / 2;
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            join_time(&client, &url, &session, &token).await
        })
    };
    let sent = match opts.attack {
        Attack::StunSpoof => {
            let ufrag = ice_ufrag(&attacker_answer)
                .ok_or_else(|| AttackError::Setup("no ice-ufrag in the answer".into()))?;
            let media = host_candidate(&attacker_answer);
            let (Some(SocketAddr::V4(from)), Some(SocketAddr::V4(to))) = (publisher_addr, media)
            else {
                return Err(AttackError::Setup(
                    "no IPv4 host candidates to forge (publisher or server)".into(),
                ));
            };
            stun_spoof(from, to, &ufrag, opts.duration).await?
        }
        Attack::OfferFlood => {
            offer_flood(
                &client,
                &opts,
                &attacker_token,
                &template_offer,
                &answers,
                opts.duration,
            )
            .await
        }
        Attack::PatchFlood => {
            patch_flood(
                &client,
                &attacker_url,
                &attacker_token,
                &answers,
                opts.duration,
            )
            .await
        }
        Attack::PliSpam => {
            let mut n = 0;
            while started.elapsed() < opts.duration {
                if attacker.send_pli().await {
                    n += 1;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            n
        }
    };
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let healthz = bystander.await.unwrap_or_default();
    let newcomer = newcomer.await.unwrap_or_else(|e| Err(e.to_string()));
    let after: Vec<ViewerStats> = victims.iter().map(Viewer::stats).collect();
    let keyframes = publisher.stats().keyframe_requests() - keyframes_before;
    let media_thread_cpu = match (cpu_before, media_cpu(&media_threads)) {
        (Some(a), Some(b)) => Some((b - a).as_secs_f64() / elapsed.as_secs_f64()),
        _ => None,
    };

    let (mut lost, mut expected, mut freezes, mut frozen_ms) = (0u64, 0u64, 0u64, 0.0);
    for (b, a) in before.iter().zip(&after) {
        for (kb, ka) in [(&b.audio, &a.audio), (&b.video, &a.video)] {
            lost += ka.seq.lost.saturating_sub(kb.seq.lost);
            expected += ka.seq.expected.saturating_sub(kb.seq.expected);
        }
        freezes += a.video.freezes - b.video.freezes;
        frozen_ms += a.video.frozen_ms - b.video.frozen_ms;
    }
    let answers = answers.lock().await.clone();
    for v in victims {
        v.close().await;
    }
    attacker.close().await;
    publisher.close().await;
    let secs = elapsed.as_secs_f64();
    Ok(AttackReport {
        attack: opts.attack,
        duration_s: secs,
        attacker_sent: sent,
        attacker_rate_per_s: sent as f64 / secs,
        attacker_answers: answers,
        victims: opts.victims,
        victim_loss_percent: if expected == 0 {
            100.0
        } else {
            lost as f64 * 100.0 / expected as f64
        },
        victim_freezes: freezes,
        victim_frozen_ms: frozen_ms,
        publisher_keyframe_requests_per_s: keyframes as f64 / secs,
        healthz_ms: Summary::of(&healthz),
        media_thread_cpu,
        newcomer_join_ms: newcomer.as_ref().ok().copied(),
        newcomer_error: newcomer.err(),
    })
}

/// `/proc` paths (`<pid>/task/<tid>`) of the server's media threads (`floorcast-media*`).
fn media_threads(pid: u32) -> Vec<String> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .filter_map(Result::ok)
        .filter(|t| {
            std::fs::read_to_string(t.path().join("comm"))
                .is_ok_and(|c| c.trim_start().starts_with("floorcast-media"))
        })
        .map(|t| format!("{pid}/task/{}", t.file_name().to_string_lossy()))
        .collect()
}

/// Their CPU time so far, summed; `None` without any.
fn media_cpu(threads: &[String]) -> Option<Duration> {
    let samples: Vec<_> = threads.iter().filter_map(|t| sample(t)).collect();
    (!samples.is_empty()).then(|| samples.iter().map(|s| s.cpu).sum())
}

/// The first IPv4 host candidate of an SDP (the address that party sends from).
fn host_candidate(sdp: &str) -> Option<SocketAddr> {
    sdp.lines().find_map(|l| {
        let f: Vec<&str> = l.trim().strip_prefix("a=candidate:")?.split(' ').collect();
        if f.len() < 8 || !f[2].eq_ignore_ascii_case("udp") || f[7] != "host" {
            return None;
        }
        let addr = SocketAddr::new(f[4].parse().ok()?, f[5].parse().ok()?);
        addr.is_ipv4().then_some(addr)
    })
}

async fn stun_spoof(
    from: SocketAddrV4,
    to: SocketAddrV4,
    ufrag: &str,
    duration: Duration,
) -> Result<u64, AttackError> {
    let socket = SpoofingSocket::new()
        .map_err(|e| AttackError::Setup(format!("raw socket (needs root): {e}")))?;
    let mut rng = SplitMix64::from_entropy();
    let username = format!("{ufrag}:attk");
    let started = Instant::now();
    let mut sent = 0;
    while started.elapsed() < duration {
        let forged = forged_binding_request(&mut rng, &username);
        if socket.send(from, to, &forged).is_ok() {
            sent += 1;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(sent)
}

async fn count(answers: &Answers, resp: Result<reqwest::Response, reqwest::Error>) {
    let key = match resp {
        Ok(r) => {
            let status = r.status().as_u16();
            let body = r.text().await.unwrap_or_default();
            match whip::error_code(&body) {
                Some(code) => format!("{status} {code}"),
                None => status.to_string(),
            }
        }
        Err(e) if e.is_timeout() => "timeout".into(),
        Err(_) => "connection error".into(),
    };
    *answers.lock().await.entry(key).or_default() += 1;
}

async fn offer_flood(
    client: &Client,
    opts: &AttackOptions,
    token: &str,
    offer: &str,
    answers: &Answers,
    duration: Duration,
) -> u64 {
    let endpoint = format!("{}/whep/{}", opts.url.trim_end_matches('/'), opts.session);
    let deadline = Instant::now() + duration;
    let mut tasks = JoinSet::new();
    for _ in 0..16 {
        let (client, endpoint, token, offer, answers) = (
            client.clone(),
            endpoint.clone(),
            token.to_owned(),
            offer.to_owned(),
            answers.clone(),
        );
        tasks.spawn(async move {
            let mut n = 0u64;
            while Instant::now() < deadline {
                let resp = client
                    .post(&endpoint)
                    .bearer_auth(&token)
                    .header("content-type", "application/sdp")
                    .body(offer.clone())
                    .send()
                    .await;
                count(&answers, resp).await;
                n += 1;
            }
            n
        });
    }
    tasks.join_all().await.into_iter().sum()
}

async fn patch_flood(
    client: &Client,
    resource: &reqwest::Url,
    token: &str,
    answers: &Answers,
    duration: Duration,
) -> u64 {
    // No ice-ufrag: a continuation of the resource's ICE session, not a restart.
    let mut frag = String::from("m=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:0\r\n");
    for i in 0..64u32 {
        frag.push_str(&format!(
            "a=candidate:{i} 1 udp {} 10.{}.{}.{} {} typ host\r\n",
            2_113_937_151 - i,
            i / 250,
            i % 250,
            1 + i % 200,
            20_000 + i
        ));
    }
    let deadline = Instant::now() + duration;
    let mut tasks = JoinSet::new();
    for _ in 0..4 {
        let (client, url, token, frag, answers) = (
            client.clone(),
            resource.clone(),
            token.to_owned(),
            frag.clone(),
            answers.clone(),
        );
        tasks.spawn(async move {
            let mut n = 0u64;
            while Instant::now() < deadline {
                let resp = client
                    .patch(url.clone())
                    .bearer_auth(&token)
                    .header("content-type", "application/trickle-ice-sdpfrag")
                    .body(frag.clone())
                    .send()
                    .await;
                count(&answers, resp).await;
                n += 1;
            }
            n
        });
    }
    tasks.join_all().await.into_iter().sum()
}

/// `/healthz` every 100 ms until `stop`; round trips in milliseconds (a failure counts as
/// the 5 s timeout).
async fn poll_healthz(client: Client, url: String, stop: Arc<AtomicBool>) -> Vec<f64> {
    let url = format!("{}/healthz", url.trim_end_matches('/'));
    let mut out = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let t = Instant::now();
        let ok = tokio::time::timeout(Duration::from_secs(5), client.get(&url).send())
            .await
            .is_ok_and(|r| r.is_ok_and(|r| r.status().is_success()));
        out.push(if ok {
            t.elapsed().as_secs_f64() * 1e3
        } else {
            5e3
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    out
}

/// A fresh viewer's time from its offer to its first keyframe.
async fn join_time(client: &Client, url: &str, session: &str, token: &str) -> Result<f64, String> {
    let v = Viewer::whep(ViewerConfig::default(), client, url, session, token)
        .await
        .map_err(|e| e.to_string())?;
    let joined = v
        .wait_until(Duration::from_secs(10), |s| {
            s.first_keyframe_after.is_some()
        })
        .await;
    let ms = v
        .stats()
        .first_keyframe_after
        .map(|d| d.as_secs_f64() * 1e3);
    v.close().await;
    match (joined, ms) {
        (true, Some(ms)) => Ok(ms),
        _ => Err("no keyframe within 10 s".into()),
    }
}

/// The report as a small table.
pub fn render_table(r: &AttackReport) -> String {
    let answers: Vec<String> = r
        .attacker_answers
        .iter()
        .map(|(k, n)| format!("{k}: {n}"))
        .collect();
    format!(
        "attack {:<12} {:.1} s: attacker sent {} ({:.0}/s) [{}]\n\
         victims {}: loss {:.2} %, freezes {} ({:.0} ms), publisher keyframe requests {:.2}/s\n\
         bystander /healthz p50 {:.1} ms p95 {:.1} ms max {:.1} ms; newcomer join {}; \
         media thread {}",
        r.attack.as_str(),
        r.duration_s,
        r.attacker_sent,
        r.attacker_rate_per_s,
        answers.join(", "),
        r.victims,
        r.victim_loss_percent,
        r.victim_freezes,
        r.victim_frozen_ms,
        r.publisher_keyframe_requests_per_s,
        r.healthz_ms.p50,
        r.healthz_ms.p95,
        r.healthz_ms.max,
        match (&r.newcomer_join_ms, &r.newcomer_error) {
            (Some(ms), _) => format!("{ms:.0} ms"),
            (None, Some(e)) => format!("failed: {e}"),
            _ => "-".into(),
        },
        r.media_thread_cpu
            .map_or("-".into(), |c| format!("{c:.2} CPU s/s")),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_ipv4_host_candidate() {
        let sdp = "v=0\r\na=candidate:1 1 udp 2113937151 ::1 5000 typ host\r\n\
                   a=candidate:2 1 udp 2113937151 127.0.0.1 5001 typ host\r\n";
        assert_eq!(host_candidate(sdp), Some("127.0.0.1:5001".parse().unwrap()));
        assert_eq!(host_candidate("v=0\r\n"), None);
    }
}
