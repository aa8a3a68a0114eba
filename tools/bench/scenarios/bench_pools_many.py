"""Many pools at once, more processes than cores: total tasks/s.

``--pools`` driver processes (8 by default) each own a ``Pool(--workers)``
(2 by default) and run ``pool.map(double, range(n), chunksize=1)`` of tiny
tasks at the same time, so that 8 drivers + 16 workers share the machine's
cores. Timed section: from the release of the drivers (one Event, after every
pool has answered a warm-up map) until the last driver has its results (each
driver stamps its end with time.perf_counter, the same clock in every
process). The result is the total number of tasks over that time.

Check: every driver gets exactly [2*x for x in range(n)] back, in order.
"""

import multiprocessing
import sys

import _benchlib as bl


def double(x):
    return 2 * x


def _driver(index, workers, n, start, results, method, timeout):
    ctx = multiprocessing.get_context(method)
    with ctx.Pool(workers) as pool:
        warm = pool.map(double, range(50), 1)
        results.put(("warm", index, warm == [2 * x for x in range(50)]))
        if not start.wait(timeout):
            sys.exit(5)
        out = pool.map(double, range(n), 1)
        end = bl.now()
        ok = out == [2 * x for x in range(n)]
    results.put(("done", index, ok, end))


def main():
    p = bl.parser(__doc__.splitlines()[0])
    p.add_argument("--pools", type=int, default=8)
    p.add_argument("--workers", type=int, default=2, help="workers per pool (default 2)")
    p.add_argument("--tasks", type=int, default=None,
                   help="tasks per pool (default 5000, quick 200)")
    p.add_argument("--method", default="fork")
    args = p.parse_args()
    n = args.tasks or (200 if args.quick else 5000)

    ctx = multiprocessing.get_context(args.method)
    start, results = ctx.Event(), ctx.Queue()
    drivers = [ctx.Process(target=bl.child_entry, name=f"driver-{i}",
                           args=(_driver, i, args.workers, n, start, results, args.method,
                                 args.timeout))
               for i in range(args.pools)]
    try:
        for d in drivers:
            d.start()
        for _ in drivers:
            tag, index, ok = bl.get(results, drivers, args.timeout, "a pool did not warm up")
            bl.check(ok, f"pool {index}: warm-up map returned a wrong list")
        bl.cpu_begin()
        t0 = bl.now()
        start.set()
        done = [bl.get(results, drivers, args.timeout, "a pool did not finish") for _ in drivers]
        bl.cpu_end()
        bl.join_all(drivers, args.timeout)
    except BaseException:
        bl.kill_all(drivers)
        raise
    for tag, index, ok, _ in done:
        bl.check(ok, f"pool {index}: map returned wrong or misplaced values")
    elapsed = max(d[3] for d in done) - t0
    total = n * args.pools
    bl.emit("tasks_per_s", total / elapsed, "tasks/s", True, tasks=total, pools=args.pools,
            workers=args.workers, seconds=elapsed, method=args.method, cpu_items=total)


if __name__ == "__main__":
    bl.run(main)
