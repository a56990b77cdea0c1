//! Captions through the real router (`oneshot`, in-memory SQLite, fake media engine): the
//! Zoom-compatible CART input (seq idempotency, retries, `GET seq`, every error; sequencing
//! per captioner and language, restarts, stale and absurd seqs, clears), live
//! delivery on the session's event stream, the precedence of human over machine captions,
//! and transcripts that parse back with their order and speaker labels. Machine captions
//! here enter the feed the way the recognizer thread hands them over; the real engine on
//! real speech is in `captions_asr.rs`.

mod common;

use captions::transcript::{parse_srt, parse_vtt};
use captions::{CaptionEvent, Source};
use common::*;
use server::live_captions::feed::{AsrCaption, CaptionFeed};
use server::session::SessionId;
use server::store::StoreError;

fn cart_req(
    session: &str,
    token: Option<&str>,
    query: &str,
    body: impl Into<Body>,
) -> Request<Body> {
    let mut uri = format!("/cart/{session}?{query}");
    if let Some(t) = token {
        uri.push_str(&format!("&token={t}"));
    }
    Request::builder()
        .method(Method::POST)
        .uri(uri)
        .header(header::CONTENT_TYPE, "text/plain")
        .body(body.into())
        .unwrap()
}

async fn post_cart(t: &TestApp, token: &str, seq: u64, text: &str) -> Reply {
    call(
        &t.router,
        cart_req(
            "demo",
            Some(token),
            &format!("seq={seq}&lang=en-US"),
            text.to_owned(),
        ),
    )
    .await
}

async fn last_seq(t: &TestApp, token: &str) -> String {
    let r = call(
        &t.router,
        empty(Method::GET, &format!("/cart/demo/seq?token={token}"), None),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    String::from_utf8(r.body.to_vec()).unwrap()
}

async fn transcript(t: &TestApp, format: &str) -> Reply {
    let viewer = token(Role::Viewer, "demo");
    let r = call(
        &t.router,
        empty(
            Method::GET,
            &format!("/api/sessions/demo/transcript.{format}"),
            Some(&viewer),
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    r
}

fn asr(stream: u64, segment: u64, text: &str, is_final: bool, start: f64) -> AsrCaption {
    AsrCaption {
        session: SessionId::parse("demo").unwrap(),
        stream,
        origin_ms: server::floor::runtime::now_ms() as i64 - 60_000,
        event: CaptionEvent {
            segment_id: segment,
            text: text.into(),
            is_final,
            start,
            end: start + 1.0,
            lang: "en-US".into(),
            source: Source::Asr,
            confidence: None,
        },
    }
}

/// Hands `caption` to the feed as the recognition router does: now, on both clocks.
async fn asr_now(feed: &CaptionFeed, caption: AsrCaption) -> Result<(), StoreError> {
    let now_ms = server::floor::runtime::now_ms() as i64;
    feed.asr(caption, std::time::Instant::now(), now_ms).await
}

/// Reads `caption` events from the session's SSE stream.
struct Captions {
    body: Body,
    buf: String,
}

impl Captions {
    async fn open(t: &TestApp) -> Captions {
        let viewer = token(Role::Viewer, "demo");
        let res = t
            .router
            .clone()
            .oneshot(empty(
                Method::GET,
                "/api/sessions/demo/events",
                Some(&viewer),
            ))
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        let mut c = Captions {
            body: res.into_body(),
            buf: String::new(),
        };
        // The snapshot comes first: after it, the stream is subscribed.
        let (event, _) = c
            .next_event(Duration::from_secs(5))
            .await
            .expect("snapshot");
        assert_eq!(event, "snapshot");
        c
    }

    /// The next (event name, data), or None after `wait`.
    async fn next_event(&mut self, wait: Duration) -> Option<(String, String)> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let mut name = String::from("message");
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        name = v.trim().to_owned();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    }
                }
                if data.is_empty() {
                    continue; // keep-alive comment
                }
                return Some((name, data));
            }
            let frame = tokio::time::timeout_at(deadline, self.body.frame())
                .await
                .ok()??;
            if let Ok(bytes) = frame.unwrap().into_data() {
                self.buf.push_str(&String::from_utf8_lossy(&bytes));
            }
        }
    }

    /// The next caption, or None if none arrives within `wait`.
    async fn next_caption(&mut self, wait: Duration) -> Option<Value> {
        loop {
            let (name, data) = self.next_event(wait).await?;
            if name == "caption" {
                return Some(serde_json::from_str(&data).unwrap());
            }
        }
    }
}

#[tokio::test]
async fn cart_seq_is_idempotent_across_retries_and_get_seq_reports_the_last() {
    let (t, _fake) = with_fake().await;
    let cart = token(Role::Captioner, "demo");
    assert_eq!(last_seq(&t, &cart).await, "0");

    let r = post_cart(&t, &cart, 1, "Good morning, everyone.").await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.json(), json!({"seq": 1, "stored": true}));
    // The captioning software retries seq 1 (it never saw our answer): acknowledged only.
    let r = post_cart(&t, &cart, 1, "Good morning, everyone.").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json(), json!({"seq": 1, "stored": false}));
    assert_eq!(
        post_cart(&t, &cart, 2, "Let us begin.").await.json()["stored"],
        true
    );
    assert_eq!(last_seq(&t, &cart).await, "2");
    // An old seq arriving late is refused out loud, with the last seq; nothing changes.
    let r = post_cart(&t, &cart, 1, "late copy").await;
    r.assert_error(StatusCode::CONFLICT, "stale_seq");
    assert_eq!(r.json()["last_seq"], 2);
    assert_eq!(last_seq(&t, &cart).await, "2");

    let segments = transcript(&t, "json").await.json()["segments"].clone();
    let texts: Vec<&str> = segments
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["Good morning, everyone.", "Let us begin."]);
    assert_eq!(segments[0]["source"], "cart");
}

#[tokio::test]
async fn cart_errors_are_clear() {
    let (t, _fake) = with_fake().await;
    let cart = token(Role::Captioner, "demo");

    let r = call(&t.router, cart_req("demo", None, "seq=1", "hi")).await;
    r.assert_error(StatusCode::UNAUTHORIZED, "missing_token");
    let r = call(
        &t.router,
        cart_req("demo", Some("not-a-jwt"), "seq=1", "hi"),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let viewer = token(Role::Viewer, "demo");
    let r = call(&t.router, cart_req("demo", Some(&viewer), "seq=1", "hi")).await;
    r.assert_error(StatusCode::FORBIDDEN, "forbidden");
    let elsewhere = token(Role::Captioner, "other");
    let r = call(&t.router, cart_req("demo", Some(&elsewhere), "seq=1", "hi")).await;
    r.assert_error(StatusCode::FORBIDDEN, "forbidden");
    let any = token(Role::Captioner, "*");
    let r = call(&t.router, cart_req("nope", Some(&any), "seq=1", "hi")).await;
    r.assert_error(StatusCode::NOT_FOUND, "session_not_found");

    let r = call(
        &t.router,
        cart_req("demo", Some(&cart), "seq=1", vec![0xff, 0xfe, 0x41]),
    )
    .await;
    r.assert_error(StatusCode::BAD_REQUEST, "invalid_utf8");
    let r = call(&t.router, cart_req("demo", Some(&cart), "lang=en", "hi")).await;
    r.assert_error(StatusCode::BAD_REQUEST, "missing_seq");
    let r = call(&t.router, cart_req("demo", Some(&cart), "seq=-3", "hi")).await;
    r.assert_error(StatusCode::BAD_REQUEST, "invalid_seq");
    let r = call(
        &t.router,
        cart_req("demo", Some(&cart), "seq=1&lang=%3Cscript%3E", "hi"),
    )
    .await;
    r.assert_error(StatusCode::BAD_REQUEST, "invalid_lang");
    let big = "word ".repeat(20_000);
    let r = call(&t.router, cart_req("demo", Some(&cart), "seq=1", big)).await;
    r.assert_error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    // None of the refused posts advanced the sequence.
    assert_eq!(last_seq(&t, &cart).await, "0");
    let r = call(&t.router, empty(Method::GET, "/cart/demo/seq", None)).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn captions_reach_the_event_stream_and_cart_takes_precedence_over_asr() {
    let (t, _fake) = with_fake().await;
    let cart = token(Role::Captioner, "demo");
    let feed = t.state.captions.clone();
    let mut live = Captions::open(&t).await;

    // No captioner yet: machine captions, interim then final, reach viewers.
    asr_now(&feed, asr(1, 1, "the chair", false, 0.0))
        .await
        .unwrap();
    asr_now(&feed, asr(1, 1, "the chair opens", true, 0.0))
        .await
        .unwrap();
    let c = live
        .next_caption(Duration::from_secs(2))
        .await
        .expect("interim");
    assert_eq!(
        (c["text"].as_str(), c["final"].as_bool()),
        (Some("the chair"), Some(false))
    );
    assert_eq!(c["source"], "asr");
    let c = live
        .next_caption(Duration::from_secs(2))
        .await
        .expect("final");
    assert_eq!(c["final"], true);
    assert_eq!(c["id"], "asr-1-1");

    // A captioner starts: their text goes out, the machine is held back.
    assert_eq!(
        post_cart(&t, &cart, 1, "Welcome, delegates.").await.status,
        StatusCode::OK
    );
    let c = live
        .next_caption(Duration::from_secs(2))
        .await
        .expect("cart caption");
    assert_eq!(c["text"], "Welcome, delegates.");
    assert_eq!(c["source"], "cart");
    assert_eq!(c["lang"], "en-US");
    asr_now(&feed, asr(1, 2, "well come delicate", true, 2.0))
        .await
        .unwrap();
    // Held back: only the moderator's monitor on the event stream sees it, marked unshown.
    let c = live
        .next_caption(Duration::from_secs(2))
        .await
        .expect("held-back machine caption for the monitor");
    assert_eq!(
        (c["text"].as_str(), c["shown"].as_bool()),
        (Some("well come delicate"), Some(false)),
        "machine caption shown while the captioner is active"
    );
    // The switch back (after the precedence window) is tested on a fake clock in
    // captions::merge; the held-back caption is kept as the machine alternative.
    let json = transcript(&t, "json").await.json();
    let held: Vec<&Value> = json["segments"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["shown"] == false)
        .collect();
    assert_eq!(held.len(), 1);
    assert_eq!(held[0]["text"], "well come delicate");
    assert_eq!(held[0]["source"], "asr");
    let vtt = String::from_utf8(transcript(&t, "vtt").await.body.to_vec()).unwrap();
    assert!(!vtt.contains("delicate"), "{vtt}");
}

#[tokio::test]
async fn machine_captions_resume_when_the_captioner_stops() {
    let (t, _fake) = test_app_with_fake(|c| c.cart_precedence_seconds = 1).await;
    let cart = token(Role::Captioner, "demo");
    let feed = t.state.captions.clone();
    let mut live = Captions::open(&t).await;
    post_cart(&t, &cart, 1, "Human text.").await;
    live.next_caption(Duration::from_secs(2))
        .await
        .expect("cart");
    asr_now(&feed, asr(1, 1, "held back", true, 0.0))
        .await
        .unwrap();
    let c = live
        .next_caption(Duration::from_secs(2))
        .await
        .expect("held back");
    assert_eq!(c["shown"], false);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    asr_now(&feed, asr(1, 2, "machine again", true, 2.0))
        .await
        .unwrap();
    let c = live
        .next_caption(Duration::from_secs(2))
        .await
        .expect("asr resumed");
    assert_eq!(
        (c["text"].as_str(), c["shown"].as_bool()),
        (Some("machine again"), Some(true))
    );
}

#[tokio::test]
async fn transcripts_parse_back_in_order_with_speaker_labels() {
    let (t, _fake) = with_fake().await;
    let cart = token(Role::Captioner, "demo");
    let moderator = token(Role::Moderator, "demo");
    let hub = person(Role::Hub, "demo", "Amina Diallo", Some("Dakar"));

    post_cart(&t, &cart, 1, "The floor is open.").await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let r = call(
        &t.router,
        json_req(
            Method::POST,
            "/api/sessions/demo/hands",
            Some(&hub),
            json!({"topic": "Access"}),
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let r = call(
        &t.router,
        json_req(
            Method::POST,
            "/api/sessions/demo/floor",
            Some(&moderator),
            json!({"limit_s": 60}),
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    // One word: the caption spans 400 ms back from its arrival, inside the turn.
    tokio::time::sleep(Duration::from_millis(500)).await;
    post_cart(&t, &cart, 2, "Thanks.").await;
    let r = call(
        &t.router,
        empty(Method::DELETE, "/api/sessions/demo/floor", Some(&moderator)),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    tokio::time::sleep(Duration::from_millis(500)).await;
    post_cart(&t, &cart, 3, "Next.").await;

    let vtt = String::from_utf8(transcript(&t, "vtt").await.body.to_vec()).unwrap();
    let cues = parse_vtt(&vtt).unwrap_or_else(|e| panic!("{e}\n{vtt}"));
    let said: Vec<(&str, &str)> = cues
        .iter()
        .map(|c| (c.speaker.as_deref().unwrap(), c.text.as_str()))
        .collect();
    assert_eq!(
        said,
        [
            ("Floor", "The floor is open."),
            ("Amina Diallo (Dakar)", "Thanks."),
            ("Floor", "Next."),
        ]
    );
    assert!(cues.windows(2).all(|w| w[0].start_ms <= w[1].start_ms));

    let srt = String::from_utf8(transcript(&t, "srt").await.body.to_vec()).unwrap();
    let cues = parse_srt(&srt).unwrap_or_else(|e| panic!("{e}\n{srt}"));
    assert_eq!(cues.len(), 3);
    assert_eq!(cues[1].speaker.as_deref(), Some("Amina Diallo (Dakar)"));
    let txt = String::from_utf8(transcript(&t, "txt").await.body.to_vec()).unwrap();
    assert!(txt.contains("Amina Diallo (Dakar):\nThanks."), "{txt}");

    let r = call(
        &t.router,
        empty(Method::GET, "/api/sessions/demo/transcript.vtt", None),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = call(
        &t.router,
        empty(
            Method::GET,
            "/api/sessions/demo/transcript.doc",
            Some(&moderator),
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

// ------------------------------------------------- CART sequencing (issue 16, item 5)

async fn post_cart_lang(t: &TestApp, token: &str, seq: u64, lang: &str, text: &str) -> Reply {
    call(
        &t.router,
        cart_req(
            "demo",
            Some(token),
            &format!("seq={seq}&lang={lang}"),
            text.to_owned(),
        ),
    )
    .await
}

async fn last_seq_lang(t: &TestApp, token: &str, lang: &str) -> String {
    let r = call(
        &t.router,
        empty(
            Method::GET,
            &format!("/cart/demo/seq?token={token}&lang={lang}"),
            None,
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    String::from_utf8(r.body.to_vec()).unwrap()
}

async fn transcript_texts(t: &TestApp) -> Vec<String> {
    transcript(t, "json").await.json()["segments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["text"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn two_captioners_in_one_session_are_both_stored() {
    let (t, _fake) = with_fake().await;
    let (ana, bo) = (
        person(Role::Captioner, "demo", "Ana", None),
        person(Role::Captioner, "demo", "Bo", None),
    );
    // Taking turns, each from seq 1: before, Bo's captions were "repeats" and vanished.
    for (who, seq, text) in [
        (&ana, 1, "Ana one."),
        (&ana, 2, "Ana two."),
        (&bo, 1, "Bo one."),
        (&bo, 2, "Bo two."),
        (&ana, 3, "Ana three."),
    ] {
        let r = post_cart(&t, who, seq, text).await;
        assert_eq!(r.status, StatusCode::OK, "{text}: {:?}", r.body);
        assert_eq!(r.json(), json!({"seq": seq, "stored": true}), "{text}");
    }
    // One captioner in a second language has its own sequence too.
    let r = post_cart_lang(&t, &ana, 1, "fr-FR", "Ana un.").await;
    assert_eq!(r.json()["stored"], true);
    assert_eq!(last_seq(&t, &ana).await, "3");
    assert_eq!(last_seq(&t, &bo).await, "2");
    assert_eq!(last_seq_lang(&t, &ana, "fr-FR").await, "1");
    assert_eq!(last_seq_lang(&t, &bo, "fr-FR").await, "0");
    let mut texts = transcript_texts(&t).await;
    texts.sort();
    assert_eq!(
        texts,
        [
            "Ana one.",
            "Ana three.",
            "Ana two.",
            "Ana un.",
            "Bo one.",
            "Bo two."
        ]
    );
}

#[tokio::test]
async fn a_captioner_restarting_from_one_is_stored() {
    let (t, _fake) = with_fake().await;
    let cart = token(Role::Captioner, "demo");
    let first_run = captions::cart::RESTART_WINDOW + 5;
    for seq in 1..=first_run {
        let r = post_cart(&t, &cart, seq, &format!("run one, caption {seq}")).await;
        assert_eq!(r.json()["stored"], true, "{seq}");
    }
    // The captioning software restarts its numbering: a new run, not "stale".
    let r = post_cart(&t, &cart, 1, "run two begins").await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.json(), json!({"seq": 1, "stored": true}));
    assert_eq!(last_seq(&t, &cart).await, "1");
    assert_eq!(
        post_cart(&t, &cart, 2, "and goes on").await.json()["stored"],
        true
    );
    let texts = transcript_texts(&t).await;
    assert_eq!(texts.len() as u64, first_run + 2);
    assert!(texts.iter().any(|t| t == "run two begins"));
    assert!(texts.iter().any(|t| t == "and goes on"));
}

#[tokio::test]
async fn an_absurd_seq_is_refused_and_the_session_takes_the_next_caption() {
    let (t, _fake) = with_fake().await;
    let cart = token(Role::Captioner, "demo");
    // Even as the first post of a stream.
    let r = post_cart(&t, &cart, 1 << 63, "jam").await;
    r.assert_error(StatusCode::BAD_REQUEST, "seq_out_of_range");
    assert_eq!(r.json()["last_seq"], 0);
    assert_eq!(post_cart(&t, &cart, 1, "one").await.json()["stored"], true);
    for seq in [1u64 << 63, u64::MAX, 2 + captions::cart::MAX_JUMP] {
        let r = post_cart(&t, &cart, seq, "jam").await;
        r.assert_error(StatusCode::BAD_REQUEST, "seq_out_of_range");
        assert_eq!(r.json()["last_seq"], 1);
    }
    assert_eq!(last_seq(&t, &cart).await, "1");
    // The next normal caption is stored: the stream is not jammed.
    let r = post_cart(&t, &cart, 2, "two").await;
    assert_eq!(r.json(), json!({"seq": 2, "stored": true}));
    assert_eq!(transcript_texts(&t).await, ["one", "two"]);
    let metrics = call(&t.router, empty(Method::GET, "/metrics", None)).await;
    let text = String::from_utf8_lossy(&metrics.body);
    assert!(
        text.contains("floorcast_cart_refused_total{reason=\"seq_out_of_range\"} 4"),
        "{text}"
    );
}

#[tokio::test]
async fn a_stale_seq_answers_409_with_the_last_and_an_exact_retry_stays_idempotent() {
    let (t, _fake) = with_fake().await;
    let cart = token(Role::Captioner, "demo");
    for seq in 1..=3 {
        post_cart(&t, &cart, seq, &format!("caption {seq}")).await;
    }
    let r = post_cart(&t, &cart, 1, "caption 1").await;
    r.assert_error(StatusCode::CONFLICT, "stale_seq");
    assert_eq!(r.json()["last_seq"], 3);
    assert!(
        r.json()["message"]
            .as_str()
            .unwrap()
            .contains("continue from 4"),
        "{}",
        r.json()
    );
    // The last seq reused for other text is a conflict too (a second copy of the software).
    let r = post_cart(&t, &cart, 3, "something else").await;
    r.assert_error(StatusCode::CONFLICT, "stale_seq");
    assert_eq!(r.json()["last_seq"], 3);
    // The exact retry of the last caption (same seq, same text) is acknowledged.
    let r = post_cart(&t, &cart, 3, "caption 3").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json(), json!({"seq": 3, "stored": false}));
    assert_eq!(
        transcript_texts(&t).await,
        ["caption 1", "caption 2", "caption 3"]
    );
}

#[tokio::test]
async fn an_empty_body_clears_the_caption_and_ends_the_segment() {
    let (t, _fake) = with_fake().await;
    let cart = token(Role::Captioner, "demo");
    let mut live = Captions::open(&t).await;
    post_cart(&t, &cart, 1, "Good morning.").await;
    let c = live
        .next_caption(Duration::from_secs(2))
        .await
        .expect("caption");
    assert_eq!(c["text"], "Good morning.");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = post_cart(&t, &cart, 2, "").await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.json(), json!({"seq": 2, "stored": true}));
    let clear = live
        .next_caption(Duration::from_secs(2))
        .await
        .expect("clear");
    assert_eq!(
        (
            clear["text"].as_str(),
            clear["final"].as_bool(),
            clear["source"].as_str()
        ),
        (Some(""), Some(true), Some("cart"))
    );
    assert_eq!(clear["start_ms"], clear["end_ms"]);
    // A blank body is a clear too, and its retry is acknowledged only.
    assert_eq!(post_cart(&t, &cart, 2, "").await.json()["stored"], false);
    assert_eq!(post_cart(&t, &cart, 3, " \n").await.json()["stored"], true);
    assert_eq!(last_seq(&t, &cart).await, "3");
    // Not a transcript line; the next caption starts after the clear, not at "Good morning.".
    post_cart(
        &t,
        &cart,
        4,
        "Welcome back, everyone, to the afternoon session.",
    )
    .await;
    let json = transcript(&t, "json").await.json();
    let segments = json["segments"].as_array().unwrap();
    assert_eq!(segments.len(), 2, "{json}");
    let (first_end, clear_at, next_start) = (
        segments[0]["end_ms"].as_i64().unwrap(),
        clear["start_ms"].as_i64().unwrap(),
        segments[1]["start_ms"].as_i64().unwrap(),
    );
    assert!(clear_at >= first_end + 300, "{first_end} {clear_at}");
    assert!(next_start >= clear_at, "starts before the clear: {json}");
}

/// `chattr +i` on files for its lifetime (root is not stopped by permissions, and an open
/// descriptor stays writable whatever the mode; the immutable attribute stops both).
struct Frozen(Vec<std::path::PathBuf>);

impl Frozen {
    fn set(files: &[std::path::PathBuf]) -> Option<Frozen> {
        let mut done = Frozen(Vec::new());
        for f in files.iter().filter(|f| f.exists()) {
            let ok = std::process::Command::new("chattr")
                .arg("+i")
                .arg(f)
                .status()
                .is_ok_and(|s| s.success());
            if !ok {
                return None;
            }
            done.0.push(f.clone());
        }
        Some(done)
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        for f in &self.0 {
            let _ = std::process::Command::new("chattr")
                .arg("-i")
                .arg(f)
                .status();
        }
    }
}

#[tokio::test]
async fn machine_captions_reach_viewers_when_they_cannot_be_stored() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("floorcast.db");
    let config = Config {
        jwt_secret: Some(SECRET.into()),
        sessions: vec![SessionDecl {
            id: "demo".into(),
            title: None,
        }],
        ..Config::default()
    };
    let state = AppState::new(
        config,
        Store::open(&db).unwrap(),
        Media::unavailable("not started in this test"),
    )
    .await
    .unwrap();
    let t = TestApp {
        router: app(state.clone()),
        state,
    };
    let mut live = Captions::open(&t).await;
    let wal = dir.path().join("floorcast.db-wal");
    let Some(frozen) = Frozen::set(&[db.clone(), wal]) else {
        eprintln!("skipping: `chattr +i` is not permitted here");
        return;
    };
    let stored = asr_now(
        &t.state.captions,
        asr(1, 1, "said while the disk is gone", true, 0.0),
    )
    .await;
    let e = stored.expect_err("stored on an immutable database?");
    assert!(e.is_unavailable(), "{e}");
    let c = live
        .next_caption(Duration::from_secs(2))
        .await
        .expect("the caption never reached the viewer");
    assert_eq!(c["text"], "said while the disk is gone");
    drop(frozen);
    let metrics = call(&t.router, empty(Method::GET, "/metrics", None)).await;
    let text = String::from_utf8_lossy(&metrics.body);
    assert!(
        text.contains("floorcast_caption_store_failures_total{source=\"asr\"} 1"),
        "{text}"
    );
    // Storage back: the next one is stored (and shown).
    asr_now(
        &t.state.captions,
        asr(1, 2, "and this one is kept", true, 2.0),
    )
    .await
    .unwrap();
    assert_eq!(transcript_texts(&t).await, ["and this one is kept"]);
}

#[tokio::test]
async fn cart_streams_per_session_are_bounded() {
    let (t, _fake) = with_fake().await;
    let cart = token(Role::Captioner, "demo");
    let max = server::live_captions::feed::MAX_CART_STREAMS_PER_SESSION;
    // Refused first posts take no place.
    let r = post_cart_lang(&t, &cart, 1 << 63, "xx-AA", "jam").await;
    r.assert_error(StatusCode::BAD_REQUEST, "seq_out_of_range");
    for i in 0..max {
        let r = post_cart_lang(&t, &cart, 1, &format!("x{i}"), "hello").await;
        assert_eq!(r.status, StatusCode::OK, "{i}: {:?}", r.body);
    }
    let r = post_cart_lang(&t, &cart, 1, "one-too-many", "hello").await;
    r.assert_error(StatusCode::TOO_MANY_REQUESTS, "too_many_cart_streams");
    // Existing streams go on.
    let r = post_cart_lang(&t, &cart, 2, "x0", "again").await;
    assert_eq!(r.json()["stored"], true);
}
