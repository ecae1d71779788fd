#!/usr/bin/env bash
# What request bodies held at once cost the server: N connections (default 100) each send
# `POST /echo` (--demo) with a body of S bytes (default 10,000,000), all of it but the last byte,
# and stay; the server keeps each body for its handler. Prints the server's resident size before
# and after (with its children's, in fork mode) and how many were refused (503 or 413), then
# closes them all. Extra arguments go to the server, e.g. `--max-buffer-bytes 100000000`.
#   benches/held-bodies.sh [N=100] [S=10000000] [SERVER ARGS...]
#   BIN=/path/to/reactor-httpd benches/held-bodies.sh   # another build, to compare
set -euo pipefail
N=${1:-100}
S=${2:-10000000}
shift $(($# < 2 ? $# : 2))
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=benches/lib.sh
. "$here/lib.sh"

default_bin
start reactor 18620 /hello "$BIN" --bind 127.0.0.1:18620 --demo --quiet "$@"
PYTHONPATH="$here" python3 - "${pid[reactor]}" "$N" "$S" <<'PY'
import server_rss, socket, sys, time
server, n, size = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
before, start = server_rss.kib(server), time.monotonic()
piece, conns = b"x" * 65536, []
for _ in range(n):
    c = socket.create_connection(("127.0.0.1", 18620))
    c.settimeout(10)
    c.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % size)
    left = size - 1
    try:
        while left > 0:
            sent = c.send(piece[:min(left, len(piece))])
            left -= sent
    except OSError:
        pass  # refused and closed before all of it was read
    conns.append(c)
sent = time.monotonic() - start
# The server has read what each sent (or refused it) once its resident size stops moving.
last, still = server_rss.kib(server), 0
while still < 5:
    time.sleep(0.1)
    now = server_rss.kib(server)
    still, last = (still + 1, now) if now == last else (0, now)
refused = 0
for c in conns:
    c.settimeout(0.05)
    try:
        refused += c.recv(16).startswith((b"HTTP/1.1 503", b"HTTP/1.1 413"))
    except OSError:
        pass
print(f"{n} bodies of {size:,} bytes held at once: RSS {before:,} -> {last:,} KiB "
      f"(sent in {sent:.1f} s); {refused} refused")
for c in conns:
    c.close()
PY
