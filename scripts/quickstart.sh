#!/usr/bin/env bash
# Quick start: installs what is needed, builds, and runs trunkline in the foreground on the
# example configuration (deploy/config.example.json). Ctrl-C stops it.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTL_TESTS=OFF -DTL_SANITIZE=OFF >/dev/null
cmake --build build -j"$(nproc)"

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

if [ -x build/tl-echo-agent ]; then
  build/tl-echo-agent --port 8090 &
  pids+=($!)
fi
echo "trunkline: SIP on udp+tcp port 5060 of this host; calls go to the example agent at ws://127.0.0.1:8090"
# TL_CONFIG=deploy/config.tls.example.json: SIP over TLS on 5061 too (README, "Over TLS").
build/trunkline --config "${TL_CONFIG:-deploy/config.example.json}"
