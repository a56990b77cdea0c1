//! Parser of what limit-bench's `udp` binary prints (`shared/tools/limit-bench`, `common.rs`
//! `report`). One measurement line per mode:
//!
//! ```text
//! udp      gcm+sendmmsg_many_b64   min 6865.4 ns  med 7386.5 ns  max 9842.3 ns  | … |
//!     viewers@150pps    971 (min)    903 (med) | sender thread CPU … | sent … drops …
//! ```
//!
//! Lines whose first word is `udp` are measurements and must parse completely, with finite
//! numbers: a half-read or NaN measurement (the bench prints NaN when every run of a mode
//! failed) is an error, because skipping it would let the report quote a limit that was not
//! measured. Every other line (the `#` header, blank lines, stray diagnostics) is skipped.

use serde::Serialize;

/// One mode's figures: ns per packet over the runs and the viewers per core they imply.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LimitLine {
    pub mode: String,
    pub min_ns: f64,
    pub median_ns: f64,
    /// At the fastest run: the bench's best estimate of the physical limit.
    pub viewers_per_core_min: f64,
    /// At the median run: what a busy machine gives.
    pub viewers_per_core_median: f64,
}

#[derive(Debug, thiserror::Error, PartialEq)]
#[error("limit-bench output line {line}: {reason}: {text:?}")]
pub struct MalformedLine {
    /// 1-based.
    pub line: usize,
    pub reason: &'static str,
    pub text: String,
}

/// Every measurement line of `output`, in order.
pub fn parse_udp_output(output: &str) -> Result<Vec<LimitLine>, MalformedLine> {
    output
        .lines()
        .enumerate()
        .filter(|(_, l)| l.split_whitespace().next() == Some("udp"))
        .map(|(i, l)| {
            parse_line(l).map_err(|reason| MalformedLine {
                line: i + 1,
                reason,
                text: l.to_owned(),
            })
        })
        .collect()
}

fn parse_line(line: &str) -> Result<LimitLine, &'static str> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let mode = words.get(1).ok_or("no mode name")?;
    // `min` and `med` also occur later ("sender thread CPU min …"): the first one is ours.
    let min_ns = value_after(&words, "min", "ns")?;
    let median_ns = value_after(&words, "med", "ns")?;
    let at = words
        .iter()
        .position(|w| *w == "viewers@150pps")
        .ok_or("no viewers@150pps")?;
    let viewers_min = value_after(&words[at..], "viewers@150pps", "(min)")?;
    let viewers_med = value_after(&words[at + 2..], "(min)", "(med)")?;
    Ok(LimitLine {
        mode: (*mode).to_owned(),
        min_ns,
        median_ns,
        viewers_per_core_min: viewers_min,
        viewers_per_core_median: viewers_med,
    })
}

/// The finite number right after the first `key`, which must be followed by `unit`.
fn value_after(words: &[&str], key: &str, unit: &str) -> Result<f64, &'static str> {
    let at = words
        .iter()
        .position(|w| *w == key)
        .ok_or("a field is missing")?;
    if words.get(at + 2) != Some(&unit) {
        return Err("a unit is missing");
    }
    words
        .get(at + 1)
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|v| v.is_finite())
        .ok_or("a number is missing or not finite")
}

#[cfg(test)]
mod tests {
    use super::*;

    // Verbatim from results/udp-spin-1.txt (header and two lines) and results/udp-2.txt.
    const SAMPLE: &str = "\
# udp bench: 5 runs x 300000 packets of 1216 B to 127.0.0.1; sender CPU 1, receiver CPU 0; many = 1000 receiver sockets; receiver busy-polls (RX=spin)
udp      gcm+sendmmsg_many_b64                        min   6865.4 ns  med   7386.5 ns  max   9842.3 ns  |     145659 pkt/s/core (min)     135381 (med) | viewers@150pps    971 (min)    903 (med) | sender thread CPU min 6426.4 med 6795.1 ns | sent 1575232 recv 1575232 drops 0 (0.00%) snmp RcvbufErrors +0
udp      gcm+gso_1dst_seg53                           min   3093.0 ns  med   3140.2 ns  max   3170.7 ns  |     323315 pkt/s/core (min)     318456 (med) | viewers@150pps   2155 (min)   2123 (med) | sender thread CPU min 3076.2 med 3103.1 ns | sent 1575213 recv 1575213 drops 0 (0.00%) snmp RcvbufErrors +0
udp      gso_1dst_seg16                               min   1221.6 ns  med   1944.7 ns  max   3111.8 ns  |     818616 pkt/s/core (min)     514230 (med) | viewers@150pps   5457 (min)   3428 (med) | sender thread CPU min 1217.9 med 1939.5 ns | sent 1575008 recv 1569296 drops 5712 (0.36%) snmp RcvbufErrors +5712
";

    #[test]
    fn reads_every_measurement_line() {
        let lines = parse_udp_output(SAMPLE).unwrap();
        assert_eq!(lines.len(), 3);
        assert_eq!(
            lines[0],
            LimitLine {
                mode: "gcm+sendmmsg_many_b64".into(),
                min_ns: 6865.4,
                median_ns: 7386.5,
                viewers_per_core_min: 971.0,
                viewers_per_core_median: 903.0,
            }
        );
        assert_eq!(lines[1].mode, "gcm+gso_1dst_seg53");
        assert_eq!(lines[1].min_ns, 3093.0);
        assert_eq!(lines[1].median_ns, 3140.2);
        assert_eq!(lines[1].viewers_per_core_min, 2155.0);
        assert_eq!(lines[1].viewers_per_core_median, 2123.0);
        assert_eq!(lines[2].viewers_per_core_min, 5457.0);
    }

    #[test]
    fn skips_lines_that_are_not_measurements() {
        // A send-error diagnostic from results/udp-1.txt, a blank line, the header.
        let text = "# udp bench: 1 runs\n\ngso_1dst_seg64: 24613 send errors (last: Message too long (os error 90))\n";
        assert_eq!(parse_udp_output(text).unwrap(), vec![]);
    }

    #[test]
    fn a_truncated_measurement_is_an_error() {
        let text = "# header\nudp      gcm+gso_1dst_seg53   min   3093.0 ns  med   3140.2 ns  max";
        let err = parse_udp_output(text).unwrap_err();
        assert_eq!(err.line, 2);
        assert!(err.text.contains("gcm+gso_1dst_seg53"));
    }

    #[test]
    fn a_mode_without_a_valid_run_is_an_error() {
        // What `common.rs` prints when every run of a mode failed.
        let text = "udp      gso_1dst_seg64   min      NaN ns  med      NaN ns  max      NaN ns  |        NaN pkt/s/core (min)        NaN (med) | viewers@150pps    NaN (min)    NaN (med) | x";
        assert!(parse_udp_output(text).is_err());
    }

    #[test]
    fn a_missing_unit_is_an_error() {
        let text = "udp  m  min 1.0 us  med 2.0 ns | viewers@150pps 5 (min) 4 (med)";
        assert!(parse_udp_output(text).is_err());
    }
}
