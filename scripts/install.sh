#!/usr/bin/env bash
# Installs everything mediasoup-signal needs on a fresh Debian/Ubuntu machine:
# the build tools native modules need, Node dependencies (npm ci) and the
# mediasoup worker binary. With --test it also installs what the test suite
# drives or starts: PostgreSQL, NATS, Redis, RabbitMQ and etcd servers (the tests start private
# instances of them on free ports), ffmpeg for real RTP, Chromium, iproute2
# and python3 for the network-namespace tests.
#
# The mediasoup worker: npm's postinstall downloads a prebuilt binary. Where
# that download is impossible (offline CI), we build it from the npm tarball
# against Debian's libraries (scripts/mediasoup-worker/) and cache it outside
# the checkout, keyed by version, so later installs reuse it.
#
# As root, missing Debian packages are installed with apt-get. As another user,
# the script names the packages to install and stops before changing anything.
set -euo pipefail
cd "$(dirname "$0")/.."

WITH_TEST_DEPS=0
case "${1:-}" in
  --test) WITH_TEST_DEPS=1 ;;
  "") ;;
  *) echo "usage: bash scripts/install.sh [--test]" >&2; exit 2 ;;
esac

# Every step names itself, so a failure says which one failed.
STEP="starting"
trap 'rc=$?; [ $rc -eq 0 ] || echo "install.sh: FAILED while ${STEP} (exit code $rc)" >&2' EXIT
step() { STEP="$*"; echo "install.sh: $*"; }

command -v node >/dev/null || { echo "install.sh: Node.js 20 or newer is needed (node not found in PATH)" >&2; exit 1; }
command -v npm >/dev/null || { echo "install.sh: npm is needed (not found in PATH next to node)" >&2; exit 1; }

MS_VERSION=$(node -p "require('./package.json').dependencies.mediasoup")
CACHE_DIR=${MEDIASOUP_WORKER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mediasoup-worker}
CACHED_BIN="$CACHE_DIR/mediasoup-worker-$MS_VERSION"

# Debian packages still to install, from a list.
missing_pkgs() {
  local pkg
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || echo "$pkg"
  done
}

apt_updated=0
apt_install() {
  local what=$1; shift
  local missing
  missing=$(missing_pkgs "$@" | tr '\n' ' ' | sed 's/ $//')
  [ -z "$missing" ] && return 0
  if [ "$(id -u)" != 0 ]; then
    echo "install.sh: $what needs these Debian packages, which are not installed:" >&2
    echo "    sudo apt-get install -y --no-install-recommends $missing" >&2
    echo "install.sh: install them (or run this script as root), then run it again" >&2
    STEP="checking the Debian packages for $what"
    exit 1
  fi
  STEP="installing Debian packages for $what: $missing"
  echo "install.sh: apt-get install $missing  ($what)"
  if [ $apt_updated = 0 ]; then
    apt-get update -qq || { echo "install.sh: apt-get update failed (is a Debian mirror reachable?)" >&2; return 1; }
    apt_updated=1
  fi
  # shellcheck disable=SC2086
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/tmp/mss-apt-$$.log 2>&1 || {
    tail -n 30 /tmp/mss-apt-$$.log >&2
    rm -f /tmp/mss-apt-$$.log
    return 1
  }
  rm -f /tmp/mss-apt-$$.log
}

# 1. Build tools for native modules (better-sqlite3 builds from source where its
#    prebuilt binary cannot be downloaded), needed whichever way the worker comes.
step "checking build tools (python3, make, g++)"
apt_install "native Node modules (better-sqlite3)" python3 make g++

# Native modules build against the headers installed with Node itself instead of
# downloading them (the download host is unreachable on offline machines).
step "checking Node's headers"
NODE_PREFIX=$(dirname "$(dirname "$(node -p process.execPath)")")
if [ -f "$NODE_PREFIX/include/node/node.h" ]; then
  export npm_config_nodedir="$NODE_PREFIX"
  echo "install.sh: native modules build against $NODE_PREFIX/include/node ($(node --version))"
else
  echo "install.sh: warning: this Node ($(node -p process.execPath)) has no headers in $NODE_PREFIX/include/node;" >&2
  echo "  a native module without a downloadable prebuilt binary then needs the headers from nodejs.org." >&2
  echo "  Offline, install a Node that ships them (nodesource's nodejs package, the official tarball) or set npm_config_nodedir." >&2
fi

# 2. The mediasoup worker.
step "looking for a mediasoup worker"
worker_downloadable() {
  # HEAD request with Node's fetch (curl may not be installed); 8 s at most.
  node -e "fetch(process.argv[1], { method: 'HEAD', signal: AbortSignal.timeout(8000) }).then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))" \
    "https://github.com/versatica/mediasoup/releases" >/dev/null 2>&1
}
WORKER_BUILD_DEPS=(g++ make pkg-config meson ninja-build libssl-dev libuv1-dev libsrtp2-dev libusrsctp-dev libabsl-dev
  libflatbuffers-dev flatbuffers-compiler nlohmann-json3-dev)
if [ -n "${MEDIASOUP_WORKER_BIN:-}" ]; then
  [ -x "$MEDIASOUP_WORKER_BIN" ] || { echo "install.sh: MEDIASOUP_WORKER_BIN=$MEDIASOUP_WORKER_BIN is not an executable file" >&2; exit 1; }
  echo "install.sh: using MEDIASOUP_WORKER_BIN=$MEDIASOUP_WORKER_BIN"
elif [ -x "$CACHED_BIN" ]; then
  echo "install.sh: using cached mediasoup worker $CACHED_BIN"
  export MEDIASOUP_WORKER_BIN="$CACHED_BIN"
elif worker_downloadable; then
  echo "install.sh: prebuilt mediasoup worker is downloadable; npm will fetch it"
else
  apt_install "building the mediasoup worker" "${WORKER_BUILD_DEPS[@]}"
  step "building mediasoup-worker $MS_VERSION from source (no prebuilt worker reachable; ~5-10 min on 2 cores)"
  SKIP_APT=1 sh scripts/mediasoup-worker/build-mediasoup-worker.sh "$MS_VERSION" "$CACHE_DIR"
  export MEDIASOUP_WORKER_BIN="$CACHED_BIN"
fi

# Runtime libraries the offline-built worker links against (present when it was built here).
if [ -n "${MEDIASOUP_WORKER_BIN:-}" ] && ldd "$MEDIASOUP_WORKER_BIN" 2>/dev/null | grep -q "not found"; then
  apt_install "running the mediasoup worker" libssl3 libuv1 libsrtp2-1 libusrsctp2 libabsl20220623
  if ldd "$MEDIASOUP_WORKER_BIN" | grep "not found" >&2; then
    echo "install.sh: the mediasoup worker $MEDIASOUP_WORKER_BIN misses the libraries above" >&2
    exit 1
  fi
fi

# 3. Node dependencies.
step "installing Node dependencies (npm ci)"
npm ci --no-audit --no-fund

if [ -n "${MEDIASOUP_WORKER_BIN:-}" ]; then
  step "putting the mediasoup worker into node_modules"
  # Where mediasoup looks by default, so running needs no environment variable.
  dest=node_modules/mediasoup/worker/out/Release/mediasoup-worker
  mkdir -p "$(dirname "$dest")"
  cp "$MEDIASOUP_WORKER_BIN" "$dest"
  chmod 755 "$dest"
fi

# 4. What the tests use.
if [ "$WITH_TEST_DEPS" = 1 ]; then
  step "checking test tools"
  # A fresh PostgreSQL install would create and start a system-wide cluster on
  # port 5432; the tests start their own, so skip that (only if not installed yet).
  if [ "$(id -u)" = 0 ] && [ -n "$(missing_pkgs postgresql)" ] && [ ! -e /etc/postgresql-common/createcluster.d/mediasoup-signal.conf ]; then
    mkdir -p /etc/postgresql-common/createcluster.d
    echo "create_main_cluster = false" >/etc/postgresql-common/createcluster.d/mediasoup-signal.conf
  fi
  # postgresql, nats-server, redis-server, rabbitmq-server: test/run.ts starts private instances
  # on free ports (RabbitMQ's package also starts a system broker on 5672, which the tests leave alone).
  # ffmpeg: real RTP. chromium: the browser tests. iproute2 and python3: the cascade
  # tests build network namespaces joined by a user-space delay line. gcc: the large-room tests' native RTP
  # sink (test/helpers/rtp-sink.c, compiled on first use).
  apt_install "the tests" postgresql nats-server redis-server rabbitmq-server ffmpeg chromium iproute2 python3 gcc
  # etcd-server (etcd 3.4 or newer): test/etcd-discovery.test.ts starts a private one to restart it; its
  # package's system etcd on 2379 (where a service manager runs it) is left alone. etcd-client: etcdctl, for
  # looking at what service discovery wrote.
  apt_install "the etcd discovery tests" etcd-server etcd-client
fi
STEP="finishing"
echo "install.sh: done"
