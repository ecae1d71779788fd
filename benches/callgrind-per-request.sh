#!/usr/bin/env bash
# User-space instructions per request, counted by callgrind: a run that serves N requests minus a
# run that serves none (same start-up, same connections), divided by N.
# Instruction counts do not depend on what else the machine is doing, so one run is enough.
# They do move a little (up to ~90 for a static file's request) with the server binary's path:
# it is on the initial stack, and moves the addresses that memcpy and from_utf8 choose their
# paths by. A/B two builds from paths of the same length.
#
#   benches/callgrind-per-request.sh [N=20000] [PIPELINE=1]
#   SERVER="/tmp/limit 127.0.0.1:{port}" benches/callgrind-per-request.sh   # any server; {port} is filled in
#   MODE=uring benches/callgrind-per-request.sh   # reactor-httpd --mode uring
#   KEEP=DIR ...                                  # keep the two profiles (cg.0, cg.N) in DIR
#
# Needs: valgrind (its callgrind_control, which uses vgdb and ptrace), python3.
set -euo pipefail

N=${1:-20000}
PIPELINE=${2:-1}
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
work=$(mktemp -d)
trap '[ -n "${KEEP:-}" ] && cp "$work"/cg.* "$KEEP"/ ; rm -rf "$work"' EXIT
command -v valgrind >/dev/null || { echo "needs valgrind (apt-get install valgrind)" >&2; exit 1; }

if [ -z "${SERVER:-}" ]; then
  (cd "$repo" && cargo build --release --quiet)
  SERVER="$repo/target/release/reactor-httpd --bind 127.0.0.1:{port} --cores 1 --quiet --demo --mode ${MODE:-reactor}"
fi

# Sends `count` GET /hello over 10 keep-alive connections, `pipeline` per write, and reads every
# response before the next write.
cat >"$work/client.py" <<'EOF'
import socket, sys, time
port, count, pipeline = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
for _ in range(100):
    try:
        conns = [socket.create_connection(("127.0.0.1", port)) for _ in range(10)]
        break
    except OSError:
        time.sleep(0.1)
request = b"GET /hello HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
sent = 0
while sent < count:
    for c in conns:
        n = min(pipeline, count - sent)
        if n == 0:
            break
        c.sendall(request * n)
        got = 0
        buf = b""
        while got < n:
            buf += c.recv(65536)
            got = buf.count(b"Hello, World!")
        sent += n
for c in conns:
    c.close()
EOF

run() { # requests -> instructions
  local count=$1 port=$((18200 + RANDOM % 1000))
  local cmd=${SERVER//\{port\}/$port}
  # shellcheck disable=SC2086
  valgrind --tool=callgrind --callgrind-out-file="$work/cg.$count" $cmd >/dev/null 2>"$work/vg.$count" &
  local pid=$!
  python3 "$work/client.py" "$port" "$count" "$PIPELINE"
  # Counted up to here, by a dump that callgrind_control asks for through vgdb, which reaches the
  # server even in a system call; then the server is killed. (Not counted at a graceful exit:
  # valgrind 3.19 holds a signal back while a thread waits in io_uring_enter, so `--mode uring`
  # never hears SIGTERM under it.)
  local dumped=true
  callgrind_control --dump "$pid" >"$work/control.$count" 2>&1 || dumped=false
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  if ! $dumped || [ ! -s "$work/cg.$count.1" ]; then
    {
      echo "callgrind_control could not make the server (pid $pid) write its counts: it reaches"
      echo "the server through vgdb, which needs ptrace (a container may forbid it). It said:"
      sed 's/^/  /' "$work/control.$count"
      echo "and valgrind's own output ends:"
      tail -n 5 "$work/vg.$count" | sed 's/^/  /'
    } >&2
    exit 1
  fi
  mv "$work/cg.$count.1" "$work/cg.$count"
  awk '/^totals:/ {print $2}' "$work/cg.$count"
}

base=$(run 0)
loaded=$(run "$N")
echo "server: $SERVER"
echo "requests: $N (pipeline $PIPELINE), instructions: $loaded - $base"
echo "user-space instructions per request: $(( (loaded - base) / N ))"
