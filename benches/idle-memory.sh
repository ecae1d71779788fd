#!/usr/bin/env bash
# Server memory per idle keep-alive connection: RSS with N idle connections open (each has made
# one request and read its answer) minus RSS before, divided by N. Kernel socket buffers are not
# in RSS; this is the server's own cost per connection.
#
#   benches/idle-memory.sh [N=10000]
#   benches/idle-memory.sh 10000 nginx                # the same against nginx (one worker)
#   benches/idle-memory.sh 10000 uring                # reactor-httpd --mode uring
#   TLS=1 benches/idle-memory.sh 10000 [nginx]        # over TLS (ECDSA P-256, TLS 1.3)
#   COLD=1 CORES=auto benches/idle-memory.sh 10000    # as an outside harness measures: every
#        loop (one per core), and the baseline taken before the first request, so what serving
#        anything costs once (code paged in, each loop's first buffers, a second thread's malloc
#        arena) is divided among the connections too (reactor-httpd only: nginx forks its
#        worker after it listens, and only a request tells that the worker is there)
#   OUTSIDE=1 benches/idle-memory.sh 10000 [uring]    # the same, and the server started with its
#        defaults (every core, default limits and timeouts), as a harness that knows none of
#        our flags starts it: N must stay within the default --max-connections (10000), and the
#        connections must all open within the keep-alive timeout (5 s)
#
# Needs: python3, and a descriptor limit above N (the script raises its soft limit to the hard).
set -euo pipefail

N=${1:-10000}
WHICH=${2:-reactor}
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=benches/lib.sh
. "$here/lib.sh"
ulimit -n "$(ulimit -Hn)"
if [ "$(ulimit -n)" -le $((N + 100)) ]; then
  echo "descriptor limit $(ulimit -n) is too low for $N connections" >&2
  exit 1
fi

PORT=18300
SCHEME=http
TLS_ARGS=""
if [ -n "${TLS:-}" ]; then
  make_certificate
  SCHEME=https
  TLS_ARGS="--tls-cert $TLS_CERT --tls-key $TLS_KEY"
fi
if [ "$WHICH" = nginx ]; then
  SERVER="nginx -c $("$here/nginx-conf.sh" "$work" "$PORT")"
else
  (cd "$repo" && cargo build --release --quiet)
  # reactor, or uring: the mode to run.
  SERVER="$repo/target/release/reactor-httpd --mode $WHICH --bind 127.0.0.1:$PORT --quiet --demo $TLS_ARGS"
  if [ -n "${OUTSIDE:-}" ]; then
    COLD=1
  else
    SERVER+=" --cores ${CORES:-1} --max-connections $((N + 100)) --keep-alive-timeout 600"
  fi
fi
# shellcheck disable=SC2086
$SERVER >"$work/server.out" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT

rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
# The server process, or the newest child (nginx forks its worker).
target=$pid
ready() {
  if [ -n "${COLD:-}" ]; then
    # A connection, not a request: a cold baseline must not have served anything.
    (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null
  else
    # A request answered: nginx's worker exists by then (it is what is measured).
    curl -skf "$SCHEME://127.0.0.1:$PORT/hello" >/dev/null 2>&1
  fi
}
for _ in $(seq 50); do
  if ready; then break; fi
  sleep 0.1
done
child=$(pgrep -P "$pid" | tail -1 || true)
[ -n "$child" ] && target=$child
# Warm up: one request, so buffers and pools exist before the baseline (unless COLD=1).
[ -n "${COLD:-}" ] || curl -skf "$SCHEME://127.0.0.1:$PORT/hello" >/dev/null

python3 - "$PORT" "$N" "$target" "$SCHEME" "${OUTSIDE:-}" <<'EOF'
import socket, ssl, sys, time
port, n, pid, scheme = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
outside = bool(sys.argv[5])
context = ssl.create_default_context()
context.check_hostname = False
context.verify_mode = ssl.CERT_NONE
def rss():
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1])
before = rss()
started = time.time()
request = b"GET /hello HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
conns = []
for i in range(n):
    s = socket.create_connection(("127.0.0.1", port))
    if scheme == "https":
        s = context.wrap_socket(s)
    s.sendall(request)
    got = b""
    while b"Hello, World!" not in got:
        chunk = s.recv(4096)
        if not chunk:
            sys.exit(f"connection {i} closed")
        got += chunk
    conns.append(s)
# Let the server settle (pools trimmed, timers armed); not with its default 5-second keep-alive
# timeout (OUTSIDE=1), which the first connections would be near by then.
time.sleep(0 if outside else 1)
after = rss()
# Every connection counted must have been open when measured: the first one opened still
# answers (with the server's default keep-alive timeout, a slow run would lose the early ones).
conns[0].sendall(request)
if b"Hello, World!" not in conns[0].recv(4096):
    sys.exit(f"the first connection had closed before the measurement, {time.time() - started:.1f} s after it opened: measure fewer")
print(f"RSS before: {before} KiB, with {n} idle connections: {after} KiB")
print(f"per idle connection: {(after - before) * 1024 / n:.0f} bytes")
EOF
