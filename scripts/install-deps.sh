#!/usr/bin/env bash
# Installs the Debian 12 packages trunkline builds and tests with. Idempotent: apt runs only when
# something is missing. Uses sudo when not root.
set -euo pipefail

PKGS=(build-essential cmake pkg-config git ca-certificates
      libsofia-sip-ua-dev libwebsockets-dev libjansson-dev libopus-dev libsrtp2-dev libspeexdsp-dev libssl-dev
      sip-tester python3 clang-format tzdata
      libspandsp-dev kamailio python3-prometheus-client baresip-core openssl libssl-dev
      libev-dev libwebsockets-evlib-ev liburing-dev)

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ "${#missing[@]}" -gt 0 ]; then
  echo "installing: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
