#!/usr/bin/env bash
# One vs several media shards: starts the release floorcast with FLOORCAST_MEDIA_SHARDS=SHARDS,
# runs a light fan-out of VIEWERS for 20 s and prints the figures and the media threads' CPU.
# Usage (after cargo build --release -p floorcast-server -p floorcast-load): loadtests/shard-bench.sh SHARDS VIEWERS
set -u
cd "$(dirname "$0")/.."
n=$1; v=$2; d=$(mktemp -d); secret=shard-bench-0123456789abcdef0123456789
FLOORCAST_MEDIA_SHARDS=$n FLOORCAST_CREATIONS_PER_MINUTE_PER_IP=1000000 FLOORCAST_MAX_HTTP_CONNECTIONS_PER_IP=1000000 FLOORCAST_CAPTION_ENGINE=off RUST_LOG=warn \
  target/release/floorcast serve --http-addr 127.0.0.1:0 --media-udp-addr 127.0.0.1:0 --data-dir $d/data --jwt-secret $secret > $d/out 2>$d/err &
pid=$!
for i in $(seq 100); do url=$(sed -n 's/^floorcast listening on \(http:[^ ]*\).*/\1/p' $d/out|head -1); [ -n "$url" ] && break; sleep 0.1; done
timeout 200 target/release/floorcast-load fanout --url $url --session bench --create-session --secret $secret --viewers $v --duration 20 --mode light --ramp-per-second 100 --server-pid $pid 2>&1 | grep -E "viewers  |server CPU|loss|join|freezes|packets/s out"
ps -L -o comm,time -p $pid | grep media
kill $pid; rm -rf $d
