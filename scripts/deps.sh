#!/usr/bin/env bash
# Installs the Debian 12 packages waitroom needs to build, run and test, if
# any are missing. Uses sudo when not root. Safe to run again: it installs
# nothing when everything is there. With --bench, also what bench/run.sh
# needs: the anchors (nginx, h2o, wrk, redis-benchmark) and gnuplot.
set -euo pipefail

packages=(
  build-essential autoconf automake libtool pkg-config
  libh2o-dev libuv1-dev libwebsockets-dev libwebsockets-evlib-uv
  libhiredis-dev libjansson-dev libjwt-dev libssl-dev libcmocka-dev
  redis-server redis-tools curl python3 python3-websockets
)
if [ "${1:-}" = "--bench" ]; then
  packages+=(wrk nginx-light h2o gnuplot-nox linux-perf)
fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "waitroom: installing missing packages: ${missing[*]}" >&2
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "waitroom: not root and no sudo; install: ${missing[*]}" >&2; exit 1; }
  sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
