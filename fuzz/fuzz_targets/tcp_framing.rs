//! `media::framing` (RFC 4571, ICE-TCP) on arbitrary streams read in arbitrary chunks: never
//! panics, every frame it returns is non-empty and within its limit, and datagrams framed
//! with `frame_header` come back whole and in order however the stream is cut.
//!
//! Input: one byte `c` (the largest frame is `1 + 8c` bytes; reads are `c % 7 + 1` bytes),
//! then the stream. For the round trip the stream's bytes, split at 0xff, are the datagrams.

#![no_main]

use libfuzzer_sys::fuzz_target;
use media::framing::{FrameDecoder, frame_header};

fuzz_target!(|data: &[u8]| {
    let Some((&c, stream)) = data.split_first() else {
        return;
    };
    let max = 1 + 8 * usize::from(c);
    let read = usize::from(c % 7) + 1;

    let mut decoder = FrameDecoder::new(max);
    'stream: for chunk in stream.chunks(read) {
        decoder.push(chunk);
        loop {
            match decoder.next_frame() {
                Ok(Some(frame)) => assert!(!frame.is_empty() && frame.len() <= max),
                Ok(None) => break,
                Err(_) => break 'stream,
            }
        }
    }

    let datagrams: Vec<&[u8]> = stream
        .split(|&b| b == 0xff)
        .filter(|d| !d.is_empty() && d.len() <= max)
        .collect();
    let mut framed = Vec::new();
    for d in &datagrams {
        framed.extend_from_slice(&frame_header(d.len()).expect("1..=2041 bytes fit"));
        framed.extend_from_slice(d);
    }
    let mut decoder = FrameDecoder::new(max);
    let mut got = Vec::new();
    for chunk in framed.chunks(read) {
        decoder.push(chunk);
        while let Some(frame) = decoder.next_frame().expect("framed by frame_header") {
            got.push(frame.to_vec());
        }
    }
    assert_eq!(got.len(), datagrams.len());
    assert!(got.iter().zip(&datagrams).all(|(a, b)| a == b));
});
