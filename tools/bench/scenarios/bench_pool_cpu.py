"""CPU-bound Pool work: speedup on all cores over a serial loop.

The same list of pure-Python CPU-bound tasks (4 per core) is run once in a
plain loop in the parent and once with Pool.map(chunksize=1) on a Pool with
one worker per core. The result is serial time / pool time.

Check: both runs return the same list, equal to an independently computed
closed form for the first task.
"""

import multiprocessing

import _benchlib as bl


def burn(n):
    acc = 0
    for i in range(n):
        acc = (acc + i * i) % 1000003
    return acc


def main():
    p = bl.parser(__doc__.splitlines()[0])
    p.add_argument("--work", type=int, default=None,
                   help="loop iterations per task (default 4000000, quick 40000)")
    p.add_argument("--method", default="fork")
    args = p.parse_args()
    work = args.work or (40000 if args.quick else 4000000)
    cores = bl.cpu_count()
    tasks = [work + i for i in range(4 * cores)]

    ctx = multiprocessing.get_context(args.method)
    pool = ctx.Pool(cores)
    try:
        pool.map_async(burn, [1000] * cores, 1).get(args.timeout)
        burn(1000)
        t0 = bl.now()
        serial = [burn(n) for n in tasks]
        t_serial = bl.now() - t0
        t0 = bl.now()
        parallel = pool.map(burn, tasks, 1)
        t_pool = bl.now() - t0
        pool.close()
        pool.join()
    except BaseException:
        pool.terminate()
        raise
    n = tasks[0]
    closed_form = ((n - 1) * n * (2 * n - 1) // 6) % 1000003
    bl.check(serial[0] == closed_form, "serial run computed a wrong value")
    bl.check(parallel == serial, "pool results differ from the serial ones")
    bl.emit("speedup", t_serial / t_pool, "x", True, cores=cores, tasks=len(tasks),
            serial_s=t_serial, pool_s=t_pool, method=args.method)


if __name__ == "__main__":
    bl.run(main)
