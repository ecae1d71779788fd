#!/usr/bin/env bash
# Handlers that block or compute, in every concurrency model: requests/s and p99 of the slow
# route, and the p99 of `GET /hello` on 10 other connections while the slow load runs.
#
# For each workload (/sleep?ms=10 at 100 connections, /compute?kib=64 at 10 and 100) and each
# server (reactor with a pool of THREADS handler threads, the same in uring mode, reactor with
# --handler-threads 0,
# threaded with THREADS workers, fork), a fresh server pinned to core 0; reactor-bench on core 1
# drives the slow route as fast as it is answered while a second reactor-bench sends /hello at
# a fixed HELLO_RATE requests/s (default 1,000) on 10 connections (latency from when each was
# due). Rounds alternate between servers; medians of ROUNDS are shown.
#
# Why 1,000/s: a p99 is only as good as the samples under it. At 200/s for 5 s it is the 10th
# worst of 1,000 requests, and on a virtual machine that stalls now and then for a few ms
# (every server's maximum, limit.c's included, is 4-13 ms here) it measured the stalls: the
# same server read 0.5 to 5 ms from run to run. 1,000/s gives ten times the samples and costs
# the server well under 1% of a core.
#
#   benches/blocking-handlers.sh [ROUNDS=5] [SECONDS=5]
#   THREADS=64 WORKLOADS="/sleep?ms=10@100" benches/blocking-handlers.sh 3 5
#
# The workload "idle@0" runs the /hello probe alone: the latency floor of this machine in the
# same run, without which a p99 beside the load cannot be read (on a virtual machine whose idle
# cores sleep, waking one costs far more than the server's work). The server "limit" is
# ../shared/bench/limit.c, the C floor, which answers every request with hello: only for idle@0.
#
#   WORKLOADS=idle@0 SERVERS="limit reactor" benches/blocking-handlers.sh 5 5
#
# Needs: taskset, curl, python3, two cores.
set -euo pipefail

ROUNDS=${1:-5}
SECONDS_PER_RUN=${2:-5}
THREADS=${THREADS:-64}
HELLO_RATE=${HELLO_RATE:-1000}
WORKLOADS=${WORKLOADS:-"idle@0 /sleep?ms=10@100 /compute?kib=64@10 /compute?kib=64@100"}
SERVERS=${SERVERS:-"reactor uring reactor-no-pool threaded fork"}
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=benches/lib.sh
. "$here/lib.sh"

(cd "$repo" && cargo build --release --quiet)
bench=$repo/target/release/reactor-bench
server=$repo/target/release/reactor-httpd
case " $SERVERS " in
  *" limit "*) gcc -O2 -o "$work/limit" "${LIMIT_C:-$repo/../shared/bench/limit.c}" ;;
esac

# One run: prints "requests_per_s p99_us errors hello_p99_us hello_errors".
run_once() {
  local name=$1 path=$2 connections=$3 at=$4
  local args=(--bind "127.0.0.1:$at" --quiet --demo --threads "$THREADS" --max-connections 5000)
  local command=$server
  case $name in
    limit)
      [ "$path" = idle ] || { echo "limit answers hello to everything: idle@0 only" >&2; exit 1; }
      command=$work/limit args=("127.0.0.1:$at")
      ;;
    reactor) args+=(--mode reactor --cores 1 --handler-threads "$THREADS") ;;
    uring) args+=(--mode uring --cores 1 --handler-threads "$THREADS") ;;
    reactor-no-pool) args+=(--mode reactor --cores 1 --handler-threads 0) ;;
    threaded) args+=(--mode threaded) ;;
    fork) args+=(--mode fork) ;;
  esac
  start "$name" "$at" /hello "$command" "${args[@]}"
  local slow=
  if [ "$path" = idle ]; then
    echo '{"requests_per_s": 0, "latency_us": {"p99": 0}, "errors": 0}' >"$work/slow.json"
  else
    taskset -c 1 "$bench" "http://127.0.0.1:$at$path" --connections "$connections" \
      --duration "$SECONDS_PER_RUN" --timeout 5 --json >"$work/slow.json" &
    slow=$!
  fi
  taskset -c 1 "$bench" "http://127.0.0.1:$at/hello" --connections 10 --rate "$HELLO_RATE" \
    --duration "$SECONDS_PER_RUN" --timeout 5 --json >"$work/hello.json"
  [ -z "$slow" ] || wait "$slow"
  # Stopped and gone before the next server binds: a reactor left draining would share the
  # port (SO_REUSEPORT) with its successor.
  kill "${pid[$name]}" 2>/dev/null || true
  wait "${pid[$name]}" 2>/dev/null || true
  if kill -0 "${pid[$name]}" 2>/dev/null; then echo "$name did not stop" >&2; exit 1; fi
  python3 - "$work/slow.json" "$work/hello.json" <<'EOF'
import json, sys
slow, hello = (json.load(open(f)) for f in sys.argv[1:3])
# refused and reset are kinds of connect and read errors, not more errors.
kinds = ("connect", "read", "status", "timeout")
errors = lambda r: sum(r["errors"][k] for k in kinds) if isinstance(r["errors"], dict) else r["errors"]
print(slow["requests_per_s"], slow["latency_us"]["p99"], errors(slow),
      hello["latency_us"]["p99"], errors(hello))
EOF
}

at=18300
printf '| workload | server | requests/s | p99 | errors | /hello p99 alongside | /hello errors |\n'
printf '|---|---|---:|---:|---:|---:|---:|\n'
for workload in $WORKLOADS; do
  path=${workload%@*} connections=${workload#*@}
  declare -A rps=() p99=() err=() hp99=() herr=()
  for _ in $(seq "$ROUNDS"); do
    for name in $SERVERS; do
      at=$((at + 1))
      read -r r p e hp he < <(run_once "$name" "$path" "$connections" "$at")
      rps[$name]+="$r " p99[$name]+="$p " err[$name]+="$e " hp99[$name]+="$hp " herr[$name]+="$he "
    done
  done
  for name in $SERVERS; do
    printf '| `%s` x %s | %s | %.0f | %.1f ms | %s | %.2f ms | %s |\n' "$path" "$connections" "$name" \
      "$(echo "${rps[$name]}" | median)" "$(echo "${p99[$name]}" | median | awk '{print $1/1000}')" \
      "$(echo "${err[$name]}" | median)" "$(echo "${hp99[$name]}" | median | awk '{print $1/1000}')" \
      "$(echo "${herr[$name]}" | median)"
  done
done
