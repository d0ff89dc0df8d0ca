#!/bin/bash
# Runs inside the fresh root (see scripts/fresh-check.sh): the README's commands,
# each timed and logged in /opt/fresh-check/, and a summary in summary.txt.
set -uo pipefail
OUT=/opt/fresh-check
SUMMARY=$OUT/summary.txt
: >"$SUMMARY"
FAILED=0

# phase NAME LOG EXPECT COMMAND...: runs COMMAND, logs its output, records rc and time.
# EXPECT is the exit code that counts as passing ("0", or "nonzero").
phase() {
  local name=$1 logname=$2 log=$OUT/$2 expect=$3; shift 3
  local t0 rc ok
  echo "fresh-check[inside]: $name"
  t0=$(date +%s)
  "$@" >"$log" 2>&1
  rc=$?
  if [ "$expect" = nonzero ]; then [ $rc -ne 0 ] && ok=1 || ok=0; else [ $rc -eq "$expect" ] && ok=1 || ok=0; fi
  local dt=$(( $(date +%s) - t0 ))
  printf '   %-4s %-58s exit %-3s %3d min %02d s  (%s)\n' "$([ $ok = 1 ] && echo ok || echo FAIL)" "$name" "$rc" $((dt / 60)) $((dt % 60)) "$logname" >>"$SUMMARY"
  [ $ok = 1 ] || { FAILED=1; echo "fresh-check[inside]: FAILED: $name (exit $rc); end of $log:"; tail -n 40 "$log" | sed 's/^/    /'; }
  return $((1 - ok))
}

# What a fresh machine can and cannot reach.
isolation() {
  local ok=0
  for target in "$HOST_IP 5432" "$HOST_IP 4222" "$HOST_IP 6379" "$HOST_IP 5672" "$HOST_IP 22" "127.0.0.1 5432" "127.0.0.1 4222"; do
    set -- $target
    if timeout 3 bash -c "exec 3<>/dev/tcp/$1/$2" 2>/dev/null; then echo "REACHABLE: $1:$2"; ok=1; else echo "unreachable (good): $1:$2"; fi
  done
  if getent hosts github.com >/dev/null; then echo "RESOLVES: github.com"; ok=1; else echo "does not resolve (good): github.com"; fi
  if timeout 10 bash -c 'exec 3<>/dev/tcp/registry.npmjs.org/443'; then echo "reachable (good): registry.npmjs.org:443"; else echo "UNREACHABLE: registry.npmjs.org:443"; ok=1; fi
  if timeout 10 bash -c 'exec 3<>/dev/tcp/deb.debian.org/80'; then echo "reachable (good): deb.debian.org:80"; else echo "UNREACHABLE: deb.debian.org:80"; ok=1; fi
  for tool in python3 make g++ curl git pg_ctl nats-server redis-server; do
    command -v "$tool" >/dev/null && echo "present: $tool" || echo "absent: $tool"
  done
  return $ok
}

# A non-root user without a cached worker: must name the Debian packages and stop (exit 1), not call apt-get.
nonroot_install() {
  runuser -u dev -- bash -c 'cd ~/mediasoup-signal && bash scripts/install.sh'
  local rc=$?
  [ $rc -ne 0 ] && grep -q "apt-get install" "$OUT/0-nonroot-install.log" && ! grep -q "Could not open lock file" "$OUT/0-nonroot-install.log" && return $rc
  return 0
}

# The worker build script alone, as a non-root user: must name its build dependencies and stop.
nonroot_worker_build() {
  runuser -u dev -- bash -c 'cd ~/mediasoup-signal && sh scripts/mediasoup-worker/build-mediasoup-worker.sh 3.18.1'
  local rc=$?
  [ $rc -ne 0 ] && grep -q "apt-get install" "$OUT/0-nonroot-worker-build.log" && ! grep -q "lock" "$OUT/0-nonroot-worker-build.log" && return $rc
  return 0
}

cd /root/mediasoup-signal || exit 1
echo "   $(cat /etc/debian_version) $(uname -r); node $(node --version), npm $(npm --version); $(nproc) cores" >>"$SUMMARY"
phase "isolation: only the mirror and the registry reachable" isolation.log 0 isolation
phase "install.sh as a non-root user stops, naming packages" 0-nonroot-install.log nonzero nonroot_install
phase "worker build as a non-root user stops, naming packages" 0-nonroot-worker-build.log nonzero nonroot_worker_build
phase "bash scripts/install.sh" 1-install.log 0 timeout "$INSTALL_TIMEOUT" bash scripts/install.sh \
  && phase "npm start (terminal): banner, HTTP + WS answer, Ctrl-C" 2-start.log 0 timeout 10m node $OUT/start-check.mjs
phase "bash scripts/install.sh --test" 3-install-test.log 0 timeout "$INSTALL_TIMEOUT" bash scripts/install.sh --test \
  && phase "npm test" 4-npm-test.log 0 timeout --kill-after=1m "$TEST_TIMEOUT" npm test
if [ -f $OUT/4-npm-test.log ]; then
  # test/run.ts's closing lines: files, failing files, totals.
  sed -n '/^test\/run.ts: [0-9]* of [0-9]* file(s)/,$p' $OUT/4-npm-test.log | sed 's/^/        /' >>"$SUMMARY"
  grep -E '^not ok' $OUT/4-npm-test.log | head -20 | sed 's/^/        /' >>"$SUMMARY"
fi
[ -f $OUT/1-install.log ] && grep -E '^install.sh: ' $OUT/1-install.log | sed 's/^/        /' >"$OUT/install-steps.txt"
exit $FAILED
