"""Rank 0 of a cluster job: the hub between the program's pools and the
worker slots on the other ranks.

Each pool worker is a slot: a worker process on some rank, started, fed
and stopped through frames (see _wire). The hub gives each slot at most
_AHEAD messages of its pool's inqueue at a time and keeps the rest in the
pool's line, so a slow slot never holds back work a free one could do; a
slot that exits hands back what it had not taken, and the line gets it
first. One thread receives every frame and routes it: results to their
pool's outqueue, exits to the slot's worker object.
"""

import collections
import itertools
import os
import select
import sys
import threading
import traceback

from . import _wire
from ._slot import RankWorkerLostError, carried

_current = None            # (pid, Hub) of this job's rank 0


def current():
    """This process's hub: rank 0 of a cluster job (not a child of it), or None."""
    found = _current
    return found[1] if found is not None and found[0] == os.getpid() else None


def set_current(hub):
    global _current
    _current = None if hub is None else (os.getpid(), hub)


_AHEAD = 2                 # messages a slot may hold: the one it runs and the next
_POLL_MS = 100             # how often the receiving thread looks at _stopping


class _Line:
    """One pool on the hub: its slots, its waiting messages, its outqueue."""

    def __init__(self, outqueue):
        self.outqueue = outqueue
        self.slots = []               # live SlotWorker objects, in start order
        self.waiting = collections.deque()   # (number, header, parts) not given to a slot
        self.carried = {}             # number -> (job, first, n) of a task message;
                                      # None for a stop sentinel


class Hub:
    def __init__(self, link, workers_per_rank):
        self.link = link
        self.rank_count = link.size()
        self.workers_per_rank = workers_per_rank
        self._lock = threading.Lock()
        self._slot_ids = itertools.count(1)
        self._line_ids = itertools.count(1)
        self._numbers = itertools.count(1)
        self._lines = {}
        self._slots = {}              # slot id -> SlotWorker
        self._line_of = {}            # slot id -> its pool's line, also once ended
        self._prepared = set()        # ranks that have the program's main module
        self._preparation = None
        self._stopping = False
        self._thread = threading.Thread(target=self._receive_loop, name='mphost-cluster-hub',
                                        daemon=True)
        self._thread.start()

    # -- pools -------------------------------------------------------------

    def default_workers(self):
        return max(self.rank_count - 1, 0) * self.workers_per_rank

    def open_line(self, outqueue):
        if self.rank_count < 2:
            raise ValueError('a cluster pool needs worker ranks: run the program with '
                             'mpiexec -n 2 or more (rank 0 runs the program itself)')
        with self._lock:
            key = next(self._line_ids)
            self._lines[key] = _Line(outqueue)
        return key

    def put(self, key, obj):
        """Send one inqueue message of pool `key` (pickled here: an object
        that cannot be sent raises in the caller)."""
        number = next(self._numbers)
        header, parts = _wire.encode(0, obj, number)
        with self._lock:
            line = self._lines[key]
            line.carried[number] = carried(obj)
            line.waiting.append((number, header, parts))
            self._feed(line)

    def drop_waiting(self, key):
        with self._lock:
            line = self._lines.get(key)
            if line is not None:
                line.waiting.clear()

    def _feed(self, line):
        """Give waiting messages to the slots with room (lock held)."""
        while line.waiting:
            slot = min((s for s in line.slots if s.accepting), key=lambda s: len(s.held),
                       default=None)
            if slot is None or len(slot.held) >= _AHEAD:
                return
            number, header, parts = line.waiting.popleft()
            slot.held.append(number)
            self.link.send(slot.rank, _wire.TASK, _wire.readdressed(header, slot.ident), parts)

    # -- slots ---------------------------------------------------------------

    def start_slot(self, key, worker, start_args):
        with self._lock:
            line = self._lines[key]
            ident = next(self._slot_ids)
            rank = self._place(line)
            worker.ident, worker.rank = ident, rank
            header, parts = _wire.encode(ident, start_args)
            if rank not in self._prepared:
                self._send_preparation(rank)
            self._slots[ident] = worker
            self._line_of[ident] = line
            line.slots.append(worker)
            worker.line = line
            self.link.send(rank, _wire.START, header, parts)
            self._feed(line)          # what came back while no slot took work

    def _place(self, line):
        """The worker rank with the fewest live slots of this pool."""
        counts = collections.Counter(s.rank for s in line.slots)
        return min(range(1, self.rank_count), key=lambda r: (counts[r], r))

    def _send_preparation(self, rank):
        if self._preparation is None:
            from multiprocessing import spawn
            data = spawn.get_preparation_data('ClusterWorker')
            data.pop('authkey', None)
            self._preparation = _wire.encode(0, data)
        header, parts = self._preparation
        self.link.send(rank, _wire.PREPARE, header, parts)
        self._prepared.add(rank)

    def terminate_slot(self, worker):
        with self._lock:
            if worker.exitcode is None and worker.ident in self._slots:
                worker.accepting = False
                self.link.send(worker.rank, _wire.TERMINATE, _wire.bare(worker.ident), [])

    # -- receiving -----------------------------------------------------------

    def _receive_loop(self):
        poller = select.poll()
        poller.register(self.link.fileno(), select.POLLIN)
        while not self._stopping:
            poller.poll(_POLL_MS)
            while True:
                try:
                    frame = self.link.receive()
                except Exception:
                    sys.stderr.write('mphost: the MPI link failed to receive:\n')
                    traceback.print_exc()
                    break
                if frame is None:
                    break
                try:
                    self._route(*frame)
                except Exception:
                    sys.stderr.write('mphost: a frame from a worker rank could not be handled:\n')
                    traceback.print_exc()
                frame = None

    def _route(self, source, kind, header, parts):
        ident, number = _wire.address(header)
        worker = self._slots.get(ident)
        if worker is None:
            if kind == _wire.RETURNED:    # it reached the rank after the slot ended
                self._take_back(self._line_of[ident], number, header, parts)
            return
        handle = self._handlers.get(kind)
        if handle is not None:
            handle(self, worker, number, header, parts)

    def _on_result(self, worker, number, header, parts):
        try:
            message = _wire.decode(header, parts)
        except Exception as e:
            sys.stderr.write('multiprocessing.pool: a message from a worker could not be '
                             'received; the call it answers will not complete:\n')
            traceback.print_exception(e)
            message = None
        with self._lock:
            if worker.held:
                worker.line.carried.pop(worker.held.popleft(), None)
            self._feed(worker.line)
        if message is not None:
            worker.line.outqueue.put(message)

    def _on_started(self, worker, number, header, parts):
        worker.pid, worker.host = _wire.decode(header, parts)

    def _on_returned(self, worker, number, header, parts):
        with self._lock:
            if number in worker.held:
                worker.held.remove(number)
            worker.accepting = False
        self._take_back(worker.line, number, header, parts)

    def _take_back(self, line, number, header, parts):
        """A task a slot never took goes to the front of its pool's line."""
        with self._lock:
            line.waiting.appendleft((number, header, parts))
            self._feed(line)

    def _on_exited(self, worker, number, header, parts):
        exitcode, lost = _wire.decode(header, parts)
        self._retire(worker)
        self._fail_lost(worker, exitcode, lost)
        worker.exited(exitcode)

    def _on_failed(self, worker, number, header, parts):
        # The slot's process could not be started: the pool sees it exit.
        worker.start_error = _wire.decode(header, parts)
        self._retire(worker)
        worker.exited(1)

    def _retire(self, worker):
        with self._lock:
            self._slots.pop(worker.ident, None)
            line = worker.line
            if worker in line.slots:
                line.slots.remove(worker)
            worker.accepting = False
            self._feed(line)

    _handlers = {_wire.RESULT: _on_result, _wire.STARTED: _on_started,
                 _wire.RETURNED: _on_returned, _wire.EXITED: _on_exited,
                 _wire.FAILED: _on_failed}

    def _fail_lost(self, worker, exitcode, count):
        """Fail the `count` tasks a slot took and never answered: its process
        died running them. Those it had not taken come back as RETURNED,
        before EXITED or, if they were on their way, after it."""
        from multiprocessing._pool_worker import _BATCH
        with self._lock:
            lost = [worker.line.carried.pop(worker.held.popleft(), None)
                    for _ in range(min(count, len(worker.held)))]
            worker.held.clear()
        for what in lost:
            if what is None:
                continue              # a stop sentinel
            job, first, n = what
            error = RankWorkerLostError(worker.pid, exitcode, n, worker.rank, worker.host)
            worker.line.outqueue.put((_BATCH, worker.pid, 0, 0.0, job, first, [(False, error)] * n))

    # -- the end of the job ----------------------------------------------------

    def shutdown(self, timeout=10.0):
        """Stop every worker rank, then this rank's link (at exit)."""
        import time
        for rank in range(1, self.rank_count):
            self.link.send(rank, _wire.SHUTDOWN, _wire.bare(0), [])
        deadline = time.monotonic() + timeout
        while self.link.pending() and time.monotonic() < deadline:
            time.sleep(0.001)
        self._stopping = True
        if self._thread is not threading.current_thread():
            self._thread.join(1.0)
