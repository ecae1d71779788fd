#!/usr/bin/env bash
# SIGHUP upgrades under a real systemd: systemd started as PID 1 of a new PID and mount
# namespace (no machine to boot), serving `reactor-httpd.service` as docs/deploy's unit does
# (Type=notify, ExecReload=kill -HUP $MAINPID). Three `systemctl reload`s, each with a request
# in flight and a load running through it; after each, the service must be active with a new
# main PID, the request answered, and not one request of the load failed. Then
# `systemctl stop` with a request in flight, which must be answered (systemd must wait for the
# drain). Stops by itself (every wait is bounded), and removes what it made.
#
#   docs/deploy/under-systemd.sh [BINARY=target/release/reactor-httpd] [MODE=reactor]
#   TYPE=simple docs/deploy/under-systemd.sh    # Type=simple: what goes wrong without MAINPID
#   SOCKETS=1 docs/deploy/under-systemd.sh      # with reactor-httpd.socket's sockets passed in
#
# Needs: root (CAP_SYS_ADMIN for the namespaces), util-linux (unshare, nsenter), procps (pgrep),
# systemd (its binary; it need not be running), curl. Port 127.0.0.1:18620.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
binary=$(realpath "${1:-$here/../../target/release/reactor-httpd}")
mode=${2:-reactor}
port=18620
systemd=/lib/systemd/systemd
for need in unshare nsenter pgrep curl "$systemd"; do
  command -v "$need" >/dev/null || { echo "needs $need" >&2; exit 1; }
done

work=$(mktemp -d)
sd_pid=
cleanup() {
  [ -n "$sd_pid" ] && kill -9 "$sd_pid" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

mkdir -p "$work/units" "$work/root"
if [ -n "${SOCKETS:-}" ]; then
  # As docs/deploy's pair: systemd binds, one socket per loop; the server is handed them.
  cat >"$work/units/reactor-httpd.socket" <<EOF
[Socket]
ReusePort=yes
ListenStream=127.0.0.1:$port
ListenStream=127.0.0.1:$port
EOF
  wants="reactor-httpd.socket reactor-httpd.service"
  unit_deps="Requires=reactor-httpd.socket
After=reactor-httpd.socket"
else
  wants=reactor-httpd.service
  unit_deps=
fi
cat >"$work/units/reactor-httpd.service" <<EOF
[Unit]
$unit_deps
[Service]
Type=${TYPE:-notify}
ExecStart=$binary --bind 127.0.0.1:$port --mode $mode --demo --quiet --cores 2 --no-pin $work/root
ExecReload=/bin/kill -HUP \$MAINPID
TimeoutStopSec=10
EOF
cat >"$work/units/try.target" <<EOF
[Unit]
Wants=$wants
EOF

# systemd as PID 1 of its own namespaces, seeing only our units.
SYSTEMD_UNIT_PATH="$work/units" unshare --pid --fork --mount --mount-proc \
  "$systemd" --system --unit=try.target --log-target=null >/dev/null 2>&1 &
unshare_pid=$!
for _ in $(seq 100); do
  sd_pid=$(pgrep -P "$unshare_pid" || true)
  [ -n "$sd_pid" ] && break
  sleep 0.1
done
[ -n "$sd_pid" ] || { echo "systemd did not start" >&2; exit 1; }
sd() { timeout 20 nsenter -t "$sd_pid" -m -p "$@"; }
main_pid() { sd systemctl show -p MainPID --value reactor-httpd.service; }

state=
for _ in $(seq 100); do
  state=$(sd systemctl is-active reactor-httpd.service 2>/dev/null || true)
  [ "$state" = active ] && break
  sleep 0.1
done
[ "$state" = active ] || { echo "the service did not become active: $state" >&2; exit 1; }
echo "active, main PID $(main_pid) (in systemd's namespace)"

fail=0
for round in 1 2 3; do
  before=$(main_pid)
  # A request in flight across the reload, and a load of sequential requests through it.
  rm -f "$work/slept"
  curl -s --max-time 10 -o "$work/slept" "http://127.0.0.1:$port/sleep?ms=1000" &
  slept=$!
  (
    errors=0
    for _ in $(seq 300); do
      curl -s --max-time 5 -o /dev/null -f "http://127.0.0.1:$port/hello" || errors=$((errors + 1))
    done
    echo "$errors" >"$work/errors"
  ) &
  load=$!
  if ! sd systemctl reload reactor-httpd.service; then
    fail=1
    wait
    break
  fi
  after=$before
  for _ in $(seq 100); do
    after=$(main_pid)
    [ "$after" != "$before" ] && [ "$after" != 0 ] && break
    sleep 0.1
  done
  wait "$slept" || true
  wait "$load"
  state=$(sd systemctl is-active reactor-httpd.service || true)
  answered=$(cat "$work/slept" 2>/dev/null || true)
  errors=$(cat "$work/errors")
  echo "reload $round: main PID $before -> $after, $state, in flight: '$answered', load errors: $errors"
  if [ "$after" = "$before" ] || [ "$state" != active ] || [ "$answered" != "slept 1000 ms" ] ||
    [ "$errors" != 0 ]; then
    fail=1
  fi
done

# A request in flight at the stop is answered: systemd waits for the drain (it would not for a
# main process that is not its child: see `NewProcess::Orphan` in src/server/upgrade.rs).
curl -s --max-time 10 -o "$work/at-stop" "http://127.0.0.1:$port/sleep?ms=1500" &
slept=$!
sleep 0.3 # for the request to reach the server before the stop
sd systemctl stop reactor-httpd.service
wait "$slept" || true
answered=$(cat "$work/at-stop" 2>/dev/null || true)
state=$(sd systemctl is-active reactor-httpd.service || true)
echo "stopped: $state, in flight: '$answered'"
[ "$answered" = "slept 1500 ms" ] || fail=1
if [ "$state" != inactive ]; then
  sd systemctl status --no-pager reactor-httpd.service | grep -E "Active|Process|Main PID" || true
  fail=1
fi
if [ "$fail" = 0 ]; then echo "ok"; else echo "FAILED"; exit 1; fi
