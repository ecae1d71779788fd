#!/usr/bin/env bash
# What files compressed on the fly cost the server while their clients do not read: N
# connections (default 200) each ask for a 24 MiB text file of random base64 (it compresses to
# three quarters, so the encoder stays busy) with `Accept-Encoding: CODING` (default zstd), read
# the head and stay. Prints the server's resident size before and after, what the buffer budget
# holds, and how many got the coding they asked for (the rest got the file as it is), then closes
# them all. Extra arguments go to the server, e.g. `--max-buffer-bytes 100000000`.
#   benches/compressing-streams.sh [N=200] [CODING=zstd] [SERVER ARGS...]
#   BIN=/path/to/reactor-httpd benches/compressing-streams.sh   # another build, to compare
set -euo pipefail
N=${1:-200}
CODING=${2:-zstd}
shift $(($# < 2 ? $# : 2))
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=benches/lib.sh
. "$here/lib.sh"

default_bin
root=$work/root
mkdir "$root"
head -c 18000000 /dev/urandom | base64 > "$root/noisy.txt"
start reactor 18630 /metrics "$BIN" --bind 127.0.0.1:18630 --compress --metrics-path /metrics \
  --quiet "$@" "$root"
PYTHONPATH="$here" python3 - "${pid[reactor]}" "$N" "$CODING" <<'PY'
import server_rss, socket, sys, time
server, n, coding = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
def held():
    c = socket.create_connection(("127.0.0.1", 18630))
    c.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    text = b""
    while chunk := c.recv(65536):
        text += chunk
    line = next(l for l in text.decode().splitlines() if l.startswith("reactor_httpd_buffered_bytes "))
    return int(line.split()[1])
before, conns, coded = server_rss.kib(server), [], 0
for _ in range(n):
    c = socket.socket()
    c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
    c.settimeout(10)
    c.connect(("127.0.0.1", 18630))
    c.sendall(b"GET /noisy.txt HTTP/1.1\r\nHost: x\r\nAccept-Encoding: %s\r\n\r\n" % coding.encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += c.recv(1)
    coded += b"\r\nContent-Encoding: " + coding.encode() + b"\r\n" in head
    conns.append(c)
# The server has filled each socket (and stopped) once its resident size stops moving.
last, still = server_rss.kib(server), 0
while still < 5:
    time.sleep(0.1)
    now = server_rss.kib(server)
    still, last = (still + 1, now) if now == last else (0, now)
print(f"{n} clients asking for {coding}, none reading: RSS {before:,} -> {last:,} KiB "
      f"({(last - before) / n:,.0f} KiB each); the budget holds {held() / 1024:,.0f} KiB; "
      f"{coded} got {coding}")
for c in conns:
    c.close()
PY
