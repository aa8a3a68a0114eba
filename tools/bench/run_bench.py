#!/usr/bin/python3
"""Run every benchmark scenario under stock python3 and under mphost.

    /usr/bin/python3 tools/bench/run_bench.py [--quick] [--only REGEX] [--runs N]
                                              [--mphost PATH] [--no-report]

Each scenario (tools/bench/scenarios/bench_*.py, plain multiprocessing
programs) runs under /usr/bin/python3 and under the mphost launcher in the
same invocation, interleaved, several times; the table shows medians and the
ratio, with > 1 meaning mphost is better (see _catalog.py). A full run
writes docs/PERFORMANCE.md, docs/performance.png and
docs/performance_scaling.png; every run writes a JSON file under
tools/bench/results/.

Exit status: 1 if any scenario produced a WRONG result under either
interpreter, or failed in any way under stock python3 (a harness bug); 0
otherwise. A scenario that mphost cannot run yet (NotImplementedError,
ImportError, another error or a hang) is printed as "not supported yet" and
does not fail the run unless --strict is given.
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
SCENARIOS = HERE / "scenarios"
RESULTS = HERE / "results"
DOCS = REPO / "docs"
STOCK_PYTHON = "/usr/bin/python3"

sys.path.insert(0, str(HERE))
import _catalog  # noqa: E402
import _cluster  # noqa: E402
import _execute  # noqa: E402
import _limits  # noqa: E402
import _report  # noqa: E402
from _report import MPHOST, STOCK  # noqa: E402


def log(msg):
    print(msg, flush=True)


def parse_args(argv):
    p = argparse.ArgumentParser(
        description="Benchmark plain multiprocessing programs under stock python3 and mphost.",
        epilog="ratio > 1 means mphost is better (mphost/stock for throughputs, "
               "stock/mphost for times and sizes)")
    p.add_argument("--quick", action="store_true",
                   help="every scenario once with tiny sizes: checks that each works and is "
                        "right (CI); writes no docs")
    p.add_argument("--only", metavar="REGEX",
                   help="run only the rows whose id matches this regular expression; "
                        "docs are then not rewritten")
    p.add_argument("--runs", type=int, default=None,
                   help="runs per scenario and interpreter (default 5, quick 1)")
    p.add_argument("--mphost", default=str(REPO / "build" / "bin" / "mphost"),
                   help="path of the mphost launcher (default: build/bin/mphost of the repository)")
    p.add_argument("--limits", default=str(REPO / "build" / "bin" / "mphost_bench_limits"),
                   help="path of the limits program (compiled on the fly when missing)")
    p.add_argument("--no-report", action="store_true",
                   help="do not write docs/PERFORMANCE.md and the figures")
    p.add_argument("--no-scaling", action="store_true",
                   help="skip the 'how the cost grows' measurements")
    p.add_argument("--scaling-runs", type=int, default=3,
                   help="runs per point of the scaling curves (default 3)")
    p.add_argument("--timeout", type=float, default=None,
                   help="seconds before one scenario run is killed as a hang "
                        "(default 180, quick 60)")
    p.add_argument("--strict", action="store_true",
                   help="also fail when mphost cannot run a scenario")
    p.add_argument("--list", action="store_true", help="list the rows and exit")
    p.add_argument("--report-from", metavar="JSON",
                   help="rewrite the docs from a results file instead of running")
    args = p.parse_args(argv)
    if args.runs is None:
        args.runs = 1 if args.quick else 5
    if args.runs < 1:
        p.error("--runs must be at least 1")
    if args.timeout is None:
        args.timeout = 60.0 if args.quick else 180.0
    return args


class Bench:
    def __init__(self, args):
        self.args = args
        self.mphost = args.mphost
        self.mphost_missing = None
        if not (os.path.isfile(self.mphost) and os.access(self.mphost, os.X_OK)):
            self.mphost_missing = (f"mphost launcher not found at {self.mphost} "
                                   "(build it: cmake -S . -B build && cmake --build build -j2)")

    def run_one(self, which, script, scenario_args):
        interp = STOCK_PYTHON if which == STOCK else self.mphost
        if which == MPHOST and self.mphost_missing:
            return _execute.Outcome("unsupported", message=self.mphost_missing)
        args = list(scenario_args) + (["--quick"] if self.args.quick else [])
        return _execute.run(interp, SCENARIOS / script, args, self.args.timeout, cwd=str(REPO))

    def pair(self, script, scenario_args, run_index, skip):
        """Run both interpreters back to back, alternating which goes first."""
        order = (STOCK, MPHOST) if run_index % 2 == 0 else (MPHOST, STOCK)
        got = {}
        for which in order:
            if which in skip:
                continue
            got[which] = self.run_one(which, script, scenario_args)
        return got

    # ---- the table rows ----------------------------------------------------

    def rows(self, rows):
        outcomes = {r.id: {STOCK: [], MPHOST: []} for r in rows}
        failed = {r.id: set() for r in rows}  # interpreters not rerun after a failure
        for run_index in range(self.args.runs):
            load = os.getloadavg()[0]
            log(f"-- run {run_index + 1}/{self.args.runs} (load average {load:.1f}"
                + (", high: figures are noisy)" if load > 2 * (os.cpu_count() or 1) else ")"))
            for row in rows:
                if row.runs is not None and run_index >= row.runs:
                    continue
                got = self.pair(row.script, row.args, run_index, failed[row.id])
                for which, outcome in got.items():
                    outcomes[row.id][which].append(outcome)
                    if outcome.status != "ok":
                        failed[row.id].add(which)
                log(f"   {row.id:<22} " + "   ".join(
                    f"{which}: {_describe(got[which])}" for which in (STOCK, MPHOST) if which in got))
        return outcomes

    # ---- scaling curves ------------------------------------------------------

    def curve(self, points):
        """points: list of (key dict, script, args); returns list of dicts."""
        runs = self.args.scaling_runs
        out = []
        for key, script, scenario_args in points:
            got = {STOCK: [], MPHOST: []}
            failed = set()
            for run_index in range(runs):
                for which, outcome in self.pair(script, scenario_args, run_index, failed).items():
                    got[which].append(outcome)
                    if outcome.status != "ok":
                        failed.add(which)
            point = dict(key)
            for which in (STOCK, MPHOST):
                point[which] = _report.summarize(got[which])
            log(f"   {json.dumps(key):<44} stock {_report.fmt(point[STOCK]['median'])}   "
                f"mphost {_report.fmt(point[MPHOST]['median']) if point[MPHOST]['status'] == 'ok' else point[MPHOST]['status']}")
            out.append(point)
        return out

    def scaling(self):
        log("-- how the cost grows: Pool.map time against task count")
        pool_points = []
        for tasks in (1000, 3000, 10000, 30000, 100000, 300000, 1000000):
            pool_points.append(({"tasks": tasks, "chunksize": "default"}, "bench_pool_map.py",
                                ("--tasks", str(tasks), "--chunksize", "default")))
        for tasks in (1000, 3000, 10000, 30000, 100000):
            pool_points.append(({"tasks": tasks, "chunksize": "1"}, "bench_pool_map.py",
                                ("--tasks", str(tasks), "--chunksize", "1")))
        pool = self.curve(pool_points)
        for pt in pool:  # the curve plots seconds, the scenario reports tasks/s
            for which in (STOCK, MPHOST):
                s = pt[which]
                for k in ("median", "min", "max"):
                    if s[k]:
                        s[k] = pt["tasks"] / s[k]
                s["min"], s["max"] = s["max"], s["min"]
                s["values"] = [pt["tasks"] / v for v in s["values"]]
                s["unit"] = "s"
        log("-- how the cost grows: Queue 1->1 throughput against message size")
        queue_points = []
        size = 64
        while size <= 64 << 20:
            messages = max(4, min(50000, (64 << 20) // size))
            queue_points.append(({"size": size, "messages": messages}, "bench_queue_bytes.py",
                                 ("--size", str(size), "--messages", str(messages))))
            size *= 4
        queue = self.curve(queue_points)
        log("-- how the cost grows: Queue N->1 throughput against the number of producers")
        producer_points = [({"producers": n}, "bench_queue.py",
                            ("--producers", str(n), "--consumers", "1", "--messages", "96000"))
                           for n in (1, 2, 4, 8, 16, 32)]
        producers = self.curve(producer_points)
        log("-- how the cost grows: process start+join against the parent's resident size")
        rss_points = [({"method": method, "mb": mb}, "bench_process_start.py",
                       ("--method", method, "--ballast-mb", str(mb), "--count", "10"))
                      for method in ("fork", "forkserver") for mb in (10, 100, 500, 2000)]
        start_rss = self.curve(rss_points)
        runs = self.args.scaling_runs
        return {"pool_map": {"runs": runs, "unit": "s", "points": pool},
                "queue_size": {"runs": runs, "unit": "MB/s", "points": queue},
                "queue_producers": {"runs": runs, "unit": "msgs/s", "points": producers},
                "start_rss": {"runs": runs, "unit": "ms", "points": start_rss}}


def _describe(outcome):
    if outcome.status == "ok":
        unit = (outcome.record or {}).get("unit", "")
        return f"{_report.fmt(outcome.value)} {unit}".rstrip()
    return f"{outcome.status.upper()} {outcome.message}"[:120]


def write_docs(data):
    import _plots
    DOCS.mkdir(exist_ok=True)
    (DOCS / "PERFORMANCE.md").write_text(_report.markdown(data))
    _plots.ratio_chart(data, DOCS / "performance.png")
    if data.get("scaling"):
        _plots.scaling_chart(data["scaling"], data, DOCS / "performance_scaling.png")
    log(f"wrote {DOCS / 'PERFORMANCE.md'}, {DOCS / 'performance.png'}"
        + (f", {DOCS / 'performance_scaling.png'}" if data.get("scaling") else ""))


def verdict(data, strict):
    """Exit status and the lines explaining it."""
    problems = []
    for r in data["rows"]:
        if r[STOCK]["status"] != "ok":
            problems.append(f"{r['id']}: stock python3 {r[STOCK]['status']}: {r[STOCK]['message']}")
        if r[MPHOST]["status"] == "wrong":
            problems.append(f"{r['id']}: mphost WRONG RESULT: {r[MPHOST]['message']}")
        elif strict and r[MPHOST]["status"] != "ok":
            problems.append(f"{r['id']}: mphost {r[MPHOST]['status']}: {r[MPHOST]['message']}")
    for curve in (data.get("scaling") or {}).values():
        for pt in curve["points"]:
            for which in (STOCK, MPHOST):
                if pt[which]["status"] == "wrong" or (which == STOCK and pt[which]["status"] != "ok"):
                    key = {k: v for k, v in pt.items() if k not in (STOCK, MPHOST)}
                    problems.append(f"scaling {key}: {which} {pt[which]['status']}: "
                                    f"{pt[which]['message']}")
    return (1 if problems else 0), problems


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.list:
        for r in _catalog.ROWS:
            print(f"{r.id:<22} {r.script} {' '.join(r.args)}")
        return 0
    if args.report_from:
        data = json.loads(Path(args.report_from).read_text())
        write_docs(data)
        return 0

    rows = _catalog.select(args.only)
    if any(_cluster.is_cluster(r) for r in rows):
        why = _cluster.skip_reason(args.mphost, args.quick)
        if why:
            log(f"NOTE: the MPI cluster rows are skipped: {why}")
            rows = [r for r in rows if not _cluster.is_cluster(r)]
            if not rows:
                return 0
    if not rows:
        log(f"no row matches --only {args.only!r} (try --list)")
        return 2
    bench = Bench(args)
    started, t0 = _report.now_iso(), time.monotonic()
    machine = _report.machine(REPO, STOCK_PYTHON, args.mphost)
    mode = "quick" if args.quick else "full"
    log(f"mphost benchmark, {mode} mode, {args.runs} run(s); stock {STOCK_PYTHON}, "
        f"mphost {args.mphost}")
    if bench.mphost_missing:
        log(f"NOTE: {bench.mphost_missing}; its column will read 'not supported yet'")
    if machine["mphost_is_stock"]:
        log("NOTE: --mphost is stock python3: both columns run the same interpreter")

    log("-- limits of this machine")
    limits = _limits.measure(args.limits, RESULTS, STOCK_PYTHON, args.quick, log)
    for key, entry in limits.items():
        if isinstance(entry, dict):
            log(f"   {key:<32} {_report.fmt(entry['value'])} {entry['unit']}")

    outcomes = bench.rows(rows)
    results = [_report.row_result(r, outcomes[r.id][STOCK], outcomes[r.id][MPHOST], limits)
               for r in rows]
    full = not args.quick and not args.only
    scaling = bench.scaling() if full and not args.no_scaling else None

    machine["loadavg_end"] = os.getloadavg()
    data = {
        "schema": 1, "mode": mode, "runs": args.runs, "started": started,
        "duration_s": round(time.monotonic() - t0, 1),
        "command": ["/usr/bin/python3", "tools/bench/run_bench.py"] + (sys.argv[1:] if argv is None else argv),
        "machine": machine, "limits": limits, "rows": results, "scaling": scaling,
        "convention": "ratio > 1: mphost better; throughputs mphost/stock, times and sizes stock/mphost",
    }
    print()
    print(_report.console_table(results))
    path = _report.write_json(data, RESULTS)
    log(f"results: {path}")
    if full and not args.no_report:
        write_docs(data)
    status, problems = verdict(data, args.strict)
    pending = [r for r in results if r[MPHOST]["status"] not in ("ok", "wrong")]
    if pending:
        log(f"mphost: {len(pending)} scenario(s) not supported yet:")
        for r in pending:
            log(f"   {r['id']}: {r[MPHOST]['status']}: {r[MPHOST]['message']}")
    for line in problems:
        log(f"FAIL {line}")
    log(f"done in {data['duration_s']:.0f} s; " + ("FAILED" if status else "OK"))
    return status


if __name__ == "__main__":
    sys.exit(main())
