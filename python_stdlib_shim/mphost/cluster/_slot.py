"""What a pool on rank 0 sees of one of its workers on a rank: a
Process-like object (name, pid, exitcode, sentinel, join, terminate) that
the hub starts, feeds and ends (see _hub), and the error that fails the
tasks it held when its process died."""

import collections
import itertools
import os
import threading
import weakref

from multiprocessing.pool import WorkerLostError


def carried(message):
    """(job, first index, number of tasks) of an inqueue message; None for
    a stop sentinel."""
    if message is None:
        return None
    if type(message) is list:
        return message[0][0], message[0][1], len(message)
    return message[0], message[1], 1


class RankWorkerLostError(WorkerLostError):
    """WorkerLostError of a worker on another rank: says which host and rank."""

    def __init__(self, pid, exitcode, ntasks, rank, host):
        super().__init__(pid, exitcode, ntasks)
        self.rank, self.host = rank, host
        self.args = (f'{self.args[0]} on host {host}, MPI rank {rank}',)

    def __reduce__(self):
        return type(self), (self.pid, self.exitcode, self.ntasks, self.rank, self.host)


class SlotWorker:
    """What the pool sees of one slot: a Process-like object (name, pid,
    exitcode, sentinel, join, terminate) whose process runs on a worker
    rank. Its sentinel is a pipe that becomes readable when the slot exits."""

    _counter = itertools.count(1)

    def __init__(self, hub, key, start_args):
        self._hub, self._key, self._start_args = hub, key, start_args
        self.name = f'ClusterPoolWorker-{next(self._counter)}'
        self.daemon = True
        self.pid = None
        self.exitcode = None
        self.ident = self.rank = self.line = self.host = None
        self.held = collections.deque()   # numbers of the messages it was given, unanswered
        self.accepting = True
        self.start_error = None
        self._done = threading.Event()
        self._read_end, self._write_end = os.pipe2(os.O_CLOEXEC)
        weakref.finalize(self, _close_pipe, self._read_end, self._write_end)

    def __repr__(self):
        state = 'started' if self.exitcode is None else f'exitcode={self.exitcode}'
        return f'<{type(self).__name__} name={self.name!r} rank={self.rank} {state}>'

    @property
    def sentinel(self):
        return self._read_end

    def start(self):
        self._hub.start_slot(self._key, self, self._start_args)
        self._start_args = None

    def is_alive(self):
        return self.exitcode is None

    def join(self, timeout=None):
        self._done.wait(timeout)

    def terminate(self):
        self._hub.terminate_slot(self)

    kill = terminate

    def exited(self, exitcode):
        self.exitcode = exitcode
        self._done.set()
        try:
            os.write(self._write_end, b'x')
        except OSError:
            pass

    def close(self):
        if self.exitcode is None:
            raise ValueError("Cannot close a process while it is still running. "
                             "You should first call join() or terminate().")


def _close_pipe(*fds):
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass
