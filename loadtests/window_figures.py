"""Egress counters and forward latency of a measurement window: the difference between two
scrapes of floorcast's /metrics (used by shard-bench.sh). Usage: window_figures.py BEFORE AFTER
"""

import sys


def read(path):
    metrics = {}
    with open(path) as f:
        for line in f:
            if line.startswith("floorcast_") and " " in line:
                key, value = line.rsplit(" ", 1)
                metrics[key] = float(value)
    return metrics


def main(before_path, after_path):
    before, after = read(before_path), read(after_path)

    def delta(key):
        return after.get(key, 0.0) - before.get(key, 0.0)

    sends = delta("floorcast_udp_gso_sends_total")
    segments = delta("floorcast_udp_gso_segments_total")
    per_message = segments / sends if sends else 0.0
    drops = delta("floorcast_udp_send_drops_total")
    print(
        f"GSO messages {sends:.0f}, datagrams in them {segments:.0f} "
        f"({per_message:.2f} per message), send drops {drops:.0f}"
    )

    prefix = "floorcast_forward_latency_seconds_bucket"
    buckets = sorted(
        (float(key.split('le="')[1].split('"')[0]), delta(key))
        for key in after
        if key.startswith(prefix) and "+Inf" not in key
    )
    turns = delta("floorcast_forward_latency_seconds_count")

    def quantile(q):
        # Buckets are cumulative: the first whose count reaches q of all turns bounds it.
        for le, count in buckets:
            if count >= q * turns:
                return f"<= {le * 1000:g} ms"
        return "above the last bucket"

    print(
        f"forward latency over {turns:.0f} turns: p50 {quantile(0.5)}, "
        f"p99 {quantile(0.99)}, p99.9 {quantile(0.999)}"
    )


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
