#!/usr/bin/env bash
# Restarts under load, three ways, counting every request that fails.
#
# reactor-bench (core 1) sends a fixed 20,000 requests/s: 100 keep-alive connections, plus 20
# connections that each make one request (`Connection: close`) and connect again, a stream of
# new connections. Meanwhile the server (core 0) is restarted RESTARTS times, a few hundred ms
# apart, one of three ways:
#
#   sighup      kill -HUP: the new process inherits the listening sockets (issue 15)
#   stop-start  SIGTERM, wait for the exit, start the binary again
#   reuseport   start a second server on the port with --reuse-port, wait until it listens,
#               then SIGTERM the first (Linux drops the accept queue of the closed socket)
#
# For each mode and way: requests answered, and failed ones by kind (refused, reset, other
# read failures such as a close before the answer, timeouts, bad statuses); for sighup also
# the median time from SIGHUP to the new process serving (the old one's "handed over after N
# ms" line: from spawning the binary to its readiness byte).
#
#   benches/upgrade-under-load.sh [RESTARTS=10] [MODES="reactor uring threaded"] [WAYS="sighup stop-start reuseport"]
#
# Needs: taskset, curl, python3, two cores.
set -euo pipefail

RESTARTS=${1:-10}
MODES=${2:-"reactor uring threaded"}
WAYS=${3:-"sighup stop-start reuseport"}
RATE=${RATE:-20000}
GAP=${GAP:-0.3}
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=benches/lib.sh
. "$here/lib.sh"

(cd "$repo" && cargo build --release --quiet)
bench=$repo/target/release/reactor-bench
server=$repo/target/release/reactor-httpd
seconds=$(python3 -c "print(round(2 + $RESTARTS * ($GAP + 0.3) + 2))")

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Waits until LOG has at least N lines matching PATTERN (bounded: 10 s).
wait_lines() {
  local log=$1 pattern=$2 n=$3
  for _ in $(seq 1000); do
    [ "$(grep -c "$pattern" "$log" 2>/dev/null || true)" -ge "$n" ] && return 0
    sleep 0.01
  done
  echo "timed out waiting for $n x '$pattern' in $log" >&2; cat "$log" >&2; exit 1
}

# One server process in the background, pinned to core 0; its pid in $started.
launch() {
  local mode=$1 at=$2 out=$3 err=$4; shift 4
  taskset -c 0 "$server" --bind "127.0.0.1:$at" --mode "$mode" --demo --quiet --cores 1 \
    --threads 256 --max-connections 5000 "$@" >>"$out" 2>>"$err" &
  started=$!
  pids+=("$started")
}

# One run: prints "requests refused reset read timeout status handover_ms".
run_once() {
  local mode=$1 way=$2 at out err current count=0
  at=$(free_port)
  out=$work/$mode-$way.out err=$work/$mode-$way.err
  : >"$out"; : >"$err"
  # Both servers of the reuseport way must set SO_REUSEPORT (the reactor always does).
  local share=()
  [ "$way" = reuseport ] && share=(--reuse-port)
  launch "$mode" "$at" "$out" "$err" "${share[@]}"
  current=$started
  wait_lines "$out" "listening on" 1
  taskset -c 1 "$bench" "http://127.0.0.1:$at/hello" --connections 100 --fresh 20 \
    --rate "$RATE" --duration "$seconds" --timeout 2 --json >"$work/load.json" &
  local load=$!
  sleep 2
  for i in $(seq "$RESTARTS"); do
    case $way in
      sighup)
        kill -HUP "$current"
        wait_lines "$err" "handed over to pid" "$i"
        current=$(grep "handed over to pid" "$err" | tail -1 | sed 's/.*pid \([0-9]*\).*/\1/')
        pids+=("$current")
        ;;
      stop-start)
        kill -TERM "$current"
        wait "$current" 2>/dev/null || true
        launch "$mode" "$at" "$out" "$err"
        current=$started
        ;;
      reuseport)
        local old=$current
        count=$(grep -c "listening on" "$out")
        launch "$mode" "$at" "$out" "$err" --reuse-port
        current=$started
        wait_lines "$out" "listening on" $((count + 1))
        kill -TERM "$old"
        wait "$old" 2>/dev/null || true
        ;;
    esac
    sleep "$GAP"
  done
  wait "$load"
  kill -TERM "$current" 2>/dev/null || true
  # Every process of this run gone before the next binds the same way.
  for _ in $(seq 500); do pgrep -f -- "--bind 127.0.0.1:$at " >/dev/null || break; sleep 0.02; done
  python3 - "$work/load.json" "$err" <<'EOF'
import json, re, statistics, sys
r = json.load(open(sys.argv[1]))
e = r["errors"]
ms = [int(m) for m in re.findall(r"handed over to pid \d+ after (\d+) ms", open(sys.argv[2]).read())]
print(r["requests"], e["refused"], e["reset"], e["read"] - e["reset"],
      e["timeout"], e["status"], e["connect"] - e["refused"],
      statistics.median(ms) if ms else "-")
EOF
}

echo "# $RESTARTS restarts under $RATE requests/s (100 keep-alive connections + 20 one-request connections), $seconds s per run"
echo
echo "| mode | way | requests answered | refused | reset | closed or other read error | timeout | bad status | other connect error | SIGHUP to serving (median) |"
echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"
for mode in $MODES; do
  for way in $WAYS; do
    read -r requests refused reset read timeout status connect ms < <(run_once "$mode" "$way")
    [ "$ms" = "-" ] || ms="$ms ms"
    echo "| $mode | $way | $requests | $refused | $reset | $read | $timeout | $status | $connect | $ms |"
  done
done
