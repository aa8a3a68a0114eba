"""ClusterPool: multiprocessing.pool.Pool with its workers on the worker
ranks of a cluster job.

The pool's engine is the stdlib pool's own (callbacks, chunking, imap
order, maxtasksperchild, close/terminate/join behave as on one machine);
what differs is where its "processes" live: each is a slot the hub starts
on a rank (_slot.SlotWorker), its inqueue is the hub's line for the pool,
and its outqueue an in-process queue the hub fills with the results.
"""

import queue

from multiprocessing import pool as _pool
from multiprocessing._pool_inbox import _LocalResults

from . import _hub
from ._slot import SlotWorker


class _Inqueue:
    """The pool's inqueue: put() pickles the message and gives it to the
    hub's line for this pool."""

    def __init__(self, hub, key):
        self._hub, self._key = hub, key

    def put(self, obj):
        self._hub.put(self._key, obj)

    def get_nowait(self):
        # The engine drains an inqueue whose readers are gone (terminate).
        self._hub.drop_waiting(self._key)
        raise queue.Empty

    def _worker(self, args):
        # args as the engine gives them to multiprocessing.pool.worker.
        start_args = tuple(args[2:6])          # initializer, initargs, maxtasks, wrap_exception
        return SlotWorker(self._hub, self._key, start_args)


class ClusterPool(_pool.Pool):
    """A process pool whose workers run on the ranks of the MPI job."""

    _tracks_tasks = False
    _Results = _LocalResults

    @staticmethod
    def Process(ctx, *args, **kwds):
        return kwds['args'][0]._worker(kwds['args'])

    def __init__(self, processes=None, initializer=None, initargs=(),
                 maxtasksperchild=None, context=None):
        hub = _hub.current()
        if hub is None:
            raise ValueError('a cluster pool needs a cluster job: run the program with '
                             'mpiexec -n N mphost --cluster=mpi script.py')
        if hub.rank_count < 2:
            raise ValueError('a cluster pool needs worker ranks: run the program with '
                             'mpiexec -n 2 or more (rank 0 runs the program itself)')
        self._hub = hub
        if processes is None:
            processes = hub.default_workers()
        if context is None:
            from multiprocessing import context as _context
            context = _context._concrete_contexts['mpi']
        super().__init__(processes, initializer, initargs, maxtasksperchild, context)

    def _setup_queues(self):
        results = queue.SimpleQueue()
        key = self._hub.open_line(results)
        self._inqueue = _Inqueue(self._hub, key)
        self._quick_put = self._inqueue.put
        self._outqueue, self._quick_get = results, results.get
