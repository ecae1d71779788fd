#!/usr/bin/env bash
# Time to answer the listing of a directory of N entries (default 100,000): medians of 5
# requests with curl, and the page size.
#   benches/listing-time.sh [N=100000]
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
start reactor 18600 / "$repo/target/release/reactor-httpd" --bind 127.0.0.1:18600 --cores 1 --quiet "$work/www"
times=""
for _ in 1 2 3 4 5; do
  read -r t size < <(curl -s -o /dev/null -w '%{time_total} %{size_download}\n' http://127.0.0.1:18600/big/)
  times+="$t "
done
echo "listing of $N entries: $size bytes, median $(echo "$times" | median) s (runs: $times)"
