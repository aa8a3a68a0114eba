"""Pipe round trip of a small object between two processes.

The parent sends a small tuple over a duplex Pipe, an echo child sends it
back. Each trip is timed on its own with time.perf_counter in the parent
after a warm-up; the result is the median trip in microseconds.

Check: every echo equals what was sent, in order.
"""

import multiprocessing

import _benchlib as bl


def _echo(conn):
    recv, send = conn.recv, conn.send
    while True:
        item = recv()
        if item is None:
            break
        send(item)


def main():
    p = bl.parser(__doc__.splitlines()[0])
    p.add_argument("--trips", type=int, default=None, help="default 20000, quick 300")
    p.add_argument("--method", default="fork")
    args = p.parse_args()
    trips = args.trips or (300 if args.quick else 20000)
    warm = 50 if args.quick else 500

    ctx = multiprocessing.get_context(args.method)
    mine, theirs = ctx.Pipe()
    child = ctx.Process(target=bl.child_entry, name="echo", args=(_echo, theirs))
    try:
        child.start()
        theirs.close()
        for i in range(warm):
            mine.send(("ping", i, 1.5, b"0123456789abcdef"))
            back = bl.recv(mine, [child], args.timeout, "no echo")
            bl.check(back == ("ping", i, 1.5, b"0123456789abcdef"),
                     f"warm-up trip {i}: got {back!r}")
        send, recv, clock = mine.send, mine.recv, bl.now
        times = []
        bl.cpu_begin()
        wrong = None
        for i in range(trips):
            msg = ("ping", i, 1.5, b"0123456789abcdef")
            t0 = clock()
            send(msg)
            back = recv()
            times.append(clock() - t0)
            if back != msg and wrong is None:
                wrong = f"trip {i}: sent {msg!r}, got back {back!r}"
        bl.cpu_end()
        mine.send(None)
        bl.join_all([child], args.timeout)
    except BaseException:
        bl.kill_all([child])
        raise
    bl.check(wrong is None, wrong)
    bl.emit("roundtrip_us", bl.median(times) * 1e6, "µs", False,
            trips=trips, min_us=min(times) * 1e6, method=args.method,
            cpu_items=trips)


if __name__ == "__main__":
    bl.run(main)
