#!/usr/bin/env bash
# What slow readers of one large listing cost the server: N connections (default 100), each
# with a 4 KiB receive window, ask for the listing of a directory of E entries (default 100,000)
# and read only its head, on one loop with its handler pool. Prints the server's resident size
# before and after, its peak, and the CPU time it spent; then every reader reads its page whole,
# all at once (one after another, the last would wait past the send timeout).
#   benches/listing-readers.sh [N=100] [E=100000]
#   BIN=/path/to/reactor-httpd benches/listing-readers.sh   # another build, to compare
set -euo pipefail
N=${1:-100}
E=${2:-100000}
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=benches/lib.sh
. "$here/lib.sh"

many_entries "$work/www/many" "$E"
echo tiny >"$work/www/small.txt"
default_bin
start reactor 18610 /small.txt "$BIN" --bind 127.0.0.1:18610 --cores 1 --quiet "$work/www"
python3 - "${pid[reactor]}" "$N" <<'PY'
import os, socket, sys, time
from concurrent.futures import ThreadPoolExecutor
server, n = int(sys.argv[1]), int(sys.argv[2])
def status_kib(field):
    with open(f"/proc/{server}/status") as status:
        return int(next(l for l in status if l.startswith(field)).split()[1])
def cpu_s():
    with open(f"/proc/{server}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
before, cpu_before, start = status_kib("VmRSS"), cpu_s(), time.monotonic()
conns = []
for _ in range(n):
    c = socket.socket()
    c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    c.settimeout(60)
    c.connect(("127.0.0.1", 18610))
    c.sendall(b"GET /many/ HTTP/1.1\r\nHost: x\r\n\r\n")
    conns.append(c)
lengths, got = [], []
for c in conns:
    data = b""
    while b"\r\n\r\n" not in data:
        data += c.recv(4096)
    head, rest = data.split(b"\r\n\r\n", 1)
    lengths.append(int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0]))
    got.append(rest)
held, heads_in, cpu = status_kib("VmRSS"), time.monotonic() - start, cpu_s() - cpu_before
print(f"{n} slow readers of a listing of {lengths[0] / 1e6:.1f} MB: every head in {heads_in:.2f} s, "
      f"server CPU {cpu:.2f} s; RSS {before} -> {held} KiB while they read (peak {status_kib('VmHWM')} KiB)")
def read_whole(c, length, rest):
    c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    while len(rest) < length:
        piece = c.recv(1 << 20)
        if not piece:
            break
        rest += piece
    c.close()
    return len(rest) == length
with ThreadPoolExecutor(n) as readers:
    whole = sum(readers.map(read_whole, conns, lengths, got))
print(f"then {whole} of {n} pages read whole, all at once ({len(set(lengths))} length(s))")
PY
