# Shared by the measuring scripts: start pinned servers, read their CPU time, take medians.
# Sourcing it sets `repo` (the checkout) and `work` (a scratch directory), and on exit stops
# every server `start` started and removes `work`.

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
work=$(mktemp -d)
pids=()
trap 'stop_all; rm -rf "$work"' EXIT

declare -A port pid

# start NAME PORT URL-PATH COMMAND... : runs COMMAND pinned to core 0 (to the cores PIN lists, if
# set) and waits until PATH answers (over https when SCHEME=https).
start() {
  local name=$1 p=$2 path=$3; shift 3
  taskset -c "${PIN:-0}" "$@" >"$work/$name.out" 2>&1 &
  pid[$name]=$!
  pids+=("$!")
  port[$name]=$p
  for _ in $(seq 50); do
    curl -skf -o /dev/null "${SCHEME:-http}://127.0.0.1:$p$path" && return 0
    sleep 0.1
  done
  echo "$name did not start:" >&2; cat "$work/$name.out" >&2; exit 1
}

# utime + stime of a process, in clock ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# utime alone: the part spent in the process's own code, not in the kernel on its behalf.
user_ticks() { awk '{print $14}' "/proc/$1/stat"; }

# The median of the numbers on stdin (one per word).
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }

stop_all() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}

# An ECDSA P-256 certificate and key for 127.0.0.1 in $work: sets TLS_CERT and TLS_KEY.
make_certificate() {
  TLS_CERT=$work/cert.pem TLS_KEY=$work/key.pem
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
    -keyout "$TLS_KEY" -out "$TLS_CERT" 2>/dev/null
  export TLS_CERT TLS_KEY
}

# strace_attach PID FILE: counts the system calls of PID (every thread) into FILE until
# strace_detach. strace slows the process down: what it gives is counts, not speed.
strace_attach() {
  command -v strace >/dev/null || { echo "needs strace (apt-get install strace)" >&2; exit 1; }
  strace -c -f -U name,calls -p "$1" -o "$2" 2>/dev/null &
  tracer=$!
  sleep 0.5 # attached
}
strace_detach() { kill -INT "$tracer"; wait "$tracer" 2>/dev/null || true; }

# strace_rows FILE: one "name calls" line per system call strace counted, then "total calls".
strace_rows() { awk '/^-/ {next} $2 ~ /^[0-9]+$/ {print $1, $2}' "$1"; }

# Sets BIN to a release build of this checkout, unless BIN names another build to measure.
default_bin() {
  if [ -z "${BIN:-}" ]; then
    (cd "$repo" && cargo build --release --quiet)
    BIN="$repo/target/release/reactor-httpd"
  fi
}

# many_entries DIR N : N empty files in DIR (made if need be), named about as long as real files
# are, for a directory listing to read.
many_entries() {
  mkdir -p "$1"
  python3 -c "
import os, sys
for i in range(int(sys.argv[2])):
    open(os.path.join(sys.argv[1], f'entry-{i:07}-of-a-long-listing.txt'), 'w').close()
" "$1" "$2"
}
