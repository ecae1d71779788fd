#!/usr/bin/env bash
# System calls per request while wrk drives the server for a few seconds, and what the kernel did
# on each socket, counted by its own tracepoints (perf stat). Counting costs the server a little
# (here it served 15-20% fewer requests in the same time), so these are close to the counts of a
# server running at full speed.
#
# Why not strace: it stops the server at every system call and slows it many times over, so
# requests pile up between wake-ups, and a server that batches (one epoll_wait or io_uring_enter
# for every request that is ready) looks as if it made far fewer calls than it does at speed.
# Under strace the ring made one io_uring_enter per twelve requests; at speed it makes one per
# three or four. STRACE=1 still gives strace's table, call by call.
#
#   benches/syscalls-per-request.sh [SECONDS=3] [PIPELINE]      # PIPELINE=16: 16 per write
#   MODE=uring benches/syscalls-per-request.sh                   # the io_uring driver
#   LIMIT=1 benches/syscalls-per-request.sh                      # limit.c, the C epoll floor
#   STRACE=1 benches/syscalls-per-request.sh                     # strace -c (slow, see above)
#
# Needs: wrk, and perf with access to tracepoints (as root, or kernel.perf_event_paranoid <= 1),
# or strace with STRACE=1; gcc with LIMIT=1.
set -euo pipefail
SECONDS_PER_RUN=${1:-3}
PIPELINE=${2:-}
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=benches/lib.sh
. "$here/lib.sh"
port=18400
if [ -n "${LIMIT:-}" ]; then
  gcc -O2 -o "$work/limit" "${LIMIT_C:-$repo/../shared/bench/limit.c}"
  start server $port /hello "$work/limit" 127.0.0.1:$port
else
  (cd "$repo" && cargo build --release --quiet)
  start server $port /hello "$repo/target/release/reactor-httpd" --mode "${MODE:-reactor}" \
    --bind 127.0.0.1:$port --cores 1 --quiet --demo
fi

# What is counted, and the name each row gets. A socket's receive or send counts once whoever
# asks for it: a system call (recvfrom, read, sendto, write) or an operation io_uring runs.
events=(
  raw_syscalls:sys_enter "system calls"
  syscalls:sys_enter_epoll_wait "  epoll_wait"
  syscalls:sys_enter_io_uring_enter "  io_uring_enter"
  sock:sock_recv_length "socket receives"
  sock:sock_send_length "socket sends"
  io_uring:io_uring_complete "io_uring completions"
)
if [ -n "${STRACE:-}" ]; then
  strace_attach "${pid[server]}" "$work/counts.txt"
else
  command -v perf >/dev/null || { echo "needs perf (apt-get install linux-perf), or STRACE=1" >&2; exit 1; }
  list=$(for ((i = 0; i < ${#events[@]}; i += 2)); do printf '%s,' "${events[i]}"; done)
  perf stat -x, -e "${list%,}" -p "${pid[server]}" -o "$work/counts.txt" 2>"$work/perf.err" &
  tracer=$!
  sleep 0.5 # attached
fi
args=(-t1 -c100 "-d${SECONDS_PER_RUN}s")
[ -n "$PIPELINE" ] && args+=(-s "$repo/../shared/bench/pipeline.lua")
args+=("http://127.0.0.1:$port/hello")
[ -n "$PIPELINE" ] && args+=(-- "$PIPELINE")
requests=$(taskset -c 1 wrk "${args[@]}" | awk '/requests in/ {print $1}')
if [ -n "${STRACE:-}" ]; then
  strace_detach
  echo "requests: $requests${PIPELINE:+ ($PIPELINE pipelined per write)}, counted by strace"
  strace_rows "$work/counts.txt" |
    awk -v n="$requests" '{printf "%-20s %10d calls  %.3f per request\n", $1, $2, $2 / n}'
  exit 0
fi
kill -INT "$tracer"
wait "$tracer" 2>/dev/null || true
if ! grep -q '^[0-9]' "$work/counts.txt"; then
  echo "perf counted nothing (tracepoints need root or kernel.perf_event_paranoid <= 1):" >&2
  cat "$work/perf.err" "$work/counts.txt" >&2
  exit 1
fi
echo "requests: $requests${PIPELINE:+ ($PIPELINE pipelined per write)}, counted by tracepoints"
for ((i = 0; i < ${#events[@]}; i += 2)); do
  # perf's CSV: count,unit,event,... ("<not counted>" where an event never fired or is missing).
  awk -F, -v event="${events[i]}" -v name="${events[i + 1]}" -v n="$requests" '
    $3 == event && $1 ~ /^[0-9]+$/ {printf "%-22s %10d  %.3f per request\n", name, $1, $1 / n}
    $3 == event && $1 !~ /^[0-9]+$/ {printf "%-22s %10s\n", name, $1}' "$work/counts.txt"
done
