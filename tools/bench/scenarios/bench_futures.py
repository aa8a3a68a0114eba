"""concurrent.futures.ProcessPoolExecutor: map and submit, tasks per second.

An executor with one worker per core runs ``x -> 2 * x`` over range(n):
either ``list(executor.map(f, range(n)))`` (default chunksize 1) or n
``submit`` calls followed by ``result()`` on each future. The executor is
warmed up first; the timed section covers submitting and collecting.

With ``--executor mphost`` the program uses ``mphost.ProcessPoolExecutor``
where ``import mphost`` works (under mphost) and the stdlib's executor
elsewhere: the row compares mphost's executor with stock's own.

Check: results are exactly 2 * x, in order.
"""

import concurrent.futures
import multiprocessing

import _benchlib as bl


def double(x):
    return 2 * x


def main():
    p = bl.parser(__doc__.splitlines()[0])
    p.add_argument("--tasks", type=int, default=None, help="default 20000, quick 300")
    p.add_argument("--mode", choices=("map", "submit"), default="map")
    p.add_argument("--method", default="fork")
    p.add_argument("--executor", choices=("stdlib", "mphost"), default="stdlib")
    args = p.parse_args()
    n = args.tasks or (300 if args.quick else 20000)

    ctx = multiprocessing.get_context(args.method)
    executor, used = concurrent.futures.ProcessPoolExecutor, "stdlib"
    if args.executor == "mphost":
        try:
            import mphost
            executor, used = mphost.ProcessPoolExecutor, "mphost"
        except ImportError:
            pass
    with executor(bl.cpu_count(), mp_context=ctx) as ex:
        warm = list(ex.map(double, range(100), timeout=args.timeout))
        bl.check(warm == [2 * x for x in range(100)], "warm-up returned wrong values")
        bl.cpu_begin()
        t0 = bl.now()
        if args.mode == "map":
            out = list(ex.map(double, range(n), timeout=args.timeout))
        else:
            futures = [ex.submit(double, x) for x in range(n)]
            out = [f.result(args.timeout) for f in futures]
        elapsed = bl.now() - t0
        bl.cpu_end()
    bl.check(out == [2 * x for x in range(n)], "wrong, missing or misordered results")
    bl.emit("tasks_per_s", n / elapsed, "tasks/s", True, tasks=n, mode=args.mode,
            seconds=elapsed, method=args.method, cpu_items=n, executor=used)


if __name__ == "__main__":
    bl.run(main)
