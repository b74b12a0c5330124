#!/usr/bin/env bash
# The figures of docs/performance.md, measured side by side in one run on this machine:
# our server in its default configuration (logging at info; --trust 127.0.0.1: one host's
# load would otherwise meet the per-source limits) against the in-process echo loop (query
# and mixed, 8 and 64 clients), the same with -q, the same load with a durable state file,
# and a ring of 20 peers. Each line is one JSON object.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p contact-cli >/dev/null 2>&1
bin=./target/release/contact-cli
dir=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; rm -rf "$dir"' EXIT
start_server() { # port, extra args... (global options such as -q first)
    local port=$1; shift
    local global=()
    if [ "${1:-}" = -q ]; then global=(-q); shift; fi
    "$bin" "${global[@]}" server --bind 127.0.0.1 --port "$port" --data-dir "$dir" \
        --trust 127.0.0.1 "$@" > "$dir/$port.out" 2> "$dir/$port.err" &
    pids+=($!)
    until grep -q listening "$dir/$port.out" 2>/dev/null; do sleep 0.1; done
}
secs=${SECS:-3}
start_server 23900
start_server 23901 -q
start_server 23902 --state "$dir/state.journal"
for mix in query mixed; do
    for clients in 8 64; do
        for port in 23900 23901; do # default, then -q
            "$bin" bench --server 127.0.0.1:$port --mix "$mix" --clients "$clients" --duration "$secs" --echo --json
        done
    done
done
for clients in 8 64; do # without and with the state file, one after the other
    "$bin" bench --server 127.0.0.1:23900 --mix mixed --clients "$clients" --duration "$secs" --json
    "$bin" bench --server 127.0.0.1:23902 --mix mixed --clients "$clients" --duration "$secs" --json
done
"$bin" bench --server 127.0.0.1:23900 --mix ring --peers 20 --duration "$secs" --json
