#!/usr/bin/env bash
# tests/systemd/run.sh - the installed units under a real systemd as PID 1.
#
# Boots a Debian 12 container (systemd-nspawn over a cached debootstrap
# root) with icpnsd installed the way an operator installs it (meson install
# --prefix=/usr --sysconfdir=/etc, the steps of docs/operations.md), and runs
# tests/systemd/check.py inside it as a systemd service: Type=notify start,
# STATUS=, reload, watchdog, stop, the admin token credential, the nice +10
# of build threads under the system-call filter, socket activation.
#
#   sudo tests/systemd/run.sh            # builds build-systemd/ if needed
#   sudo BUILD_DIR=build-x tests/systemd/run.sh   # a build set up with
#                                        # --prefix=/usr --sysconfdir=/etc
#   sudo tests/systemd/run.sh --prepare  # only create the cached root
#
# Exit status: 0 passed, 1 failed, 77 skipped (the reason on stderr: not
# root, no systemd-nspawn, no debootstrap and no cached root, ...).
# Needs root, systemd-nspawn and debootstrap (apt-get install
# systemd-container debootstrap); the network only for Debian's packages,
# once: the root is cached in $ICPNSD_TEST_CACHE (default
# /var/cache/icpnsd-test), never in the repository.
set -euo pipefail

SKIP=77
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../.." && pwd)
cache=${ICPNSD_TEST_CACHE:-/var/cache/icpnsd-test}
mirror=${ICPNSD_DEBIAN_MIRROR:-http://deb.debian.org/debian}
suite=bookworm
# What the container needs: systemd as PID 1, the daemon's shared
# libraries, and python3 for the checks.  Changing this list (or ROOT_REV)
# makes a new cached root.
packages=systemd,systemd-sysv,libmicrohttpd12,libjansson4,libuv1,python3
ROOT_REV=1

skip() {
  echo "tests/systemd: SKIPPED: $*" >&2
  exit $SKIP
}
say() { echo "tests/systemd: $*" >&2; }

[ "$(id -u)" = 0 ] || skip "needs root (systemd-nspawn boots a container; run with sudo)"
command -v systemd-nspawn >/dev/null ||
  skip "systemd-nspawn is not installed (apt-get install systemd-container)"
[ "$(uname -m)" = x86_64 ] || skip "the cached root is amd64; this machine is $(uname -m)"

key=$(printf '%s\n' "$suite" "$packages" "$ROOT_REV" | sha256sum | cut -c1-12)
root="$cache/$suite-$key"

# The cached root: debootstrap once into a temporary directory, renamed
# when complete, so an interrupted run never leaves a half root behind.
prepare_root() {
  if [ -f "$root/.icpnsd-root-complete" ]; then
    return 0
  fi
  command -v debootstrap >/dev/null ||
    skip "no cached root in $root and debootstrap is not installed (apt-get install debootstrap)"
  mkdir -p "$cache"
  local tmp="$root.tmp.$$"
  rm -rf "$tmp"
  say "creating the cached Debian $suite root in $root (debootstrap, once)"
  local t0=$SECONDS
  if ! debootstrap --variant=minbase --include="$packages" "$suite" "$tmp" "$mirror" \
      >"$cache/debootstrap.log" 2>&1; then
    tail -n 30 "$cache/debootstrap.log" >&2
    rm -rf "$tmp"
    if grep -q -e 'Failed getting release file' -e "Couldn't download" -e 'Failure trying to run: .*wget' \
        "$cache/debootstrap.log"; then
      skip "cannot download Debian's packages from $mirror (set ICPNSD_DEBIAN_MIRROR)"
    fi
    say "FAILED: debootstrap (log: $cache/debootstrap.log)"
    exit 1
  fi
  # Quieter boots: no login prompt on the console, no network management.
  ln -sf /dev/null "$tmp/etc/systemd/system/console-getty.service"
  ln -sf /dev/null "$tmp/etc/systemd/system/getty@.service"
  rm -rf "$tmp/var/cache/apt/archives/"*.deb "$tmp/var/lib/apt/lists/"*
  touch "$tmp/.icpnsd-root-complete"
  rm -rf "$root"
  mv "$tmp" "$root"
  say "cached root ready in $((SECONDS - t0)) s"
}

mkdir -p "$(dirname "$cache")"
exec 9>"${cache%/}.lock"
flock 9
prepare_root
if [ "${1:-}" = --prepare ]; then
  exit 0
fi
t_start=$SECONDS

# The build: the operator's configuration (docs/operations.md "Install"),
# so the units, the config and the credential path are where the docs say.
if [ -n "${BUILD_DIR:-}" ]; then
  build=$(cd "$BUILD_DIR" && pwd)
else
  build="$src/build-systemd"
  if [ ! -f "$build/build.ninja" ]; then
    meson setup "$build" "$src" --prefix=/usr --sysconfdir=/etc --localstatedir=/var \
      -Dbuildtype=debugoptimized >/dev/null
  fi
fi
opts=$(meson introspect "$build" --buildoptions |
  /usr/bin/python3 -c 'import json,sys; o={x["name"]:x["value"] for x in json.load(sys.stdin)}; print(o["prefix"], o["sysconfdir"])')
[ "$opts" = "/usr /etc" ] || {
  say "FAILED: $build is configured with prefix/sysconfdir '$opts'; the test needs" \
    "'meson setup --prefix=/usr --sysconfdir=/etc' (as docs/operations.md installs)"
  exit 1
}
# Only what is installed (not the tests, fuzzers, benchmarks).
mapfile -t targets < <(meson introspect "$build" --targets | /usr/bin/python3 -c '
import json, os, sys
for t in json.load(sys.stdin):
    if t["installed"]:
        # name:type, since libicpns is both a static and a shared library
        print(os.path.join(t["defined_in"].rsplit("/meson.build", 1)[0], t["name"])
              + ":" + t["type"].replace(" ", "_"))' |
  sed "s|^$src/||")
if ! out=$(meson compile -C "$build" "${targets[@]}" 2>&1); then
  echo "$out" >&2
  say "FAILED: the build"
  exit 1
fi
say "built in $build ($((SECONDS - t_start)) s)"

# The container's root: the cached root under an overlay, so each run starts
# from the same tree and writes only to its own upper layer.
work=$(mktemp -d /var/tmp/icpnsd-systemd-test.XXXXXX)
merged="$work/root"
mkdir -p "$work/upper" "$work/ovl" "$merged" "$work/out"
cleanup() {
  mountpoint -q "$merged" && umount "$merged"
  if [ "${KEEP:-0}" = 1 ]; then
    say "kept $work"
  else
    rm -rf "$work"
  fi
}
trap cleanup EXIT
if ! mount -t overlay overlay -o "lowerdir=$root,upperdir=$work/upper,workdir=$work/ovl" \
    "$merged" 2>/dev/null; then
  say "no overlayfs here: copying the root instead"
  cp -a "$root/." "$merged/"
fi
DESTDIR="$merged" meson install -C "$build" --no-rebuild --quiet >/dev/null
install -D -m 0755 "$here/check.py" "$merged/usr/local/libexec/icpnsd-check"
# Two certificate/key pairs for 127.0.0.1 (the container has no openssl):
# the TLS step installs the first as docs/operations.md says, then rotates.
if command -v openssl >/dev/null; then
  for k in 1 2; do
    mkdir -p "$merged/root/tls-input/$k"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
      -subj /CN=icpnsd.internal -addext subjectAltName=DNS:icpnsd.internal,IP:127.0.0.1 \
      -keyout "$merged/root/tls-input/$k/key.pem" -out "$merged/root/tls-input/$k/cert.pem" 2>/dev/null
  done
fi
cat >"$merged/etc/systemd/system/icpnsd-check.service" <<'UNIT'
[Unit]
Description=icpnsd checks under systemd (tests/systemd/check.py)
After=basic.target
SuccessAction=exit
FailureAction=exit
SuccessActionExitStatus=0
FailureActionExitStatus=1

[Service]
Type=oneshot
ExecStart=/usr/local/libexec/icpnsd-check
StandardOutput=journal+console
StandardError=journal+console
Environment=PYTHONUNBUFFERED=1
TimeoutStartSec=infinity
UNIT
mkdir -p "$merged/etc/systemd/system/multi-user.target.wants"
ln -sf ../icpnsd-check.service "$merged/etc/systemd/system/multi-user.target.wants/"

# Boot.  The container has its own network namespace (loopback only: port
# 8470 is its own), and exits with the checks' status (SuccessAction=exit).
# Without systemd on the host (this project's VMs, CI) nspawn must neither
# register with machined nor ask systemd for a scope: it stays in the
# caller's cgroup.  On a host that runs systemd, nspawn gets its own scope.
nspawn_host=(--register=no)
[ -d /run/systemd/system ] || nspawn_host+=(--keep-unit)
limit=${ICPNSD_SYSTEMD_TIMEOUT:-600}
say "booting systemd in a container (systemd-nspawn, at most $limit s)"
t_boot=$SECONDS
set +e
timeout -k 30 "$limit" systemd-nspawn --quiet "${nspawn_host[@]}" --private-network \
  --machine="icpnsd-test-$$" --directory="$merged" --bind="$work/out:/icpnsd-check-out" \
  --console=read-only --boot -- systemd.show_status=false ${ICPNSD_SYSTEMD_INIT_ARGS:-} </dev/null 2>&1 | tee "$work/out/console.log"
rc=${PIPESTATUS[0]}
set -e
say "container exited with $rc after $((SECONDS - t_boot)) s"
[ "$rc" = 124 ] && say "FAILED: the container did not finish within $limit s (ICPNSD_SYSTEMD_TIMEOUT)"
if [ ! -f "$work/out/result" ]; then
  say "FAILED: the checks did not run to the end (no result); the console is above"
  [ -f "$work/out/journal.txt" ] && tail -n 80 "$work/out/journal.txt" >&2
  KEEP=1
  exit 1
fi
if [ -n "${ICPNSD_SYSTEMD_LOGS:-}" ]; then
  mkdir -p "$ICPNSD_SYSTEMD_LOGS" && cp "$work/out/"* "$ICPNSD_SYSTEMD_LOGS/"
fi
if [ "$rc" != 0 ] || grep -q '^FAILED' "$work/out/result"; then
  say "FAILED: $(head -n1 "$work/out/result") (the container's journal: $work/out/journal.txt)"
  KEEP=1
  exit 1
fi
say "all checks passed in $((SECONDS - t_start)) s"
echo "systemd: $(head -n1 "$work/out/result")"
