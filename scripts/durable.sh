#!/usr/bin/env bash
# What durability (--state) costs, and what limits it: the disk's sync latency or our code.
# Side by side in one run, taking turns (so that drift weighs on all alike):
# - the server without a state file;
# - the server with its journal on the data directory's disk (every batch of mutations is
#   made durable with one fdatasync before its answers go out);
# - the same with its journal on a tmpfs (/dev/shm), where a sync costs next to nothing:
#   what our durable path costs apart from the disk;
# - the bench's echo loops: the naive one, and the durable one with its file on the same
#   disk (the batched loop that echoes each batch once an fdatasync covers it, group commit
#   on a second thread): what any server that syncs before answering can reach on this disk;
# - the disk's fdatasync latency, measured with the same small appends between the runs.
# With C clients each waiting for its answer, a batch holds at most C requests, so no group
# commit can go faster than C / (sync latency): the "ceiling" column.
#
#   SECS=5 ROUNDS=3 scripts/durable.sh
#   BIN=/tmp/old/contact-cli scripts/durable.sh
set -euo pipefail
cd "$(dirname "$0")/.."
# BIN=path: another build to measure (e.g. an older one, side by side with this one).
if [ -z "${BIN:-}" ]; then cargo build --release -p contact-cli >/dev/null 2>&1; fi
bin=${BIN:-./target/release/contact-cli}
dir=$(mktemp -d -p "${DISK_DIR:-$PWD/target}")
shm=$(mktemp -d -p /dev/shm)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; rm -rf "$dir" "$shm"' EXIT
start_server() { # port, extra args...
    local port=$1; shift
    "$bin" -q server --bind 127.0.0.1 --port "$port" --data-dir "$dir" \
        --max-contacts 2000 --max-lists 2000 --error-rate 0 --trust 127.0.0.1 "$@" > "$dir/$port.out" 2>&1 &
    pids+=($!)
    until grep -q listening "$dir/$port.out" 2>/dev/null; do sleep 0.1; done
}
start_server 23910
start_server 23911 --state "$dir/state.journal"
start_server 23912 --state "$shm/state.journal"
secs=${SECS:-3}
rounds=${ROUNDS:-2}
sync_latency() { # median fdatasync of a 64-byte append, in ms, on the disk of $dir
    python3 - "$dir" <<'EOF'
import os, statistics, sys, time
path = os.path.join(sys.argv[1], "sync-probe")
fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
times = []
for _ in range(200):
    t = time.perf_counter()
    os.write(fd, b"x" * 63 + b"\n")
    os.fdatasync(fd)
    times.append(time.perf_counter() - t)
os.close(fd)
os.unlink(path)
print(f"{statistics.median(times) * 1000:.3f}")
EOF
}
rate() { # port clients -> requests/s
    "$bin" bench --server "127.0.0.1:$1" --mix mixed --clients "$2" --duration "$secs" --json |
        python3 -c 'import json,sys; print(round(json.loads(sys.stdin.read())["runs"][0]["ops_per_sec"]))'
}
echo_rates() { # clients -> "naive durable" requests/s of the bench's echo loops
    "$bin" bench --echo-only --durable-echo "$dir" --mix mixed --clients "$1" --duration "$secs" --json |
        python3 -c 'import json,sys; r={x["target"]: x["ops_per_sec"] for x in json.loads(sys.stdin.read())["runs"]}; print(round(r["echo"]), round(r["durable-echo"]))'
}
echo "| round | clients | no state | state on disk | state on tmpfs | disk / none | tmpfs / none | naive echo | durable echo | durable / naive echo | server disk / durable echo | fdatasync (ms) | ceiling C/sync | disk / ceiling |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
for round in $(seq 1 "$rounds"); do
    for clients in 8 64 256; do
        none=$(rate 23910 "$clients")
        sync_before=$(sync_latency)
        disk=$(rate 23911 "$clients")
        sync_after=$(sync_latency)
        tmpfs=$(rate 23912 "$clients")
        read -r naive durable <<< "$(echo_rates "$clients")"
        python3 - "$round" "$clients" "$none" "$disk" "$tmpfs" "$sync_before" "$sync_after" "$naive" "$durable" <<'EOF'
import sys
r, c, none, disk, tmpfs, s1, s2, naive, durable = sys.argv[1:]
c, none, disk, tmpfs, naive, durable = int(c), float(none), float(disk), float(tmpfs), float(naive), float(durable)
sync = (float(s1) + float(s2)) / 2
ceiling = c / (sync / 1000)
print(f"| {r} | {c} | {none:,.0f} | {disk:,.0f} | {tmpfs:,.0f} | {disk / none:.2f} | {tmpfs / none:.2f} | {naive:,.0f} | {durable:,.0f} | {durable / naive:.2f} | {disk / durable:.2f} | {sync:.3f} | {ceiling:,.0f} | {disk / ceiling:.2f} |")
EOF
    done
done
