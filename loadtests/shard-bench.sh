#!/usr/bin/env bash
# One vs several media shards, GSO on or off: starts the release floorcast with
# FLOORCAST_MEDIA_SHARDS=SHARDS, runs a light fan-out of VIEWERS for 20 s and prints the
# figures, the media threads' CPU, the egress counters (datagrams, GSO messages) and the
# forward latency of the measurement window.
# Usage (after cargo build --release -p floorcast-server -p floorcast-load):
#   loadtests/shard-bench.sh SHARDS VIEWERS
# Environment: FLOORCAST_MEDIA_UDP_GSO=false to send one datagram per message;
# FLOORCAST_BIN=path to bench another build; GEN_NICE=19 to run the load generator at the lowest
# priority (so it preempts the media threads less); PERF=1 to record the server with perf for 10 s
# of the window and print the top symbols (perf data in $PERF_OUT, default /tmp).
set -u
cd "$(dirname "$0")/.."
n=$1; v=$2; d=$(mktemp -d); secret=shard-bench-0123456789abcdef0123456789
bin=${FLOORCAST_BIN:-target/release/floorcast}
FLOORCAST_MEDIA_SHARDS=$n FLOORCAST_CREATIONS_PER_MINUTE_PER_IP=1000000 FLOORCAST_MAX_HTTP_CONNECTIONS_PER_IP=1000000 FLOORCAST_CAPTION_ENGINE=off RUST_LOG=warn \
  $bin serve --http-addr 127.0.0.1:0 --media-udp-addr 127.0.0.1:0 --data-dir $d/data --jwt-secret $secret > $d/out 2>$d/err &
pid=$!
for i in $(seq 100); do url=$(sed -n 's/^floorcast listening on \(http:[^ ]*\).*/\1/p' $d/out|head -1); [ -n "$url" ] && break; sleep 0.1; done
scrape() {
  python3 -c 'import sys,urllib.request; sys.stdout.write(urllib.request.urlopen(sys.argv[1] + "/metrics", timeout=5).read().decode())' "$url"
}
# The ramp runs at 100 viewers/s; the window's figures are the second scrape minus this one.
settle=$((v / 100 + 4))
(sleep $settle; scrape > $d/m0) &
scrape_pid=$!
perf_pid=
if [ "${PERF:-0}" = 1 ]; then
  out=${PERF_OUT:-/tmp}/shard-bench-$n-$v.perf
  (sleep $settle; timeout 60 perf record -q -g -p $pid -o $out -- sleep 10 >/dev/null 2>&1) &
  perf_pid=$!
fi
timeout 200 nice -n ${GEN_NICE:-0} target/release/floorcast-load fanout --url $url --session bench --create-session --secret $secret --viewers $v --duration 20 --mode light --ramp-per-second 100 --server-pid $pid 2>&1 | grep -E "viewers  |server CPU|loss|join|freezes|packets/s out"
ps -L -o comm,time -p $pid | grep media
scrape > $d/m1
wait $scrape_pid
python3 loadtests/window_figures.py $d/m0 $d/m1
[ -n "$perf_pid" ] && wait $perf_pid
kill $pid
if [ -n "$perf_pid" ]; then
  perf report -i $out --no-children --percent-limit 1.5 --stdio -g none 2>/dev/null | grep -v "^#" | grep -v "^$" | head -40
fi
rm -rf $d
