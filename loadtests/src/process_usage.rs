//! CPU time and resident memory of a process from `/proc/<pid>` (Linux), to report the
//! server's cost per viewer. CPU is `utime + stime` (fields 14 and 15 of `stat`, in clock
//! ticks); memory is `VmRSS` from `status`.

use std::time::{Duration, Instant};

/// One reading of a process.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub at: Instant,
    /// User + system CPU time so far.
    pub cpu: Duration,
    /// Resident set size, bytes.
    pub rss_bytes: u64,
}

/// Reads `/proc/<pid>` (`"self"` for this process). `None` if the process is gone or this
/// is not Linux.
pub fn sample(pid: &str) -> Option<Sample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    Some(Sample {
        at: Instant::now(),
        cpu: parse_cpu(&stat, clock_ticks_per_second())?,
        rss_bytes: parse_rss(&status).unwrap_or(0),
    })
}

fn clock_ticks_per_second() -> u64 {
    // SAFETY: sysconf has no preconditions; it only reads a configuration value.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as u64 } else { 100 }
}

/// utime + stime from a `stat` line. The command name (field 2) may contain spaces and
/// parentheses, so fields are counted after the last `)`.
pub fn parse_cpu(stat: &str, ticks_per_second: u64) -> Option<Duration> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state): utime is field 14 → index 11, stime 15 → index 12.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    let ticks = utime + stime;
    let tps = ticks_per_second.max(1);
    Some(
        Duration::from_secs(ticks / tps)
            + Duration::from_nanos((ticks % tps) * 1_000_000_000 / tps),
    )
}

/// `VmRSS:   12345 kB` → bytes.
pub fn parse_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// CPU seconds per wall second between two samples (1.0 = one core).
pub fn cpu_rate(a: &Sample, b: &Sample) -> f64 {
    let wall = b.at.saturating_duration_since(a.at).as_secs_f64();
    if wall <= 0.0 {
        return 0.0;
    }
    b.cpu.saturating_sub(a.cpu).as_secs_f64() / wall
}

/// The same reading from a server's `/metrics` (`process_cpu_seconds_total`,
/// `process_resident_memory_bytes`), for a server on another machine.
pub async fn scrape(client: &reqwest::Client, base: &str) -> Option<Sample> {
    let url = format!("{}/metrics", base.trim_end_matches('/'));
    let text = client.get(url).send().await.ok()?.text().await.ok()?;
    parse_metrics(&text)
}

/// Reads the two process metrics from a Prometheus text exposition.
pub fn parse_metrics(text: &str) -> Option<Sample> {
    let value = |name: &str| {
        text.lines().find_map(|l| {
            l.strip_prefix(name)?
                .strip_prefix(' ')?
                .trim()
                .parse::<f64>()
                .ok()
        })
    };
    Some(Sample {
        at: Instant::now(),
        cpu: Duration::from_secs_f64(value("process_cpu_seconds_total")?.max(0.0)),
        rss_bytes: value("process_resident_memory_bytes")? as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_a_nasty_command_name() {
        let stat =
            "1234 (flo (or) cast) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 8 0 1 2 3";
        assert_eq!(parse_cpu(stat, 100), Some(Duration::from_secs(3)));
    }

    #[test]
    fn parses_rss() {
        let status = "Name:\tfloorcast\nVmPeak:\t  900 kB\nVmRSS:\t   2048 kB\n";
        assert_eq!(parse_rss(status), Some(2048 * 1024));
    }

    #[test]
    fn reads_this_process() {
        let s = sample("self").expect("/proc/self on Linux");
        assert!(s.rss_bytes > 0);
    }

    #[test]
    fn reads_process_metrics_from_an_exposition() {
        let text = "# HELP process_cpu_seconds_total x\nprocess_cpu_seconds_total 12.5\n\
                    process_resident_memory_bytes 4.2e+07\nprocess_cpu_seconds_total_x 1\n";
        let s = parse_metrics(text).unwrap();
        assert_eq!(s.cpu, Duration::from_millis(12_500));
        assert_eq!(s.rss_bytes, 42_000_000);
        assert!(parse_metrics("floorcast_viewers 3\n").is_none());
    }
}
