"""Barrier(2) wait cycles between two processes: cycles per second.

The parent and one child pass the same multiprocessing.Barrier(2) n times
each. Timed section: from the first timed wait of the parent (after a
warm-up of the same cycles) until both have passed the last one (each
stamps its end with time.perf_counter, the same monotonic clock in every
process).

Check: in every cycle exactly one of the two got index 0 (the indices of
both sides add up to the number of cycles), and the barrier is not broken.
"""

import multiprocessing
import sys
import threading

import _benchlib as bl


def _cycles(barrier, rounds, timeout):
    total = 0
    for _ in range(rounds):
        total += barrier.wait(timeout)
    return total


def _party(barrier, report, warmup, n, timeout):
    try:
        _cycles(barrier, warmup, timeout)
        total = _cycles(barrier, n, timeout)
    except threading.BrokenBarrierError:
        sys.exit(5)
    report[0], report[1] = total, bl.now()


def main():
    p = bl.parser(__doc__.splitlines()[0])
    p.add_argument("--ops", type=int, default=None, help="cycles (default 20000, quick 300)")
    p.add_argument("--method", default="fork")
    args = p.parse_args()
    n = args.ops or (300 if args.quick else 20000)
    warmup = 200

    ctx = multiprocessing.get_context(args.method)
    barrier = ctx.Barrier(2)
    report = ctx.Array("d", 2, lock=False)
    child = ctx.Process(target=bl.child_entry, name="party",
                        args=(_party, barrier, report, warmup, n, args.timeout))
    try:
        child.start()
        _cycles(barrier, warmup, args.timeout)
        bl.cpu_begin()
        t0 = bl.now()
        mine = _cycles(barrier, n, args.timeout)
        end = bl.now()
        bl.cpu_end()
        bl.join_all([child], args.timeout)
    except threading.BrokenBarrierError:
        bl.kill_all([child])
        raise bl.ScenarioError("the barrier broke (a wait timed out or the child died)")
    except BaseException:
        bl.kill_all([child])
        raise
    theirs, child_end = int(report[0]), report[1]
    bl.check(mine + theirs == n, f"indices of both parties add up to {mine + theirs}, expected {n} "
                                 "(one index 0 per cycle)")
    bl.check(not barrier.broken, "the barrier is broken after the last cycle")
    elapsed = max(end, child_end) - t0
    bl.emit("ops_per_s", n / elapsed, "cycles/s", True, ops=n, seconds=elapsed, method=args.method,
            cpu_items=n)


if __name__ == "__main__":
    bl.run(main)
