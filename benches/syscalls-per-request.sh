#!/usr/bin/env bash
# System calls per request: strace counts them while wrk drives the server for a few seconds.
# strace slows everything down; these are counts, not speed.
#
#   benches/syscalls-per-request.sh [SECONDS=3] [PIPELINE]      # PIPELINE=16: 16 per write
#   MODE=uring benches/syscalls-per-request.sh                   # the io_uring driver
#
# Needs: strace, wrk.
set -euo pipefail
SECONDS_PER_RUN=${1:-3}
PIPELINE=${2:-}
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=benches/lib.sh
. "$here/lib.sh"
(cd "$repo" && cargo build --release --quiet)
port=18400
start server $port /hello "$repo/target/release/reactor-httpd" --mode "${MODE:-reactor}" --bind 127.0.0.1:$port --cores 1 --quiet --demo

strace_attach "${pid[server]}" "$work/strace.txt"
args=(-t1 -c100 "-d${SECONDS_PER_RUN}s")
[ -n "$PIPELINE" ] && args+=(-s "$repo/../shared/bench/pipeline.lua")
args+=("http://127.0.0.1:$port/hello")
[ -n "$PIPELINE" ] && args+=(-- "$PIPELINE")
requests=$(taskset -c 1 wrk "${args[@]}" | awk '/requests in/ {print $1}')
strace_detach
echo "requests: $requests${PIPELINE:+ ($PIPELINE pipelined per write)}"
strace_rows "$work/strace.txt" |
  awk -v n="$requests" '{printf "%-16s %10d calls  %.3f per request\n", $1, $2, $2 / n}'
