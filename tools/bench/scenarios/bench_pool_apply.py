"""Pool.apply_async one task at a time: tasks per second.

Each task is submitted with apply_async and waited for with get() before the
next one is submitted, so this measures the full round trip of one task
through the pool. The pool is warmed up first.

Check: every get() returns 2 * x for its own x.
"""

import multiprocessing

import _benchlib as bl


def double(x):
    return 2 * x


def main():
    p = bl.parser(__doc__.splitlines()[0])
    p.add_argument("--tasks", type=int, default=None, help="default 10000, quick 300")
    p.add_argument("--method", default="fork")
    args = p.parse_args()
    n = args.tasks or (300 if args.quick else 10000)

    ctx = multiprocessing.get_context(args.method)
    pool = ctx.Pool(bl.cpu_count())
    try:
        for x in range(50):
            bl.check(pool.apply_async(double, (x,)).get(args.timeout) == 2 * x,
                     "warm-up task returned a wrong value")
        apply, timeout, wrong = pool.apply_async, args.timeout, None
        bl.cpu_begin()
        t0 = bl.now()
        for x in range(n):
            got = apply(double, (x,)).get(timeout)
            if got != 2 * x and wrong is None:
                wrong = f"task {x}: got {got!r}"
        elapsed = bl.now() - t0
        bl.cpu_end()
        pool.close()
        pool.join()
    except BaseException:
        pool.terminate()
        raise
    bl.check(wrong is None, wrong)
    bl.emit("tasks_per_s", n / elapsed, "tasks/s", True, tasks=n,
            seconds=elapsed, method=args.method, cpu_items=n)


if __name__ == "__main__":
    bl.run(main)
