#!/usr/bin/env bash
# Checks the alert rules and runs their unit tests with promtool (Debian `prometheus`).
#   deploy/prometheus/check.sh
set -euo pipefail
cd "$(dirname "$0")"
if ! command -v promtool >/dev/null; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -q
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends prometheus
fi
promtool check rules rules.yml
promtool test rules rules.test.yml
