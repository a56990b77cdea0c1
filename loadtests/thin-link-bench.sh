#!/usr/bin/env bash
# Thin-link figures (issue 18): a Chromium viewer in a network namespace held to 150 kbit/s
# (tbf) with 5, 10 and 20 % random loss (nftables), the floor published by a Chromium outside
# it. Per loss level: the audio residual loss (concealed samples / samples received) and the
# raw audio packet loss, CART caption delays, video frames decoded in the window, the link
# notice, and the time for video to come back once the rate limit is lifted (loss kept; if it
# does not come back, also once the loss is lifted). Runs tests/browser/thin_link.test.mjs in
# figures-only mode; JSON in test-artifacts/thin-link.json. Needs root, ip, tc, nft.
# Usage (after cargo build -p floorcast-server --bin floorcast, npm ci in tests/browser):
#   loadtests/thin-link-bench.sh ["5 10 20"]
# Environment: FLOORCAST_BIN=path to bench another build; THIN_LINK_WINDOW_MS,
# THIN_LINK_SETTLE_MS (default 10000 each).
set -euo pipefail
cd "$(dirname "$0")/.."
losses=${1:-"5 10 20"}
out=$(mktemp)
trap 'rm -f "$out"' EXIT
echo "\$ THIN_LINK_LOSSES=\"$losses\" node tests/browser/thin_link.test.mjs"
THIN_LINK_LOSSES="$losses" node tests/browser/thin_link.test.mjs > "$out" 2>&1 || { cat "$out"; exit 1; }
grep -q '^# thin-link ' "$out" || { cat "$out"; exit 1; }
python3 - "$out" <<'PY'
import json, sys

def show(x, fmt="{}"):
    return "-" if x is None else fmt.format(x)

rows = []
for line in open(sys.argv[1]):
    if not line.startswith("# thin-link "):
        continue
    rest = line[len("# thin-link "):]
    if rest.startswith("clean "):
        c = json.loads(rest[len("clean "):])
        print("clean link: audio residual loss {}, video {:.1f} frames/s, caption {} ms; the viewer offers RED: {}, the answer has it: {}".format(
            c["audio_residual_loss"], c["video_frames"] / c["seconds"], c["caption_delay_ms"], c.get("offer_red"), c.get("answer_red")))
    else:
        rows.append(json.loads(rest))
head = ("rate", "loss", "audio resid", "audio raw", "codec", "captions ms (max)", "video fr", "notice", "notice at", "video back", "no loss")
fmt = "{:>8} {:>5} {:>11} {:>9} {:>10} {:>22} {:>8} {:>6} {:>9} {:>10} {:>9}"
print(fmt.format(*head))
for r in rows:
    caps = ",".join(show(d) for d in r["caption_delays_ms"]) + " (" + show(r["caption_delay_max_ms"]) + ")"
    print(fmt.format(r["rate"], f"{r['loss_pct']}%", show(r["audio_residual_loss"], "{:.2%}"), show(r["audio_packet_loss"], "{:.2%}"),
                     r["audio_codec"], caps, r["video_frames"], show(r.get("notice_fraction"), "{:.0%}"),
                     show(r["notice_after_ms"], "{} ms"), show(r["video_back_ms"], "{} ms"), show(r["video_back_after_loss_lifted_ms"], "{} ms")))
print("notice: share of the window the link notice was shown; video back: after the rate limit is lifted (loss kept); no loss: after the loss is lifted too, when it had not come back")
PY
