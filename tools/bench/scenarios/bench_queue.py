"""Queue throughput for small messages, P producers -> C consumers.

Every producer puts ``count`` small tuples ``(producer, seq)`` on one shared
queue; the consumers drain it. Timed section: from the moment the producers
are released until the last message has been taken by a consumer (each
consumer stamps the arrival of its last message with time.perf_counter,
which reads the same monotonic clock in every process).

Checks: every consumer sees each producer's messages in increasing order and,
summed over the consumers, every producer delivered exactly 0..count-1
(count, sum and sum of squares of the sequence numbers).
"""

import multiprocessing
import sys

import _benchlib as bl

WARM = "warm-up"


def _producer(q, start, producer, count, timeout):
    q.put(WARM)
    if not start.wait(timeout):
        sys.exit(5)
    put = q.put
    for seq in range(count):
        put((producer, seq))


def _consumer(q, results, nproducers):
    stats, disorder, t_last = consume(q.get, lambda: results.put(("warm",)), nproducers)
    results.put(("done", stats, disorder, t_last))


def consume(get, on_warm, nproducers):
    """The consumer's loop: take items with get() until None; check order and
    count, sum and sum of squares per producer. The limits probe of
    tools/bench times this same loop over items that need no queue."""
    last = [-1] * nproducers
    stats = [[0, 0, 0] for _ in range(nproducers)]  # count, sum, sum of squares
    disorder = None
    t_last = 0.0
    clock = bl.now
    while True:
        item = get()
        if item is None:
            break
        if item == WARM:
            on_warm()
            continue
        t_last = clock()
        producer, seq = item
        if seq <= last[producer] and disorder is None:
            disorder = f"producer {producer}: seq {seq} after {last[producer]}"
        last[producer] = seq
        s = stats[producer]
        s[0] += 1
        s[1] += seq
        s[2] += seq * seq
    return stats, disorder, t_last


def main():
    p = bl.parser(__doc__.splitlines()[0])
    p.add_argument("--producers", type=int, default=1)
    p.add_argument("--consumers", type=int, default=1)
    p.add_argument("--messages", type=int, default=None,
                   help="total messages over all producers (default 200000, quick 4000)")
    p.add_argument("--kind", choices=("Queue", "SimpleQueue"), default="Queue")
    p.add_argument("--method", default="fork", help="start method (default fork)")
    args = p.parse_args()
    total = args.messages or (4000 if args.quick else 200000)
    nprod, ncons = args.producers, args.consumers
    per_producer = total // nprod
    total = per_producer * nprod

    ctx = multiprocessing.get_context(args.method)
    q = ctx.SimpleQueue() if args.kind == "SimpleQueue" else ctx.Queue()
    results = ctx.Queue()
    start = ctx.Event()
    procs = [ctx.Process(target=bl.child_entry, name=f"producer-{i}",
                         args=(_producer, q, start, i, per_producer, args.timeout))
             for i in range(nprod)]
    procs += [ctx.Process(target=bl.child_entry, name=f"consumer-{i}",
                          args=(_consumer, q, results, nprod))
              for i in range(ncons)]
    try:
        for proc in procs:
            proc.start()
        for _ in range(nprod):
            q.put(WARM)
        for _ in range(nprod * 2):  # one token from each producer, one from us
            bl.get(results, procs, args.timeout, "warm-up messages not received")
        bl.cpu_begin()
        t0 = bl.now()
        start.set()
        bl.join_all(procs[:nprod], args.timeout)
        for _ in range(ncons):
            q.put(None)
        done = [bl.get(results, procs, args.timeout, "consumers did not finish")
                for _ in range(ncons)]
        bl.cpu_end()
        bl.join_all(procs[nprod:], args.timeout)
    except BaseException:
        bl.kill_all(procs)
        raise

    t_end = max(d[3] for d in done)
    for _, _, disorder, _ in done:
        bl.check(disorder is None, f"messages out of order: {disorder}")
    expected = [per_producer, per_producer * (per_producer - 1) // 2,
                (per_producer - 1) * per_producer * (2 * per_producer - 1) // 6]
    for producer in range(nprod):
        got = [sum(d[1][producer][k] for d in done) for k in range(3)]
        bl.check(got[0] == expected[0],
                 f"producer {producer}: {got[0]} messages received, {expected[0]} sent")
        bl.check(got[1:] == expected[1:],
                 f"producer {producer}: lost or duplicated messages (sums {got[1:]} != {expected[1:]})")
    elapsed = t_end - t0
    bl.emit("msgs_per_s", total / elapsed, "msgs/s", True,
            messages=total, producers=nprod, consumers=ncons, kind=args.kind,
            method=args.method, seconds=elapsed, cpu_items=total)


if __name__ == "__main__":
    bl.run(main)
