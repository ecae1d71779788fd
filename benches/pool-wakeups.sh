#!/usr/bin/env bash
# Why the handler pool can beat the loop at its own CPU-bound work: server CPU per request, split
# into user and kernel time, with what the kernel did for it (tracepoints, perf stat), for the
# reactor with a pool of THREADS handler threads and without one (`--handler-threads 0`, the loop
# computes), alternating, ROUNDS rounds of SECONDS each, medians shown.
#
# The load is reactor-bench on core 1 driving PATH (default /compute?kib=64) as fast as it is
# answered on CONNECTIONS connections; the server is pinned to core 0, so the pool's threads and
# the loop share one core and requests/s is the inverse of CPU per request. Besides the loop's own
# system calls it counts the interprocessor interrupts the server sends (`ipi:ipi_send_cpu`): on
# one machine, each answer that finds the load generator's core asleep wakes it with one, and
# the sender pays for it in kernel time (a virtual machine pays the most, as sending one leaves
# the guest).
#
#   benches/pool-wakeups.sh [ROUNDS=5] [SECONDS=5]
#   CONNECTIONS=10 benches/pool-wakeups.sh 3 5
#
# Needs: taskset, curl, perf with access to tracepoints (root, or kernel.perf_event_paranoid <= 1).
set -euo pipefail
ROUNDS=${1:-5}
SECONDS_PER_RUN=${2:-5}
THREADS=${THREADS:-64}
CONNECTIONS=${CONNECTIONS:-100}
PATH_ASKED=${PATH_ASKED:-/compute?kib=64}
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=benches/lib.sh
. "$here/lib.sh"
command -v perf >/dev/null || { echo "needs perf (apt-get install linux-perf)" >&2; exit 1; }
(cd "$repo" && cargo build --release --quiet)
ticks_per_s=$(getconf CLK_TCK)

events=(
  syscalls:sys_enter_epoll_wait epoll_wait
  syscalls:sys_enter_recvfrom recvfrom
  syscalls:sys_enter_sendto sendto
  syscalls:sys_enter_write "write (waker)"
  syscalls:sys_enter_futex futex
  sched:sched_switch "context switches"
  ipi:ipi_send_cpu "IPIs sent"
)
list=$(for ((i = 0; i < ${#events[@]}; i += 2)); do printf '%s,' "${events[i]}"; done)

# One run: appends "requests user_us sys_us count..." per request to $work/NAME.rows.
run_once() {
  local name=$1 threads=$2 at=$3
  start "$name$at" "$at" /hello "$repo/target/release/reactor-httpd" --bind "127.0.0.1:$at" \
    --quiet --demo --cores 1 --handler-threads "$threads" --max-connections 5000
  local server=${pid[$name$at]}
  read -r u0 s0 < <(awk '{print $14, $15}' "/proc/$server/stat")
  perf stat -x, -e "${list%,}" -p "$server" -o "$work/counts" 2>"$work/perf.err" &
  local tracer=$!
  sleep 0.5 # attached
  taskset -c 1 "$repo/target/release/reactor-bench" "http://127.0.0.1:$at$PATH_ASKED" \
    --connections "$CONNECTIONS" --duration "$SECONDS_PER_RUN" --json >"$work/bench.json"
  kill -INT "$tracer"
  wait "$tracer" 2>/dev/null || true
  read -r u1 s1 < <(awk '{print $14, $15}' "/proc/$server/stat")
  kill "$server"
  wait "$server" 2>/dev/null || true
  grep -q '^[0-9]' "$work/counts" || {
    echo "perf counted nothing (tracepoints need root or kernel.perf_event_paranoid <= 1):" >&2
    cat "$work/perf.err" "$work/counts" >&2
    exit 1
  }
  python3 - "$work/bench.json" "$work/counts" "$ticks_per_s" "$u0" "$s0" "$u1" "$s1" \
    "${events[@]}" >>"$work/$name.rows" <<'EOF'
import json, sys
bench, counts, hz, u0, s0, u1, s1 = sys.argv[1:8]
events = sys.argv[8::2]
n = json.load(open(bench))["requests"]
found = {}
for line in open(counts):
    parts = line.strip().split(",")
    if len(parts) > 2 and parts[0].isdigit():
        found[parts[2]] = int(parts[0])
us = 1e6 / float(hz) / n
row = [n, (int(u1) - int(u0)) * us, (int(s1) - int(s0)) * us]
print(" ".join(str(x) for x in row + [found.get(e, 0) / n for e in events]))
EOF
}

servers=("pool:$THREADS" "no-pool:0")
at=18600
for round in $(seq "$ROUNDS"); do
  for server in "${servers[@]}"; do
    run_once "${server%%:*}" "${server##*:}" $((at++))
  done
  echo "round $round of $ROUNDS done" >&2
done

echo "$PATH_ASKED on $CONNECTIONS connections, server on core 0; medians of $ROUNDS rounds of ${SECONDS_PER_RUN} s, per request:"
header=("requests/s" "user µs" "kernel µs")
for ((i = 1; i < ${#events[@]}; i += 2)); do header+=("${events[i]}"); done
printf '| server |'; printf ' %s |' "${header[@]}"; echo
printf '|---|'; printf -- '---:|%.0s' "${header[@]}"; echo
for server in "${servers[@]}"; do
  name=${server%%:*}
  printf '| %s |' "$name"
  for ((col = 1; col <= ${#header[@]}; col++)); do
    value=$(awk -v c="$col" '{print $c}' "$work/$name.rows" | median)
    case $col in
      1) printf ' %.0f |' "$(awk -v v="$value" -v s="$SECONDS_PER_RUN" 'BEGIN {print v / s}')" ;;
      2 | 3) printf ' %.1f |' "$value" ;;
      *) printf ' %.2f |' "$value" ;;
    esac
  done
  echo
done
