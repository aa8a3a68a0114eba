"""A worker rank of a cluster job: it hosts the slots rank 0 starts on it.

Each slot is a local worker process (forked from this rank server, so the
program's main module, imported once here, is already in it) running the
pool's ordinary worker loop over two local queues. The server relays
frames: tasks from rank 0 go to the slot's inbox as they came (this
process never unpickles the program's objects); one thread per slot sends
back the slot's results, and when the slot's process ends, the messages it
never took (RETURNED) and its exit code (EXITED).
"""

import select
import sys
import threading
import traceback

from . import _wire

_IDLE_CHECK = 0.05          # how often a quiet relay looks whether its process ended


class _Slot:
    def __init__(self, ident, process, inbox, outbox):
        self.ident, self.process = ident, process
        self.inbox, self.outbox = inbox, outbox      # local SimpleQueues
        # Taken to write the inbox, and by the relay to close it: a task
        # that arrives after the process ended goes back to rank 0.
        self.lock = threading.Lock()
        self.closed = False
        # Messages written to its inbox; results sent back. Those written,
        # not answered and not handed back when it ended died with it.
        self.written = self.answered = 0


def serve(link):
    """Host slots until rank 0 says SHUTDOWN; returns the exit status."""
    import multiprocessing
    ctx = multiprocessing.get_context('fork')
    slots = {}
    relays = []
    poller = select.poll()
    poller.register(link.fileno(), select.POLLIN)
    try:
        while True:
            poller.poll(1000)
            frame = link.receive()
            while frame is not None:
                source, kind, header, parts = frame
                if kind == _wire.SHUTDOWN:
                    return 0
                try:
                    _handle(link, ctx, slots, relays, kind, header, parts)
                except Exception:
                    sys.stderr.write(f'mphost: worker rank {link.rank()} could not handle a frame:\n')
                    traceback.print_exc()
                frame = header = parts = None
                frame = link.receive()
    finally:
        for slot in list(slots.values()):
            if slot.process.exitcode is None:
                slot.process.terminate()
        for relay in relays:
            relay.join(5)


def _handle(link, ctx, slots, relays, kind, header, parts):
    ident = _wire.address(header)[0]
    if kind == _wire.TASK:
        slot = slots[ident]
        with slot.lock:
            if not slot.closed:
                slot.inbox._writer.send_bytes(_wire.join_frame(header, parts))
                slot.written += 1
                return
        link.send(0, _wire.RETURNED, header, parts)
    elif kind == _wire.PREPARE:
        from multiprocessing import spawn
        data = _wire.decode(header, parts)
        data.pop('name', None)
        spawn.prepare(data)
    elif kind == _wire.START:
        try:
            slot = _start(ctx, ident, _wire.decode(header, parts))
        except Exception as e:
            link.send(0, _wire.FAILED, *_wire.encode(ident, _failure(e)))
            return
        slots[ident] = slot
        link.send(0, _wire.STARTED, *_wire.encode(ident, (slot.process.pid, link.host())))
        relay = threading.Thread(target=_relay_results, args=(link, slots, slot),
                                 name=f'mphost-cluster-relay-{ident}', daemon=True)
        relay.start()
        relays[:] = [r for r in relays if r.is_alive()] + [relay]
    elif kind == _wire.TERMINATE:
        slot = slots.get(ident)
        if slot is not None and slot.process.exitcode is None:
            slot.process.terminate()


def _failure(exc):
    try:
        _wire.encode(0, exc)
        return exc
    except Exception:
        return RuntimeError(f'{type(exc).__name__}: {exc}')


def _start(ctx, ident, start_args):
    initializer, initargs, maxtasks, wrap_exception = start_args
    inbox, outbox = ctx.SimpleQueue(), ctx.SimpleQueue()
    process = ctx.Process(target=_slot_main,
                          args=(ident, inbox, outbox, initializer, initargs, maxtasks, wrap_exception),
                          name=f'ClusterPoolWorker-{ident}', daemon=True)
    process.start()
    return _Slot(ident, process, inbox, outbox)


def _relay_results(link, slots, slot):
    """Send the slot's results to rank 0 until its process ended; then hand
    back what it never took, and its exit code."""
    reader = slot.outbox._reader
    ended = False
    while True:
        if reader.poll(_IDLE_CHECK):
            header, parts = _wire.split_frame(reader.recv_bytes())
            link.send(0, _wire.RESULT, header, parts)
            slot.answered += 1
            header = parts = None
            continue
        if ended:
            break
        ended = slot.process.exitcode is not None   # then one more look for late results
    inbox = slot.inbox._reader
    handed_back = 0
    with slot.lock:
        slot.closed = True
        while inbox.poll(0):
            header, parts = _wire.split_frame(inbox.recv_bytes())
            link.send(0, _wire.RETURNED, header, parts)
            handed_back += 1
    lost = slot.written - slot.answered - handed_back
    link.send(0, _wire.EXITED, *_wire.encode(slot.ident, (slot.process.exitcode, lost)))
    for queue in (slot.inbox, slot.outbox):
        queue.close()


class _Inbox:
    """The worker loop's inqueue in a slot process: frames from the rank
    server, unpickled here."""

    def __init__(self, queue):
        self._recv = queue._reader.recv_bytes

    def get(self):
        # A copy the arrays of the task may own and write to.
        header, parts = _wire.split_frame(bytearray(self._recv()))
        try:
            return _wire.decode(header, parts)
        except Exception as e:
            from multiprocessing._pool_worker import _Unreadable
            raise _Unreadable(0, e) from e


class _Outbox:
    """The worker loop's outqueue in a slot process."""

    def __init__(self, queue, ident):
        self._send = queue._writer.send_bytes
        self._ident = ident

    def put(self, obj):
        header, parts = _wire.encode(self._ident, obj)
        self._send(_wire.join_frame(header, parts))


def _slot_main(ident, inbox, outbox, initializer, initargs, maxtasks, wrap_exception):
    from multiprocessing.pool import worker
    worker(_Inbox(inbox), _Outbox(outbox, ident), initializer, initargs, maxtasks, wrap_exception)
