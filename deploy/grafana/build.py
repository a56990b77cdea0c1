#!/usr/bin/env python3
"""Writes floorcast.json, the Grafana dashboard, from the panel list below (a list is easier
to review than 1,000 lines of JSON). Run: python3 deploy/grafana/build.py"""
import json
from pathlib import Path

DS = {"type": "prometheus", "uid": "${datasource}"}
SEL = 'job="floorcast",instance=~"$instance"'
SESS = SEL + ',session=~"$session"'

panels = []
next_id = 1
y = 0


def row(title):
    global next_id, y
    panels.append({"type": "row", "title": title, "id": next_id, "collapsed": False,
                   "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}, "panels": []})
    next_id += 1
    y += 1


def line(x, w, h=7):
    return {"h": h, "w": w, "x": x, "y": y}


def panel(kind, title, exprs, x, w, unit="short", h=7, description=""):
    global next_id
    p = {
        "type": kind, "title": title, "id": next_id, "datasource": DS,
        "gridPos": line(x, w, h), "description": description,
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "targets": [{"refId": chr(65 + i), "datasource": DS, "expr": e, "legendFormat": lf}
                    for i, (e, lf) in enumerate(exprs)],
    }
    if kind == "stat":
        p["options"] = {"reduceOptions": {"calcs": ["lastNotNull"]}, "colorMode": "value"}
    panels.append(p)
    next_id += 1


def advance(h=7):
    global y
    y += h


row("Overview")
panel("stat", "Sessions", [(f"sum(floorcast_sessions{{{SEL}}})", "sessions")], 0, 4, h=4)
panel("stat", "Viewers", [(f"sum(floorcast_viewers{{{SESS}}})", "viewers")], 4, 4, h=4)
panel("stat", "Hubs watching", [(f"count(floorcast_hub_viewers{{{SESS}}} > 0)", "hubs")], 8, 4, h=4)
panel("stat", "Publishers", [(f"sum(floorcast_publishers{{{SESS}}})", "publishers")], 12, 4, h=4)
panel("stat", "Draining nodes", [(f"sum(floorcast_draining{{{SEL}}})", "draining")], 16, 4, h=4)
panel("stat", "Nodes up", [(f'sum(up{{job="floorcast",instance=~"$instance"}})', "up")], 20, 4, h=4)
advance(4)
panel("timeseries", "Viewers by session", [(f"sum by (session) (floorcast_viewers{{{SESS}}})", "{{session}}")], 0, 8)
panel("timeseries", "Media bitrate in / out", [
    (f'sum by (direction) (rate(floorcast_rtp_bytes_total{{{SEL}}}[1m])) * 8', "{{direction}}")], 8, 8, unit="bps")
panel("timeseries", "Viewers by link quality", [
    (f"sum by (link) (floorcast_viewers_by_link{{{SESS}}})", "{{link}}")], 16, 8,
    description="From the viewers' RTCP receiver reports: good < 1 % loss, fair < 5 %, poor above.")
advance()
panel("timeseries", "Viewer loss (p95 and worst viewer)", [
    (f'max by (session) (floorcast_viewer_loss_ratio{{{SESS},quantile="0.95"}})', "p95 {{session}}"),
    (f'max by (session) (floorcast_viewer_loss_ratio{{{SESS},quantile="1"}})', "worst {{session}}")],
    0, 8, unit="percentunit")
panel("timeseries", "NACK, retransmission and PLI rates", [
    (f"sum(rate(floorcast_nack_total{{{SEL}}}[1m]))", "NACK/s"),
    (f"sum(rate(floorcast_rtp_retransmitted_packets_total{{{SEL}}}[1m]))", "retransmitted/s"),
    (f"sum(rate(floorcast_pli_total{{{SEL}}}[1m]))", "keyframe requests/s")], 8, 8, unit="reqps")
panel("timeseries", "Join time p50 / p95", [
    (f"histogram_quantile(0.5, sum by (le) (rate(floorcast_join_duration_seconds_bucket{{{SEL}}}[5m])))", "p50"),
    (f"histogram_quantile(0.95, sum by (le) (rate(floorcast_join_duration_seconds_bucket{{{SEL}}}[5m])))", "p95")],
    16, 8, unit="s")
advance()
panel("timeseries", "Capacity: media threads busy", [
    (f"rate(floorcast_media_thread_cpu_seconds_total{{{SEL}}}[1m]) / on (instance) floorcast_media_threads{{{SEL}}}", "{{instance}}")], 0, 6, unit="percentunit",
    description="The SFU forwards on one thread per shard (media_shards, default one per core): their CPU over their number. Near 100 % the node is full.")
panel("timeseries", "Process CPU (cores)", [
    (f"rate(process_cpu_seconds_total{{{SEL}}}[1m])", "CPU cores {{instance}}")], 6, 6, unit="short")
panel("timeseries", "Resident memory", [
    (f"process_resident_memory_bytes{{{SEL}}}", "{{instance}}")], 12, 6, unit="bytes")
panel("timeseries", "RTT and jitter to viewers (p95)", [
    (f'max by (session) (floorcast_rtt_seconds{{{SESS},quantile="0.95"}})', "RTT {{session}}"),
    (f'max by (session) (floorcast_jitter_seconds{{{SESS},quantile="0.95"}})', "jitter {{session}}"),
    (f"sum(rate(floorcast_udp_send_drops_total{{{SEL}}}[1m]))", "UDP send drops/s")], 18, 6, unit="s")
advance()
panel("timeseries", "Forward latency p50 / p99 (inside the SFU)", [
    (f"histogram_quantile(0.5, sum by (le) (rate(floorcast_forward_latency_seconds_bucket{{{SEL}}}[1m])))", "p50"),
    (f"histogram_quantile(0.99, sum by (le) (rate(floorcast_forward_latency_seconds_bucket{{{SEL}}}[1m])))", "p99")],
    0, 12, unit="s",
    description="From a media loop turn's first received datagram to its copies handed to the kernel.")
advance()

row("Floor")
panel("timeseries", "Queue length", [(f"sum by (session) (floorcast_floor_queue_length{{{SESS}}})", "{{session}}")], 0, 8)
panel("timeseries", "Wait for the floor p50 / p95", [
    (f"histogram_quantile(0.5, sum by (le) (rate(floorcast_floor_wait_seconds_bucket{{{SEL}}}[30m])))", "p50"),
    (f"histogram_quantile(0.95, sum by (le) (rate(floorcast_floor_wait_seconds_bucket{{{SEL}}}[30m])))", "p95")],
    8, 8, unit="s")
panel("timeseries", "Turns ended, by how", [
    (f"sum by (end) (increase(floorcast_floor_grants_total{{{SEL}}}[10m]))", "{{end}}")], 16, 8,
    description="Per 10 minutes: done (the speaker), revoked (the moderator), timeout (the limit).")
advance()

row("Captions")
panel("timeseries", "Caption latency p50 / p95 by source", [
    (f"histogram_quantile(0.5, sum by (le, source) (rate(floorcast_caption_latency_seconds_bucket{{{SEL}}}[5m])))", "p50 {{source}}"),
    (f"histogram_quantile(0.95, sum by (le, source) (rate(floorcast_caption_latency_seconds_bucket{{{SEL}}}[5m])))", "p95 {{source}}")],
    0, 8, unit="s")
panel("timeseries", "ASR real-time factor", [
    (f"floorcast_asr_real_time_factor{{{SESS}}}", "{{session}}")], 8, 8,
    description="CPU seconds per second of audio: above 1 the recognizer falls behind and drops audio.")
panel("timeseries", "ASR dropped audio", [
    (f"rate(floorcast_asr_dropped_audio_seconds_total{{{SEL}}}[5m])", "{{instance}}")], 16, 8, unit="percentunit")
advance()
panel("timeseries", "ASR sessions by engine and model", [
    (f"sum by (engine, model) (floorcast_asr_engine{{{SESS}}})", "{{engine}} {{model}}")], 0, 12,
    description="Sessions captioned by each engine now: whisper (tiny.en, base) or pocketsphinx.")
panel("timeseries", "ASR fallback to pocketsphinx", [
    (f"sum(floorcast_asr_fallback{{{SESS}}})", "sessions in fallback"),
    (f"sum(increase(floorcast_asr_fallbacks_total{{{SEL}}}[10m]))", "fallbacks per 10 min")], 12, 12,
    description="Whisper behind (backlog or a full queue): those sessions' new utterances go to "
                "pocketsphinx until it catches up. Alert: FloorcastAsrFallback.")
advance()

row("Abuse and limits")
panel("timeseries", "Refusals by limit", [
    (f"sum by (limit) (rate(floorcast_limit_refusals_total{{{SEL}}}[1m]))", "{{limit}}")], 0, 8, unit="reqps",
    description="Requests and connections refused at a limit (README: A node on the open internet).")
panel("timeseries", "Spoofed STUN and PLI floods", [
    (f"sum(rate(floorcast_stun_unauthenticated_total{{{SEL}}}[1m]))", "forged STUN/s"),
    (f"sum(rate(floorcast_viewer_keyframe_requests_dropped_total{{{SEL}}}[1m]))", "viewer PLIs dropped/s"),
    (f"sum(rate(floorcast_media_commands_deferred_total{{{SEL}}}[1m]))", "media turns with commands deferred/s")],
    8, 8, unit="reqps")
panel("timeseries", "Open HTTP connections", [
    (f"floorcast_http_connections{{{SEL}}}", "{{instance}}")], 16, 8)
advance()

dashboard = {
    "uid": "floorcast", "title": "Floorcast", "schemaVersion": 39, "version": 1,
    "tags": ["floorcast", "webrtc"], "timezone": "", "refresh": "10s",
    "time": {"from": "now-1h", "to": "now"},
    "templating": {"list": [
        {"name": "datasource", "type": "datasource", "query": "prometheus", "label": "Data source"},
        {"name": "instance", "type": "query", "datasource": DS, "label": "Node",
         "query": {"query": "label_values(floorcast_build_info, instance)", "refId": "instance"},
         "definition": "label_values(floorcast_build_info, instance)",
         "multi": True, "includeAll": True, "refresh": 2,
         "current": {"text": "All", "value": "$__all"}},
        {"name": "session", "type": "query", "datasource": DS, "label": "Session",
         "query": {"query": "label_values(floorcast_viewers, session)", "refId": "session"},
         "definition": "label_values(floorcast_viewers, session)",
         "multi": True, "includeAll": True, "refresh": 2,
         "current": {"text": "All", "value": "$__all"}},
    ]},
    "annotations": {"list": []},
    "panels": panels,
}
out = Path(__file__).with_name("floorcast.json")
out.write_text(json.dumps(dashboard, indent=2) + "\n")
print(f"wrote {out} ({len(panels)} panels)")
