"""shared_memory hand-off of a large numpy array: MB/s.

The parent fills a numpy uint64 array 0..n-1 inside a SharedMemory block
(not timed), then sends only the block's name over a Pipe to a child that is
already running. The child attaches with SharedMemory(name=...), views it as
an array, reads all of it (sum) and checks it, then answers. Timed section:
from sending the name to receiving the answer, per hand-off; the result is
the median over the hand-offs, in MB/s (10^6 bytes per second) of array data.

Check: the child's sum equals n(n-1)/2 and its first and last elements are
0 and n-1; the parent checks the child's answer again.
"""

import multiprocessing
from multiprocessing import shared_memory

import _benchlib as bl


def _reader(conn):
    import numpy as np
    conn.send("ready")
    while True:
        msg = conn.recv()
        if msg is None:
            break
        name, n = msg
        shm = shared_memory.SharedMemory(name=name)
        try:
            arr = np.ndarray((n,), dtype=np.uint64, buffer=shm.buf)
            total = int(arr.sum(dtype=np.uint64))
            ok = (total == n * (n - 1) // 2 and int(arr[0]) == 0 and int(arr[-1]) == n - 1)
            del arr
        finally:
            shm.close()
        conn.send((ok, total))


def main():
    import numpy as np
    p = bl.parser(__doc__.splitlines()[0])
    p.add_argument("--mib", type=int, default=None, help="array size in MiB (default 128, quick 8)")
    p.add_argument("--handoffs", type=int, default=None, help="default 5, quick 2")
    p.add_argument("--method", default="fork")
    args = p.parse_args()
    size = (args.mib or (8 if args.quick else 128)) << 20
    handoffs = args.handoffs or (2 if args.quick else 5)
    n = size // 8

    ctx = multiprocessing.get_context(args.method)
    mine, theirs = ctx.Pipe()
    child = ctx.Process(target=bl.child_entry, name="reader", args=(_reader, theirs))
    times, cpu = [], 0.0
    # Creating a first block starts the resource tracker before the child
    # exists, so the child shares it instead of starting its own (which would
    # warn about the blocks the child attached to and the parent unlinked).
    first = shared_memory.SharedMemory(create=True, size=4096)
    first.close()
    first.unlink()
    try:
        child.start()
        theirs.close()
        greeting = bl.recv(mine, [child], args.timeout, "reader not ready")
        bl.check(greeting == "ready", "reader sent an unexpected greeting")
        for _ in range(handoffs):
            shm = shared_memory.SharedMemory(create=True, size=size)
            try:
                arr = np.ndarray((n,), dtype=np.uint64, buffer=shm.buf)
                arr[:] = np.arange(n, dtype=np.uint64)
                del arr
                cpu0 = bl.tree_cpu()[0]
                t0 = bl.now()
                mine.send((shm.name, n))
                ok, total = bl.recv(mine, [child], args.timeout, "reader silent")
                times.append(bl.now() - t0)
                cpu += bl.tree_cpu()[0] - cpu0
            finally:
                shm.close()
                shm.unlink()
            bl.check(ok and total == n * (n - 1) // 2,
                     f"reader saw a wrong array (sum {total}, expected {n * (n - 1) // 2})")
        mine.send(None)
        bl.join_all([child], args.timeout)
    except BaseException:
        bl.kill_all([child])
        raise
    bl.emit("MB_per_s", size / bl.median(times) / 1e6, "MB/s", True, bytes=size,
            handoffs=handoffs, median_ms=bl.median(times) * 1e3, method=args.method,
            cpu_s=cpu, cpu_items=handoffs)


if __name__ == "__main__":
    bl.run(main)
