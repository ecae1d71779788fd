#!/usr/bin/env bash
# What the server keeps after many listings: eight clients list a directory of E entries
# (default 100,000) over and over for S seconds (default 30), half as HTML and half as JSON, each
# reading its page whole, against `--cores 2`. Prints the server's resident size every 10 s and
# once the clients are gone: what the allocator of each handler-pool thread kept.
#   benches/listing-churn.sh [E=100000] [S=30]
#   BIN=/path/to/reactor-httpd benches/listing-churn.sh   # another build, to compare
set -euo pipefail
E=${1:-100000}
S=${2:-30}
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=benches/lib.sh
. "$here/lib.sh"

many_entries "$work/www/many" "$E"
echo tiny >"$work/www/small.txt"
default_bin
PIN=0,1 start churn 18630 /small.txt "$BIN" --bind 127.0.0.1:18630 --cores 2 --no-pin --quiet \
  "$work/www"
PYTHONPATH="$here" python3 - "${pid[churn]}" "$S" <<'PY'
import server_rss, socket, sys, threading, time
server, secs = int(sys.argv[1]), int(sys.argv[2])
stop = time.monotonic() + secs
pages = [0]
def client(k):
    target = "/many/" if k % 2 else "/many/?format=json"
    while time.monotonic() < stop:
        with socket.create_connection(("127.0.0.1", 18630)) as s:
            s.sendall(f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
            while s.recv(1 << 16):
                pass
        pages[0] += 1
clients = [threading.Thread(target=client, args=(k,)) for k in range(8)]
print(f"RSS at start {server_rss.kib(server)} KiB")
for c in clients:
    c.start()
for t in range(10, secs + 1, 10):
    time.sleep(max(0, stop - secs + t - time.monotonic()))
    print(f"after {t} s: {server_rss.kib(server)} KiB")
for c in clients:
    c.join()
time.sleep(1)
print(f"{pages[0]} listings sent; a second after the last: RSS {server_rss.kib(server)} KiB")
PY
