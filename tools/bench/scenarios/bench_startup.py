"""Interpreter start-up: milliseconds for ``<interpreter> -c CODE``.

The interpreter running this script (sys.executable) is started again and
again with ``-c pass`` or ``-c "import multiprocessing"``, each run timed
from launch to exit with time.perf_counter, after two warm-up runs. The
result is the median.

Check: every run exits 0 and prints nothing; for the import case the child
confirms multiprocessing was imported.
"""

import subprocess
import sys

import _benchlib as bl

CODES = {
    "pass": "pass",
    "import": "import multiprocessing",
}


def main():
    p = bl.parser(__doc__.splitlines()[0])
    p.add_argument("--code", choices=sorted(CODES), default="pass")
    p.add_argument("--runs", type=int, default=None, help="default 30, quick 3")
    args = p.parse_args()
    runs = args.runs or (3 if args.quick else 30)
    command = [sys.executable, "-c", CODES[args.code]]
    probe = [sys.executable, "-c",
             "import multiprocessing, sys; sys.stdout.write(str(callable(multiprocessing.Process)))"]
    check = subprocess.run(probe, capture_output=True, timeout=args.timeout)
    bl.check(check.returncode == 0 and check.stdout == b"True",
             f"{sys.executable} cannot import multiprocessing: {check.stderr[-300:]!r}")
    times = []
    bl.cpu_begin()
    for i in range(runs + 2):
        t0 = bl.now()
        done = subprocess.run(command, capture_output=True, timeout=args.timeout)
        elapsed = bl.now() - t0
        bl.check(done.returncode == 0, f"run {i} exited with {done.returncode}: {done.stderr[-300:]!r}")
        bl.check(done.stdout == b"" and done.stderr == b"",
                 f"run {i} printed output: {done.stdout[-200:]!r} {done.stderr[-200:]!r}")
        if i >= 2:
            times.append(elapsed)
    bl.cpu_end()
    bl.emit("startup_ms", bl.median(times) * 1e3, "ms", False, runs=runs,
            code=CODES[args.code], min_ms=min(times) * 1e3, executable=sys.executable,
            cpu_items=runs + 2)


if __name__ == "__main__":
    bl.run(main)
