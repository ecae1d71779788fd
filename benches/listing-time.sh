#!/usr/bin/env bash
# Time to answer the listing of a directory of N entries (default 100,000): medians of 5
# requests with curl, and the page size. Then what the listing costs everyone else on its loop:
# for 4 s one client lists the directory over and over while another asks `/hello` every 2 ms on
# the same loop; how many `/hello` were answered, and their p50, p99 and max.
#   benches/listing-time.sh [N=100000]
#   HANDLER_THREADS=0 benches/listing-time.sh     # the listing on the loop, as before stop 67
set -euo pipefail
N=${1:-100000}
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=benches/lib.sh
. "$here/lib.sh"

mkdir -p "$work/www/big"
python3 -c "
import os, sys
d = sys.argv[1]
for i in range(int(sys.argv[2])):
    open(os.path.join(d, f'file-{i:06d}.txt'), 'w').close()
" "$work/www/big" "$N"
(cd "$repo" && cargo build --release --quiet)
start reactor 18600 / "$repo/target/release/reactor-httpd" --bind 127.0.0.1:18600 --cores 1 \
  --quiet --demo ${HANDLER_THREADS:+--handler-threads "$HANDLER_THREADS"} "$work/www"
times=""
for _ in 1 2 3 4 5; do
  read -r t size < <(curl -s -o /dev/null -w '%{time_total} %{size_download}\n' http://127.0.0.1:18600/big/)
  times+="$t "
done
echo "listing of $N entries: $size bytes, median $(echo "$times" | median) s (runs: $times)"
python3 - <<'PY'
import socket, threading, time
port, stop, lists = 18600, False, 0
def lister():
    global lists
    s = socket.create_connection(("127.0.0.1", port))
    while not stop:
        s.sendall(b"GET /big/ HTTP/1.1\r\nHost: x\r\n\r\n")
        got = b""
        while b"</html>" not in got[-64:]:
            got += s.recv(1 << 20)
        lists += 1
t = threading.Thread(target=lister)
t.start()
c = socket.create_connection(("127.0.0.1", port))
c.settimeout(10)
lat, end = [], time.time() + 4
while time.time() < end:
    t0 = time.perf_counter()
    c.sendall(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
    got = b""
    while not got.endswith(b"Hello, World!"):
        got += c.recv(4096)
    lat.append(time.perf_counter() - t0)
    time.sleep(0.002)
stop = True
t.join()
lat.sort()
n = len(lat)
print(f"/hello beside {lists} listings in 4 s: {n} answered, p50 {lat[n // 2] * 1e3:.2f} ms, "
      f"p99 {lat[int(n * 0.99)] * 1e3:.1f} ms, max {lat[-1] * 1e3:.1f} ms")
PY
