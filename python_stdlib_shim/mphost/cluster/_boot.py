"""Joining a cluster job (`mphost --cluster=mpi`), run by the launcher
before the program.

Rank 0 gets the hub and goes on to run the program, whose default
`multiprocessing.Pool()`, `get_context("mpi").Pool()` and
`concurrent.futures.ProcessPoolExecutor()` then place their workers on the
other ranks; everything else of multiprocessing stays local. The other
ranks serve slots (_rank) until rank 0 ends the job.
"""

import os
import signal
import sys

def _workers_per_rank():
    text = os.environ.get('MPHOST_WORKERS_PER_RANK', '1')
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f'MPHOST_WORKERS_PER_RANK must be a whole number >= 1, not {text!r}')
    return value


def start(backend):
    """Join the job: None on rank 0 (run the program), else the exit status
    of this worker rank once the job ended."""
    if backend != 'mpi':
        raise ValueError(f'unknown cluster backend {backend!r} (known: mpi)')
    from . import _link
    link = _link.load()
    link.init()
    workers_per_rank = _workers_per_rank()
    if link.rank() != 0:
        from . import _rank
        try:
            return _rank.serve(link)
        finally:
            link.finalize()
    from . import _hub
    _hub.set_current(_hub.Hub(link, workers_per_rank))
    _install()
    from multiprocessing import util
    # After the program's pools were ended by multiprocessing's own exit
    # function (finalizers of priority >= 0 run first).
    util.Finalize(None, _end_job, exitpriority=-1000)
    signal.signal(signal.SIGTERM, _ended_from_outside)
    return None


def _end_job():
    from . import _hub
    hub = _hub.current()
    if hub is None:
        return
    _hub.set_current(None)
    hub.shutdown()
    hub.link.finalize()


def _ended_from_outside(signum, frame):
    from . import _hub
    if _hub.current() is None:       # a local child of rank 0 that kept the handler
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)
        return
    sys.stderr.write('mphost: the MPI job is ending: mpiexec stopped rank 0 (SIGTERM): another '
                     'rank died, or the job itself was stopped; OpenMPI ends the whole job when '
                     'one rank fails, so the pending pool calls cannot complete\n')
    sys.stderr.flush()
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)


def _install():
    """Make the default Pool, the "mpi" context and ProcessPoolExecutor
    the cluster's."""
    import types
    import multiprocessing
    from multiprocessing import context
    from ._pool import ClusterPool

    local = type(context._default_context.get_context())

    class ClusterContext(local):
        _name = 'mpi'

        def Pool(self, processes=None, initializer=None, initargs=(), maxtasksperchild=None):
            return ClusterPool(processes, initializer, initargs, maxtasksperchild, context=self)

    mpi = ClusterContext()
    context._concrete_contexts['mpi'] = mpi

    def default_pool(self, processes=None, initializer=None, initargs=(), maxtasksperchild=None):
        return ClusterPool(processes, initializer, initargs, maxtasksperchild, context=mpi)

    context._default_context.Pool = types.MethodType(default_pool, context._default_context)
    multiprocessing.Pool = context._default_context.Pool

    import concurrent.futures
    import concurrent.futures.process
    from ._executor import ClusterProcessPoolExecutor
    concurrent.futures.process.ProcessPoolExecutor = ClusterProcessPoolExecutor
    concurrent.futures.ProcessPoolExecutor = ClusterProcessPoolExecutor
