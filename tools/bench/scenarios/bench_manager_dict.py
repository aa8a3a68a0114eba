"""Manager dict: one set + one get round trip, median microseconds.

A SyncManager is started (not timed); the parent then does ``d[key] = i``
followed by ``d[key]`` on a managed dict, timing each set+get pair with
time.perf_counter after a warm-up. The result is the median pair.

Check: every get returns the value just set, and at the end the dict holds
exactly the expected keys and values.
"""

import multiprocessing

import _benchlib as bl


def main():
    p = bl.parser(__doc__.splitlines()[0])
    p.add_argument("--pairs", type=int, default=None, help="default 20000, quick 200")
    p.add_argument("--method", default="fork")
    args = p.parse_args()
    n = args.pairs or (200 if args.quick else 20000)
    keys = [f"key-{k}" for k in range(64)]

    ctx = multiprocessing.get_context(args.method)
    with ctx.Manager() as manager:
        d = manager.dict()
        for i in range(100):
            d[keys[i % 64]] = i
            bl.check(d[keys[i % 64]] == i, "warm-up get returned a wrong value")
        times, wrong, clock = [], None, bl.now
        bl.cpu_begin()
        for i in range(n):
            key = keys[i % 64]
            t0 = clock()
            d[key] = i
            got = d[key]
            times.append(clock() - t0)
            if got != i and wrong is None:
                wrong = f"pair {i}: set {i}, got {got!r}"
        bl.cpu_end()
        final = d.copy()
    bl.check(wrong is None, wrong)
    expected = {}
    for i in range(100):
        expected[keys[i % 64]] = i
    for i in range(n):
        expected[keys[i % 64]] = i
    bl.check(final == expected, "the managed dict does not hold the last values set")
    bl.emit("roundtrip_us", bl.median(times) * 1e6, "µs", False, pairs=n,
            min_us=min(times) * 1e6, method=args.method, cpu_items=n)


if __name__ == "__main__":
    bl.run(main)
