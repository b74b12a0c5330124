#!/usr/bin/env bash
# The figures of docs/performance.md, measured side by side in one run on this machine, and
# printed with their ratios:
# - our server in its default configuration against the in-process echo loops, naive and
#   batched (query and mixed; 8 and 64 clients); every server trusts 127.0.0.1 (--trust:
#   one host's load would otherwise meet the per-source limits) and has room for the sweeps;
# - the same server with -q (logging only warnings), and with a durable state file, beside
#   the bench's durable echo loop on the same disk (what syncing before answering allows);
# - how the cost grows: 1, 8, 64 and 256 clients (beside both echo loops), and rings of 3,
#   20 and 100 peers (per hop against a bare UDP round trip, and the thread experiment), and
#   the ring of 20 again with another process holding one core (a busy loop).
# Every measurement is one JSON line, kept in $OUT (default: a file in a temporary
# directory, whose name is printed); `scripts/plot.py $OUT` draws the plots of the docs.
#
#   SECS=6 scripts/perf.sh          # longer measurements (default 3 s each)
#   OUT=perf.jsonl scripts/perf.sh  # keep the JSON lines
#   ROUNDS=5 scripts/perf.sh        # the side-by-side cells five times, with medians
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p contact-cli >/dev/null 2>&1
bin=./target/release/contact-cli
dir=$(mktemp -d)
out=${OUT:-$dir/perf.jsonl}
: > "$out"
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; rm -rf "$dir"' EXIT
start_server() { # port, extra args... (global options such as -q first)
    local port=$1; shift
    local global=()
    if [ "${1:-}" = -q ]; then global=(-q); shift; fi
    "$bin" "${global[@]}" server --bind 127.0.0.1 --port "$port" --data-dir "$dir" \
        --max-contacts 2000 --max-lists 2000 --error-rate 0 --trust 127.0.0.1 "$@" > "$dir/$port.out" 2>&1 &
    pids+=($!)
    until grep -q listening "$dir/$port.out" 2>/dev/null; do sleep 0.1; done
}
bench() { # label, bench args...
    local label=$1; shift
    "$bin" bench "$@" --duration "${dur:-$secs}" --json | sed "s/^{/{\"label\": \"$label\", /" | tee -a "$out" >/dev/null
    printf '.' >&2
}
secs=${SECS:-3}
start_server 23900                                  # default configuration (its log in a file)
start_server 23901 -q                               # warnings only
start_server 23902 --state "$dir/state.journal"     # durable
echo "measuring, ${secs} s each (about $((secs * (31 + 12 * (${ROUNDS:-1} - 1)) + 40)) s in all)" >&2
# ROUNDS=N measures these cells N times, round after round, and plot.py adds the median
# ratio of each and its range: one round's figure moves by about 0.1 on this machine.
for _ in $(seq "${ROUNDS:-1}"); do
    for mix in query mixed; do
        for clients in 8 64; do
            bench default --server 127.0.0.1:23900 --mix "$mix" --clients "$clients" --echo
        done
    done
done
for clients in 8 64; do
    # -q and the default taking turns in three slices each (plot.py averages them), so that
    # drift weighs on both alike: one after the other, their ratio moved by 0.2 either way.
    for _ in 1 2 3; do
        dur=$(python3 -c "print(max(1.0, $secs / 3))") bench quiet --server 127.0.0.1:23901 --mix mixed --clients "$clients"
        dur=$(python3 -c "print(max(1.0, $secs / 3))") bench default-alone --server 127.0.0.1:23900 --mix mixed --clients "$clients"
    done
    bench state --server 127.0.0.1:23902 --mix mixed --clients "$clients"
    # What any server that syncs before answering gets from this disk: the echo loops, the
    # durable one with its file beside the state file.
    bench durable-echo --echo-only --durable-echo "$dir" --mix mixed --clients "$clients"
done
for mix in query mixed; do
    bench sweep --server 127.0.0.1:23900 --mix "$mix" --sweep
done
bench ring --server 127.0.0.1:23900 --mix ring --sweep
# The issue's condition for the ring: another process holding one of the two cores.
python3 -c 'while True: pass' &
spinner=$!
pids+=("$spinner")
bench ring-busy --server 127.0.0.1:23900 --mix ring --peers 20
kill "$spinner"
echo >&2
python3 scripts/plot.py --table "$out"
echo
echo "JSON lines: $out$([ -n "${OUT:-}" ] || echo ' (removed at exit: give OUT=FILE to keep them)')"
