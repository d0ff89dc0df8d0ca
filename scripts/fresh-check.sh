#!/usr/bin/env bash
# Fresh-machine check: do the README's two commands work on a clean Debian
# bookworm machine that has only Node and the network to Debian's mirror and
# the npm registry?
#
#   sudo nice -n 19 bash scripts/fresh-check.sh [--keep] [--reuse-worker]
#
# 1. A clean Debian bookworm root (debootstrap --variant=minbase, made once and
#    cached as a tarball in $FRESH_CHECK_CACHE, default /var/cache/mediasoup-signal/fresh-check),
#    with this machine's Node (binary, npm, headers) copied in and nothing else.
# 2. Its own network namespace joined to this machine by a veth link, with no
#    route anywhere: its /etc/hosts names the Debian mirror and the npm registry
#    at the link's host end, where scripts/fresh-check/relay.mjs passes HTTP/TLS
#    connections for those names only (by Host header / SNI). An iptables rule drops
#    everything else arriving over the link, so nothing on this machine (PostgreSQL,
#    NATS, Redis, ... even on 0.0.0.0) is reachable from the fresh root.
# 3. Its own mount and PID namespaces (its own /proc, /dev/pts, /dev/shm, /run):
#    everything it starts dies with it.
# 4. The repository's committed HEAD, cloned into /root/mediasoup-signal, and there,
#    exactly the README's commands:
#       bash scripts/install.sh && npm start        (in a pseudo-terminal: wait for the banner,
#                                                     check Nuve, playground and gateway answer, Ctrl-C)
#       bash scripts/install.sh --test && npm test
#    plus, first, `bash scripts/install.sh` as a non-root user (must name the Debian
#    packages to install and stop).
# A summary is printed at the end and kept, with every log, in $FRESH_CHECK_CACHE/last-run/.
#
# --reuse-worker copies the mediasoup worker that an earlier fresh check built
# inside its fresh root (kept in $FRESH_CHECK_CACHE/worker/) into the new root's
# cache, skipping the ~10-20 minute worker build; without it the worker is built.
# --keep leaves the root in place ($FRESH_CHECK_WORK) for a look afterwards.
#
# Where TLS leaving this machine is intercepted by an egress proxy with its own CA,
# the fresh root trusts the CA certificates this machine adds in
# /usr/local/share/ca-certificates (NODE_EXTRA_CA_CERTS): part of the network, not
# of the machine (FRESH_CHECK_EXTRA_CA='' to give none).
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
HERE="$REPO/scripts/fresh-check"
CACHE=${FRESH_CHECK_CACHE:-/var/cache/mediasoup-signal/fresh-check}
WORK=${FRESH_CHECK_WORK:-/var/tmp/mss-fresh-check-$$}
MIRROR=${FRESH_CHECK_MIRROR:-http://deb.debian.org/debian}
ALLOW_HOSTS=${FRESH_CHECK_HOSTS:-deb.debian.org,security.debian.org,registry.npmjs.org}
EXTRA_CA=${FRESH_CHECK_EXTRA_CA-$(ls /usr/local/share/ca-certificates/*.crt 2>/dev/null | tr '\n' ' ')}
INSTALL_TIMEOUT=${FRESH_CHECK_INSTALL_TIMEOUT:-75m}
TEST_TIMEOUT=${FRESH_CHECK_TEST_TIMEOUT:-90m}
KEEP=0
REUSE_WORKER=0
for arg in "$@"; do
  case "$arg" in
    --keep) KEEP=1 ;;
    --reuse-worker) REUSE_WORKER=1 ;;
    *) echo "usage: bash scripts/fresh-check.sh [--keep] [--reuse-worker]" >&2; exit 2 ;;
  esac
done

say() { echo "fresh-check: $*"; }
die() { echo "fresh-check: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "needs root (debootstrap, network and mount namespaces)"

NET_ID=$(( $$ % 250 + 1 ))
NS="mssfresh$$"
HOST_DEV="vfh$$"
NS_DEV="vfn$$"
HOST_IP="10.214.$NET_ID.1"
NS_IP="10.214.$NET_ID.2"
ROOT="$WORK/root"
RUN_LOG="$CACHE/last-run"
RELAY_PID=""
INNER_PID=""
IPT_RULES=()

cleanup() {
  set +e
  # unshare blocks SIGINT/SIGTERM while it waits; SIGKILL it, and --kill-child takes the
  # PID namespace (everything started inside) with it.
  [ -n "$INNER_PID" ] && kill -KILL "$INNER_PID" 2>/dev/null && wait "$INNER_PID" 2>/dev/null
  [ -n "$RELAY_PID" ] && kill "$RELAY_PID" 2>/dev/null
  for rule in "${IPT_RULES[@]}"; do
    # shellcheck disable=SC2086
    iptables -D $rule 2>/dev/null
  done
  ip netns del "$NS" 2>/dev/null
  ip link del "$HOST_DEV" 2>/dev/null
  if [ $KEEP = 1 ]; then say "kept $WORK"; elif [ -d "$WORK" ]; then rm -rf --one-file-system "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- host tools --------------------------------------------------------------
need=()
for t in debootstrap:debootstrap iptables:iptables ip:iproute2 git:git unshare:util-linux; do
  command -v "${t%%:*}" >/dev/null || need+=("${t#*:}")
done
if [ ${#need[@]} -gt 0 ]; then
  say "installing host tools: ${need[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
command -v node >/dev/null || die "node not found: the fresh root gets this machine's Node"

SHA=$(git -C "$REPO" rev-parse HEAD)
[ -z "$(git -C "$REPO" status --porcelain --untracked-files=no)" ] || say "note: uncommitted changes in $REPO are not part of the check (it clones HEAD $SHA)"
mkdir -p "$CACHE" "$WORK"
rm -rf "$RUN_LOG" && mkdir -p "$RUN_LOG"
T_START=$(date +%s)

# --- 1. clean Debian bookworm root --------------------------------------------
BASE="$CACHE/bookworm-minbase.tar"
if [ ! -f "$BASE" ]; then
  say "debootstrap --variant=minbase bookworm (once; cached in $BASE)"
  rm -rf "$CACHE/debootstrap"
  debootstrap --variant=minbase bookworm "$CACHE/debootstrap" "$MIRROR" >"$CACHE/debootstrap.log" 2>&1 \
    || { tail -n 20 "$CACHE/debootstrap.log" >&2; die "debootstrap failed (log: $CACHE/debootstrap.log)"; }
  tar -C "$CACHE/debootstrap" -cf "$BASE.tmp" . && mv "$BASE.tmp" "$BASE"
  rm -rf "$CACHE/debootstrap"
fi
say "unpacking the clean root into $ROOT"
mkdir -p "$ROOT"
tar -C "$ROOT" -xf "$BASE"

# This machine's Node: binary, npm, and the headers installed with it (nothing else).
NODE_BIN=$(node -p process.execPath)
NODE_PREFIX=$(dirname "$(dirname "$NODE_BIN")")
NPM_DIR=$(dirname "$(dirname "$(readlink -f "$(command -v npm)")")")
say "copying Node $(node --version) (npm $(npm --version)) from $NODE_PREFIX"
install -D -m 755 "$NODE_BIN" "$ROOT/usr/bin/node"
mkdir -p "$ROOT/usr/lib/node_modules" "$ROOT/usr/include"
cp -a "$NPM_DIR" "$ROOT/usr/lib/node_modules/npm"
ln -sf ../lib/node_modules/npm/bin/npm-cli.js "$ROOT/usr/bin/npm"
ln -sf ../lib/node_modules/npm/bin/npx-cli.js "$ROOT/usr/bin/npx"
if [ -d "$NODE_PREFIX/include/node" ]; then cp -a "$NODE_PREFIX/include/node" "$ROOT/usr/include/node"; fi

# Debian's mirror as a fresh bookworm install has it; names resolve through /etc/hosts only.
cat >"$ROOT/etc/apt/sources.list" <<EOF
deb http://deb.debian.org/debian bookworm main
deb http://deb.debian.org/debian bookworm-updates main
deb http://security.debian.org/debian-security bookworm-security main
EOF
{
  echo "127.0.0.1 localhost"
  echo "::1 localhost ip6-localhost ip6-loopback"
  for h in ${ALLOW_HOSTS//,/ }; do echo "$HOST_IP $h"; done
} >"$ROOT/etc/hosts"
echo "# no DNS: the only names are in /etc/hosts" >"$ROOT/etc/resolv.conf"
echo fresh >"$ROOT/etc/hostname"
CA_ENV=""
if [ -n "$EXTRA_CA" ]; then
  mkdir -p "$ROOT/usr/local/share/ca-certificates"
  # shellcheck disable=SC2086
  cat $EXTRA_CA >"$ROOT/usr/local/share/ca-certificates/egress.pem"
  CA_ENV="NODE_EXTRA_CA_CERTS=/usr/local/share/ca-certificates/egress.pem"
fi

# The repository's committed HEAD, for root and for a non-root user.
git clone -q --no-checkout "$REPO" "$ROOT/root/mediasoup-signal"
git -C "$ROOT/root/mediasoup-signal" checkout -q "$SHA"
chroot "$ROOT" useradd -m -s /bin/bash dev
git clone -q --no-checkout "$REPO" "$ROOT/home/dev/mediasoup-signal"
git -C "$ROOT/home/dev/mediasoup-signal" checkout -q "$SHA"
chroot "$ROOT" chown -R dev:dev /home/dev/mediasoup-signal

if [ $REUSE_WORKER = 1 ]; then
  ls "$CACHE"/worker/mediasoup-worker-* >/dev/null 2>&1 || die "--reuse-worker: no worker from an earlier fresh check in $CACHE/worker"
  say "reusing the worker an earlier fresh check built: $(ls "$CACHE"/worker/mediasoup-worker-*)"
  mkdir -p "$ROOT/root/.cache/mediasoup-worker"
  cp -a "$CACHE"/worker/mediasoup-worker-* "$ROOT/root/.cache/mediasoup-worker/"
fi

mkdir -p "$ROOT/opt/fresh-check"
cp "$HERE/start-check.mjs" "$HERE/inside.sh" "$ROOT/opt/fresh-check/"

# --- 2. network namespace: a veth link, and a relay to the mirror and the registry only
say "network namespace $NS: $NS_IP <-> $HOST_IP (relay for $ALLOW_HOSTS)"
ip netns add "$NS"
ip link add "$HOST_DEV" type veth peer name "$NS_DEV"
ip link set "$NS_DEV" netns "$NS"
sysctl -qw "net.ipv6.conf.$HOST_DEV.disable_ipv6=1"
ip addr add "$HOST_IP/30" dev "$HOST_DEV"
ip link set "$HOST_DEV" up
ip netns exec "$NS" sysctl -qw "net.ipv6.conf.$NS_DEV.disable_ipv6=1"
ip netns exec "$NS" ip addr add "$NS_IP/30" dev "$NS_DEV"
ip netns exec "$NS" ip link set "$NS_DEV" up
ip netns exec "$NS" ip link set lo up
ip netns exec "$NS" ip route add default via "$HOST_IP"
# Over the link, only the relay's two ports on the link address; nothing forwarded.
add_rule() { local chain=$1; shift; iptables -I "$chain" 1 "$@"; IPT_RULES+=("$chain $*"); }
add_rule INPUT -i "$HOST_DEV" -j DROP
add_rule INPUT -i "$HOST_DEV" -d "$HOST_IP" -p tcp -m multiport --dports 80,443 -j ACCEPT
add_rule FORWARD -i "$HOST_DEV" -j DROP
add_rule FORWARD -o "$HOST_DEV" -j DROP
node "$HERE/relay.mjs" "$HOST_IP" "$RUN_LOG/relay.log" "$ALLOW_HOSTS" &
RELAY_PID=$!
sleep 1
kill -0 "$RELAY_PID" 2>/dev/null || die "the relay did not start"

# --- 3. inside: own mount + PID namespaces, chroot, the README's commands -----
say "running the README's commands in the fresh root (HEAD $SHA)"
ip netns exec "$NS" unshare --mount --pid --fork --kill-child --propagation private \
  bash -c '
    set -e
    R=$1; shift
    mount --bind "$R" "$R"   # the root a mount point, as on a machine (ip netns exec remounts it)
    mount -t proc proc "$R/proc"
    mount -t sysfs sysfs "$R/sys"
    mount --rbind /dev "$R/dev"
    mount -t tmpfs -o mode=1777 tmpfs "$R/dev/shm"
    mount -t devpts -o newinstance,ptmxmode=0666,mode=620 devpts "$R/dev/pts"
    mount --bind "$R/dev/pts/ptmx" "$R/dev/ptmx"
    mount -t tmpfs -o mode=755 tmpfs "$R/run"
    exec chroot "$R" /usr/bin/env -i HOME=/root USER=root LOGNAME=root TERM=xterm LANG=C.UTF-8 \
      PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$@"
  ' _ "$ROOT" $CA_ENV INSTALL_TIMEOUT="$INSTALL_TIMEOUT" TEST_TIMEOUT="$TEST_TIMEOUT" HOST_IP="$HOST_IP" \
    bash /opt/fresh-check/inside.sh &
INNER_PID=$!
set +e
wait "$INNER_PID"
INNER_RC=$?
set -e
INNER_PID=""

# --- 4. results ---------------------------------------------------------------
cp -a "$ROOT/opt/fresh-check/." "$RUN_LOG/" 2>/dev/null || true
if ls "$ROOT"/root/.cache/mediasoup-worker/mediasoup-worker-* >/dev/null 2>&1 && [ $REUSE_WORKER = 0 ]; then
  mkdir -p "$CACHE/worker"
  cp -a "$ROOT"/root/.cache/mediasoup-worker/mediasoup-worker-* "$CACHE/worker/"
fi
T_END=$(date +%s)
{
  echo "== fresh-check $(date -u +%Y-%m-%dT%H:%MZ): commit $SHA"
  echo "   root: Debian bookworm minbase + Node $(node --version) / npm $(npm --version) copied in; worker: $([ $REUSE_WORKER = 1 ] && echo "reused from an earlier fresh check" || echo "built by install.sh")"
  echo "   network: own netns, veth + relay for $ALLOW_HOSTS only; own mount and PID namespaces"
  cat "$ROOT/opt/fresh-check/summary.txt" 2>/dev/null || echo "   (no summary: the inner run died, exit $INNER_RC)"
  echo "   relay: $(grep -c ' allow ' "$RUN_LOG/relay.log" 2>/dev/null || true) connections allowed, $(grep -c ' deny ' "$RUN_LOG/relay.log" 2>/dev/null || true) denied$(grep ' deny ' "$RUN_LOG/relay.log" 2>/dev/null | sed 's/.*-> //' | sort | uniq -c | awk '{printf " %s (%s)", $2, $1}')"
  echo "   total $(( (T_END - T_START) / 60 )) min $(( (T_END - T_START) % 60 )) s; result: $([ $INNER_RC = 0 ] && echo PASS || echo "FAIL (exit $INNER_RC)")"
} | tee "$RUN_LOG/summary.txt"
exit "$INNER_RC"
