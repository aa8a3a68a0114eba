"""Pool(8) spawn workers created, one trivial map, closed and joined: ms per pool.

What a user of the spawn start method waits for each time a program (or a
library) makes a pool: eight fresh workers started, one small map over
them, then close() and join(). One pool is made and closed first as a
warm-up, untimed (as the first Process of the process-start rows); the timed
section is the whole life of each of the following pools, made one after
another; the result is its mean per pool.

Check: each map returns exactly [x * x for x in range(64)], at least one
worker of each pool did some of the work, and every worker of each pool has
ended with exit code 0 after join().
"""

import multiprocessing
import os

import _benchlib as bl

WORKERS = 8
ITEMS = 64


def square_with_pid(x):
    return x * x, os.getpid()


def one_pool(ctx, timeout):
    pool = ctx.Pool(WORKERS)
    try:
        pairs = pool.map_async(square_with_pid, range(ITEMS)).get(timeout)
        workers = list(pool._pool)
        pool.close()
        pool.join()
    except BaseException:
        pool.terminate()
        raise
    return pairs, workers


def check_pool(pairs, workers):
    bl.check([value for value, _ in pairs] == [x * x for x in range(ITEMS)],
             "map returned wrong or misplaced values")
    bl.check(len(workers) == WORKERS, f"{len(workers)} workers, expected {WORKERS}")
    pids = {worker.pid for worker in workers}
    bl.check({pid for _, pid in pairs} <= pids, "a result came from a process outside the pool")
    codes = [worker.exitcode for worker in workers]
    bl.check(all(code == 0 for code in codes), f"worker exit codes after join: {codes}")


def main():
    p = bl.parser(__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=None, help="pools timed (default 5, quick 1)")
    p.add_argument("--method", default="spawn", choices=("spawn", "forkserver", "fork"))
    args = p.parse_args()
    rounds = args.rounds or (1 if args.quick else 5)

    ctx = multiprocessing.get_context(args.method)
    check_pool(*one_pool(ctx, args.timeout))
    results = []
    t0 = bl.now()
    for _ in range(rounds):
        results.append(one_pool(ctx, args.timeout))
    elapsed = bl.now() - t0
    for pairs, workers in results:
        check_pool(pairs, workers)
    bl.emit("ms_per_pool", elapsed / rounds * 1e3, "ms", False, pools=rounds,
            workers=WORKERS, method=args.method)


if __name__ == "__main__":
    bl.run(main)
