#!/usr/bin/env bash
# Server CPU per request for a file compressed as it is sent (`--compress`), by coding, GET and
# HEAD: a 3 KB, a 20 KB and a 200 KB text file, N requests (default 6,000; 2,000 for the 20 KB
# file, 400 for the 200 KB one) on one keep-alive connection per row, the server (`--cores 1`) on
# core 0 and the client on core 1, CPU from /proc. With BASE set to another build, the two
# alternate in each of ROUNDS rounds (default 5) and the medians are printed side by side with
# their ratio. The client is Python: what a row costs beyond the identity row is what the coding
# costs.
#   benches/compressed-requests.sh [N=6000] [ROUNDS=5]
#   BASE=/path/to/old/reactor-httpd benches/compressed-requests.sh   # this build against that
set -euo pipefail
N=${1:-6000}
ROUNDS=${2:-5}
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=benches/lib.sh
. "$here/lib.sh"

default_bin
mkdir -p "$work/www"
python3 - "$work/www" <<'PY'
import random, string, sys
random.seed(5)
words = ["".join(random.choice(string.ascii_lowercase) for _ in range(random.randint(2, 9))) for _ in range(400)]
text = " ".join(random.choice(words) for _ in range(40_000)).encode()
open(f"{sys.argv[1]}/small.txt", "wb").write(text[:3000])
open(f"{sys.argv[1]}/medium.txt", "wb").write(text[:20_000])
open(f"{sys.argv[1]}/large.txt", "wb").write(text[:200_000])
PY
cat >"$work/client.py" <<'PY'
import socket, sys
port, server, method, path, coding, n = sys.argv[1:7]
n = int(n)
def ticks():
    fields = open(f"/proc/{server}/stat").read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])
s = socket.create_connection(("127.0.0.1", int(port)))
request = f"{method} {path} HTTP/1.1\r\nHost: a\r\nAccept-Encoding: {coding}\r\n\r\n".encode()
buf = b""
def response():
    global buf
    while b"\r\n\r\n" not in buf:
        buf += s.recv(65536)
    head, buf = buf.split(b"\r\n\r\n", 1)
    lower = head.lower()
    if method == "HEAD":
        return
    if b"transfer-encoding: chunked" in lower:
        while True:
            while b"\r\n" not in buf:
                buf += s.recv(65536)
            line, rest = buf.split(b"\r\n", 1)
            size = int(line.split(b";")[0], 16)
            while len(rest) < size + 2:
                rest += s.recv(65536)
            buf = rest[size + 2:]
            if size == 0:
                return
    length = int(lower.split(b"content-length:")[1].split(b"\r\n")[0])
    while len(buf) < length:
        buf += s.recv(65536)
    buf = buf[length:]
start = ticks()
for _ in range(n):
    s.sendall(request)
    response()
print(f"{(ticks() - start) * 1e6 / 100 / n:.1f}")
PY

builds=("$BIN")
[ -n "${BASE:-}" ] && builds=("$BASE" "$BIN")
rows=("GET /small.txt identity $N" "GET /small.txt gzip $N" "GET /small.txt br $N"
  "GET /small.txt zstd $N" "HEAD /small.txt identity $N" "HEAD /small.txt gzip $N"
  "HEAD /small.txt br $N" "HEAD /small.txt zstd $N" "GET /medium.txt zstd $((N / 3))"
  "GET /large.txt gzip $((N / 15))" "GET /large.txt zstd $((N / 15))")
declare -A results
for _ in $(seq "$ROUNDS"); do
  for b in "${!builds[@]}"; do
    start "s$b" 18630 /small.txt "${builds[$b]}" --bind 127.0.0.1:18630 --cores 1 --no-pin \
      --quiet --compress "$work/www"
    for r in "${!rows[@]}"; do
      read -r method path coding n <<<"${rows[$r]}"
      us=$(taskset -c 1 python3 "$work/client.py" 18630 "${pid[s$b]}" "$method" "$path" "$coding" "$n")
      results[$b,$r]="${results[$b,$r]:-} $us"
    done
    kill "${pid[s$b]}"; wait "${pid[s$b]}" 2>/dev/null || true
  done
done
for r in "${!rows[@]}"; do
  read -r method path coding _ <<<"${rows[$r]}"
  line="$method $path $coding:"
  for b in "${!builds[@]}"; do
    line="$line $(median <<<"${results[$b,$r]}") us"
  done
  if [ ${#builds[@]} -eq 2 ]; then
    ratio=$(awk -v a="$(median <<<"${results[0,$r]}")" -v b="$(median <<<"${results[1,$r]}")" \
      'BEGIN {printf "%.2f", b / a}')
    line="$line (ratio $ratio; rounds:${results[0,$r]} /${results[1,$r]})"
  fi
  echo "$line"
done
