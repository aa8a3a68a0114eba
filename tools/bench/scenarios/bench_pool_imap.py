"""Pool.imap / Pool.imap_unordered of a trivial function: tasks per second.

A Pool with one worker per core iterates ``x -> 2 * x`` over range(n) with
the default chunksize (1). The pool is created and warmed up first; the
timed section consumes the whole iterator.

Check: imap yields exactly 2 * x for x in order; imap_unordered yields the
same multiset (sorted comparison).
"""

import multiprocessing

import _benchlib as bl


def double(x):
    return 2 * x


def main():
    p = bl.parser(__doc__.splitlines()[0])
    p.add_argument("--tasks", type=int, default=None, help="default 100000, quick 1000")
    p.add_argument("--unordered", action="store_true", help="use imap_unordered")
    p.add_argument("--method", default="fork")
    args = p.parse_args()
    n = args.tasks or (1000 if args.quick else 100000)

    ctx = multiprocessing.get_context(args.method)
    pool = ctx.Pool(bl.cpu_count())
    call = pool.imap_unordered if args.unordered else pool.imap
    try:
        warm = pool.map_async(double, range(200)).get(args.timeout)
        bl.check(warm == [2 * x for x in range(200)], "warm-up map returned a wrong list")
        bl.cpu_begin()
        t0 = bl.now()
        out = list(call(double, range(n)))
        elapsed = bl.now() - t0
        bl.cpu_end()
        pool.close()
        pool.join()
    except BaseException:
        pool.terminate()
        raise
    expected = [2 * x for x in range(n)]
    bl.check(len(out) == n, f"{len(out)} results for {n} tasks")
    if args.unordered:
        bl.check(sorted(out) == expected, "imap_unordered lost or duplicated results")
    else:
        bl.check(out == expected, "imap yielded wrong or misordered values")
    bl.emit("tasks_per_s", n / elapsed, "tasks/s", True, tasks=n,
            unordered=args.unordered, seconds=elapsed, method=args.method, cpu_items=n)


if __name__ == "__main__":
    bl.run(main)
