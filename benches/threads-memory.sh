#!/usr/bin/env bash
# Resident memory of the reactor and of the thread pool holding N keep-alive connections open:
# each connection makes one request and then stays idle. With fewer workers than connections
# the rest wait unserved (head-of-line): the script reports how many were answered.
#
#   benches/threads-memory.sh [N=1000]        # reactor (1 loop), threaded --threads 64 and N
#
# Needs: python3.
set -euo pipefail

N=${1:-1000}
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
(cd "$repo" && cargo build --release --quiet)
ulimit -n "$(ulimit -Hn)"
PORT=18310

measure() {
  local label=$1
  shift
  "$repo/target/release/reactor-httpd" --bind 127.0.0.1:$PORT --quiet --demo \
    --max-connections $((N + 100)) --keep-alive-timeout 600 "$@" >/dev/null 2>&1 &
  local pid=$!
  for _ in $(seq 50); do
    curl -sf "http://127.0.0.1:$PORT/hello" >/dev/null 2>&1 && break
    sleep 0.1
  done
  python3 - "$PORT" "$N" "$pid" "$label" <<'PY'
import selectors, socket, sys, time
port, n, pid, label = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
def rss():
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1])
before = rss()
sel = selectors.DefaultSelector()
conns = []
for i in range(n):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
    s.setblocking(False)
    sel.register(s, selectors.EVENT_READ)
    conns.append(s)
answered = set()
deadline = time.time() + 3
while time.time() < deadline and len(answered) < n:
    for key, _ in sel.select(timeout=0.2):
        try:
            if key.fileobj.recv(4096):
                answered.add(key.fileobj)
        except BlockingIOError:
            pass
time.sleep(1)
print(f"{label:28} RSS {before} KiB idle, {rss()} KiB with {n} connections ({len(answered)} answered)")
PY
  kill "$pid"
  wait "$pid" 2>/dev/null || true
}

measure "reactor, 1 loop" --mode reactor --cores 1
measure "threaded, 64 workers" --mode threaded --threads 64
measure "threaded, $N workers" --mode threaded --threads "$N"
