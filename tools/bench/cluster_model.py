#!/usr/bin/python3
"""The scaling model of docs/cluster.md, computed from a benchmark run.

    /usr/bin/python3 tools/bench/cluster_model.py [RESULTS.json] [--link-gbps 1.25]

RESULTS.json (default tools/bench/results/latest-full.json) must hold the
cluster rows (`run_bench.py --only cluster`). Prints markdown: the measured
inputs, then the predicted speedup over running the work serially in one
process, for 8, 64 and 512 ranks (one worker each; rank 0 dispatches) at
1 ms, 10 ms and 100 ms of work per task with 1 KiB and 1 MiB payloads
(argument and result each that size), for mphost's cluster pool and for
mpi4py.futures.

Model. Rank 0 is the single dispatcher: every task leaves it and every
result comes back to it as a message of its own (submit, or map with
chunksize 1), so its time per task bounds the throughput:

    d(b)  = max(c0 + (c1 - c0) * b / 1 MiB,  2 b / B)
            c0, c1: rank 0's own CPU per task (all its threads) measured with
                    a tiny task (submit row) and with a 1 MiB task (numpy row),
                    over tcp as between hosts (the tcp rows; shared memory
                    when a run has no tcp rows);
            B:      the link's bandwidth out of and into rank 0 (both
                    directions share it here: 2 b per task); --link-gbps,
                    default 1.25 GB/s (10 Gb Ethernet)
    S(N)  = N w / max(w + o, N d(b))     N = ranks - 1 workers, w the work of a
                                          task, o = d(b) what a worker adds to it
                                          (unpickle, pickle, its share of the link)
    S'(N) = 1 / (f + (1 - f) / S(N))     Amdahl, f the program's serial fraction

The dispatcher saturates at N* = (w + o) / d(b) workers: beyond that, more
ranks add nothing. Not modelled: start-up of the job and of the workers
(seconds, once), stragglers, a network slower than B for many-to-one
traffic, and rank 0 sharing its core (on this 2-core machine it does, so
the figures measured here are upper bounds of c0 and c1).
"""

import argparse
import json
import statistics
from pathlib import Path

HERE = Path(__file__).resolve().parent
MIB = 1 << 20
NAMES = {"stock": "mpi4py.futures", "mphost": "mphost cluster"}


def _per_task(summary, key):
    """Median over a column's good runs of the program's `key` / tasks."""
    vals = []
    for o in (summary or {}).get("outcomes", []):
        rec = (o.get("record") or {})
        prog = rec.get("record") or {}
        if o.get("status") == "ok" and prog.get(key) is not None and prog.get("tasks"):
            vals.append(prog[key] / prog["tasks"])
    return statistics.median(vals) if vals else None


def measured(data, transport=""):
    """{side: dict(c0, c1, wall0, wall1)}: seconds per task."""
    rows = {r["id"]: r for r in data["rows"]}
    tiny, big = rows.get("cluster_submit" + transport), rows.get("cluster_numpy_1mib" + transport)
    out = {}
    for side in ("stock", "mphost"):
        if not tiny or not big or tiny[side]["status"] != "ok" or big[side]["status"] != "ok":
            continue
        out[side] = {"c0": _per_task(tiny[side], "rank0_cpu_s"),
                     "c1": _per_task(big[side], "rank0_cpu_s"),
                     "wall0": 1.0 / tiny[side]["median"], "wall1": 1.0 / big[side]["median"]}
    return out


_ROW_TEXT = {
    "cluster_map_default": "tiny task, `Pool.map` default chunksize; mpi4py `map` default (chunksize 1)",
    "cluster_map_chunked": "tiny task, `Pool.map` default chunksize; mpi4py `map` given the same chunksize",
    "cluster_submit": "tiny task, `executor.submit` + `result()`",
    "cluster_numpy_1mib": "1 MiB float64 array in, 1 MiB out, `map` chunksize 1",
    "cluster_cpu_2ranks": "CPU-bound speedup, 2 worker ranks over 1 (40 tasks × ~50 ms)",
    "cluster_cpu_4ranks": "CPU-bound speedup, 4 worker ranks over 1 (5 ranks on 2 cores: oversubscribed)",
}
for _k in ("cluster_map_default", "cluster_submit", "cluster_numpy_1mib"):
    _ROW_TEXT[_k + "_tcp"] = _ROW_TEXT[_k]


def _fmt(v):
    if v is None:
        return "-"
    if v >= 1e6:
        return f"{v / 1e6:.3g} M"
    if v >= 1e4:
        return f"{v / 1e3:.3g} k"
    if v >= 100:
        return f"{v:,.0f}"
    return f"{v:.3g}"


def _prog_median(summary, key):
    vals = [((o.get("record") or {}).get(key)) for o in (summary or {}).get("outcomes", [])
            if o.get("status") == "ok"]
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None


def _cpu(summary):
    c = summary.get("cpu_us_per_item") if summary.get("status") == "ok" else None
    return "-" if not c else _fmt(c["median"])


def measured_table(data):
    """The rows as docs/cluster.md shows them: medians (min–max)."""
    out = ["| row | transport | tasks | mpi4py.futures | mphost cluster | ratio | goal | "
           "mphost one machine | CPU µs/task, mpi4py / cluster |",
           "|---|---|---|---|---|---|---|---|---|"]
    for r in data["rows"]:
        if r["id"] not in _ROW_TEXT:
            continue
        cells = []
        for side in ("stock", "mphost"):
            sm = r[side]
            if sm["status"] != "ok":
                cells.append(sm["status"])
                continue
            text = f"{_fmt(sm['median'])} ({_fmt(sm['min'])}–{_fmt(sm['max'])})"
            mb = _prog_median(sm, "mb_per_s")
            cells.append(text + (f"; {_fmt(mb)} MB/s" if mb else ""))
        local = _prog_median(r["mphost"], "local_value")
        lmb = _prog_median(r["mphost"], "local_mb_per_s")
        tasks = _prog_median(r["stock"], "tasks") or _prog_median(r["mphost"], "tasks")
        ratio = f"{r['ratio']:.2f}×" if r.get("ratio") else "-"
        goal = r["target"]["text"] if r.get("target") else "-"
        transport = "tcp" if "tcp" in r["args"] else "shared memory"
        out.append(f"| {_ROW_TEXT[r['id']]} | {transport} | {tasks:,.0f} | {cells[0]} | {cells[1]} | "
                   f"{ratio} | {goal} | {_fmt(local)}{f'; {_fmt(lmb)} MB/s' if lmb else ''} | "
                   f"{_cpu(r['stock'])} / {_cpu(r['mphost'])} |")
    return "\n".join(out)


def per_task(m, payload, link):
    c = m["c0"] + (m["c1"] - m["c0"]) * payload / MIB
    return max(c, 2 * payload / link)


def speedup(n, work, d, serial=0.0):
    s = n * work / max(work + d, n * d)
    return 1.0 / (serial + (1.0 - serial) / s) if serial else s


def table(m, label, link):
    lines = [f"| {label} | payload | rank 0 per task | 8 ranks | 64 ranks | 512 ranks | "
             "512 ranks, 1 % serial | saturates at |",
             "|---|---|---|---|---|---|---|---|"]
    for work in (1e-3, 1e-2, 1e-1):
        for payload, name in ((1024, "1 KiB"), (MIB, "1 MiB")):
            d = per_task(m, payload, link)
            cells = [f"{speedup(r - 1, work, d):.1f}" for r in (8, 64, 512)]
            cells.append(f"{speedup(511, work, d, 0.01):.1f}")
            sat = (work + d) / d
            lines.append(f"| {work * 1e3:g} ms of work | {name} | {d * 1e6:,.0f} µs | "
                         + " | ".join(cells) + f" | {sat:,.0f} worker{'' if round(sat) == 1 else 's'} |")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("results", nargs="?", default=str(HERE / "results" / "latest-full.json"))
    p.add_argument("--link-gbps", type=float, default=1.25,
                   help="bandwidth into and out of rank 0, GB/s (default 1.25: 10 Gb Ethernet)")
    args = p.parse_args(argv)
    data = json.loads(Path(args.results).read_text())
    link = args.link_gbps * 1e9
    print(f"From `{args.results}` ({data.get('started', '?')}, commit "
          f"{data['machine'].get('commit')}, {data.get('runs')} runs, medians).\n")
    m = data["machine"]
    print(f"Load average {m['loadavg_start'][0]:.1f} at the start, {m['loadavg_end'][0]:.1f} "
          f"at the end; {m['cores']} cores.\n")
    print(measured_table(data))
    print()
    got = measured(data)
    tcp = measured(data, "_tcp")
    print("| side | transport | tiny task: wall per task (2 workers) | rank 0 CPU per task | "
          "1 MiB task: wall per task | rank 0 CPU per task | MB/s in and out |")
    print("|---|---|---|---|---|---|---|")
    for tname, src in (("shared memory", got), ("tcp", tcp)):
        for side, m in src.items():
            print(f"| {NAMES[side]} | {tname} | {m['wall0'] * 1e6:,.0f} µs | "
                  f"{(m['c0'] or 0) * 1e6:,.0f} µs | {m['wall1'] * 1e3:.2f} ms | "
                  f"{(m['c1'] or 0) * 1e3:.2f} ms | {2 * MIB / m['wall1'] / 1e6:,.0f} |")
    print()
    rows = {r["id"]: r for r in data["rows"]}
    chunked = rows.get("cluster_map_chunked")
    if chunked:
        for side in ("stock", "mphost"):
            c = _per_task(chunked[side], "rank0_cpu_s")
            if c is not None:
                print(f"- {NAMES[side]}: rank 0's CPU per tiny task in chunks of 50,000 "
                      f"(`cluster_map_chunked`): {c * 1e9:,.0f} ns")
        print()
    # Between hosts the ranks talk tcp: its figures are the inputs when measured.
    basis, basis_name = (tcp, "tcp") if tcp else (got, "shared memory")
    print(f"Predicted speedup over serial work, rank 0's CPU per task as measured over "
          f"{basis_name}, link B = {args.link_gbps:g} GB/s:\n")
    for side, m in basis.items():
        if m["c0"] is None or m["c1"] is None:
            continue
        print(table(m, NAMES[side], link))
        print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
