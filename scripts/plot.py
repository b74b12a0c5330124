#!/usr/bin/env python3
"""Tables and plots of `contact-cli bench --json` output (the JSON lines of scripts/perf.sh).

    python3 scripts/plot.py --table perf.jsonl          # the tables, as text (stdlib only)
    python3 scripts/plot.py perf.jsonl --out docs       # docs/perf-clients.svg, docs/perf-ring.svg

Plotting needs matplotlib (`pip install matplotlib`); the plots are drawn by hand and checked
in, so nothing in CI needs it. Lines may carry a "label" (what perf.sh measured them for):
"default" (server beside the echo loops), "quiet" (-q), "default-alone", "state" (--state),
"durable-echo" (the echo loops alone, the durable one included),
"sweep" (--sweep over clients), "ring" (--mix ring --sweep) and "ring-busy" (a ring of 20
with another process holding one core); lines without one are
taken by their shape.
"""

import argparse
import json
import statistics
import sys


def load(path):
    rows = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line.startswith("{"):
                rows.append(json.loads(line))
    return rows


def runs(row):
    return {r["target"]: r for r in row.get("runs", [])}


def table(header, lines):
    print("| " + " | ".join(header) + " |")
    print("| " + " | ".join("---" for _ in header) + " |")
    for line in lines:
        print("| " + " | ".join(line) + " |")
    print()


def fmt_ops(x):
    return f"{x:,.0f}"


def echo_rows(rows):
    lines = []
    for row in rows:
        t = runs(row)
        if not {"server", "echo", "batched-echo"} <= t.keys():
            continue
        s, e, b = t["server"], t["echo"], t["batched-echo"]
        lines.append([
            row["mix"], str(row["clients"]), fmt_ops(s["ops_per_sec"]), fmt_ops(e["ops_per_sec"]),
            fmt_ops(b["ops_per_sec"]), f"{s['ops_per_sec'] / e['ops_per_sec']:.2f}",
            f"{s['ops_per_sec'] / b['ops_per_sec']:.2f}", f"{s['p99_ms'] / e['p99_ms']:.2f}",
            f"{s['p99_ms'] / b['p99_ms']:.2f}", f"{s['p99_ms']:.3f} ms",
            str(s["lost"]), ", ".join(f"{k}: {v}" for k, v in s["statuses"].items()),
        ])
    return lines


ECHO_HEADER = ["mix", "clients", "server ops/s", "echo ops/s", "batched echo ops/s",
               "server / echo", "server / batched", "p99 server / echo", "p99 server / batched",
               "p99 server", "lost", "statuses"]


def print_tables(rows):
    side = [r for r in rows if r.get("label", "default") == "default" and "runs" in r]
    if side:
        print("Our server (default configuration) beside the naive and the batched echo loop,")
        print("taking turns in the same run:\n")
        table(ECHO_HEADER, echo_rows(side))
        rounds = {}
        for r in side:
            t = runs(r)
            if {"server", "echo", "batched-echo"} <= t.keys():
                rounds.setdefault((r["mix"], r["clients"]), []).append(t)
        if any(len(v) > 1 for v in rounds.values()):
            print("The same cells over the rounds of this run (ROUNDS=N): the median ratio and its")
            print("range, which is the run's own noise:\n")
            lines = []
            for (mix, clients), ts in rounds.items():
                def spread(f):
                    v = sorted(f(t) for t in ts)
                    return f"{statistics.median(v):.2f} ({v[0]:.2f}-{v[-1]:.2f})"
                ops = lambda k: lambda t: t["server"]["ops_per_sec"] / t[k]["ops_per_sec"]
                p99 = lambda k: lambda t: t["server"]["p99_ms"] / t[k]["p99_ms"]
                lines.append([mix, str(clients), str(len(ts)), spread(ops("echo")),
                              spread(ops("batched-echo")), spread(p99("echo")),
                              spread(p99("batched-echo"))])
            table(["mix", "clients", "rounds", "server / echo", "server / batched",
                   "p99 server / echo", "p99 server / batched"], lines)

    alone = {}
    for r in rows:
        if r.get("label") in ("quiet", "default-alone", "state"):
            # Several slices of one measurement (taking turns): their mean.
            alone.setdefault((r["label"], r["clients"]), []).append(runs(r)["server"]["ops_per_sec"])
        if r.get("label") == "durable-echo":
            echo = runs(r)
            alone.setdefault(("durable-echo", r["clients"]), []).append(
                echo["durable-echo"]["ops_per_sec"] / echo["echo"]["ops_per_sec"])
    if alone:
        print("Mixed load: -q and the default taking turns (the mean of their slices); --state after them;")
        print("the last column: the durable echo loop (a sync before each batch's echoes, its file on")
        print("the disk of the state file) against the naive echo loop, what the disk allows:\n")
        lines = []
        for c in sorted({c for _, c in alone}):
            d, q, s, e = (sum(v) / len(v) if (v := alone.get((k, c))) else None
                          for k in ("default-alone", "quiet", "state", "durable-echo"))
            lines.append([
                str(c), fmt_ops(d) if d else "-", fmt_ops(q) if q else "-",
                f"{q / d:.2f}" if d and q else "-", fmt_ops(s) if s else "-",
                f"{s / d:.2f}" if d and s else "-", f"{e:.2f}" if e else "-",
            ])
        table(["clients", "default ops/s", "-q ops/s", "-q / default", "--state ops/s",
               "--state / default", "durable echo / echo"], lines)

    sweep = [r for r in rows if r.get("label") == "sweep"]
    if sweep:
        print("How the cost grows with clients (--sweep; each point side by side with the echo loops):\n")
        table(ECHO_HEADER, echo_rows(sweep))

    ring = [r for r in rows if r.get("mix") == "ring"]
    if ring:
        print("Rings (per hop, medians): ours against a bare UDP round trip, and the thread experiment:\n")
        lines = []
        for r in ring:
            lines.append([
                "one core held" if r.get("label") == "ring-busy" else "idle",
                str(r["peers"]), f"{r['ring_p50_ms']:.3f} ms", f"{r['hop_p50_us']:.1f} µs",
                f"{r['bare_rtt_p50_us']:.1f} µs", f"{r['hop_rtt_ratio']:.2f}",
                f"{r['bare_hop_p50_us']:.1f} µs", f"{r['hop_ratio']:.2f}",
                f"{r['acked_hop_two_threads_p50_us']:.1f} µs",
                f"{r['acked_hop_one_thread_p50_us']:.1f} µs", f"{r['one_thread_ratio']:.2f}",
            ])
        table(["other load", "peers", "around the ring", "per hop", "bare round trip", "hop / round trip",
               "bare forwarder hop", "hop / forwarder hop", "acked hop, 2 threads",
               "acked hop, 1 thread", "1 thread / 2 threads"], lines)


def plot(rows, out):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sweep = [r for r in rows if r.get("label", "sweep") == "sweep" and "runs" in r]
    mixes = sorted({r["mix"] for r in sweep})
    if mixes:
        fig, axes = plt.subplots(2, len(mixes), figsize=(5.5 * len(mixes), 7), squeeze=False)
        for col, mix in enumerate(mixes):
            points = sorted((r for r in sweep if r["mix"] == mix), key=lambda r: r["clients"])
            clients = [r["clients"] for r in points]
            for target, style, name in [("server", "o-", "our server"),
                                        ("echo", "s--", "naive echo loop"),
                                        ("batched-echo", "^:", "batched echo loop (32)")]:
                got = [runs(r).get(target) for r in points]
                if not all(got):
                    continue
                axes[0][col].plot(clients, [g["ops_per_sec"] for g in got], style, label=name)
                axes[1][col].plot(clients, [g["p99_ms"] for g in got], style, label=name)
            for row, ylabel in [(0, "requests per second"), (1, "p99 latency (ms)")]:
                ax = axes[row][col]
                ax.set_xscale("log", base=2)
                ax.set_xticks(clients, [str(c) for c in clients])
                ax.set_xlabel("clients (one request in flight each)")
                ax.set_ylabel(ylabel)
                ax.grid(True, alpha=0.3)
            axes[1][col].set_yscale("log")
            axes[0][col].set_ylim(bottom=0)
            axes[0][col].set_title(f"{mix} mix")
            axes[0][col].legend(fontsize=8)
        fig.tight_layout()
        path = f"{out}/perf-clients.svg"
        fig.savefig(path)
        print(f"wrote {path}")

    ring = sorted((r for r in rows if r.get("mix") == "ring" and r.get("label") != "ring-busy"),
                  key=lambda r: r["peers"])
    if ring:
        fig, ax = plt.subplots(figsize=(6.5, 4.2))
        peers = [r["peers"] for r in ring]
        for key, style, name in [("hop_p50_us", "o-", "a hop of our ring (forward + ack)"),
                                 ("bare_rtt_p50_us", "s--", "bare UDP round trip"),
                                 ("acked_hop_two_threads_p50_us", "v-.", "bare acked hop, 2 threads per member"),
                                 ("acked_hop_one_thread_p50_us", "^-.", "bare acked hop, 1 thread per member"),
                                 ("bare_hop_p50_us", "d:", "bare forwarder hop (no ack)")]:
            ax.plot(peers, [r[key] for r in ring], style, label=name)
        ax.set_xscale("log")
        ax.set_xticks(peers, [str(p) for p in peers])
        ax.set_xlabel("members of the ring")
        ax.set_ylabel("per hop, median (µs)")
        ax.set_ylim(bottom=0)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
        ax.set_title("ring: time per hop")
        fig.tight_layout()
        path = f"{out}/perf-ring.svg"
        fig.savefig(path)
        print(f"wrote {path}")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("jsonl", help="JSON lines of contact-cli bench --json (scripts/perf.sh's OUT)")
    p.add_argument("--table", action="store_true", help="print the tables instead of plotting")
    p.add_argument("--out", default="docs", help="where to write the SVG plots (default: docs)")
    args = p.parse_args()
    rows = load(args.jsonl)
    if not rows:
        sys.exit(f"no JSON lines in {args.jsonl}")
    if args.table:
        print_tables(rows)
    else:
        plot(rows, args.out)


if __name__ == "__main__":
    main()
