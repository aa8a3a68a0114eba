"""Pool.map of a trivial function: tasks per second.

A Pool with one worker per core maps ``x -> 2 * x`` over range(n) with the
given chunksize (1, 10 or the default one Pool computes). The pool is
created and warmed up first; the timed section is the one Pool.map call.

With --progress, under mphost the pool is an mphost.Pool and the timed
call passes progress= a tqdm bar writing to os.devnull (under stock
python3, which has no mphost module, the plain Pool runs: the ratio is
mphost with its progress bar against stock without one). The mphost run
also times plain maps of the same pool just before (the better of two)
and reports it as plain_tasks_per_s, with progress_cost_pct, the share of
that throughput the bar costs.

With --pool counters or --pool timeout, under mphost the pool is an
mphost.Pool (counters: only the per-message counters of insights(), which
every mphost.Pool keeps; timeout: task_timeout=60, so every task is
stamped, watched and its outcome spooled); stock python3 has no mphost
module and runs the plain Pool, so the ratio is against stock's plain Pool,
as every row's. Compare with the plain row of the same chunksize.

Check: the result list is exactly [2 * x for x in range(n)].
"""

import multiprocessing
import os

import _benchlib as bl


def double(x):
    return 2 * x


def main():
    p = bl.parser(__doc__.splitlines()[0])
    p.add_argument("--tasks", type=int, default=None, help="default 200000, quick 2000")
    p.add_argument("--chunksize", default="default", help="an integer or 'default'")
    p.add_argument("--method", default="fork")
    p.add_argument("--progress", action="store_true",
                   help="mphost: mphost.Pool with a tqdm bar to os.devnull")
    p.add_argument("--pool", choices=("plain", "counters", "timeout"), default="plain",
                   help="mphost: the stdlib Pool, mphost.Pool() or mphost.Pool(task_timeout=60)")
    args = p.parse_args()
    n = args.tasks or (2000 if args.quick else 200000)
    chunksize = None if args.chunksize == "default" else int(args.chunksize)

    ctx = multiprocessing.get_context(args.method)
    make_pool, options, extra = _pool_maker(ctx, args), {}, {}
    if args.progress and make_pool is not None:
        from tqdm import tqdm
        sink = open(os.devnull, "w")
        options["progress"] = tqdm(file=sink, mininterval=0.1)
    pool = (make_pool or ctx.Pool)(bl.cpu_count())
    try:
        warm = pool.map_async(double, range(200)).get(args.timeout)
        bl.check(warm == [2 * x for x in range(200)], "warm-up map returned a wrong list")
        if options:
            # The plain map of this pool, timed as the better of two (the
            # first map of a size also settles the pool's batch sizes).
            best = None
            for _ in range(2):
                t0 = bl.now()
                plain = pool.map(double, range(n), chunksize)
                best = min(best or 1e9, bl.now() - t0)
                bl.check(plain == [2 * x for x in range(n)], "plain map returned a wrong list")
                plain = None
            extra["plain_tasks_per_s"] = n / best
        bl.cpu_begin()
        t0 = bl.now()
        out = pool.map(double, range(n), chunksize, **options)
        elapsed = bl.now() - t0
        bl.cpu_end()
        pool.close()
        pool.join()
    except BaseException:
        pool.terminate()
        raise
    bl.check(len(out) == n, f"{len(out)} results for {n} tasks")
    bl.check(out == [2 * x for x in range(n)], "map returned wrong or misplaced values")
    if options:
        bar = options["progress"]
        bl.check((bar.n, bar.total) == (n, n), f"the bar counted {bar.n} of {bar.total}")
        extra["progress_cost_pct"] = 100 * (1 - (n / elapsed) / extra["plain_tasks_per_s"])
    bl.emit("tasks_per_s", n / elapsed, "tasks/s", True, tasks=n,
            chunksize=args.chunksize, seconds=elapsed, method=args.method, pool=args.pool,
            cpu_items=n, **extra)


def _pool_maker(ctx, args):
    """What makes the row's mphost.Pool, or None where the row runs the
    context's plain Pool (a plain row, or stock python3 without mphost)."""
    kind = "counters" if args.progress and args.pool == "plain" else args.pool
    if kind == "plain":
        return None
    try:
        from mphost._pool import Pool
    except ImportError:
        return None
    limits = {"task_timeout": 60} if kind == "timeout" else {}

    def make(processes):
        return Pool(processes, context=ctx, **limits)
    return make


if __name__ == "__main__":
    bl.run(main)
