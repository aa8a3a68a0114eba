"""Pool.map of a trivial function: tasks per second.

A Pool with one worker per core maps ``x -> 2 * x`` over range(n) with the
given chunksize (1, 10 or the default one Pool computes). The pool is
created and warmed up first; the timed section is the one Pool.map call.

Check: the result list is exactly [2 * x for x in range(n)].
"""

import multiprocessing

import _benchlib as bl


def double(x):
    return 2 * x


def main():
    p = bl.parser(__doc__.splitlines()[0])
    p.add_argument("--tasks", type=int, default=None, help="default 200000, quick 2000")
    p.add_argument("--chunksize", default="default", help="an integer or 'default'")
    p.add_argument("--method", default="fork")
    args = p.parse_args()
    n = args.tasks or (2000 if args.quick else 200000)
    chunksize = None if args.chunksize == "default" else int(args.chunksize)

    ctx = multiprocessing.get_context(args.method)
    pool = ctx.Pool(bl.cpu_count())
    try:
        warm = pool.map_async(double, range(200)).get(args.timeout)
        bl.check(warm == [2 * x for x in range(200)], "warm-up map returned a wrong list")
        bl.cpu_begin()
        t0 = bl.now()
        out = pool.map(double, range(n), chunksize)
        elapsed = bl.now() - t0
        bl.cpu_end()
        pool.close()
        pool.join()
    except BaseException:
        pool.terminate()
        raise
    bl.check(len(out) == n, f"{len(out)} results for {n} tasks")
    bl.check(out == [2 * x for x in range(n)], "map returned wrong or misplaced values")
    bl.emit("tasks_per_s", n / elapsed, "tasks/s", True, tasks=n,
            chunksize=args.chunksize, seconds=elapsed, method=args.method, cpu_items=n)


if __name__ == "__main__":
    bl.run(main)
