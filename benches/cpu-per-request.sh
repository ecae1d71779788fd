#!/usr/bin/env bash
# Server CPU time per request: reactor-httpd against the C floor (../shared/bench/limit.c, or
# $LIMIT_C) and nginx, measured the only way that tells them apart on a small machine.
#
# One wrk thread saturates near the server's speed, so requests/s says little; what differs is
# how much CPU each server burns per request. Each server runs pinned to core 0 and wrk to
# core 1; the server's utime+stime comes from /proc/PID/stat before and after each run. Runs
# alternate between servers (so drift hits all alike), ROUNDS times each, and the median is shown,
# with the median of each round's ratio to limit.c beside it, the number of rounds in which the
# server took less CPU than limit.c, and the part of the CPU time spent in the server's own code
# (utime) rather than in the kernel on its behalf.
#
#   benches/cpu-per-request.sh [ROUNDS=5] [SECONDS=10]
#   benches/cpu-per-request.sh 30 3     # many short rounds: each pair runs seconds apart, so a
#                                       # slow spell of the machine moves a pair's ratio less
#   PIPELINE=16 benches/cpu-per-request.sh        # 16 requests per write (../shared/bench/pipeline.lua)
#   SERVERS="reactor limit" benches/cpu-per-request.sh
#   SERVERS="reactor floor limit" ...  # add examples/httparse_floor.rs: limit.c on mio + httparse
#   SERVERS="reactor metrics limit" ...  # add reactor-httpd with --metrics-path /metrics
#   SERVERS="reactor uring limit" ...    # add reactor-httpd --mode uring (io_uring)
#   SERVERS="reactor limit may nginx" ... # add may_minihttp (../shared/bench/may-hello, built
#                                        # outside the workspace into $MAY_TARGET, /tmp/may)
#   FILE_KIB=4 SERVERS="reactor uring-read uring-splice" BASE=reactor ...  # uring's two ways
#                                        # of sending a file, each alone
#   SERVERS="uring uring-fd limit" ...   # the ring with its sockets registered (as it runs) and
#                                        # named by descriptor in every send
#   TLS=1 benches/cpu-per-request.sh     # HTTPS, keep-alive: reactor-httpd vs nginx, same ECDSA
#                                        # P-256 certificate, ratios to nginx
#   FILE_KIB=1024 TLS=1 SERVERS="reactor nginx" benches/cpu-per-request.sh   # GET a 1 MiB file
#                                        # instead of /hello (both serve the same directory)
#   SITE=DIR URL_PATH=/app.js HEADER='Accept-Encoding: br, gzip' NGINX_HTTP='gzip_static on;' \
#     SERVERS="reactor nginx" benches/cpu-per-request.sh   # a file of DIR, with a request header
#                                        # (several: one a line, HEADER=$'A: 1\nB: 2')
#   REACTOR_ARGS=--compress ...          # more flags for reactor-httpd
#   REACTOR_AT=/tmp/old/reactor-httpd SERVERS="reactor reactor-at" BASE=reactor-at ...
#                                        # A/B: the same flags, a binary of another build
#   PERF=1 ...                           # also sample each server (perf, cpu-clock) and show
#                                        # where its CPU went: the kernel's TCP/IP work, its
#                                        # system-call or io_uring layer, scheduling, user space.
#                                        # Sampling costs CPU: compare ratios from runs without it
#
# Needs: wrk, nginx, gcc (apt-get install wrk nginx-light gcc), two cores; perf for PERF=1.
set -euo pipefail

ROUNDS=${1:-5}
SECONDS_PER_RUN=${2:-10}
CONNECTIONS=${CONNECTIONS:-100}
PIPELINE=${PIPELINE:-}
TLS=${TLS:-}
if [ -n "$TLS" ]; then
  SERVERS=${SERVERS:-"reactor nginx"}
  BASE=${BASE:-nginx}
else
  SERVERS=${SERVERS:-"reactor limit nginx"}
  BASE=${BASE:-limit}
fi
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=benches/lib.sh
. "$here/lib.sh"
shared=${SHARED_BENCH:-$repo/../shared/bench}
LIMIT_C=${LIMIT_C:-$shared/limit.c}
PIPELINE_LUA=${PIPELINE_LUA:-$shared/pipeline.lua}

FILE_KIB=${FILE_KIB:-}
URL_PATH=${URL_PATH:-/hello}
root_args=()
nginx_root=()
if [ -n "${SITE:-}" ]; then
  root_args=("$SITE")
  nginx_root=("$SITE")
fi
if [ -n "$FILE_KIB" ]; then
  mkdir -p "$work/www"
  head -c $((FILE_KIB * 1024)) /dev/urandom >"$work/www/file.bin"
  URL_PATH=/file.bin
  root_args=("$work/www")
  nginx_root=("$work/www")
fi
if [ -n "$TLS" ]; then
  make_certificate
  SCHEME=https
  tls_args=(--tls-cert "$TLS_CERT" --tls-key "$TLS_KEY")
else
  SCHEME=http
  tls_args=()
fi

[ -n "${PERF:-}" ] && { command -v perf >/dev/null || { echo "PERF=1 needs perf (apt-get install linux-perf)" >&2; exit 1; }; }
for tool in wrk taskset; do
  command -v "$tool" >/dev/null || { echo "needs $tool (apt-get install wrk util-linux)" >&2; exit 1; }
done

for name in $SERVERS; do
  case $name in
    reactor)
      (cd "$repo" && cargo build --release --quiet)
      start reactor 18080 "$URL_PATH" "$repo/target/release/reactor-httpd" --bind 127.0.0.1:18080 --cores 1 --quiet --demo "${tls_args[@]}" ${REACTOR_ARGS:-} "${root_args[@]}"
      ;;
    uring)
      (cd "$repo" && cargo build --release --quiet)
      start uring 18130 "$URL_PATH" "$repo/target/release/reactor-httpd" --mode uring --bind 127.0.0.1:18130 --cores 1 --quiet --demo "${tls_args[@]}" ${REACTOR_ARGS:-} "${root_args[@]}"
      ;;
    uring-read|uring-splice)
      # Files one way only: read into a buffer and sent, or spliced through a pipe.
      (cd "$repo" && cargo build --release --quiet)
      at=$([ "$name" = uring-read ] && echo 18446744073709551615 || echo 0)
      uport=$([ "$name" = uring-read ] && echo 18131 || echo 18132)
      start "$name" "$uport" "$URL_PATH" env REACTOR_HTTPD_URING_SPLICE_AT="$at" "$repo/target/release/reactor-httpd" --mode uring --bind "127.0.0.1:$uport" --cores 1 --quiet --demo "${tls_args[@]}" ${REACTOR_ARGS:-} "${root_args[@]}"
      ;;
    uring-fd)
      # Sockets named by descriptor in every send, not by a slot in the ring's registered files.
      (cd "$repo" && cargo build --release --quiet)
      start uring-fd 18133 "$URL_PATH" env REACTOR_HTTPD_URING_FIXED_FILES=0 "$repo/target/release/reactor-httpd" --mode uring --bind 127.0.0.1:18133 --cores 1 --quiet --demo "${tls_args[@]}" ${REACTOR_ARGS:-} "${root_args[@]}"
      ;;
    reactor-at)
      [ -x "${REACTOR_AT:-}" ] || { echo "reactor-at needs REACTOR_AT=PATH of a reactor-httpd binary" >&2; exit 1; }
      start reactor-at 18084 "$URL_PATH" "$REACTOR_AT" --bind 127.0.0.1:18084 --cores 1 --quiet --demo "${tls_args[@]}" ${REACTOR_ARGS:-} "${root_args[@]}"
      ;;
    metrics)
      (cd "$repo" && cargo build --release --quiet)
      start metrics 18120 "$URL_PATH" "$repo/target/release/reactor-httpd" --bind 127.0.0.1:18120 --cores 1 --quiet --demo --metrics-path /metrics "${tls_args[@]}" "${root_args[@]}"
      ;;
    floor)
      (cd "$repo" && cargo build --release --quiet --example httparse_floor)
      start floor 18110 /hello "$repo/target/release/examples/httparse_floor" 127.0.0.1:18110
      ;;
    limit)
      command -v gcc >/dev/null || { echo "needs gcc" >&2; exit 1; }
      gcc -O2 -o "$work/limit" "$LIMIT_C"
      start limit 18090 /hello "$work/limit" 127.0.0.1:18090
      ;;
    may)
      # may_minihttp answering /hello on one worker: built outside this workspace, as its README
      # says (it is not a dependency of the project).
      may_target=${MAY_TARGET:-/tmp/may}
      (cd "$shared/may-hello" && CARGO_TARGET_DIR="$may_target" cargo build --release --quiet)
      start may 18086 /hello "$may_target/release/may-hello" 127.0.0.1:18086 1
      ;;
    nginx)
      command -v nginx >/dev/null || { echo "needs nginx (apt-get install nginx-light)" >&2; exit 1; }
      start nginx 18100 "$URL_PATH" nginx -c "$("$here/nginx-conf.sh" "$work" 18100 "${nginx_root[@]}")"
      ;;
    *) echo "unknown server $name" >&2; exit 1 ;;
  esac
done

measure() { # name -> "requests cpu_us_per_request user_us_per_request requests_per_s p99_latency_us"
  local name=$1 args=(-t1 "-c$CONNECTIONS" "-d${SECONDS_PER_RUN}s" --latency)
  local field
  while IFS= read -r field; do
    [ -n "$field" ] && args+=(-H "$field")
  done <<<"${HEADER:-}"
  [ -n "$PIPELINE" ] && args+=(-s "$PIPELINE_LUA")
  args+=("$SCHEME://127.0.0.1:${port[$name]}$URL_PATH")
  [ -n "$PIPELINE" ] && args+=(-- "$PIPELINE")
  local before after user_before user_after out
  before=$(cpu_ticks "${pid[$name]}")
  user_before=$(user_ticks "${pid[$name]}")
  local sampler=
  if [ -n "${PERF:-}" ]; then # samples the middle of the run, into one file per server
    perf record -q -e cpu-clock -p "${pid[$name]}" -o "$work/perf.$name" \
      -- sleep $((SECONDS_PER_RUN > 2 ? SECONDS_PER_RUN - 2 : 1)) >/dev/null 2>&1 &
    sampler=$!
  fi
  out=$(taskset -c 1 wrk "${args[@]}")
  [ -n "$sampler" ] && wait "$sampler"
  after=$(cpu_ticks "${pid[$name]}")
  user_after=$(user_ticks "${pid[$name]}")
  local requests rps errors p99
  requests=$(echo "$out" | awk '/requests in/ {print $1}')
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  # wrk --latency prints "99%  812.00us" (or ms, or s).
  # With a pipelining script wrk times only the batch, and its percentiles read 0: not reported.
  p99=$([ -n "$PIPELINE" ] || echo "$out" | awk '$1 == "99%" {
    v = $2; unit = v; sub(/[0-9.]+/, "", unit); sub(/[a-z]+$/, "", v)
    print v * (unit == "s" ? 1000000 : unit == "ms" ? 1000 : 1) }')
  errors=$(echo "$out" | awk '/Non-2xx|Socket errors/ {print}')
  [ -n "$errors" ] && echo "  $name: $errors" >&2
  local hz; hz=$(getconf CLK_TCK)
  per_request() { echo "scale=4; $1 * 1000000 / $hz / $requests" | bc; }
  echo "$requests $(per_request $((after - before))) $(per_request $((user_after - user_before))) $rps ${p99:-0}"
}

echo "wrk -t1 -c$CONNECTIONS -d${SECONDS_PER_RUN}s${PIPELINE:+, $PIPELINE pipelined per write}; server on core 0, wrk on core 1; $ROUNDS rounds" >&2
declare -A results user_results latencies round_ratios this_round
for round in $(seq "$ROUNDS"); do
  for name in $SERVERS; do
    read -r requests us user rps p99 < <(measure "$name")
    results[$name]+="$us "
    user_results[$name]+="$user "
    this_round[$name]=$us
    latencies[$name]+="$p99 "
    latency=""
    [ -z "$PIPELINE" ] && latency=$(printf '  p99 %7.0f us' "$p99")
    printf 'round %d %-8s %9s req  %7.0f req/s  %6.3f us CPU/req (user %5.3f)%s\n' "$round" "$name" \
      "$requests" "$rps" "$us" "$user" "$latency" >&2
  done
  # Each round's servers ran back to back, under the same conditions: their ratio in that round
  # is a paired comparison, which a slow spell of the machine moves less than the medians.
  if [ -n "${this_round[$BASE]:-}" ]; then
    for name in $SERVERS; do
      round_ratios[$name]+="$(echo "scale=4; ${this_round[$name]} / ${this_round[$BASE]}" | bc) "
    done
  fi
done

for name in $SERVERS; do
  paired=- below=-
  if [ -n "${round_ratios[$name]:-}" ]; then
    paired="$(echo "${round_ratios[$name]}" | median)x"
    # In how many rounds this server took less CPU than the base: "level within noise" is about
    # half of them; "below" is most of them.
    below="$(echo "${round_ratios[$name]}" | tr ' ' '\n' | awk 'NF {n++; b += ($1 < 1)}
      END {print b "/" n}')"
  fi
  echo "$name $(echo "${results[$name]}" | median) $(echo "${user_results[$name]}" | median)" \
    "$(echo "${latencies[$name]}" | median) $paired $below"
done >"$work/medians"
floor=$(awk -v base="$BASE" '$1 == base {print $2}' "$work/medians")
echo
# The user-space part is the server's own code; the rest is the kernel's work on its behalf
# (reading, writing, epoll): servers that make the same system calls differ only in the first.
printf '%-10s %-22s %-11s %-17s %-21s %-19s %s\n' server "median us CPU/request" "of it user" \
  "ratio to $BASE" "median round ratio" "rounds below $BASE" "median p99 latency"
while read -r name m user p99 paired below; do
  ratio=${floor:+$(echo "scale=3; $m / $floor" | bc)x}
  if [ -n "$PIPELINE" ]; then p99=none; else p99="$p99 us"; fi
  printf '%-10s %-22s %-11s %-17s %-21s %-19s %s\n' "$name" "$m" "$user" "${ratio:--}" "$paired" \
    "$below" "$p99"
done <"$work/medians"

# PERF=1: each server's samples from its last round, by where they fell: its own code (user),
# its system-call layer (entry, descriptor lookup, vfs, epoll) or io_uring's, sleeping and
# waking (sched), and the rest of the kernel (kernel: nearly all of it TCP/IP).
[ -z "${PERF:-}" ] && exit 0
echo
printf '%-10s %8s %8s %8s %8s %8s\n' server kernel syscall io_uring sched user
for name in $SERVERS; do
  perf report -i "$work/perf.$name" --no-children --sort sym --stdio 2>/dev/null | awk -v name="$name" '
    $1 ~ /%$/ {
      share = $1 + 0; sym = $3
      if ($2 == "[.]") group = "user"
      else if (sym ~ /^(__)?io_|io_uring/) group = "uring"
      else if (sym ~ /do_syscall_64|entry_SYSCALL|syscall_exit|__x64_sys|ksys_|vfs_|sock_(read|write)_iter|__sys_(recvfrom|sendto)|ep_|epoll|fget|fdget/) group = "syscall"
      else if (sym ~ /finish_task_switch|schedule|ttwu|try_to_wake|enqueue_|dequeue_|pick_next|update_curr|psi_/) group = "sched"
      else group = "kernel"
      total[group] += share
    }
    END { printf "%-10s %7.1f%% %7.1f%% %7.1f%% %7.1f%% %7.1f%%\n", name, total["kernel"],
            total["syscall"], total["uring"], total["sched"], total["user"] }'
done
