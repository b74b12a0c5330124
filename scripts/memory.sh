#!/usr/bin/env bash
# Resident memory of a server that loads 1,000,000 contacts and 100,000 lists of 10 members
# each (docs/performance.md). Prints the figure per contact.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p contact-cli >/dev/null 2>&1
dir=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$dir"' EXIT
awk 'BEGIN {
    n = 1000000; lists = 100000; per = 10
    print n
    for (i = 0; i < n; i++) printf "contact-%d 10.%d.%d.%d %d\n", i, int(i / 65536) % 256, int(i / 256) % 256, i % 256, 20000 + i % 40000
    print lists
    for (j = 0; j < lists; j++) {
        printf "list-%d\n%d\n", j, per
        for (k = 0; k < per; k++) { i = j * per + k; printf "contact-%d 10.%d.%d.%d %d\n", i, int(i / 65536) % 256, int(i / 256) % 256, i % 256, 20000 + i % 40000 }
    }
}' > "$dir/big.txt"
rss() { awk '/^VmRSS/ { print $2 }' "/proc/$1/status"; }
# Baseline: the same server with an empty registry.
./target/release/contact-cli -q server --bind 127.0.0.1 --port 0 > "$dir/empty.out" &
pid=$!
until grep -q listening "$dir/empty.out" 2>/dev/null; do sleep 0.1; done
base=$(rss "$pid")
kill "$pid"; wait "$pid" 2>/dev/null || true
start=$(date +%s.%N)
./target/release/contact-cli -q server --bind 127.0.0.1 --port 0 --load "$dir/big.txt" \
    --max-contacts 1000000 --max-lists 100000 > "$dir/big.out" &
pid=$!
until grep -q listening "$dir/big.out" 2>/dev/null; do sleep 0.1; done
end=$(date +%s.%N)
full=$(rss "$pid")
echo "file: $(du -h "$dir/big.txt" | cut -f1), loaded in $(echo "$end - $start" | bc) s"
echo "resident: empty server ${base} KiB, loaded ${full} KiB"
echo "per contact: $(( (full - base) * 1024 / 1000000 )) bytes (1,000,000 contacts, 100,000 lists x 10 members)"
