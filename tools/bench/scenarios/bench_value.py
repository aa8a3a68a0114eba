"""Value incremented under its own lock by 2 processes: increments per second.

Two processes each run ``with v.get_lock(): v.value += 1`` n times on one
shared multiprocessing.Value('q'). Timed section: from their release until
the later of the two finishes (each stamps its end with time.perf_counter,
the same monotonic clock in every process).

Check: the final value is exactly 2 * n (no lost update).
"""

import multiprocessing
import sys

import _benchlib as bl


def _worker(value, ends, index, start, ready, n, timeout):
    lock = value.get_lock()
    ready.release()
    if not start.wait(timeout):
        sys.exit(5)
    for _ in range(n):
        with lock:
            value.value += 1
    ends[index] = bl.now()


def main():
    p = bl.parser(__doc__.splitlines()[0])
    p.add_argument("--ops", type=int, default=None,
                   help="increments per process (default 500000, quick 3000)")
    p.add_argument("--method", default="fork")
    args = p.parse_args()
    n = args.ops or (3000 if args.quick else 500000)

    ctx = multiprocessing.get_context(args.method)
    value = ctx.Value("q", 0)
    ends = ctx.Array("d", 2, lock=False)
    start, ready = ctx.Event(), ctx.Semaphore(0)
    procs = [ctx.Process(target=bl.child_entry, name=f"incrementer-{i}",
                         args=(_worker, value, ends, i, start, ready, n, args.timeout))
             for i in range(2)]
    try:
        for proc in procs:
            proc.start()
        for _ in procs:
            bl.acquire(ready, procs, args.timeout, "workers not ready")
        bl.cpu_begin()
        t0 = bl.now()
        start.set()
        bl.join_all(procs, args.timeout)
        bl.cpu_end()
    except BaseException:
        bl.kill_all(procs)
        raise
    final = value.value
    bl.check(final == 2 * n, f"final value {final}, expected {2 * n} (lost updates)")
    elapsed = max(ends) - t0
    bl.emit("ops_per_s", 2 * n / elapsed, "increments/s", True, ops=2 * n,
            seconds=elapsed, method=args.method, cpu_items=2 * n)


if __name__ == "__main__":
    bl.run(main)
