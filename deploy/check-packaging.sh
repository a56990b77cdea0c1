#!/usr/bin/env bash
# Checks the deployment files with what can check them here:
#   - systemd: `systemd-analyze verify` on the unit (ExecStart pointed at a binary that exists);
#   - Helm: deploy/render_helm.py renders the chart with several sets of values (a plain
#     cluster and one with the Prometheus operator's CRDs, coturn with and without TLS, HTTPS
#     from the node or an Ingress) and checks the objects, and the values that must fail do
#     (helm lint/template too where helm is installed);
#   - the rendered floorcast.toml is accepted by the real binary (FLOORCAST_BIN, if built);
#   - Compose: `docker compose config` where the plugin exists, else the YAML is parsed and
#     its services, coturn's auth mode and the Grafana/Prometheus provisioning are checked;
#   - coturn (Compose's turnserver.conf and the chart's): the peers it must never relay to
#     (private, loopback, link-local, CGNAT, multicast; IPv4 and IPv6) are denied, and where
#     coturn is installed and this host has a private address, a real coturn with that config
#     refuses to relay to it (403 Forbidden IP) and relays once it is the allowed node.
#   deploy/check-packaging.sh
set -euo pipefail
cd "$(dirname "$0")"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

echo "==> systemd unit"
if command -v systemd-analyze >/dev/null; then
  sed 's#^ExecStart=/usr/local/bin/floorcast #ExecStart=/bin/true #; /^AssertPathExists=/d' \
    systemd/floorcast.service >"$tmp/floorcast.service"
  out="$(systemd-analyze verify "$tmp/floorcast.service" 2>&1 || true)"
  # Warnings about the host (no systemd as PID 1 in a container) are not the unit's fault.
  errors="$(printf '%s\n' "$out" | grep -v -e 'Failed to connect' -e 'not been booted' -e '^$' || true)"
  if [ -n "$errors" ]; then printf '%s\n' "$errors"; exit 1; fi
  grep -q '^TimeoutStopSec=15min' systemd/floorcast.service
  echo "systemd-analyze verify: clean"
else
  echo "systemd-analyze not installed: skipped"
fi

echo "==> Helm chart"
python3 -c 'import yaml' 2>/dev/null || python3 -m pip install --quiet pyyaml
H="python3 render_helm.py --quiet --set tls.secretName=fc-tls"
CRDS="--api-versions monitoring.coreos.com/v1/ServiceMonitor --api-versions monitoring.coreos.com/v1/PrometheusRule"
# A plain cluster (no Prometheus operator: no ServiceMonitor, no PrometheusRule), and one with it.
$H --set secrets.jwtSecret=check-secret
$H --set secrets.jwtSecret=check-secret $CRDS
$H --set secrets.existingSecret=floorcast-secrets --set serviceMonitor.enabled=false --set prometheusRule.enabled=false $CRDS
$H --set secrets.jwtSecret=x --set coturn.enabled=true
$H --set secrets.jwtSecret=x --set coturn.enabled=true --set coturn.tlsPort=0
# HTTPS from an Ingress with a cert-manager certificate, the node behind it on HTTPS or HTTP.
$H --set secrets.jwtSecret=x --set ingress.enabled=true --set ingress.host=fc.example.org \
  --set ingress.clusterIssuer=letsencrypt
python3 render_helm.py --quiet --set secrets.jwtSecret=x --set ingress.enabled=true --set ingress.host=fc.example.org
python3 render_helm.py --set secrets.jwtSecret=x --set tls.secretName=fc-tls --set 'config.turn_urls=["turn:turn.example.org:3478"]' \
  >"$tmp/rendered.yaml"
# What must fail, and say why: no JWT secret; no certificate (neither HTTPS nor an Ingress);
# coturn's TLS listener without a certificate.
expect_failure() {
  local why="$1"; shift
  if python3 render_helm.py --quiet "$@" 2>"$tmp/err"; then
    echo "rendering with $* should fail ($why)"; exit 1
  fi
  grep -q "$why" "$tmp/err" || { cat "$tmp/err"; exit 1; }
}
expect_failure 'secrets.jwtSecret' --set tls.secretName=fc-tls
expect_failure 'tls.secretName (a kubernetes.io/tls Secret) is required' --set secrets.jwtSecret=x
expect_failure 'coturn.tlsPort needs a certificate' --set secrets.jwtSecret=x --set ingress.enabled=true \
  --set ingress.host=h --set coturn.enabled=true
# Captions: Whisper by default with the models the image carries (the Dockerfile's models
# stage), in the chart and in Compose alike.
models=/usr/share/floorcast/whisper
grep -q '^    caption_engine = "whisper"$' "$tmp/rendered.yaml"
grep -q "^    whisper_models = \"$models\"\$" "$tmp/rendered.yaml"
grep -q "COPY --from=models /models/whisper $models\$" compose/Dockerfile
grep -q "FLOORCAST_WHISPER_MODELS: $models\$" compose/docker-compose.yml
grep -q 'FLOORCAST_CAPTION_ENGINE: whisper$' compose/docker-compose.yml
# The chart carries its own copy of the alert rules (helm reads nothing outside the chart).
cmp prometheus/rules.yml helm/floorcast/files/rules.yml || {
  echo "helm/floorcast/files/rules.yml differs from prometheus/rules.yml: copy it"; exit 1; }
if command -v helm >/dev/null; then
  helm lint helm/floorcast --set secrets.jwtSecret=x --set tls.secretName=fc-tls
  helm template conf helm/floorcast --set secrets.jwtSecret=x --set tls.secretName=fc-tls >/dev/null
fi

bin="${FLOORCAST_BIN:-../target/debug/floorcast}"
if [ -x "$bin" ]; then
  echo "==> the chart's floorcast.toml is accepted by $bin"
  python3 - "$tmp/rendered.yaml" "$tmp/floorcast.toml" <<'PY'
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
cm = next(d for d in docs if d["kind"] == "ConfigMap")
open(sys.argv[2], "w").write(cm["data"]["floorcast.toml"])
PY
  # Loopback and ephemeral ports and a certificate made here for the check (the chart's
  # tls_cert/tls_key name the mounted Secret); every other key comes from the chart.
  grep -q '^tls_cert = ' "$tmp/floorcast.toml"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$tmp/key.pem" \
    -out "$tmp/cert.pem" -days 1 -subj /CN=localhost >/dev/null 2>&1
  FLOORCAST_TLS_CERT="$tmp/cert.pem" FLOORCAST_TLS_KEY="$tmp/key.pem" \
  FLOORCAST_JWT_SECRET=check-packaging-secret-0123456789abcdef FLOORCAST_TURN_SECRET=t \
    FLOORCAST_HTTP_ADDR=127.0.0.1:0 FLOORCAST_MEDIA_UDP_ADDR=127.0.0.1:0 FLOORCAST_DATA_DIR="$tmp/data" \
    FLOORCAST_CAPTION_ENGINE=off timeout 10 "$bin" serve --config "$tmp/floorcast.toml" >"$tmp/out" 2>&1 &
  pid=$!
  for _ in $(seq 100); do grep -q 'floorcast listening on' "$tmp/out" && break; sleep 0.1; done
  kill -TERM "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  grep -q 'floorcast listening on' "$tmp/out" || { cat "$tmp/out"; exit 1; }
  echo "accepted"
fi

echo "==> Compose"
if docker compose version >/dev/null 2>&1; then
  (cd compose && FLOORCAST_JWT_SECRET=x TURN_SECRET=y PUBLIC_IP=192.0.2.1 PUBLIC_HOST=fc.example.org docker compose config -q)
fi
python3 - <<'PY'
import yaml
c = yaml.safe_load(open("compose/docker-compose.yml"))
s = c["services"]
for name in ("floorcast", "coturn", "prometheus", "grafana"):
    assert name in s, f"no {name} service"
cmd = s["coturn"]["command"]
assert cmd[:2] == ["-c", "/etc/coturn/turnserver.conf"], "coturn does not read its turnserver.conf"
assert "./coturn/turnserver.conf:/etc/coturn/turnserver.conf:ro" in s["coturn"]["volumes"]
assert "--allowed-peer-ip=${PUBLIC_IP}" in cmd, "coturn may not relay to the node"
# TURN over TLS on 443, with the certificate of tls/, and handed out as a turns: URL.
for arg in ("--tls-listening-port=443", "--cert=/etc/coturn/tls/fullchain.pem", "--pkey=/etc/coturn/tls/privkey.pem"):
    assert arg in cmd, f"coturn without {arg}"
assert "./tls:/etc/coturn/tls:ro" in s["coturn"]["volumes"], "coturn's certificate not mounted"
# HTTPS from the node itself, with the same certificate.
fenv = s["floorcast"]["environment"]
assert fenv["FLOORCAST_TLS_CERT"] == "/etc/floorcast/tls/fullchain.pem", "floorcast without tls_cert"
assert fenv["FLOORCAST_TLS_KEY"] == "/etc/floorcast/tls/privkey.pem", "floorcast without tls_key"
assert "./tls:/etc/floorcast/tls:ro" in s["floorcast"]["volumes"], "floorcast's certificate not mounted"
assert fenv["FLOORCAST_PUBLIC_URL"].startswith("https://"), "the public URL is not https://"
# No default Grafana password: Compose stops with a message when it is not in .env.
pw = s["grafana"]["environment"]["GF_SECURITY_ADMIN_PASSWORD"]
assert pw.startswith("${GRAFANA_ADMIN_PASSWORD:?"), f"Grafana's password has a default: {pw}"
# Alertmanager receives Prometheus's alerts.
assert "alertmanager" in s, "no alertmanager service"
assert "./alertmanager.yml:/etc/alertmanager/alertmanager.yml:ro" in s["alertmanager"]["volumes"]
assert "turns:${PUBLIC_HOST" in s["floorcast"]["environment"]["FLOORCAST_TURN_URLS"] and \
    ":443?transport=tcp" in s["floorcast"]["environment"]["FLOORCAST_TURN_URLS"], "no turns: URL on 443"
from render_helm import coturn_problems
problems = coturn_problems(open("compose/coturn/turnserver.conf").read(), "compose/coturn/turnserver.conf")
assert not problems, "\n".join(problems)
env = s["floorcast"]["environment"]
for key in ("FLOORCAST_TURN_URLS", "FLOORCAST_TURN_SECRET", "FLOORCAST_JWT_SECRET", "FLOORCAST_MEDIA_PUBLIC_IPS"):
    assert key in env, f"floorcast without {key}"
assert s["floorcast"]["stop_grace_period"] == "15m"
assert any("rules.yml" in v for v in s["prometheus"]["volumes"]), "alert rules not mounted"
p = yaml.safe_load(open("compose/prometheus.yml"))
assert p["scrape_configs"][0]["job_name"] == "floorcast"
assert p["scrape_configs"][0]["scheme"] == "https", "Prometheus scrapes the HTTPS node over http"
assert p["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == ["127.0.0.1:9093"]
ignore = {l.strip() for l in open("../.dockerignore") if l.strip() and not l.startswith("#")}
for entry in ("target", "data", "**/node_modules", "test-artifacts", ".git"):
    assert entry in ignore, f".dockerignore does not keep {entry} out"
d = yaml.safe_load(open("compose/grafana/provisioning/datasources/prometheus.yml"))
assert d["datasources"][0]["uid"] == "prometheus"
b = yaml.safe_load(open("compose/grafana/provisioning/dashboards/floorcast.yml"))
assert b["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards/floorcast"
print("compose: services, TURN (denied peers), rules and Grafana provisioning present")
PY

echo "==> Alertmanager routes every severity of the alert rules"
if command -v amtool >/dev/null; then
  amtool check-config compose/alertmanager.yml >/dev/null
  for sev in $(python3 -c 'import yaml
rules = yaml.safe_load(open("prometheus/rules.yml"))
print(" ".join(sorted({r["labels"]["severity"] for g in rules["groups"] for r in g["rules"]})))'); do
    got="$(amtool config routes test --config.file=compose/alertmanager.yml severity="$sev" alertname=Check 2>/dev/null)"
    [ "$got" = "$sev" ] || { echo "severity=$sev goes to receiver '$got', not '$sev'"; exit 1; }
    echo "severity=$sev -> receiver $got"
  done
else
  echo "amtool (prometheus-alertmanager) not installed: skipped"
fi

echo "==> coturn with compose/coturn/turnserver.conf refuses private peers"
ip4="$(hostname -I 2>/dev/null | tr ' ' '\n' | grep -E '^[0-9]+(\.[0-9]+){3}$' | head -n 1 || true)"
if ! command -v turnserver >/dev/null || ! command -v turnutils_uclient >/dev/null; then
  echo "coturn (turnserver, turnutils) not installed: skipped"
elif [ -z "$ip4" ] || ! python3 -c 'import ipaddress, sys; sys.exit(not ipaddress.ip_address(sys.argv[1]).is_private)' "$ip4"; then
  echo "no private IPv4 address on this host to relay to: skipped"
else
  port=$((34000 + RANDOM % 2000))
  # One relay attempt from a TURN client (REST credentials from the shared secret) to a UDP
  # echo peer on this host's private address, through a coturn started with extra flags "$@".
  relay() {
    turnserver -c compose/coturn/turnserver.conf --static-auth-secret=check --realm=check \
      --listening-ip="$ip4" --relay-ip="$ip4" --listening-port="$port" --no-tls --no-dtls \
      --min-port=$((port + 10)) --max-port=$((port + 60)) --userdb="$tmp/turndb" \
      --pidfile="$tmp/turn.pid" --log-file=stdout "$@" >"$tmp/turn.log" 2>&1 &
    local turn=$!
    turnutils_peer -L "$ip4" -p $((port + 1)) >/dev/null 2>&1 &
    local peer=$!
    sleep 1
    timeout 20 turnutils_uclient -s -W check -u hub -p "$port" -e "$ip4" -r $((port + 1)) -n 10 -c "$ip4" \
      >"$tmp/relay.out" 2>&1 || true
    kill "$turn" "$peer" 2>/dev/null || true
    wait "$turn" "$peer" 2>/dev/null || true
  }
  relay
  grep -q '403 (Forbidden IP)' "$tmp/relay.out" || { cat "$tmp/relay.out"; echo "coturn relayed to $ip4"; exit 1; }
  echo "relay to $ip4 refused: 403 (Forbidden IP)"
  relay --allowed-peer-ip="$ip4"
  grep -q 'tot_recv_msgs=10$' "$tmp/relay.out" || { cat "$tmp/relay.out" "$tmp/turn.log"; echo "coturn did not relay to the allowed node $ip4"; exit 1; }
  echo "relay to $ip4 as the allowed node (allowed-peer-ip): 10 of 10 echoed"
fi
echo "==> packaging checks passed"
