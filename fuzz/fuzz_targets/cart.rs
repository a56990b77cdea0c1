//! CART caption posts (`POST /cart/{session}?seq=N&lang=xx-YY`, body = caption text) as the
//! server reads them: the query through axum's `Query<CartQuery>`, then
//! `CartPost::parse`, then each accepted post into its language's `captions::cart::CartStream`.
//!
//! Input: posts separated by NUL bytes, each `[seconds since the previous post][query]\n[body]`.
//!
//! Checked: parsing refuses only with a 400 and a known code, and what it accepts is a
//! trimmed caption and a clean language tag; a stream's `seq` only moves as the module doc
//! says (up by at most `MAX_JUMP`, down only as a new run), a retry or a refusal changes
//! nothing, captions span forward in time and end now, and a stream restored from its
//! snapshot is the same stream.

#![no_main]

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::Query;
use axum::http::Uri;
use captions::cart::{Accepted, CartStream, MAX_JUMP, MAX_SEQ, SeqError};
use libfuzzer_sys::fuzz_target;
use server::api::captioning::{CartPost, CartQuery};

const DEFAULT_LANG: &str = "en-US";
/// A real Unix time in ms: the server's clock, never near the ends of `i64`.
const START_MS: i64 = 1_750_000_000_000;

fuzz_target!(|data: &[u8]| {
    let mut streams: HashMap<String, CartStream> = HashMap::new();
    let mut now_ms = START_MS;
    for record in data.split(|&b| b == 0).take(64) {
        let Some((&step_s, record)) = record.split_first() else {
            continue;
        };
        now_ms += i64::from(step_s) * 1000;
        let (query, body) = match record.iter().position(|&b| b == b'\n') {
            Some(i) => (&record[..i], &record[i + 1..]),
            None => (record, &b""[..]),
        };
        let Ok(query) = std::str::from_utf8(query) else {
            continue;
        };
        // Not a URI hyper would have accepted: never reaches the handler.
        let Ok(uri) = format!("/cart/s?{query}").parse::<Uri>() else {
            continue;
        };
        let Ok(Query(q)) = Query::<CartQuery>::try_from_uri(&uri) else {
            continue;
        };
        let given_lang = q.lang.clone();
        let post = match CartPost::parse(q, Ok(Bytes::copy_from_slice(body)), DEFAULT_LANG) {
            Ok(post) => post,
            Err(e) => {
                assert_eq!(e.status.as_u16(), 400, "{}", e.code);
                let known = ["missing_seq", "invalid_seq", "invalid_lang", "invalid_utf8"];
                assert!(known.contains(&e.code), "{}", e.code);
                continue;
            }
        };
        assert_eq!(post.text, post.text.trim());
        if given_lang.is_some() {
            let l = &post.lang;
            assert!(!l.is_empty() && l.len() <= 35, "{l:?}");
            assert!(l.starts_with(|c: char| c.is_ascii_alphabetic()), "{l:?}");
            assert!(
                l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'),
                "{l:?}"
            );
        } else {
            assert_eq!(post.lang, DEFAULT_LANG);
        }

        let stream = streams.entry(post.lang.clone()).or_default();
        let before = stream.clone();
        let had_last = before.snapshot().is_some();
        let last = before.last_seq();
        match stream.caption(post.seq, &post.text, now_ms) {
            Ok(Accepted::Repeat) => {
                assert_eq!(*stream, before, "a retry changes nothing");
                assert!(had_last && post.seq == last);
            }
            Ok(Accepted::Caption {
                start_ms,
                end_ms,
                new_run,
            }) => {
                assert!(!post.text.is_empty());
                assert!(
                    start_ms <= end_ms && end_ms == now_ms,
                    "{start_ms}..{end_ms} at {now_ms}"
                );
                assert!(now_ms - start_ms <= 10_000, "a caption claims at most 10 s");
                accepted(stream, &before, post.seq, new_run);
            }
            Ok(Accepted::Clear { at_ms, new_run }) => {
                assert!(post.text.is_empty());
                assert!(at_ms >= now_ms);
                accepted(stream, &before, post.seq, new_run);
            }
            Err(e) => {
                assert_eq!(*stream, before, "a refusal changes nothing");
                match e {
                    SeqError::Stale { seq, last: l } => assert!(seq <= l && l == last),
                    SeqError::TooFarAhead { seq, last: l } => assert!(seq > l && l == last),
                }
            }
        }
        if let Some(snapshot) = stream.snapshot() {
            assert!(snapshot.last_seq <= MAX_SEQ);
            assert_eq!(
                CartStream::restore(snapshot),
                *stream,
                "restored from its snapshot"
            );
        }
    }
});

fn accepted(stream: &CartStream, before: &CartStream, seq: u64, new_run: bool) {
    assert_eq!(stream.last_seq(), seq);
    let version = |s: &CartStream| s.snapshot().map_or(0, |s| s.version);
    assert_eq!(
        version(stream),
        version(before) + 1,
        "every change bumps the version"
    );
    assert_eq!(stream.run(), before.run() + u64::from(new_run));
    if !new_run && before.snapshot().is_some() {
        assert!(seq >= before.last_seq() && seq - before.last_seq() <= MAX_JUMP);
    }
}
