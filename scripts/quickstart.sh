#!/usr/bin/env bash
# Quick start: installs what is needed, builds, and runs trunkline in the foreground on the
# example configuration (deploy/config.example.json). Ctrl-C stops it.
# For tests/integration/test_quickstart.py: TL_BUILD_DIR runs the binaries of that build tree
# (default build), and TL_QUICKSTART_NO_SETUP=1 skips the install and the build (scripts/test.sh
# has done both).
set -euo pipefail
cd "$(dirname "$0")/.."
build="${TL_BUILD_DIR:-build}"

if [ "${TL_QUICKSTART_NO_SETUP:-0}" != 1 ]; then
  bash scripts/install-deps.sh
  cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTL_TESTS=OFF -DTL_SANITIZE=OFF >/dev/null
  cmake --build "$build" -j"$(nproc)"
fi

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

# Ctrl-C goes to the terminal's whole foreground process group. The agent runs in its own
# session (setsid) so that it does not get it: trunkline drains the calls in progress, which
# still need their agent, and the agent is stopped (cleanup, on EXIT) only once trunkline has
# exited. The shell traps SIGINT meanwhile, so it waits for the drain instead of exiting.
if [ -x "$build/tl-echo-agent" ]; then
  setsid "$build/tl-echo-agent" --port 8090 &
  pids+=($!)
fi
echo "trunkline: SIP on udp+tcp port 5060 of this host; calls go to the example agent at ws://127.0.0.1:8090"
echo "Ctrl-C drains (calls in progress go on, up to shutdown_timeout_ms); a second Ctrl-C ends them"
trap 'true' INT  # a handler, not '' (ignored would be inherited by trunkline)
# TL_CONFIG=deploy/config.tls.example.json: SIP over TLS on 5061 too (README, "Over TLS").
"$build/trunkline" --config "${TL_CONFIG:-deploy/config.example.json}" || true
