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
repo=$(dirname "$here")
work=$(mktemp -d)
(cd "$repo" && cargo build --release --quiet)
port=18400
taskset -c 0 "$repo/target/release/reactor-httpd" --mode "${MODE:-reactor}" --bind 127.0.0.1:$port --cores 1 --quiet --demo >/dev/null &
pid=$!
trap 'kill $pid 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$port/hello" >/dev/null 2>&1 && break; sleep 0.1; done

strace -c -U name,calls -f -p "$pid" -o "$work/strace.txt" 2>/dev/null &
tracer=$!
sleep 0.5
args=(-t1 -c100 "-d${SECONDS_PER_RUN}s")
[ -n "$PIPELINE" ] && args+=(-s "$repo/../shared/bench/pipeline.lua")
args+=("http://127.0.0.1:$port/hello")
[ -n "$PIPELINE" ] && args+=(-- "$PIPELINE")
requests=$(taskset -c 1 wrk "${args[@]}" | awk '/requests in/ {print $1}')
kill -INT "$tracer"; wait "$tracer" 2>/dev/null || true
echo "requests: $requests${PIPELINE:+ ($PIPELINE pipelined per write)}"
# Rows are "name calls" between the dashed rules; the last row is the total.
awk -v n="$requests" '/^-/ {next} $2 ~ /^[0-9]+$/ {printf "%-16s %10d calls  %.3f per request\n", $1, $2, $2 / n}' "$work/strace.txt"
