#!/usr/bin/env bash
# The server's own work a request, counted rather than timed (docs/performance.md, "The
# request path, counted"): the server runs under callgrind, `contact-cli bench` drives a
# mix against it, and the script prints the instructions and the allocator calls of the
# whole server process over the requests it answered (start-up included: under 1%).
# Counts barely move from run to run, where throughput on a shared machine moves by 10%.
# Needs valgrind (`apt-get install valgrind`).
#
#   scripts/instructions.sh                 # mixed, 8 clients, 5 s
#   MIX=query CLIENTS=64 SECS=3 scripts/instructions.sh
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { echo "valgrind is needed (apt-get install valgrind)" >&2; exit 1; }
cargo build --release -p contact-cli >/dev/null 2>&1
bin=./target/release/contact-cli
mix=${MIX:-mixed}
clients=${CLIENTS:-8}
secs=${SECS:-5}
port=${PORT:-23990}
dir=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$dir"' EXIT
valgrind --tool=callgrind --callgrind-out-file="$dir/callgrind.out" \
    "$bin" server --bind 127.0.0.1 --port "$port" --data-dir "$dir" --max-contacts 2000 \
    --max-lists 2000 --error-rate 0 --trust 127.0.0.1 > "$dir/server.out" 2>&1 &
pid=$!
for _ in $(seq 600); do grep -q listening "$dir/server.out" 2>/dev/null && break; sleep 0.1; done
grep -q listening "$dir/server.out" || { echo "the server did not start:" >&2; cat "$dir/server.out" >&2; exit 1; }
answered=$("$bin" bench --server "127.0.0.1:$port" --mix "$mix" --clients "$clients" \
    --duration "$secs" --json | python3 -c 'import json, sys; print(json.load(sys.stdin)["runs"][0]["answered"])')
kill -INT "$pid"
wait "$pid" 2>/dev/null || true
pid=
# Inclusive counts of the allocator's entry points and the program's total.
callgrind_annotate --inclusive=yes "$dir/callgrind.out" 2>/dev/null > "$dir/annotate.txt"
total=$(awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1; exit }' "$dir/annotate.txt")
allocs=$(callgrind_annotate --tree=caller "$dir/callgrind.out" 2>/dev/null | python3 -c '
import re, sys
blocks = sys.stdin.read().split("\n\n")
calls = 0
for block in blocks:
    if re.search(r"\*  \S*:__rustc::__rust_alloc \[", block):
        calls += sum(int(n.replace(",", "")) for n in re.findall(r"\(([0-9,]+)x\)", block))
print(calls)')
python3 - "$mix" "$clients" "$answered" "$total" "$allocs" <<'PY'
import sys
mix, clients, answered, total, allocs = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:])
print(f"{mix}, {clients} clients: {answered:,} requests answered under callgrind")
print(f"instructions a request: {total / answered:,.0f} ({total:,} in all)")
print(f"allocations a request: {allocs / answered:.2f} ({allocs:,} in all)")
PY
