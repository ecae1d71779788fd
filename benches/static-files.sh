#!/usr/bin/env bash
# Static files against nginx (one worker, sendfile on, no access log): server CPU time per
# request, and body bytes sent per second of server CPU ("bytes/s per server core"), for files
# of 4 KiB, 1 MiB and 100 MiB. Servers on core 0, wrk on core 1, runs alternating, medians.
#
#   benches/static-files.sh [ROUNDS=5] [SECONDS=10]
#   SIZES="4k 1m" benches/static-files.sh 3 5
#
# Needs: wrk, nginx, two cores.
set -euo pipefail

ROUNDS=${1:-5}
SECONDS_PER_RUN=${2:-10}
SIZES=${SIZES:-"4k 1m 100m"}
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=benches/lib.sh
. "$here/lib.sh"

docroot=$work/www
mkdir -p "$docroot"
declare -A bytes=([4k]=4096 [1m]=1048576 [100m]=104857600)
# Few connections for big files: each one already keeps the pipe full.
declare -A connections=([4k]=100 [1m]=10 [100m]=4)
for size in $SIZES; do
  head -c "${bytes[$size]}" /dev/urandom >"$docroot/$size.bin"
done

(cd "$repo" && cargo build --release --quiet)
start reactor 18500 /4k.bin "$repo/target/release/reactor-httpd" --bind 127.0.0.1:18500 --cores 1 --quiet "$docroot"
start nginx 18510 /4k.bin nginx -c "$("$here/nginx-conf.sh" "$work" 18510 "$docroot")"

hz=$(getconf CLK_TCK)
declare -A cpu_us rate
for round in $(seq "$ROUNDS"); do
  for size in $SIZES; do
    for name in reactor nginx; do
      before=$(cpu_ticks "${pid[$name]}")
      out=$(taskset -c 1 wrk -t1 "-c${connections[$size]}" "-d${SECONDS_PER_RUN}s" "http://127.0.0.1:${port[$name]}/$size.bin")
      after=$(cpu_ticks "${pid[$name]}")
      requests=$(echo "$out" | awk '/requests in/ {print $1}')
      cpu=$(echo "scale=6; ($after - $before) / $hz" | bc)
      us=$(echo "scale=3; $cpu * 1000000 / $requests" | bc)
      gib=$(echo "scale=3; $requests * ${bytes[$size]} / $cpu / 1073741824" | bc)
      cpu_us[$name.$size]+="$us "
      rate[$name.$size]+="$gib "
      printf 'round %d %-4s %-8s %8d req  %8.2f us CPU/req  %6.2f GiB/s per core  (%.0f%% of a core)\n' \
        "$round" "$size" "$name" "$requests" "$us" "$gib" "$(echo "$cpu * 100 / $SECONDS_PER_RUN" | bc -l)" >&2
    done
  done
done

echo
printf '%-6s %-8s %-24s %s\n' file server "median us CPU/request" "median GiB/s per core"
for size in $SIZES; do
  for name in reactor nginx; do
    printf '%-6s %-8s %-24s %s\n' "$size" "$name" "$(echo "${cpu_us[$name.$size]}" | median)" "$(echo "${rate[$name.$size]}" | median)"
  done
done
