"""What waiting costs: CPU of every process while a program waits, in % of one core.

``--what pool``: a Pool(2) that has done one map sits waiting for work.
``--what queue``: a child blocks in get() on an empty Queue.
Measured section: ``--seconds`` of waiting (default 10, quick 1), starting
once the pool's workers answered a map, or once the consumer has announced
that it is about to block (plus 0.2 s so that it is blocked). The CPU is that
of all the scenario's processes (parent, workers, consumer, helper threads
and processes), read from /proc before and after (see _benchlib.tree_cpu).

Check: after the wait the pool still maps correctly; the consumer receives
the one item sent after the wait and answers with it.
"""

import multiprocessing
import time

import _benchlib as bl


def double(x):
    return 2 * x


def _consumer(q, answers):
    answers.put("blocking")
    item = q.get()
    answers.put(("got", item))


def _idle_pool(ctx, seconds, timeout):
    with ctx.Pool(2) as pool:
        bl.check(pool.map_async(double, range(100)).get(timeout) == [2 * x for x in range(100)],
                 "warm-up map returned a wrong list")
        time.sleep(0.2)
        bl.cpu_begin()
        time.sleep(seconds)
        bl.cpu_end()
        bl.check(pool.map_async(double, range(100)).get(timeout) == [2 * x for x in range(100)],
                 "map after the wait returned a wrong list")


def _idle_queue(ctx, seconds, timeout):
    q, answers = ctx.Queue(), ctx.Queue()
    child = ctx.Process(target=bl.child_entry, name="consumer", args=(_consumer, q, answers))
    try:
        child.start()
        bl.check(bl.get(answers, [child], timeout, "consumer did not start") == "blocking",
                 "consumer sent an unexpected greeting")
        time.sleep(0.2)
        bl.cpu_begin()
        time.sleep(seconds)
        bl.cpu_end()
        q.put("wake")
        got = bl.get(answers, [child], timeout, "consumer did not wake up")
        bl.join_all([child], timeout)
    except BaseException:
        bl.kill_all([child])
        raise
    bl.check(got == ("got", "wake"), f"consumer answered {got!r}")


def main():
    p = bl.parser(__doc__.splitlines()[0])
    p.add_argument("--what", choices=("pool", "queue"), default="pool")
    p.add_argument("--seconds", type=float, default=None, help="default 10, quick 1")
    p.add_argument("--method", default="fork")
    args = p.parse_args()
    seconds = args.seconds or (1.0 if args.quick else 10.0)
    ctx = multiprocessing.get_context(args.method)
    (_idle_pool if args.what == "pool" else _idle_queue)(ctx, seconds, args.timeout)
    cpu = bl._CPU["end"] - bl._CPU["begin"]
    wall = bl._CPU["end_wall"] - bl._CPU["begin_wall"]
    bl.emit("cpu_percent", 100.0 * cpu / wall, "% of a core", False, what=args.what,
            seconds=wall, cpu_s=cpu, processes=bl._CPU["processes"], method=args.method)


if __name__ == "__main__":
    bl.run(main)
