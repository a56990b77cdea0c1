#!/usr/bin/env python3
"""HTTP exhaustion without a token against a running node (issue 16, attack 2); prints the
node's RSS and a bystander's /healthz latency while each attack runs.

    loadtests/http_exhaustion.py --url http://127.0.0.1:8080 --pid $(pidof floorcast)

Attacks, each from several loopback source addresses (127.0.9.x, so per-address caps are
exercised too), one after the other:
  slow-headers  N connections that send half a request head and stall
  slow-bodies   N connections that declare a 65,536-byte body and send 65,000 bytes of it
  idle          N connections that send nothing at all
Loopback only: the source addresses are bound locally. Needs `ulimit -n` above N.
"""

import argparse
import socket
import time
import urllib.parse


def rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def healthz_ms(host, port):
    t = time.monotonic()
    try:
        s = socket.create_connection((host, port), timeout=5)
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = s.recv(64)
        s.close()
        ok = b" 200 " in data
    except OSError:
        ok = False
    return (time.monotonic() - t) * 1e3 if ok else None


def open_many(host, port, n, first):
    conns, refused = [], 0
    for i in range(n):
        src = f"127.0.9.{1 + i % 8}"
        try:
            s = socket.socket()
            s.bind((src, 0))
            s.settimeout(2)
            s.connect((host, port))
            if first:
                s.sendall(first)
            conns.append(s)
        except OSError:
            refused += 1
    return conns, refused


def still_open(conns):
    """Connections the server neither answered nor closed: still holding its resources."""
    n = 0
    for s in conns:
        s.setblocking(False)
        try:
            s.recv(4096)
        except BlockingIOError:
            n += 1
        except OSError:
            pass
    return n


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", default="http://127.0.0.1:8080")
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--connections", type=int, default=1500)
    ap.add_argument("--hold", type=float, default=15.0, help="seconds to watch each attack")
    a = ap.parse_args()
    u = urllib.parse.urlparse(a.url)
    host, port = u.hostname, u.port or 80
    attacks = {
        "slow-headers": b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ",
        "slow-bodies": b"POST /api/sessions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 65536\r\n\r\n" + b" " * 65000,
        "idle": None,
    }
    print(f"{'attack':<13} {'conns':>6} {'RSS before':>10} {'RSS peak':>9} {'held at end':>11} "
          f"{'healthz p50':>11} {'healthz max':>11}")
    for name, first in attacks.items():
        before = rss_mb(a.pid)
        conns, _ = open_many(host, port, a.connections, first)
        peak, lat = before, []
        end = time.monotonic() + a.hold
        while time.monotonic() < end:
            peak = max(peak, rss_mb(a.pid))
            ms = healthz_ms(host, port)
            lat.append(ms if ms is not None else 5000.0)
            time.sleep(0.5)
        held = still_open(conns)
        for s in conns:
            s.close()
        lat.sort()
        print(f"{name:<13} {len(conns):>6} {before:>8.0f}MB {peak:>7.0f}MB {held:>11} "
              f"{lat[len(lat) // 2]:>9.1f}ms {lat[-1]:>9.1f}ms")
        time.sleep(2)


if __name__ == "__main__":
    main()
