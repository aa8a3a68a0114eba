"""Event set/wait round trip between two processes: round trips per second.

Two processes ping-pong through two multiprocessing.Events: the parent sets
`ping` and waits for `pong`; the child waits for `ping`, clears it and sets
`pong`; the parent clears `pong` and goes again. One round trip is one set,
wait and clear on each side. Timed section: the parent's loop, after a
warm-up of the same exchange.

Check: every wait returned True (none timed out), the child answered
exactly as many rounds as the parent asked for, and both events end clear.
"""

import multiprocessing
import sys

import _benchlib as bl


def _answer(ping, pong, answered, rounds, timeout):
    for _ in range(rounds):
        if not ping.wait(timeout):
            sys.exit(5)
        ping.clear()
        pong.set()
    answered.value = rounds


def _exchange(ping, pong, rounds, timeout):
    for _ in range(rounds):
        ping.set()
        if not pong.wait(timeout):
            raise bl.ScenarioError("pong.wait() timed out: the child stopped answering")
        pong.clear()


def main():
    p = bl.parser(__doc__.splitlines()[0])
    p.add_argument("--ops", type=int, default=None, help="round trips (default 20000, quick 300)")
    p.add_argument("--method", default="fork")
    args = p.parse_args()
    n = args.ops or (300 if args.quick else 20000)
    warmup = 200

    ctx = multiprocessing.get_context(args.method)
    ping, pong = ctx.Event(), ctx.Event()
    answered = ctx.Value("q", -1, lock=False)
    child = ctx.Process(target=bl.child_entry, name="answerer",
                        args=(_answer, ping, pong, answered, warmup + n, args.timeout))
    try:
        child.start()
        _exchange(ping, pong, warmup, args.timeout)
        bl.cpu_begin()
        t0 = bl.now()
        _exchange(ping, pong, n, args.timeout)
        elapsed = bl.now() - t0
        bl.cpu_end()
        bl.join_all([child], args.timeout)
    except BaseException:
        bl.kill_all([child])
        raise
    bl.check(answered.value == warmup + n, f"the child answered {answered.value} rounds, expected {warmup + n}")
    bl.check(not ping.is_set() and not pong.is_set(), "an event is still set after the last round")
    bl.emit("ops_per_s", n / elapsed, "round trips/s", True, ops=n, seconds=elapsed, method=args.method,
            cpu_items=n)


if __name__ == "__main__":
    bl.run(main)
