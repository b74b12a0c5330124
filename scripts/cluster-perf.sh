#!/usr/bin/env bash
# The figures of docs/cluster.md and docs/performance.md for the replicated registry, release
# build, on loopback, in one run: one durable server (--state) and a three-node cluster
# (127.0.0.1, .2, .3) started side by side with the same registry options, then
# - `register` (a mutation each) at 8 and 64 clients: the single server, the cluster's
#   leader, a follower (forwarded), alternating, twice;
# - `query-lists`: the single server, one node, then three benches at once, one per node;
# - failover: a loop of tagged creates as our peers send them (0.5 s timeout, then the next
#   node, same id), the leader SIGKILLed mid-loop, the time to the first create answered
#   again; the node restarted with its directory; TRIALS times.
# Every bench is one JSON line in $OUT (default: a temporary file, removed at exit).
#
#   SECS=5 TRIALS=5 scripts/cluster-perf.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p contact-cli >/dev/null 2>&1
bin=./target/release/contact-cli
dir=$(mktemp -d)
out=${OUT:-$dir/cluster-perf.jsonl}
: > "$out"
secs=${SECS:-3}
trials=${TRIALS:-3}
declare -A node_pid
pids=()
cleanup() {
    kill "${pids[@]}" "${node_pid[@]}" 2>/dev/null || true
    rm -rf "$dir"
}
trap cleanup EXIT
options=(--max-contacts 100000 --max-lists 100000 --error-rate 0 --trust 127.0.0.0/8
    --answer-total-rate 0 --save-interval 0)
cluster=1=127.0.0.1:24911,2=127.0.0.2:24911,3=127.0.0.3:24911
wait_line() { # file
    for _ in $(seq 300); do grep -q listening "$1" 2>/dev/null && return; sleep 0.1; done
    echo "no 'listening' in $1" >&2; cat "$1" >&2; exit 1
}
start_node() { # id
    local i=$1
    mkdir -p "$dir/n$i"
    "$bin" -q server --bind "127.0.0.$i" --port 24901 --data-dir "$dir/n$i" --node-id "$i" \
        --cluster "$cluster" "${options[@]}" > "$dir/n$i.out" 2>&1 &
    node_pid[$i]=$!
    wait_line "$dir/n$i.out"
}
leader() {
    "$bin" cluster status --node 127.0.0.2:24911 --json 2>/dev/null |
        python3 -c 'import json,sys
for n in json.load(sys.stdin):
    l = n.get("status", {}).get("leader")
    if l: print(l); break'
}
wait_leader() {
    for _ in $(seq 100); do
        l=$(leader || true)
        if [ -n "$l" ]; then echo "$l"; return; fi
        sleep 0.2
    done
    echo "no leader" >&2; exit 1
}
bench() { # label, bench args...
    local label=$1; shift
    "$bin" bench "$@" --duration "$secs" --json | sed "s/^{/{\"label\": \"$label\", /" >> "$out"
    printf '.' >&2
}

"$bin" -q server --bind 127.0.0.1 --port 24900 --data-dir "$dir" \
    --state "$dir/state.journal" "${options[@]}" > "$dir/single.out" 2>&1 &
pids+=($!)
wait_line "$dir/single.out"
for i in 1 2 3; do start_node "$i"; done
l=$(wait_leader)
f=$(( l % 3 + 1 ))
echo "leader: node $l; the follower measured: node $f; ${secs} s per bench" >&2

for round in 1 2; do
    for clients in 8 64; do
        bench single --server 127.0.0.1:24900 --mix register --clients "$clients"
        bench leader --server "127.0.0.$l:24901" --mix register --clients "$clients"
        bench follower --server "127.0.0.$f:24901" --mix register --clients "$clients"
    done
done
bench single --server 127.0.0.1:24900 --mix query --clients 8
bench one-node --server "127.0.0.$l:24901" --mix query --clients 8
benches=()
for i in 1 2 3; do
    bench "three-nodes-$i" --server "127.0.0.$i:24901" --mix query --clients 8 &
    benches+=($!)
done
wait "${benches[@]}"
echo >&2

python3 - "$out" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
def run(r): return r["runs"][0]
print("mix       clients  target      ops/s     p50 ms   p99 ms   statuses")
for r in rows:
    x = run(r)
    print(f'{r["mix"]:<9} {r["clients"]:>7}  {r["label"]:<10} {x["ops_per_sec"]:>8.0f} {x["p50_ms"]:>9.2f} {x["p99_ms"]:>8.2f}   {x["statuses"]}')
reg = {}
for r in rows:
    if r["mix"] == "register":
        reg.setdefault((r["label"], r["clients"]), []).append(run(r))
for clients in (8, 64):
    s = reg[("single", clients)]
    for label in ("leader", "follower"):
        c = reg[(label, clients)]
        ops = sum(x["ops_per_sec"] for x in c) / sum(x["ops_per_sec"] for x in s)
        p99 = (sum(x["p99_ms"] for x in c) / len(c)) / (sum(x["p99_ms"] for x in s) / len(s))
        print(f"register, {clients} clients, {label} / single: throughput {ops:.2f}x, p99 {p99:.2f}x")
q = {r["label"]: run(r)["ops_per_sec"] for r in rows if r["mix"] == "query"}
three = sum(v for k, v in q.items() if k.startswith("three-nodes"))
print(f'query-lists: single {q["single"]:.0f}/s, one node {q["one-node"]:.0f}/s, '
      f'three nodes at once {three:.0f}/s: three nodes / single {three / q["single"]:.2f}x, '
      f'three / one node {three / q["one-node"]:.2f}x')
EOF

# Failover: tagged creates as our peers send them, the leader SIGKILLed mid-loop.
for trial in $(seq "$trials"); do
    l=$(wait_leader)
    python3 - "$l" "$trial" "${node_pid[$l]}" <<'EOF'
import os, signal, socket, sys, time
leader, trial, pid = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
nodes = [("127.0.0.%d" % i, 24901) for i in (1, 2, 3)]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.9", 0))
k, killed, first, sent = 0, None, None, 0
deadline = time.monotonic() + 30
for n in range(1, 100000):
    if time.monotonic() > deadline: sys.exit("no answer after the kill within 30 s")
    req = ("#%d-_-create-_-t%d_%d" % (n, trial, n)).encode()
    while True:
        if time.monotonic() > deadline: sys.exit("stuck")
        s.sendto(req, nodes[k % 3])
        s.settimeout(0.5)
        try:
            data, _ = s.recvfrom(65536)
        except socket.timeout:
            k += 1; continue
        if not data.startswith(b"#%d-_-" % n): continue
        if data.startswith(b"#%d-_-200-_-" % n): break
        if data.split(b"-_-")[1] in (b"473", b"474"): k += 1; continue
        sys.exit("unexpected answer %r" % data)
    if killed is not None and first is None:
        first = time.monotonic() - killed
        break
    if n == 200:
        os.kill(pid, signal.SIGKILL)
        killed = time.monotonic()
print("failover trial %d: leader node %d SIGKILLed; the next create answered after %.2f s" % (trial, leader, first))
EOF
    wait "${node_pid[$l]}" 2>/dev/null || true
    start_node "$l"
done
echo "JSON lines: $out$([ -n "${OUT:-}" ] || echo ' (removed at exit: give OUT=FILE to keep them)')"
