#!/usr/bin/env bash
# Installs what icpnsd needs to build and run (and, with --test, to run the
# whole test suite), from Debian 12 packages.  Idempotent: skips apt when
# everything is present.  Uses sudo when not root.
set -euo pipefail
PKGS=(meson ninja-build pkg-config gcc libc6-dev
      libmicrohttpd-dev libjansson-dev libuv1-dev libcmocka-dev libgnutls28-dev
      python3 python3-numpy curl)
# The tests also validate responses against proto/ (jsonschema), build the
# man pages (scdoc), check the systemd units (systemd-analyze), put replicas
# behind nginx, compare k-means with scikit-learn, and check the example
# alert rules and /metrics with promtool (in Debian's prometheus package),
# and compile the public headers as C++ (g++).
TEST_PKGS=(python3-jsonschema openssl scdoc systemd nginx-light python3-sklearn python3-pip python3-setuptools
           python3-torch python3-matplotlib prometheus g++)
[ "${1:-}" = --test ] && PKGS+=("${TEST_PKGS[@]}")
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
  # nginx is installed for a test that runs its own instance on loopback,
  # prometheus for its promtool; do not leave Debian's default nginx on
  # port 80, nor a Prometheus server (:9090) and node exporter (:9100).
  stop_service() {
    if [ -d /run/systemd/system ]; then
      $SUDO systemctl disable --now "$1" >/dev/null 2>&1 || true
    else
      $SUDO service "$1" stop >/dev/null 2>&1 || true
    fi
  }
  if [[ " ${missing[*]} " == *" nginx-light "* ]]; then
    stop_service nginx
  fi
  if [[ " ${missing[*]} " == *" prometheus "* ]]; then
    stop_service prometheus
    stop_service prometheus-node-exporter
  fi
fi
