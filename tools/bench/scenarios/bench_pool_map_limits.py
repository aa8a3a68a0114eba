"""mphost.Pool.map with a task_timeout, chunksize=1: tasks per second.

The cost of mphost.Pool's supervision on the busiest path: a Pool with one
worker per core maps ``x -> 2 * x`` over range(n), chunksize 1. Under
mphost the pool is ``mphost.Pool(task_timeout=60)`` (``--pool timeout``:
every task stamped, watched and spooled, in batches as a plain map's) or ``mphost.Pool()`` (``--pool counters``: only the per-message
counters of insights()); stock python3 has no such pool and runs the stdlib
Pool, so the ratio is against stock, as every row's. Compare with the
pool_map_c1 row (plain multiprocessing.Pool under mphost).

Check: the result list is exactly [2 * x for x in range(n)].
"""

import multiprocessing

import _benchlib as bl


def double(x):
    return 2 * x


def make_pool(ctx, kind):
    try:
        import mphost
    except ImportError:               # stock python3: the stdlib's Pool
        return ctx.Pool(bl.cpu_count())
    if kind == "timeout":
        return mphost.Pool(bl.cpu_count(), context=ctx, task_timeout=60)
    return mphost.Pool(bl.cpu_count(), context=ctx)


def main():
    p = bl.parser(__doc__.splitlines()[0])
    p.add_argument("--tasks", type=int, default=None, help="default 100000, quick 2000")
    p.add_argument("--pool", choices=("timeout", "counters"), default="timeout")
    p.add_argument("--method", default="fork")
    args = p.parse_args()
    n = args.tasks or (2000 if args.quick else 100000)

    ctx = multiprocessing.get_context(args.method)
    pool = make_pool(ctx, args.pool)
    try:
        warm = pool.map_async(double, range(200)).get(args.timeout)
        bl.check(warm == [2 * x for x in range(200)], "warm-up map returned a wrong list")
        bl.cpu_begin()
        t0 = bl.now()
        out = pool.map(double, range(n), 1)
        elapsed = bl.now() - t0
        bl.cpu_end()
        pool.close()
        pool.join()
    except BaseException:
        pool.terminate()
        raise
    bl.check(out == [2 * x for x in range(n)], "map returned wrong or misplaced values")
    bl.emit("tasks_per_s", n / elapsed, "tasks/s", True, tasks=n, chunksize=1,
            seconds=elapsed, method=args.method, pool=args.pool, cpu_items=n)


if __name__ == "__main__":
    bl.run(main)
