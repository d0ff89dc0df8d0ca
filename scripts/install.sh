#!/usr/bin/env bash
# Installs everything mediasoup-signal needs on a fresh Debian/Ubuntu machine:
# Node dependencies (npm ci) and the mediasoup worker binary. With --test it
# also installs what the test suite drives (ffmpeg for real RTP, Chromium,
# iproute2 and python3 for the network-namespace tests).
#
# The mediasoup worker: npm's postinstall downloads a prebuilt binary. Where
# that download is impossible (offline CI), we build it from the npm tarball
# against Debian's libraries (scripts/mediasoup-worker/) and cache it outside
# the checkout, keyed by version, so later installs reuse it.
set -euo pipefail
cd "$(dirname "$0")/.."

WITH_TEST_DEPS=0
[ "${1:-}" = "--test" ] && WITH_TEST_DEPS=1

MS_VERSION=$(node -p "require('./package.json').dependencies.mediasoup")
CACHE_DIR=${MEDIASOUP_WORKER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mediasoup-worker}
CACHED_BIN="$CACHE_DIR/mediasoup-worker-$MS_VERSION"

apt_install() {
  local missing=()
  for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" != 0 ]; then
    echo "install.sh: please install: ${missing[*]} (needs root)" >&2
    return 1
  fi
  echo "install.sh: apt-get install ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

if [ -n "${MEDIASOUP_WORKER_BIN:-}" ] && [ -x "$MEDIASOUP_WORKER_BIN" ]; then
  echo "install.sh: using MEDIASOUP_WORKER_BIN=$MEDIASOUP_WORKER_BIN"
elif [ -x "$CACHED_BIN" ]; then
  echo "install.sh: using cached mediasoup worker $CACHED_BIN"
  export MEDIASOUP_WORKER_BIN="$CACHED_BIN"
elif curl -fsI --max-time 8 "https://github.com/versatica/mediasoup/releases" >/dev/null 2>&1; then
  echo "install.sh: prebuilt mediasoup worker is downloadable; npm will fetch it"
else
  echo "install.sh: no prebuilt worker reachable; building mediasoup-worker $MS_VERSION from source (~5 min on 2 cores)"
  sh scripts/mediasoup-worker/build-mediasoup-worker.sh "$MS_VERSION" "$CACHE_DIR"
  export MEDIASOUP_WORKER_BIN="$CACHED_BIN"
fi

# Runtime libraries the offline-built worker links against (present when it was built here).
if [ -n "${MEDIASOUP_WORKER_BIN:-}" ] && ldd "$MEDIASOUP_WORKER_BIN" | grep -q "not found"; then
  apt_install libssl3 libuv1 libsrtp2-1 libusrsctp2 libabsl20220623
fi

npm ci --no-audit --no-fund

if [ -n "${MEDIASOUP_WORKER_BIN:-}" ]; then
  # Put the binary where mediasoup looks by default, so running needs no environment variable.
  dest=node_modules/mediasoup/worker/out/Release/mediasoup-worker
  mkdir -p "$(dirname "$dest")"
  cp "$MEDIASOUP_WORKER_BIN" "$dest"
  chmod 755 "$dest"
fi

if [ "$WITH_TEST_DEPS" = 1 ]; then
  # iproute2 and python3: the cascade tests build network namespaces joined by a user-space delay line.
  apt_install ffmpeg chromium iproute2 python3
fi
echo "install.sh: done"
