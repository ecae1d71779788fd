#!/usr/bin/env bash
# What clients that ask for a large listing a second apart and never read cost the server: each
# is past the second in which a page is shared, so each gets a page of its own. N connections
# (default 10), each with a 4 KiB receive window, ask 1.1 s apart for the listing of a directory
# of E entries (default 100,000) and read the status only. Prints the server's resident size
# before and after (with its children's, in fork mode) and the statuses they got (503: the page
# did not fit in --max-buffer-bytes), then closes them all. Extra arguments go to the server,
# e.g. `--max-buffer-bytes 100000000`.
#   benches/held-listings.sh [N=10] [E=100000] [SERVER ARGS...]
#   BIN=/path/to/reactor-httpd benches/held-listings.sh   # another build, to compare
set -euo pipefail
N=${1:-10}
E=${2:-100000}
shift $(($# < 2 ? $# : 2))
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=benches/lib.sh
. "$here/lib.sh"

many_entries "$work/www/many" "$E"
echo tiny >"$work/www/small.txt"
default_bin
start reactor 18640 /small.txt "$BIN" --bind 127.0.0.1:18640 --quiet "$@" "$work/www"
PYTHONPATH="$here" python3 - "${pid[reactor]}" "$N" "$E" <<'PY'
import server_rss, socket, sys, time
server, n, entries = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
before, conns, statuses = server_rss.kib(server), [], {}
for _ in range(n):
    c = socket.socket()
    c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    c.settimeout(60)
    c.connect(("127.0.0.1", 18640))
    c.sendall(b"GET /many/ HTTP/1.1\r\nHost: x\r\n\r\n")
    status = c.recv(12)[9:12].decode()
    statuses[status] = statuses.get(status, 0) + 1
    conns.append(c)
    time.sleep(1.1)
print(f"{n} clients holding a listing of {entries:,} entries, asked 1.1 s apart: "
      f"RSS {before:,} -> {server_rss.kib(server):,} KiB; statuses {statuses}")
for c in conns:
    c.close()
PY
