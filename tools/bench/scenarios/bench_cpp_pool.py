"""Python work from C++: mphost::host_pool against ProcessPoolExecutor.

Stock column: this program drives concurrent.futures.ProcessPoolExecutor
(one worker per core) from Python. mphost column: it starts the C++ driver
built beside the launcher (mphost_bench_cpp_pool, tools/bench/
cpp_pool_driver.cpp), which does the same work through mphost::host_pool
from an application with no Python in it, and relays its result line.

Modes (the workers' callables are in _cpp_pool_work.py):
  roundtrip  median time of one tiny call, double(x), submitted and waited
             for one at a time (µs);
  threads    4 threads each submit calls of double(x) in windows of 64 and
             collect them (calls/s over all threads);
  handoff    one call of ends(array) on a float64 array of --mb MB filled
             beforehand: the hand-off of the array to numpy in a worker
             (median ms over the repetitions; a copy grows with the size,
             a shared array does not).
Check: every result is the expected number.
"""

import concurrent.futures
import os
import subprocess
import sys
import threading
import time

import _benchlib as bl

HERE = os.path.dirname(os.path.abspath(__file__))
UNDER_MPHOST = '_mphost' in sys.builtin_module_names


def sizes(args):
    if args.mode == 'roundtrip':
        return args.calls or (100 if args.quick else 3000)
    if args.mode == 'threads':
        return args.calls or (400 if args.quick else 40000)
    return args.calls or (2 if args.quick else 3 if args.mb >= 1000 else 5)


def stock(args, n):
    import numpy
    sys.path.insert(0, HERE)
    import _cpp_pool_work as work
    with concurrent.futures.ProcessPoolExecutor(bl.cpu_count()) as ex:
        bl.check(ex.submit(work.double, 21).result(args.timeout) == 42, 'warm-up')
        if args.mode == 'roundtrip':
            times = []
            for i in range(n):
                t0 = time.perf_counter()
                r = ex.submit(work.double, i).result(args.timeout)
                times.append(time.perf_counter() - t0)
                bl.check(r == 2 * i, 'wrong result')
            bl.emit('roundtrip_us', bl.median(times) * 1e6, 'µs', False, calls=n)
        elif args.mode == 'threads':
            per = n // 4
            wrong = []

            def submitter(t):
                for start in range(0, per, 64):
                    fs = [ex.submit(work.double, t * per + i) for i in range(start, min(per, start + 64))]
                    for k, f in enumerate(fs):
                        if f.result(args.timeout) != 2 * (t * per + start + k):
                            wrong.append(1)

            threads = [threading.Thread(target=submitter, args=(t,)) for t in range(4)]
            t0 = time.perf_counter()
            for th in threads:
                th.start()
            for th in threads:
                th.join()
            elapsed = time.perf_counter() - t0
            bl.check(not wrong, 'wrong results')
            bl.emit('calls_per_s', 4 * per / elapsed, 'calls/s', True, calls=4 * per, threads=4)
        else:
            count = args.mb * 1000 * 1000 // 8
            a = numpy.ones(count)
            a[-1] = 2.0
            times = []
            for _ in range(n):
                t0 = time.perf_counter()
                r = ex.submit(work.ends, a).result(args.timeout)
                times.append(time.perf_counter() - t0)
                bl.check(r == 3.0, 'wrong result')
            bl.emit('handoff_ms', bl.median(times) * 1e3, 'ms', False, mb=args.mb)


def mphost(args, n):
    driver = os.path.join(os.path.dirname(os.path.realpath(sys.executable)), 'mphost_bench_cpp_pool')
    if not os.access(driver, os.X_OK):
        raise bl.Unsupported(f'no C++ driver at {driver}')
    cmd = [driver, '--mode', args.mode, '--calls', str(n), '--mb', str(args.mb),
           '--workers', str(bl.cpu_count()), '--py', HERE, '--executable', os.path.realpath(sys.executable)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout * 10)
    sys.stderr.write(done.stderr)
    if done.returncode != 0:
        raise bl.ScenarioError(f'the C++ driver failed ({done.returncode}): {done.stderr.strip()[-300:]}')
    sys.stdout.write(done.stdout)


def main():
    p = bl.parser(__doc__.splitlines()[0])
    p.add_argument('--mode', choices=('roundtrip', 'threads', 'handoff'), default='roundtrip')
    p.add_argument('--calls', type=int, default=None)
    p.add_argument('--mb', type=int, default=1)
    args = p.parse_args()
    if args.quick:
        args.mb = min(args.mb, 10)
    n = sizes(args)
    (mphost if UNDER_MPHOST else stock)(args, n)


if __name__ == '__main__':
    bl.run(main)
