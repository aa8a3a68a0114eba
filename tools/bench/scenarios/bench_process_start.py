"""Process start + join, per start method: milliseconds per process.

Processes are started and joined one after another with the given start
method (spawn, fork or forkserver). One process is started first as a
warm-up (for forkserver this also starts the server). The timed section is
the whole sequence of start()+join(); the result is its mean per process.
With --ballast-mb the parent first makes itself that many MB larger (written
memory), to show how start time grows with the size of the parent.

Check: each child runs its target, which exits with a code derived from its
index, and the parent sees exactly that exit code.
"""

import multiprocessing
import os
import sys

import _benchlib as bl


def _finish(code):
    sys.exit(code)


def _code(i):
    return 1 + i % 50


def _ballast(mb):
    """mb MB of written (hence resident, private) memory in 1 MiB blocks."""
    return [bytes([i & 0xFF]) * (1 << 20) for i in range(mb * 10**6 >> 20)]


def _rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * (os.sysconf("SC_PAGE_SIZE")) / 1e6


def main():
    p = bl.parser(__doc__.splitlines()[0])
    p.add_argument("--method", choices=("spawn", "fork", "forkserver"), default="fork")
    p.add_argument("--count", type=int, default=None,
                   help="processes (default spawn 20, forkserver 60, fork 100; quick 3)")
    p.add_argument("--ballast-mb", type=int, default=0,
                   help="make the parent this many MB larger (resident, written) first")
    args = p.parse_args()
    count = args.count or (3 if args.quick else
                           {"spawn": 20, "forkserver": 60, "fork": 100}[args.method])
    ballast = _ballast(args.ballast_mb)  # noqa: F841 (kept resident while processes start)

    ctx = multiprocessing.get_context(args.method)
    warm = ctx.Process(target=_finish, args=(0,))
    warm.start()
    warm.join(args.timeout)
    if warm.exitcode is None:
        bl.kill_all([warm])
        raise bl.ScenarioError(f"hang: warm-up process still running after {args.timeout:g} s")
    bl.check(warm.exitcode == 0, f"warm-up process exited with {warm.exitcode}")
    codes = []
    bl.cpu_begin()
    t0 = bl.now()
    for i in range(count):
        proc = ctx.Process(target=_finish, args=(_code(i),))
        proc.start()
        proc.join(args.timeout)
        if proc.exitcode is None:
            bl.kill_all([proc])
            raise bl.ScenarioError(f"hang: process {i} still running after {args.timeout:g} s")
        codes.append(proc.exitcode)
    elapsed = bl.now() - t0
    bl.cpu_end()
    for i, code in enumerate(codes):
        bl.check(code == _code(i), f"process {i} exited with {code}, expected {_code(i)}")
    bl.emit("ms_per_process", elapsed / count * 1e3, "ms", False, processes=count,
            method=args.method, ballast_mb=args.ballast_mb, rss_mb=_rss_mb(), cpu_items=count)


if __name__ == "__main__":
    bl.run(main)
