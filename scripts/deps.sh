#!/usr/bin/env bash
# Installs what icpnsd needs to build, run and test, from Debian 12 packages.
# Idempotent: skips apt when everything is present.  Uses sudo when not root.
set -euo pipefail
PKGS=(meson ninja-build pkg-config gcc libc6-dev
      libmicrohttpd-dev libjansson-dev libuv1-dev libcmocka-dev
      python3 python3-numpy python3-jsonschema curl)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "deps: installing ${missing[*]}" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
