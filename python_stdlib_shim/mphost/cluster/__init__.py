"""mphost's cluster backends: the programs's pools on the ranks of an MPI job.

``mpiexec -n N mphost --cluster=mpi script.py`` runs the program on rank 0;
the other ranks host the workers of its ``multiprocessing.Pool`` and
``concurrent.futures.ProcessPoolExecutor`` (see docs/cluster.md). Nothing
here is imported, and nothing of MPI is loaded, without that flag.
"""

__all__ = ['active', 'ClusterPool']


def active():
    """Whether this process is rank 0 of a cluster job."""
    from . import _hub
    return _hub.current() is not None


def __getattr__(name):
    if name == 'ClusterPool':
        from ._pool import ClusterPool
        return ClusterPool
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
