#!/usr/bin/env bash
# Run etcd 3.4's own end-to-end tests (tests/e2e in Debian's Go source tree) against
# real etcd or against etcdpy standing in for the `etcd` binary. No Go code is copied
# into this repository: the test binary is compiled from /usr/share/gocode in GOPATH mode.
#
#   tests/e2e_etcd/run.sh build                 # compile the e2e test binary (once, ~30 s)
#   tests/e2e_etcd/run.sh run etcd   [REGEX]    # run against /usr/bin/etcd   (baseline)
#   tests/e2e_etcd/run.sh run etcdpy [REGEX]    # run against this checkout's .venv/bin/etcdpy
#   tests/e2e_etcd/run.sh summary LOGFILE       # PASS/FAIL/SKIP lines of a run's log
#
# Environment (defaults in brackets):
#   E2E_WORK     scratch dir for the binary, bin dirs, TMPDIR, logs   [/tmp/etcdpy-e2e]
#   E2E_TEST_TIMEOUT  go test -timeout for one test (one process each) [2m]
#   E2E_SRC      etcd Go source tree                [/usr/share/gocode/src/go.etcd.io/etcd]
#   ETCDPY       etcdpy executable                  [<this checkout>/.venv/bin/etcdpy]
#   E2E_NETNS    1: as root, run in a private network namespace (unshare -n)          [1]
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
E2E_WORK="${E2E_WORK:-/tmp/etcdpy-e2e}"
E2E_SRC="${E2E_SRC:-/usr/share/gocode/src/go.etcd.io/etcd}"
E2E_TEST_TIMEOUT="${E2E_TEST_TIMEOUT:-2m}"
ETCDPY="${ETCDPY:-$REPO/.venv/bin/etcdpy}"
TEST_BIN="$E2E_WORK/e2e.test"

build() {
  command -v go >/dev/null || { echo "need Go: apt-get install golang-go" >&2; exit 1; }
  [ -d "$E2E_SRC/tests/e2e" ] || { echo "need $E2E_SRC: apt-get install golang-etcd-server-dev" >&2; exit 1; }
  mkdir -p "$E2E_WORK/gocache"
  # GOPATH mode: every import (go.etcd.io/etcd/..., its deps) resolves under /usr/share/gocode/src,
  # from Debian's golang-*-dev packages. No network, no module download.
  (cd "$E2E_SRC/tests/e2e" && GO111MODULE=off GOPATH=/usr/share/gocode GOFLAGS= \
     GOCACHE="$E2E_WORK/gocache" go test -c -o "$TEST_BIN" .)
  echo "built $TEST_BIN"
}

# The tests use paths relative to tests/e2e (../../integration/fixtures for certs,
# ../../etcd.conf.yml.sample): give them a writable run dir that links to the source tree.
rundir() {
  local d="$E2E_WORK/tree"
  mkdir -p "$d/tests/e2e"
  ln -sfn "$E2E_SRC/integration" "$d/integration"
  echo "$d/tests/e2e"
}

bindir() {   # bindir etcd|etcdpy -> prints the -bin-dir to use
  local kind="$1" d="$E2E_WORK/bin-$1"
  mkdir -p "$d"
  ln -sfn "$(command -v etcdctl)" "$d/etcdctl"
  case "$kind" in
    etcd)   ln -sfn /usr/bin/etcd "$d/etcd" ;;
    etcdpy) rm -f "$d/etcd"
            # exec keeps the pid (the harness signals it); when E2E_SERVER_LOG_DIR is set, each
            # start's argv and stderr (etcdpy's JSON log) are also kept in a file of their own.
            cat > "$d/etcd" <<WRAP
#!/bin/bash
if [ -n "\${E2E_SERVER_LOG_DIR:-}" ]; then
  f="\$E2E_SERVER_LOG_DIR/\$(date +%H%M%S.%N)-\$\$.log"
  printf 'argv: %s\\n' "\$*" > "\$f"
  exec "$ETCDPY" "\$@" 2> >(tee -a "\$f" >&2)
fi
exec "$ETCDPY" "\$@"
WRAP
            chmod +x "$d/etcd" ;;
    *) echo "unknown server kind $kind (etcd|etcdpy)" >&2; exit 2 ;;
  esac
  echo "$d"
}

# run etcd|etcdpy [REGEX]: every test matching REGEX in a go-test process of its own, one after
# the other, each bounded by E2E_TEST_TIMEOUT (some tests wait forever for a log line etcdpy never
# prints). As root the process runs in its own network and pid namespace (unshare -n -p -f): the
# suite's fixed ports (20000+, 2379/2380) clash with nothing else on the machine, and when the
# test process ends, every server it started (even after a timeout panic) dies with the namespace.
# etcdpy's argv and stderr are kept per start under $E2E_WORK/serverlogs/<run>/<test>/.
run() {
  local kind="$1" regex="${2:-.}"
  [ -x "$TEST_BIN" ] || build
  local bin cwd stamp log tests
  bin="$(bindir "$kind")"; cwd="$(rundir)"
  stamp="$(date +%Y%m%d-%H%M%S)"
  mkdir -p "$E2E_WORK/logs"
  log="$E2E_WORK/logs/$kind-$stamp.log"; : > "$log"
  echo "log: $log" >&2
  tests="$(cd "$cwd" && "$TEST_BIN" -test.list "$regex" | grep '^Test' || true)"
  local ns=()
  if [ "${E2E_NETNS:-1}" = 1 ] && [ "$(id -u)" = 0 ] && command -v unshare >/dev/null; then
    ns=(unshare -n -p -f --kill-child sh -c 'ip link set lo up; "$@"' sh)
  fi
  local t tmp slog
  for t in $tests; do
    tmp="$E2E_WORK/tmp-$kind"; rm -rf "$tmp"; mkdir -p "$tmp"
    slog="$E2E_WORK/serverlogs/$kind-$stamp/$t"; mkdir -p "$slog"
    (cd "$cwd" && E2E_SERVER_LOG_DIR="$slog" TMPDIR="$tmp" "${ns[@]}" "$TEST_BIN" -test.v \
        -test.parallel 1 -test.timeout "$E2E_TEST_TIMEOUT" -test.run "^$t\$" \
        -bin-dir "$bin" -cert-dir "$E2E_SRC/integration/fixtures") >> "$log" 2>&1 || true
    # a timeout panic prints no "--- FAIL" line: write one so the summary counts the test
    if ! grep -q -E "^--- (PASS|FAIL|SKIP): $t " "$log"; then
      echo "--- FAIL: $t (timeout after $E2E_TEST_TIMEOUT, see panic above)" >> "$log"
    fi
    grep -E "^--- (PASS|FAIL|SKIP): $t " "$log" | tail -1 >&2
  done
  summary "$log"
}

summary() {
  local log="$1"
  grep -E '^--- (PASS|FAIL|SKIP)' "$log" | awk '{print $2, $3}' | sort -k2 > "$log.summary" || true
  echo "PASS $(grep -c '^PASS' "$log.summary" || true)  FAIL $(grep -c '^FAIL' "$log.summary" || true)  SKIP $(grep -c '^SKIP' "$log.summary" || true)   ($log.summary)"
}

cmd="${1:-}"; shift || true
case "$cmd" in
  build) build ;;
  run) run "$@" ;;
  summary) summary "$@" ;;
  *) sed -n '2,16p' "$0"; exit 2 ;;
esac
