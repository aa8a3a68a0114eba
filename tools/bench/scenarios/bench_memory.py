"""Memory of an idle child process (PSS), per start method: KiB per child.

The parent starts a few children with the given start method; each says it
is ready and then waits. Once all are ready the parent reads each child's
proportional set size (the Pss line of /proc/<pid>/smaps_rollup: pages
shared with other processes are divided among them) and reports the mean.
Then it lets them exit. Lower is better.

Check: every child reached its idle state, and exits 0 when released.
"""

import multiprocessing
import sys
import time

import _benchlib as bl


def _idle(ready, release, timeout):
    ready.release()
    if not release.wait(timeout):
        sys.exit(5)


def _pss_kib(pid):
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith("Pss:"):
                return int(line.split()[1])
    raise bl.ScenarioError(f"no Pss line for pid {pid}")


def main():
    p = bl.parser(__doc__.splitlines()[0])
    p.add_argument("--method", choices=("spawn", "fork", "forkserver"), default="fork")
    p.add_argument("--children", type=int, default=None, help="default 4, quick 2")
    args = p.parse_args()
    count = args.children or (2 if args.quick else 4)

    ctx = multiprocessing.get_context(args.method)
    ready, release = ctx.Semaphore(0), ctx.Event()
    procs = [ctx.Process(target=bl.child_entry, name=f"idle-{i}",
                         args=(_idle, ready, release, args.timeout))
             for i in range(count)]
    try:
        for proc in procs:
            proc.start()
        for _ in procs:
            bl.acquire(ready, procs, args.timeout, "children not idle")
        time.sleep(0.1)  # let the last child settle into its wait
        pss = [_pss_kib(proc.pid) for proc in procs]
        release.set()
        bl.join_all(procs, args.timeout)
    except BaseException:
        bl.kill_all(procs)
        raise
    bl.emit("pss_kib", sum(pss) / len(pss), "KiB", False, children=count,
            per_child_kib=pss, method=args.method)


if __name__ == "__main__":
    bl.run(main)
