#!/usr/bin/python3
"""The scaling model of docs/cluster.md, computed from a benchmark run.

    /usr/bin/python3 tools/bench/cluster_model.py [RESULTS.json]

RESULTS.json (default tools/bench/results/latest-full.json) must hold the
cluster rows (`run_bench.py --only cluster`). Prints markdown: the measured
inputs, then the predicted speedup over running the work serially in one process, for 8, 64 and 512 ranks
(one worker each; rank 0 dispatches) at 1 ms, 10 ms and 100 ms of work per
task with 1 KiB and 1 MiB payloads (argument and result each), for mphost's
cluster pool and for mpi4py.futures.

Model (rank 0 is the single dispatcher; every task goes out of and back
into it as its own message; workers are independent):

    d(b)  = rank 0's time per task with payload b
          = d0 + (d1 - d0) * b / 1 MiB        (d0: tiny-task time per task,
                                               d1: the 1 MiB task's, both measured)
    S(N)  = N * w / max(w + o, N * d(b))      with N = ranks - 1 worker ranks
                                               and o = d(b) (a worker also unpickles
                                               and pickles its task)
    with an Amdahl term for a serial part f of the whole program (default 0):
    S'(N) = 1 / (f + (1 - f) / S(N))

The dispatcher saturates at N* = (w + o) / d(b) workers: beyond it more
ranks add nothing. d0 and d1 are what the 2-core machine measured with
2 worker ranks (upper bounds of rank 0's own cost: its cores were shared
with the workers); over a real network d1 grows with the link's bandwidth.
"""

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
MIB = 1 << 20


def _median(summary):
    return summary["median"] if summary and summary.get("status") == "ok" else None


def inputs(data, transport=""):
    rows = {r["id"]: r for r in data["rows"]}
    out = {}
    for side in ("stock", "mphost"):
        tiny = rows.get("cluster_submit" + transport)
        big = rows.get("cluster_numpy_1mib" + transport)
        t = _median(tiny[side]) if tiny else None
        b = _median(big[side]) if big else None
        if t and b:
            out[side] = (1.0 / t, 1.0 / b)
    return out


def speedup(n, work, payload, d0, d1, serial=0.0):
    d = d0 + (d1 - d0) * payload / MIB
    s = n * work / max(work + d, n * d)
    return 1.0 / (serial + (1.0 - serial) / s) if serial else s


def table(d, label, serial=0.0):
    d0, d1 = d
    lines = [f"| {label} | work per task | payload | 8 ranks | 64 ranks | 512 ranks | saturates at |",
             "|---|---|---|---|---|---|---|"]
    for work in (1e-3, 1e-2, 1e-1):
        for payload, name in ((1024, "1 KiB"), (MIB, "1 MiB")):
            dd = d0 + (d1 - d0) * payload / MIB
            cells = [f"{speedup(r - 1, work, payload, d0, d1, serial):.1f}" for r in (8, 64, 512)]
            sat = (work + dd) / dd
            lines.append(f"| | {work * 1e3:g} ms | {name} | " + " | ".join(cells)
                         + f" | {sat:.0f} worker{'' if round(sat) == 1 else 's'} |")
    return "\n".join(lines)


def main(argv):
    path = Path(argv[0]) if argv else HERE / "results" / "latest-full.json"
    data = json.loads(path.read_text())
    print(f"From `{path}` ({data.get('started', '?')}, commit {data['machine'].get('commit')}).\n")
    names = {"stock": "mpi4py.futures", "mphost": "mphost cluster"}
    for transport, tname in (("", "shared memory"), ("_tcp", "tcp")):
        got = inputs(data, transport)
        if not got:
            continue
        print(f"Inputs over {tname}: " + "; ".join(
            f"{names[s]}: d0 = {d0 * 1e6:.0f} µs per tiny task, d1 = {d1 * 1e3:.2f} ms per 1 MiB task "
            f"({2 * MIB / d1 / 1e6:.0f} MB/s in and out)" for s, (d0, d1) in got.items()) + "\n")
        for side, d in got.items():
            print(table(d, f"{names[side]}, {tname}"))
            print()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
