#!/usr/bin/env bash
# Server CPU per *connection*: N sequential connections, each one `GET /hello` with
# `Connection: close`, so every request pays for accept (and in fork mode a fork, a child's
# first touches of memory, its exit and its reaping). CPU is the server's utime + stime plus its
# reaped children's, from /proc, before and after.
#
#   benches/connection-cost.sh [N=5000]
#   MODES="reactor uring" benches/connection-cost.sh 20000   # some modes, in this order
#   STRACE=1 MODES="reactor uring" benches/connection-cost.sh 2000   # system calls per connection
#
# CPU per connection moves a lot from run to run on a shared machine; the system calls, counted
# by strace (which slows the server, so then the CPU figure means nothing), are exact.
#
# Needs: python3 (and strace for STRACE=1). The server runs on core 0 and the client on core 1
# when there are two.
set -euo pipefail

N=${1:-5000}
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=benches/lib.sh
. "$here/lib.sh"
(cd "$repo" && cargo build --release --quiet)
PORT=18320

for mode in ${MODES:-reactor uring threaded blocking fork}; do
  start "$mode" $PORT /hello "$repo/target/release/reactor-httpd" --bind 127.0.0.1:$PORT \
    --quiet --demo --mode "$mode" --cores 1
  server=${pid[$mode]}
  [ -z "${STRACE:-}" ] || strace_attach "$server" "$work/strace.$mode"
  taskset -c 1 python3 - "$PORT" "$N" "$server" "$mode" <<'PY'
import socket, sys, time, os
port, n, pid, mode = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
tick = os.sysconf("SC_CLK_TCK")
def cpu():
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return sum(int(x) for x in f[11:15]) / tick
before = cpu()
start = time.time()
request = b"GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
for _ in range(n):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(request)
    while s.recv(4096):
        pass
    s.close()
elapsed = time.time() - start
time.sleep(0.5)  # let the last children be reaped
used = cpu() - before
print(f"{mode:9} {n} connections in {elapsed:.2f} s: server CPU {used * 1e6 / n:.0f} µs per connection")
PY
  if [ -n "${STRACE:-}" ]; then
    strace_detach
    strace_rows "$work/strace.$mode" | awk -v n="$N" -v mode="$mode" '
      $1 == "total" { total = $2; next }
      { line = line sprintf(" %s %.2f", $1, $2 / n) }
      END { printf "%-9s system calls per connection: %.2f (%s )\n", mode, total / n, line }'
  fi
  kill "$server"
  wait "$server" 2>/dev/null || true
done
