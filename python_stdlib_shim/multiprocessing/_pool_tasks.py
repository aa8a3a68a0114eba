"""The sending side of a pool's parent (multiprocessing.pool): the task
handler thread, the window of messages in flight, batches sized from the
measured cost of earlier tasks, and the record of what each inqueue
message carries. A part of _pool_engine._Engine (a base class of it, sharing
its lock and state). See multiprocessing.pool for the overview."""

# A private module: `from multiprocessing._pool_* import *` exports nothing.
__all__ = []

import itertools

from . import util
from ._pool_inbox import _NOTHING
from ._pool_worker import WorkerLostError

# Pool states (the engine's and the Pool's).
INIT = 'INIT'
RUN = 'RUN'
CLOSE = 'CLOSE'
TERMINATE = 'TERMINATE'

# A batch holds about this much work (seconds, measured in the workers) ...
_BATCH_SECONDS = 0.002
# ... and at most this many tasks; a batch grows at most this fast.
_MAX_BATCH = 4096
_BATCH_GROWTH = 8
# Messages in flight per worker (plus one).
_WINDOW_PER_WORKER = 2


class _Stream:
    """One map/imap call as the task handler sees it: the tasks still to
    send and the measured cost of those already run."""

    __slots__ = ('job', 'result', 'func', 'args', 'set_length', 'batchable',
                 'left', 'cost', 'size', 'keep')

    def __init__(self, result, func, args, set_length, batchable, left, keep=False):
        self.job = result._job
        self.result = result
        self.func = func
        self.args = args              # iterator of argument tuples, one per task
        self.set_length = set_length  # the result needs its length at the end
        self.batchable = batchable
        self.left = left              # tasks not yet sent, when known
        self.cost = None              # seconds per task, once measured
        self.size = 1                 # size of the last batch sent
        self.keep = keep              # batches kept until answered (see _send_batch)

    def observe(self, seconds, ntasks):
        cost = seconds / ntasks
        if self.cost is None or cost > self.cost:
            self.cost = cost          # slow-downs count at once
        else:
            self.cost = (self.cost + cost) / 2


def _dumps(obj):
    """The inqueue message for obj: ForkingPickler.dumps(obj), as
    SimpleQueue.put writes it (in chunks the channel gathers, when the
    connection module offers that)."""
    global _dumps_impl
    if _dumps_impl is None:
        from . import connection
        from .reduction import ForkingPickler
        _dumps_impl = getattr(connection, '_dumps_for_channel', ForkingPickler.dumps)
    return _dumps_impl(obj)


_dumps_impl = None


class _TaskSender:
    """The methods of _Engine that send tasks (see the module's docstring).
    They run in the task handler thread, or in a caller's thread for
    submit() and apply_async's direct path."""

    def submit(self, task):
        """Send one apply_async task: directly while the window has room,
        else through the task handler."""
        if self.hooks is not None:
            task = self.hooks.submitted(task)
        with self._lock:
            direct = self._inflight < self._window
            if direct:
                self._inflight += 1
        if direct:
            self._send_one(task)
        else:
            self.taskqueue.put(task)

    def submit_stream(self, result, func, args, set_length=False, left=None):
        batchable = self.maxtasks is None
        keep = False
        if self.hooks is not None:
            # A function the hooks wrap runs supervised: its batches are kept
            # for the hooks' recover() should the worker holding one be lost.
            wrapped, batchable = self.hooks.streamed(result, func, batchable)
            keep, func = wrapped is not func, wrapped
        stream = _Stream(result, func, args, set_length, batchable, left, keep)
        self.taskqueue.put(stream)

    def _write(self, obj, what=None):
        """Put one message on the inqueue. When tasks are tracked, the
        message is ForkingPickler.dumps(obj) written on the inqueue's channel
        (what SimpleQueue.put writes), and its identity is recorded with
        `what` it carries: (job, first index, number of tasks), or None."""
        if not self._receipts:
            with self._put_lock:
                self._put_task(obj)
            return
        data = _dumps(obj)
        with self._put_lock:
            ident = self.inqueue._writer._outbound.send(data)
        data = None
        self._record(ident, what)

    def _record(self, ident, what):
        """Note what message `ident` carries, unless its answer (or the
        death of the worker that took it) was already read: a reader can be
        faster than the sender's return from send()."""
        with self._lock:
            early = self._early.pop(ident, _NOTHING)
            if early is _NOTHING:
                self._sent[ident] = what
                return
            if early is None or what is None:
                return               # answered, or a sentinel
            job, first, n = what
            self._kept.pop((job, first), None)
            if isinstance(early, WorkerLostError):
                # Its worker died holding it: EXITED left the slot to us.
                early = self.lost_error(early.pid, early.exitcode, n, job, first)
                self._inflight -= 1
                if self._slot_waiting:
                    self._slot_cond.notify()
        self._lose(job, first, n, early)

    def _send_one(self, task):
        """Put one task on the inqueue (a window slot is already taken)."""
        try:
            self._write(task, (task[0], task[1], 1))
        except Exception as e:
            util.debug(f'could not send task: {e!r}')
            self._release_slots(1)
            self.fail_task(task[0], task[1], e)

    def _send_batch(self, batch, keep=False):
        what = (batch[0][0], batch[0][1], len(batch))
        if keep:
            with self._lock:
                self._kept[what[:2]] = batch
        try:
            self._write(batch, what)
            return
        except Exception:
            pass
        if keep:
            with self._lock:
                self._kept.pop(what[:2], None)
        # Some task would not pickle: send the others one by one and fail it.
        self._release_slots(1)
        for task in batch:
            with self._lock:
                self._inflight += 1
            self._send_one(task)

    def _take_slot(self):
        with self._lock:
            while self._inflight >= self._window and self.state != TERMINATE:
                self._slot_waiting = True
                self._slot_cond.wait()
            self._slot_waiting = False
            if self.state == TERMINATE:
                return False
            self._inflight += 1
            return True

    def _release_slots(self, n):
        with self._lock:
            self._inflight -= n
            if self._slot_waiting:
                self._slot_cond.notify()

    def _batch_size(self, stream):
        if not stream.batchable or stream.cost is None:
            return 1
        n = int(_BATCH_SECONDS / max(stream.cost, 1e-9))
        n = min(n, _MAX_BATCH, stream.size * _BATCH_GROWTH)
        if stream.left is not None:
            # Leave work for every worker at the end of the call.
            n = min(n, -(-stream.left // (2 * self.processes)))
        return max(n, 1)

    def _send_stream(self, stream):
        job, func, args = stream.job, stream.func, stream.args
        index = 0
        failure = None
        exhausted = False
        with self._lock:
            self._streams[job] = stream
        try:
            while not exhausted:
                n = self._batch_size(stream)
                if not self._take_slot():
                    return
                if job not in self.cache:
                    # The call already failed (a worker was lost) or needs nothing.
                    self._release_slots(1)
                    break
                batch = []
                try:
                    for a in itertools.islice(args, n):
                        batch.append((job, index, func, a, {}))
                        index += 1
                except Exception as e:
                    failure = e
                exhausted = failure is not None or len(batch) < n
                if batch:
                    stream.size = len(batch)
                    if stream.left is not None:
                        stream.left -= len(batch)
                    self._send_batch(batch, stream.keep)
                else:
                    self._release_slots(1)
                batch = None
        finally:
            with self._lock:
                self._streams.pop(job, None)
        if failure is not None:
            # The iterable raised: the error takes the next position.
            self.fail_task(job, index, failure)
            index += 1
        if stream.set_length:
            with self._lock:
                finished = stream.result._set_length(index)
                if self._sleepers:
                    self._cond.notify_all()
                wake = self._reader_must_look()
            if finished:
                self._finish([stream.result])
            if wake:
                self._kick()

    def _handle_tasks(self):
        get = self.taskqueue.get
        while True:
            item = get()
            if item is None:
                util.debug('task handler got sentinel')
                break
            if self.state == TERMINATE:
                util.debug('task handler found pool terminated')
                break
            if type(item) is tuple:
                if self._take_slot():
                    self._send_one(item)
            elif type(item) is list:
                # Kept tasks the hooks send again (recover()).
                if self._take_slot():
                    if item[0][0] in self.cache:
                        self._send_batch(item, True)
                    else:
                        self._release_slots(1)
            else:
                self._send_stream(item)
            item = None
        with self._lock:
            self._tasks_done = True
            self._bg_cond.notify_all()
        if self.state != TERMINATE:
            util.debug('task handler sending sentinel to workers')
            try:
                for _ in range(len(self.workers)):
                    self._write(None)
            except Exception as e:
                util.debug(f'could not send the stop sentinels: {e!r}')
        self._kick()
        util.debug('task handler exiting')
