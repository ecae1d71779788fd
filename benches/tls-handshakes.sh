#!/usr/bin/env bash
# Full TLS handshakes: server CPU per handshake, and handshakes per second of server CPU, for
# reactor-httpd and nginx with the same ECDSA P-256 certificate. `openssl s_time -new` (core 1)
# makes a new connection with a full handshake (no resumption) and one `GET /hello` each, back
# to back, for SECONDS; the server (core 0) is measured from /proc. Rounds alternate between
# servers; medians of ROUNDS, with the median of the rounds' ratios to nginx.
#
#   benches/tls-handshakes.sh [ROUNDS=5] [SECONDS=10]
#   TLS_VERSION=-tls1_2 benches/tls-handshakes.sh      # TLS 1.2 instead of 1.3
#
# Needs: openssl, nginx, curl, two cores.
set -euo pipefail

ROUNDS=${1:-5}
SECONDS_PER_RUN=${2:-10}
TLS_VERSION=${TLS_VERSION:--tls1_3}
SERVERS=${SERVERS:-"reactor nginx"}
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=benches/lib.sh
. "$here/lib.sh"
make_certificate
SCHEME=https

(cd "$repo" && cargo build --release --quiet)
for name in $SERVERS; do
  case $name in
    reactor)
      start reactor 18480 /hello "$repo/target/release/reactor-httpd" --bind 127.0.0.1:18480 \
        --cores 1 --quiet --demo --tls-cert "$TLS_CERT" --tls-key "$TLS_KEY"
      ;;
    nginx)
      start nginx 18490 /hello nginx -c "$("$here/nginx-conf.sh" "$work" 18490)"
      ;;
    *) echo "unknown server $name" >&2; exit 1 ;;
  esac
done

# -> "handshakes cpu_us_per_handshake"
measure() {
  local name=$1 before after out count
  before=$(cpu_ticks "${pid[$name]}")
  out=$(taskset -c 1 openssl s_time -connect "127.0.0.1:${port[$name]}" -new "$TLS_VERSION" \
    -www /hello -time "$SECONDS_PER_RUN" 2>/dev/null)
  after=$(cpu_ticks "${pid[$name]}")
  count=$(echo "$out" | awk '/connections in/ && /real seconds/ {print $1; exit}')
  local hz; hz=$(getconf CLK_TCK)
  echo "$count $(echo "scale=2; ($after - $before) * 1000000 / $hz / $count" | bc)"
}

echo "openssl s_time -new $TLS_VERSION -www /hello, ${SECONDS_PER_RUN}s; server on core 0, client on core 1; $ROUNDS rounds" >&2
declare -A results ratios this_round
for round in $(seq "$ROUNDS"); do
  for name in $SERVERS; do
    read -r count us < <(measure "$name")
    results[$name]+="$us "
    this_round[$name]=$us
    printf 'round %d %-8s %7s handshakes  %8.1f us server CPU each\n' "$round" "$name" "$count" "$us" >&2
  done
  if [ -n "${this_round[nginx]:-}" ]; then
    for name in $SERVERS; do
      ratios[$name]+="$(echo "scale=4; ${this_round[$name]} / ${this_round[nginx]}" | bc) "
    done
  fi
done
echo
printf '%-10s %-28s %-30s %s\n' server "median us CPU per handshake" "handshakes per CPU-second" "median round ratio to nginx"
for name in $SERVERS; do
  m=$(echo "${results[$name]}" | median)
  printf '%-10s %-28s %-30s %s\n' "$name" "$m" "$(echo "scale=0; 1000000 / $m" | bc)" \
    "$( [ -n "${ratios[$name]:-}" ] && echo "$(echo "${ratios[$name]}" | median)x" || echo -)"
done
