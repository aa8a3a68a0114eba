"""Lock acquire + release, uncontended: pairs per second.

One process acquires and releases a multiprocessing.Lock in a loop (after a
warm-up). The result counts acquire()+release() pairs per second.

Check: after the loop the lock is free (a non-blocking acquire succeeds) and
then held (a second non-blocking acquire fails), as a Lock must behave.
"""

import multiprocessing

import _benchlib as bl


def main():
    p = bl.parser(__doc__.splitlines()[0])
    p.add_argument("--ops", type=int, default=None, help="default 10000000, quick 20000")
    p.add_argument("--method", default="fork")
    args = p.parse_args()
    n = args.ops or (20000 if args.quick else 10000000)

    ctx = multiprocessing.get_context(args.method)
    lock = ctx.Lock()
    acquire, release = lock.acquire, lock.release
    for _ in range(1000):
        acquire()
        release()
    bl.cpu_begin()
    t0 = bl.now()
    for _ in range(n):
        acquire()
        release()
    elapsed = bl.now() - t0
    bl.cpu_end()
    bl.check(lock.acquire(False), "lock is not free after the loop")
    bl.check(not lock.acquire(False), "a held Lock was acquired a second time")
    lock.release()
    bl.emit("ops_per_s", n / elapsed, "pairs/s", True, ops=n, method=args.method, cpu_items=n)


if __name__ == "__main__":
    bl.run(main)
