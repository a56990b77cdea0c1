//! RFC 3550 §6.4.1 interarrival jitter: the smoothed mean deviation of the spacing between
//! packets at the receiver from their spacing in RTP time. The caller passes arrival times,
//! so the estimator is pure and tested on made-up clocks.

use std::time::Duration;

/// Interarrival jitter of one RTP stream.
#[derive(Debug, Clone)]
pub struct JitterEstimator {
    clock_rate: f64,
    /// (arrival in RTP clock units, RTP timestamp) of the previous packet.
    prev: Option<(f64, u32)>,
    /// J, in RTP clock units.
    jitter: f64,
}

impl JitterEstimator {
    pub fn new(clock_rate: u32) -> Self {
        Self {
            clock_rate: f64::from(clock_rate.max(1)),
            prev: None,
            jitter: 0.0,
        }
    }

    /// `arrival` is measured from any fixed origin (e.g. the viewer's creation).
    pub fn record(&mut self, arrival: Duration, rtp_timestamp: u32) {
        let r = arrival.as_secs_f64() * self.clock_rate;
        if let Some((prev_r, prev_ts)) = self.prev {
            let ts_delta = f64::from(rtp_timestamp.wrapping_sub(prev_ts) as i32);
            let d = (r - prev_r) - ts_delta;
            self.jitter += (d.abs() - self.jitter) / 16.0;
        }
        self.prev = Some((r, rtp_timestamp));
    }

    /// Current jitter in milliseconds.
    pub fn jitter_ms(&self) -> f64 {
        self.jitter * 1000.0 / self.clock_rate
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perfectly_paced_stream_has_no_jitter() {
        let mut j = JitterEstimator::new(48_000);
        for i in 0..100u32 {
            j.record(
                Duration::from_millis(u64::from(i) * 20),
                i.wrapping_mul(960),
            );
        }
        assert!(j.jitter_ms() < 1e-6);
    }

    #[test]
    fn alternating_delay_converges_to_the_deviation() {
        // Every other packet 4 ms late: |D| alternates 4 ms, so J converges to 4 ms.
        let mut j = JitterEstimator::new(90_000);
        for i in 0..2000u64 {
            let late = if i % 2 == 1 { 4 } else { 0 };
            j.record(
                Duration::from_millis(i * 33 + late),
                (i as u32).wrapping_mul(2970).wrapping_add(u32::MAX - 5000),
            );
        }
        assert!((j.jitter_ms() - 4.0).abs() < 0.1, "{}", j.jitter_ms());
    }
}
