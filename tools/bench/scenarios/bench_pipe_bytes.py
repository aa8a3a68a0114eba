"""Pipe throughput of large send_bytes messages, one direction.

The parent calls send_bytes with ``--size`` bytes (1 MiB by default) on a
one-way Pipe; a child receives them with recv_bytes. Timed section: from the
first send to the arrival of the last message, stamped by the child with
time.perf_counter (the same monotonic clock in every process). Throughput in
MB/s (10^6 bytes per second).

Check: the child compares every message byte for byte with the expected one
(the first 8 bytes carry the sequence number) and reports back.
"""

import multiprocessing

import _benchlib as bl


def _message(seq, block):
    return seq.to_bytes(8, "little") + block


def _block(size):
    base = bytes(range(256))
    return (base * (size // 256 + 1))[:max(0, size - 8)]


def _receiver(reader, report, count, size):
    block = _block(size)
    first = reader.recv_bytes()
    report.send(("warm", first == _message(2**63, block)))
    wrong = None
    recv = reader.recv_bytes
    for i in range(count):
        data = recv()
        if wrong is None and data != _message(i, block):
            got = int.from_bytes(data[:8], "little") if len(data) >= 8 else None
            wrong = f"message {i}: {len(data)} bytes, seq {got}"
    report.send(("done", wrong, bl.now()))


def main():
    p = bl.parser(__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=1 << 20, help="bytes per message (default 1 MiB, >= 8)")
    p.add_argument("--messages", type=int, default=None, help="default 500, quick 16")
    p.add_argument("--method", default="fork")
    args = p.parse_args()
    if args.size < 8:
        p.error("--size must be at least 8")
    count = args.messages or (16 if args.quick else 500)

    ctx = multiprocessing.get_context(args.method)
    reader, writer = ctx.Pipe(duplex=False)
    report_r, report_w = ctx.Pipe(duplex=False)
    child = ctx.Process(target=bl.child_entry, name="receiver",
                        args=(_receiver, reader, report_w, count, args.size))
    try:
        child.start()
        reader.close()
        report_w.close()
        block = _block(args.size)
        messages = [_message(i, block) for i in range(min(count, 4))]
        writer.send_bytes(_message(2**63, block))
        warm = bl.recv(report_r, [child], args.timeout, "no warm-up report")
        bl.check(warm == ("warm", True), "warm-up message corrupted")
        send = writer.send_bytes
        bl.cpu_begin()
        t0 = bl.now()
        for i in range(count):
            send(messages[i] if i < len(messages) else _message(i, block))
        tag, wrong, t_end = bl.recv(report_r, [child], args.timeout, "receiver silent")
        bl.cpu_end()
        bl.join_all([child], args.timeout)
    except BaseException:
        bl.kill_all([child])
        raise
    bl.check(wrong is None, wrong)
    elapsed = t_end - t0
    bl.emit("MB_per_s", count * args.size / elapsed / 1e6, "MB/s", True,
            messages=count, size=args.size, seconds=elapsed, method=args.method, cpu_items=count)


if __name__ == "__main__":
    bl.run(main)
