#!/usr/bin/env bash
# What uploads nobody reads cost the server: N connections (default 50) each POST 10 MB to a
# static file (answered 405), all open at once (9 MB of each sent, then the rest), on one loop.
# Prints the server's peak resident size (VmHWM) before and after, and the answers.
#   benches/unread-uploads.sh [N=50]
#   BIN=/path/to/reactor-httpd benches/unread-uploads.sh   # another build, to compare
set -euo pipefail
N=${1:-50}
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=benches/lib.sh
. "$here/lib.sh"

mkdir -p "$work/www"
echo tiny >"$work/www/small.txt"
default_bin
start reactor 18600 /small.txt "$BIN" --bind 127.0.0.1:18600 --cores 1 --quiet "$work/www"
python3 - "${pid[reactor]}" "$N" <<'PY'
import socket, sys
server, n = int(sys.argv[1]), int(sys.argv[2])
def peak_kib():
    with open(f"/proc/{server}/status") as status:
        return int(next(l for l in status if l.startswith("VmHWM")).split()[1])
before = peak_kib()
body = b"a" * 10_000_000
head = b"POST /small.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000\r\n\r\n"
conns = [socket.create_connection(("127.0.0.1", 18600)) for _ in range(n)]
for c in conns:
    c.settimeout(30)
    c.sendall(head + body[:9_000_000])
for c in conns:
    c.sendall(body[9_000_000:])
answers = sorted({c.recv(64)[9:12].decode() for c in conns})
print(f"{n} uploads of 10 MB to a static file, open at once: peak RSS {before} -> {peak_kib()} KiB, "
      f"answers {answers}")
PY
