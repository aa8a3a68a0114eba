"""The program the cluster rows run on MPI ranks (launched by bench_cluster.py).

One program, three sides, the same work and the same checks:

    --side mpi4py   under ``mpiexec -n R python3 -m mpi4py.futures _cluster_prog.py``:
                    ``mpi4py.futures.MPIPoolExecutor()`` (R - 1 worker ranks)
    --side cluster  under ``mpiexec -n R mphost --cluster=mpi _cluster_prog.py``:
                    plain ``multiprocessing.Pool()`` and
                    ``concurrent.futures.ProcessPoolExecutor()``, whose workers
                    mphost puts on the ranks
    --side local    under ``mphost _cluster_prog.py`` on one machine: the same
                    Pool / executor with --workers local worker processes

Work (--what):
    map      ``map(double, range(n))`` of a tiny task; Pool.map with its default
             chunksize (or --chunksize), MPIPoolExecutor.map with --chunksize
             (its own default is 1)
    submit   n ``submit(double, x)`` then ``result()`` on each future
    numpy    ``map(scale, arrays, chunksize=1)``: argument and result are 1 MiB
             float64 arrays; MB/s counts both directions (2 MiB per task)
    cpu      ``map(spin, ..., chunksize=1)`` of a pure-Python loop of ~50 ms per task

The executor or pool is warmed up (every worker has run a task) before the
clock starts. Checks: tiny results exactly 2 * x in order; numpy results
element values at both ends and the shape; spin results against their closed
form. Prints one JSON line (rank 0 only) with the figures, the CPU seconds
of every process of the launch (``cpu_s``: the driver starts each launch in
its own session and sets BENCH_CPU_SESSION=1; ranks keep that session) and
rank 0's own (``rank0_cpu_s``, all its threads: the dispatcher's cost).
"""

import concurrent.futures
import math
import multiprocessing
import os
import sys
import time

import _benchlib as bl

ARRAY_ITEMS = (1 << 20) // 8          # 1 MiB of float64
SPIN_MOD = 1000003


def double(x):
    return 2 * x


def scale(a):
    return a * 2.0 + 1.0


def spin(n):
    acc = 0
    for i in range(n):
        acc = (acc + i * i) % SPIN_MOD
    return acc


def spin_expected(n):
    return ((n - 1) * n * (2 * n - 1) // 6) % SPIN_MOD


def session_cpu():
    """(CPU seconds of every process in this process's session, count);
    falls back to _benchlib's own tree when the driver did not ask for it."""
    if os.environ.get("BENCH_CPU_SESSION") != "1":
        return bl.tree_cpu()
    sid = os.getsid(0)
    members = [s for s in bl._proc_stats() if s[2] == sid]
    return sum(s[3] for s in members) / bl._TICK, len(members)


class Clock:
    def __enter__(self):
        self.cpu0, self.procs = session_cpu()
        self.own0 = time.process_time()
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.t0
        self.own_cpu_s = time.process_time() - self.own0   # rank 0 alone, all its threads
        self.cpu1, n = session_cpu()
        self.procs = max(self.procs, n)
        self.cpu_s = self.cpu1 - self.cpu0
        return False


# ---- the three sides: something with map(fn, it, chunksize) and submit ---------

class Side:
    """A pool or executor, opened lazily, with the two calls the work needs."""

    def __init__(self, args, what):
        self.args, self.what = args, what
        self.pool = self.executor = None

    def open(self):
        a = self.args
        if a.side == "mpi4py":
            from mpi4py.futures import MPIPoolExecutor
            self.executor = MPIPoolExecutor()
            self.workers = self.executor._max_workers if hasattr(self.executor, "_max_workers") \
                else None
            return
        local = a.side == "local"
        if self.what == "submit":
            self.executor = (concurrent.futures.ProcessPoolExecutor(a.workers) if local
                             else concurrent.futures.ProcessPoolExecutor())
            self.workers = self.executor._max_workers
        else:
            self.pool = multiprocessing.Pool(a.workers) if local else multiprocessing.Pool()
            self.workers = self.pool._processes

    def map(self, fn, items, chunksize):
        if self.pool is not None:
            if chunksize is None:
                return self.pool.map_async(fn, items).get(self.args.timeout)
            return self.pool.map_async(fn, items, chunksize).get(self.args.timeout)
        kw = {} if chunksize is None else {"chunksize": chunksize}
        return list(self.executor.map(fn, items, timeout=self.args.timeout, **kw))

    def submit_all(self, fn, items):
        ex = self.executor
        futures = [ex.submit(fn, x) for x in items]
        return [f.result(self.args.timeout) for f in futures]

    def close(self):
        if self.pool is not None:
            self.pool.close()
            self.pool.join()
        if self.executor is not None:
            self.executor.shutdown(wait=True)


def pool_default_chunksize(n, workers):
    """What multiprocessing.Pool.map picks when chunksize is not given."""
    chunks, extra = divmod(n, workers * 4)
    return chunks + 1 if extra else max(chunks, 1)


def run_tiny(side, args, n):
    warm = side.map(double, range(200), 1) if args.what == "map" \
        else side.submit_all(double, range(200))
    bl.check(warm == [2 * x for x in range(200)], "warm-up returned wrong values")
    chunksize = None
    if args.what == "map":
        if args.chunksize == "pool":      # Pool.map's own choice, given explicitly
            chunksize = pool_default_chunksize(n, side.workers)
        elif args.chunksize != "default":
            chunksize = int(args.chunksize)
    with Clock() as c:
        if args.what == "map":
            out = side.map(double, range(n), chunksize)
        else:
            out = side.submit_all(double, range(n))
    bl.check(out == [2 * x for x in range(n)], "wrong, missing or misordered results")
    return c, {"tasks": n, "chunksize": chunksize if chunksize is not None else "default",
               "tasks_per_s": n / c.seconds}


def run_numpy(side, args, n):
    import numpy as np
    bases = [np.arange(ARRAY_ITEMS, dtype=np.float64) + j for j in range(4)]
    warm = side.map(scale, bases, 1)
    bl.check(all(float(w[0]) == 2.0 * j + 1.0 for j, w in enumerate(warm)), "warm-up wrong")
    items = [bases[i % 4] for i in range(n)]
    with Clock() as c:
        out = side.map(scale, items, 1)
    bl.check(len(out) == n, f"{len(out)} results for {n} tasks")
    last = ARRAY_ITEMS - 1
    for i, r in enumerate(out):
        j = i % 4
        bl.check(r.shape == (ARRAY_ITEMS,) and r.dtype == np.float64
                 and float(r[0]) == 2.0 * j + 1.0 and float(r[last]) == 2.0 * (last + j) + 1.0,
                 f"result {i} is not 2 * argument + 1")
    moved = n * 2 * ARRAY_ITEMS * 8
    return c, {"tasks": n, "tasks_per_s": n / c.seconds, "mb_per_s": moved / c.seconds / 1e6,
               "payload_bytes": ARRAY_ITEMS * 8}


def run_cpu(side, args, n):
    base = args.spin
    warm = side.map(spin, [1000] * max(side.workers or 1, 1) * 2, 1)
    bl.check(all(w == spin_expected(1000) for w in warm), "warm-up wrong")
    sizes = [base + i for i in range(n)]
    with Clock() as c:
        out = side.map(spin, sizes, 1)
    bl.check(out == [spin_expected(s) for s in sizes], "spin results differ from the closed form")
    return c, {"tasks": n, "spin": base}


def main():
    p = bl.parser(__doc__.splitlines()[0])
    p.add_argument("--side", choices=("mpi4py", "cluster", "local"), required=True)
    p.add_argument("--what", choices=("map", "submit", "numpy", "cpu"), required=True)
    p.add_argument("--tasks", type=int, required=True)
    p.add_argument("--workers", type=int, default=None,
                   help="local side: pool size; other sides: the workers expected on the ranks")
    p.add_argument("--chunksize", default="default",
                   help="map: 'default' (each API's own), 'pool' (Pool.map's choice, explicit) or N")
    p.add_argument("--spin", type=int, default=1_000_000, help="cpu: loop length of a task")
    args = p.parse_args()
    side = Side(args, args.what)
    side.open()
    try:
        if args.workers is not None and side.workers is not None and side.workers != args.workers:
            raise bl.ScenarioError(f"{side.workers} workers where {args.workers} were expected")
        runner = {"map": run_tiny, "submit": run_tiny, "numpy": run_numpy, "cpu": run_cpu}
        clock, figures = runner[args.what](side, args, args.tasks)
    finally:
        side.close()
    value = figures.get("tasks_per_s") or clock.seconds
    bl.emit("tasks_per_s" if args.what != "cpu" else "seconds", value,
            "tasks/s" if args.what != "cpu" else "s", args.what != "cpu",
            cpu_items=args.tasks, cpu_s=clock.cpu_s, cpu_wall_s=clock.seconds,
            cpu_processes=clock.procs, rank0_cpu_s=clock.own_cpu_s, side=args.side, what=args.what,
            workers=side.workers, seconds=clock.seconds, **figures)


if __name__ == "__main__":
    bl.run(main)
