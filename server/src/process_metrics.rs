//! The standard `process_*` metrics, read when `/metrics` is scraped: CPU from `getrusage`
//! (microseconds, so a few seconds' window is measurable; the prometheus crate's own
//! collector counts whole seconds), memory and threads from `/proc/self/status`, open file
//! descriptors from `/proc/self/fd`. A load generator on another machine reads the server's
//! cost from these.
//!
//! Also `floorcast_media_thread_cpu_seconds_total`: the SFU forwards on its media threads
//! (one per shard), so their summed CPU rate reaching the shard count is the node's capacity,
//! whatever the process total says.

use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{Counter, Gauge, IntGauge, Opts};

pub struct ProcessMetrics {
    cpu: Counter,
    /// CPU seconds already added to `cpu` (a counter only goes up by deltas).
    cpu_seen: Mutex<f64>,
    rss: IntGauge,
    threads: IntGauge,
    open_fds: IntGauge,
    start_time: Gauge,
    media_cpu: Counter,
    media_cpu_seen: Mutex<f64>,
    media_threads: IntGauge,
    descs: Vec<Desc>,
}

/// The media engine's thread names (media/src/driver.rs) as the kernel keeps them: cut to 15
/// bytes, so `floorcast-media-<n>` of every shard reads as this.
const MEDIA_THREAD: &str = "floorcast-media";

impl ProcessMetrics {
    pub fn new() -> prometheus::Result<Self> {
        let cpu = Counter::with_opts(Opts::new(
            "process_cpu_seconds_total",
            "Total user and system CPU time spent in seconds.",
        ))?;
        let rss = IntGauge::new(
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
        )?;
        let threads = IntGauge::new("process_threads", "Number of OS threads in the process.")?;
        let open_fds = IntGauge::new("process_open_fds", "Number of open file descriptors.")?;
        let start_time = Gauge::new(
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds.",
        )?;
        let media_cpu = Counter::with_opts(Opts::new(
            "floorcast_media_thread_cpu_seconds_total",
            "CPU time of the SFU's media threads (all shards); a rate near the shard count means \
             the node is at capacity.",
        ))?;
        let media_threads = IntGauge::new(
            "floorcast_media_threads",
            "Media threads (shards) running: the divisor of floorcast_media_thread_cpu_seconds_total.",
        )?;
        start_time.set(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64()),
        );
        let descs = [
            cpu.desc(),
            rss.desc(),
            threads.desc(),
            open_fds.desc(),
            start_time.desc(),
            media_cpu.desc(),
            media_threads.desc(),
        ]
        .into_iter()
        .flatten()
        .cloned()
        .collect();
        Ok(Self {
            cpu,
            cpu_seen: Mutex::new(0.0),
            rss,
            threads,
            open_fds,
            start_time,
            media_cpu,
            media_cpu_seen: Mutex::new(0.0),
            media_threads,
            descs,
        })
    }

    fn refresh(&self) {
        if let Some(total) = cpu_seconds() {
            let mut seen = self.cpu_seen.lock().unwrap_or_else(|e| e.into_inner());
            if total > *seen {
                self.cpu.inc_by(total - *seen);
                *seen = total;
            }
        }
        if let Ok(status) = std::fs::read_to_string("/proc/self/status") {
            if let Some(kb) = status_field(&status, "VmRSS:") {
                self.rss.set(kb * 1024);
            }
            if let Some(n) = status_field(&status, "Threads:") {
                self.threads.set(n);
            }
        }
        if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
            self.open_fds.set(dir.count() as i64);
        }
        if let Some((total, threads)) = thread_cpu_seconds(MEDIA_THREAD) {
            self.media_threads.set(threads as i64);
            let mut seen = self
                .media_cpu_seen
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if total > *seen {
                self.media_cpu.inc_by(total - *seen);
                *seen = total;
            }
        }
    }
}

impl Collector for ProcessMetrics {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        self.refresh();
        let mut out = self.cpu.collect();
        out.extend(self.rss.collect());
        out.extend(self.threads.collect());
        out.extend(self.open_fds.collect());
        out.extend(self.start_time.collect());
        out.extend(self.media_cpu.collect());
        out.extend(self.media_threads.collect());
        out
    }
}

/// User + system CPU of the whole process, seconds.
fn cpu_seconds() -> Option<f64> {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::uninit();
    // SAFETY: getrusage writes a full `rusage` into the pointer it is given and reports
    // failure through its return value, checked before the value is read.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) };
    if rc != 0 {
        return None;
    }
    // SAFETY: rc == 0, so getrusage initialised it.
    let u = unsafe { usage.assume_init() };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Some(secs(u.ru_utime) + secs(u.ru_stime))
}

/// User + system CPU of this process's threads named `name`, seconds (clock-tick resolution,
/// 10 ms), and how many there are; `None` when there is no such thread.
fn thread_cpu_seconds(name: &str) -> Option<(f64, usize)> {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let ticks = if ticks > 0 { ticks as f64 } else { 100.0 };
    let mut total = None;
    for task in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        let path = task.path();
        let Ok(comm) = std::fs::read_to_string(path.join("comm")) else {
            continue;
        };
        if comm.trim_end() != name {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(path.join("stat")) else {
            continue;
        };
        if let Some(t) = stat_cpu_ticks(&stat) {
            let (seconds, threads) = total.get_or_insert((0.0, 0));
            *seconds += t as f64 / ticks;
            *threads += 1;
        }
    }
    total
}

/// utime + stime (clock ticks) from a `stat` line; fields counted after the last `)`, since
/// the name may hold spaces and parentheses.
fn stat_cpu_ticks(stat: &str) -> Option<u64> {
    let fields: Vec<&str> = stat[stat.rfind(')')? + 1..].split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// The number in a `/proc/self/status` line such as `VmRSS:   12345 kB`.
fn status_field(status: &str, name: &str) -> Option<i64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(name))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus::Registry;

    #[test]
    fn exports_cpu_with_sub_second_resolution_and_memory() {
        let registry = Registry::new();
        registry
            .register(Box::new(ProcessMetrics::new().unwrap()))
            .unwrap();
        // Burn a little CPU so the counter is above zero.
        let mut x = 0u64;
        for i in 0..5_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        let families = registry.gather();
        let value = |name: &str| {
            let f = families.iter().find(|f| f.name() == name).unwrap();
            let m = &f.get_metric()[0];
            if name.ends_with("_total") {
                m.get_counter().get_value()
            } else {
                m.get_gauge().get_value()
            }
        };
        let cpu = value("process_cpu_seconds_total");
        assert!(cpu > 0.0 && cpu.fract() != 0.0, "cpu {cpu}");
        assert!(value("process_resident_memory_bytes") > 1_000_000.0);
        assert!(value("process_threads") >= 1.0);
        assert!(value("process_open_fds") >= 3.0);
    }

    #[test]
    fn reads_a_threads_cpu_from_its_stat_line() {
        let stat = "4242 (floorcast-me dia)) R 1 2 3 4 5 6 7 8 9 10 150 25 0 0 20 0 1 0";
        assert_eq!(stat_cpu_ticks(stat), Some(175));
        assert_eq!(stat_cpu_ticks("garbage"), None);
        // This test's own thread is found by its name (the kernel keeps 15 bytes of it, so
        // the module's other tests running alongside may share it).
        let name = std::fs::read_to_string("/proc/thread-self/comm").unwrap();
        let found = thread_cpu_seconds(name.trim_end()).map(|(_, n)| n);
        assert!(found.is_some_and(|n| n >= 1), "{found:?}");
        assert!(thread_cpu_seconds("no-such-thread").is_none());
    }

    #[test]
    fn reads_status_fields() {
        let s = "Name:\tfloorcast\nVmRSS:\t   20480 kB\nThreads:\t7\n";
        assert_eq!(status_field(s, "VmRSS:"), Some(20480));
        assert_eq!(status_field(s, "Threads:"), Some(7));
        assert_eq!(status_field(s, "VmSwap:"), None);
    }
}
