//! Transcript files from final caption segments: WebVTT, SRT, plain text and JSON, each
//! line labelled with who was speaking. Plus strict readers for WebVTT and SRT, so tests
//! (and anyone importing our files) can check that what we write parses back.

use std::fmt::Write;

use serde::Serialize;

use crate::Source;

/// One final caption in a transcript, times relative to the transcript's start.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Segment {
    pub start_ms: i64,
    pub end_ms: i64,
    /// "Floor", or the floor holder's name and hub.
    pub speaker: String,
    pub text: String,
    pub source: Source,
    pub lang: String,
}

pub fn to_vtt(segments: &[Segment]) -> String {
    render(Format::Vtt, segments)
}

pub fn to_srt(segments: &[Segment]) -> String {
    render(Format::Srt, segments)
}

/// Readable text: a speaker's consecutive captions form one paragraph, headed by the time
/// it started and the speaker.
pub fn to_txt(segments: &[Segment]) -> String {
    render(Format::Txt, segments)
}

fn render(format: Format, segments: &[Segment]) -> String {
    let mut w = TextWriter::new(format);
    let mut out = w.start();
    for s in segments {
        w.push(s, &mut out);
    }
    w.finish(&mut out);
    out
}

/// The text formats a transcript is written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Vtt,
    Srt,
    Txt,
}

/// Writes a transcript a segment at a time, so a long one can be streamed in pages without
/// holding it whole: `start`, then `push` each segment in order, then `finish`.
#[derive(Clone, Debug)]
pub struct TextWriter {
    format: Format,
    cues: usize,
    /// Txt: the speaker of the open paragraph.
    speaker: Option<String>,
}

impl TextWriter {
    pub fn new(format: Format) -> Self {
        TextWriter {
            format,
            cues: 0,
            speaker: None,
        }
    }

    /// What comes before the first segment.
    pub fn start(&self) -> String {
        match self.format {
            Format::Vtt => String::from("WEBVTT\n\n"),
            Format::Srt | Format::Txt => String::new(),
        }
    }

    pub fn push(&mut self, s: &Segment, out: &mut String) {
        self.cues += 1;
        let (start, end) = bounds(s);
        match self.format {
            Format::Vtt => {
                let _ = write!(
                    out,
                    "{}\n{} --> {}\n<v {}>{}\n\n",
                    self.cues,
                    clock(start, '.'),
                    clock(end, '.'),
                    vtt_escape(&one_line(&s.speaker)),
                    vtt_escape(&one_line(&s.text)),
                );
            }
            Format::Srt => {
                let _ = write!(
                    out,
                    "{}\n{} --> {}\n{}: {}\n\n",
                    self.cues,
                    clock(start, ','),
                    clock(end, ','),
                    one_line(&s.speaker),
                    one_line(&s.text),
                );
            }
            Format::Txt => {
                if self.speaker.as_deref() != Some(s.speaker.as_str()) {
                    if self.speaker.is_some() {
                        out.push_str("\n\n");
                    }
                    let _ = writeln!(out, "[{}] {}:", clock(s.start_ms.max(0), '.'), s.speaker);
                    self.speaker = Some(s.speaker.clone());
                } else {
                    out.push(' ');
                }
                out.push_str(&one_line(&s.text));
            }
        }
    }

    /// What comes after the last segment.
    pub fn finish(&self, out: &mut String) {
        if self.format == Format::Txt && self.speaker.is_some() {
            out.push('\n');
        }
    }
}

/// Cue bounds a player accepts: never negative, never ending before they start.
fn bounds(s: &Segment) -> (i64, i64) {
    let start = s.start_ms.max(0);
    (start, s.end_ms.max(start))
}

/// `HH:MM:SS.mmm` (WebVTT) or `HH:MM:SS,mmm` (SRT).
fn clock(ms: i64, sep: char) -> String {
    let ms = ms.max(0);
    format!(
        "{:02}:{:02}:{:02}{sep}{:03}",
        ms / 3_600_000,
        ms / 60_000 % 60,
        ms / 1000 % 60,
        ms % 1000
    )
}

/// A cue's text must not contain a blank line (it would end the cue) nor `-->`.
fn one_line(text: &str) -> String {
    text.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace("-->", "->")
}

fn vtt_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn vtt_unescape(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// A cue read back from a WebVTT or SRT file.
#[derive(Clone, Debug, PartialEq)]
pub struct Cue {
    pub start_ms: i64,
    pub end_ms: i64,
    pub speaker: Option<String>,
    pub text: String,
}

#[derive(Debug, thiserror::Error, PartialEq)]
#[error("line {line}: {what}")]
pub struct ParseError {
    pub line: usize,
    pub what: String,
}

fn err(line: usize, what: impl Into<String>) -> ParseError {
    ParseError {
        line: line + 1,
        what: what.into(),
    }
}

/// Reads a WebVTT file: the `WEBVTT` header, then cues of an optional identifier, a timing
/// line and text lines; speakers from `<v Name>` voice spans.
pub fn parse_vtt(input: &str) -> Result<Vec<Cue>, ParseError> {
    let lines: Vec<&str> = input.lines().collect();
    let header = lines.first().copied().unwrap_or("");
    let header = header.strip_prefix('\u{feff}').unwrap_or(header);
    if header != "WEBVTT" && !header.starts_with("WEBVTT ") && !header.starts_with("WEBVTT\t") {
        return Err(err(0, "missing WEBVTT header"));
    }
    let mut cues = Vec::new();
    for block in blocks(&lines, 1) {
        let (first, rest) = block
            .lines
            .split_first()
            .ok_or_else(|| err(block.at, "empty"))?;
        let (timing_at, timing, text) = if first.contains("-->") {
            (block.at, *first, rest)
        } else {
            let (t, text) = rest
                .split_first()
                .ok_or_else(|| err(block.at, "cue without timing"))?;
            (block.at + 1, *t, text)
        };
        let (start_ms, end_ms) = parse_timing(timing, '.').map_err(|w| err(timing_at, w))?;
        let joined = text.join("\n");
        let (speaker, text) = match joined.strip_prefix("<v ") {
            Some(rest) => {
                let close = rest
                    .find('>')
                    .ok_or_else(|| err(timing_at + 1, "unclosed voice span"))?;
                let body = rest[close + 1..].trim_end_matches("</v>");
                (Some(vtt_unescape(&rest[..close])), vtt_unescape(body))
            }
            None => (None, vtt_unescape(&joined)),
        };
        cues.push(Cue {
            start_ms,
            end_ms,
            speaker,
            text,
        });
    }
    Ok(cues)
}

/// Reads an SRT file: numbered cues counting from 1, a `-->` timing line with commas, text;
/// speakers from a leading `Name: ` (our files always write one).
pub fn parse_srt(input: &str) -> Result<Vec<Cue>, ParseError> {
    let lines: Vec<&str> = input.lines().collect();
    let mut cues = Vec::new();
    for block in blocks(&lines, 0) {
        let [number, timing, text @ ..] = block.lines.as_slice() else {
            return Err(err(block.at, "cue needs a number, a timing line and text"));
        };
        let n: usize = number
            .trim()
            .parse()
            .map_err(|_| err(block.at, format!("cue number {number:?}")))?;
        if n != cues.len() + 1 {
            return Err(err(block.at, format!("cue {n} out of order")));
        }
        let (start_ms, end_ms) = parse_timing(timing, ',').map_err(|w| err(block.at + 1, w))?;
        if text.is_empty() {
            return Err(err(block.at + 2, "cue without text"));
        }
        let joined = text.join("\n");
        let (speaker, text) = match joined.split_once(": ") {
            Some((who, said)) => (Some(who.to_owned()), said.to_owned()),
            None => (None, joined),
        };
        cues.push(Cue {
            start_ms,
            end_ms,
            speaker,
            text,
        });
    }
    Ok(cues)
}

struct Block<'a> {
    at: usize,
    lines: Vec<&'a str>,
}

/// Groups lines from `from` into blocks separated by blank lines.
fn blocks<'a>(lines: &[&'a str], from: usize) -> Vec<Block<'a>> {
    let mut out = Vec::new();
    let mut current: Option<Block<'a>> = None;
    for (i, line) in lines.iter().enumerate().skip(from) {
        if line.trim().is_empty() {
            out.extend(current.take());
        } else {
            current
                .get_or_insert_with(|| Block {
                    at: i,
                    lines: Vec::new(),
                })
                .lines
                .push(line);
        }
    }
    out.extend(current);
    out
}

fn parse_timing(line: &str, sep: char) -> Result<(i64, i64), String> {
    let (a, b) = line
        .split_once(" --> ")
        .ok_or_else(|| format!("timing line {line:?}"))?;
    // Cue settings may follow the end time in WebVTT.
    let b = b.split_whitespace().next().unwrap_or("");
    let (start, end) = (parse_clock(a.trim(), sep)?, parse_clock(b, sep)?);
    if end < start {
        return Err(format!("cue ends before it starts: {line:?}"));
    }
    Ok((start, end))
}

fn parse_clock(s: &str, sep: char) -> Result<i64, String> {
    let bad = || format!("timestamp {s:?}");
    let (hms, ms) = s.split_once(sep).ok_or_else(bad)?;
    if ms.len() != 3 {
        return Err(bad());
    }
    let ms: i64 = ms.parse().map_err(|_| bad())?;
    let parts: Vec<i64> = hms
        .split(':')
        .map(|p| if p.len() >= 2 { p.parse().ok() } else { None })
        .collect::<Option<_>>()
        .ok_or_else(bad)?;
    let (h, m, sec) = match parts.as_slice() {
        [h, m, s] => (*h, *m, *s),
        [m, s] => (0, *m, *s),
        _ => return Err(bad()),
    };
    if m >= 60 || sec >= 60 {
        return Err(bad());
    }
    Ok(((h * 60 + m) * 60 + sec) * 1000 + ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(start_ms: i64, end_ms: i64, speaker: &str, text: &str) -> Segment {
        Segment {
            start_ms,
            end_ms,
            speaker: speaker.into(),
            text: text.into(),
            source: Source::Asr,
            lang: "en-US".into(),
        }
    }

    fn sample() -> Vec<Segment> {
        vec![
            seg(0, 2_500, "Floor", "welcome to the session"),
            seg(
                2_600,
                3_661_042,
                "Ana Lima (Hub Nairobi)",
                "a <question> & more --> here",
            ),
            seg(3_700_000, 3_700_500, "Floor", "thank you\n\nnext"),
        ]
    }

    #[test]
    fn vtt_round_trips_times_speakers_and_text_in_order() {
        let vtt = to_vtt(&sample());
        assert!(vtt.contains("01:01:01.042"), "{vtt}");
        let cues = parse_vtt(&vtt).unwrap();
        assert_eq!(cues.len(), 3);
        assert_eq!(cues[1].start_ms, 2_600);
        assert_eq!(cues[1].end_ms, 3_661_042);
        assert_eq!(cues[1].speaker.as_deref(), Some("Ana Lima (Hub Nairobi)"));
        assert_eq!(cues[1].text, "a <question> & more -> here");
        assert_eq!(cues[2].text, "thank you next");
    }

    #[test]
    fn srt_round_trips_and_numbers_cues() {
        let srt = to_srt(&sample());
        assert!(srt.starts_with("1\n00:00:00,000 --> 00:00:02,500\nFloor: welcome"));
        let cues = parse_srt(&srt).unwrap();
        assert_eq!(cues.len(), 3);
        assert_eq!(cues[2].start_ms, 3_700_000);
        assert_eq!(cues[0].speaker.as_deref(), Some("Floor"));
        assert_eq!(cues[0].text, "welcome to the session");
    }

    #[test]
    fn readers_reject_broken_files() {
        assert!(parse_vtt("1\n00:00:00.000 --> 00:00:01.000\nx\n").is_err());
        assert!(parse_vtt("WEBVTT\n\n00:00:02.000 --> 00:00:01.000\nx\n").is_err());
        assert!(parse_vtt("WEBVTT\n\n00:00:0.000 --> 00:00:01.000\nx\n").is_err());
        assert!(parse_srt("2\n00:00:00,000 --> 00:00:01,000\nx\n").is_err());
        assert!(parse_srt("1\n00:00:00.000 --> 00:00:01.000\nx\n").is_err());
        assert!(parse_srt("1\n00:00:00,000 --> 00:00:01,000\n").is_err());
    }

    #[test]
    fn txt_groups_a_speakers_captions() {
        let mut s = sample();
        s.insert(1, seg(2_500, 2_600, "Floor", "second"));
        let txt = to_txt(&s);
        assert!(txt.starts_with("[00:00:00.000] Floor:\nwelcome to the session second\n\n"));
        assert_eq!(txt.matches("Floor:").count(), 2, "{txt}");
    }

    #[test]
    fn negative_or_inverted_times_are_clamped() {
        let vtt = to_vtt(&[seg(-50, -100, "Floor", "x")]);
        let cues = parse_vtt(&vtt).unwrap();
        assert_eq!((cues[0].start_ms, cues[0].end_ms), (0, 0));
    }
}
