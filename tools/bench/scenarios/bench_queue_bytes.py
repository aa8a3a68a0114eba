"""Queue throughput for large messages, 1 producer -> 1 consumer.

The producer puts ``(seq, payload)`` where payload is a bytes object of
``--size`` bytes (1 MiB by default), or with ``--numpy`` a numpy uint8 array
of those bytes; the consumer takes them. Timed section:
from the release of the producer to the arrival of the last message (stamped
by the consumer with time.perf_counter, the same monotonic clock in every
process). Throughput is in MB/s (10^6 bytes per second) of payload.

Check: the consumer compares every payload, byte for byte, with the one that
was sent and sees the sequence numbers 0..n-1 in order.
"""

import multiprocessing
import sys

import _benchlib as bl


def _payload(size, as_numpy=False):
    block = bytes(range(256))
    data = (block * (size // 256 + 1))[:size]
    if as_numpy:
        import numpy
        return numpy.frombuffer(bytearray(data), dtype=numpy.uint8)
    return data


def _same(a, b):
    if isinstance(a, bytes):
        return a == b
    import numpy
    return isinstance(b, numpy.ndarray) and numpy.array_equal(a, b)


def _producer(q, start, count, size, timeout, as_numpy):
    payload = _payload(size, as_numpy)
    q.put((-1, payload))  # warm-up
    if not start.wait(timeout):
        sys.exit(5)
    put = q.put
    for seq in range(count):
        put((seq, payload))


def _consumer(q, results, count, size, as_numpy):
    expected = _payload(size, as_numpy)
    seq, data = q.get()
    results.put(("warm", seq == -1 and _same(expected, data)))
    wrong = None
    get = q.get
    for i in range(count):
        seq, data = get()
        if wrong is None and (seq != i or not _same(expected, data)):
            wrong = (f"message {i}: seq {seq}, {len(data)} bytes, "
                     f"content {'equal' if _same(expected, data) else 'different'}")
    results.put(("done", wrong, bl.now()))


def main():
    p = bl.parser(__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=1 << 20, help="payload bytes (default 1 MiB)")
    p.add_argument("--messages", type=int, default=None,
                   help="default: about 512 MiB in total (quick: 16 MiB), 8..200000 messages")
    p.add_argument("--method", default="fork")
    p.add_argument("--numpy", action="store_true", help="payloads are numpy arrays")
    args = p.parse_args()
    budget = (16 << 20) if args.quick else (512 << 20)
    count = args.messages or max(8, min(200000 if not args.quick else 2000, budget // args.size))

    ctx = multiprocessing.get_context(args.method)
    q, results, start = ctx.Queue(), ctx.Queue(), ctx.Event()
    procs = [ctx.Process(target=bl.child_entry, name="producer",
                         args=(_producer, q, start, count, args.size, args.timeout, args.numpy)),
             ctx.Process(target=bl.child_entry, name="consumer",
                         args=(_consumer, q, results, count, args.size, args.numpy))]
    try:
        for proc in procs:
            proc.start()
        tag, ok = bl.get(results, procs, args.timeout, "warm-up message not received")
        bl.check(ok, "warm-up message corrupted")
        bl.cpu_begin()
        t0 = bl.now()
        start.set()
        tag, wrong, t_end = bl.get(results, procs, args.timeout, "consumer did not finish")
        bl.cpu_end()
        bl.join_all(procs, args.timeout)
    except BaseException:
        bl.kill_all(procs)
        raise
    bl.check(wrong is None, wrong)
    elapsed = t_end - t0
    bl.emit("MB_per_s", count * args.size / elapsed / 1e6, "MB/s", True,
            messages=count, size=args.size, msgs_per_s=count / elapsed,
            seconds=elapsed, method=args.method, numpy=args.numpy, cpu_items=count)


if __name__ == "__main__":
    bl.run(main)
