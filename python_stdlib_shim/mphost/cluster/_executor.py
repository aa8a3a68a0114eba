"""concurrent.futures.ProcessPoolExecutor on a cluster job: the futures of
mphost.ProcessPoolExecutor over a ClusterPool. Given a local mp_context
(another start method than "mpi"), it runs on this host as usual."""

from .._executor import ProcessPoolExecutor


class ClusterProcessPoolExecutor(ProcessPoolExecutor):

    def __init__(self, max_workers=None, mp_context=None, initializer=None,
                 initargs=(), *, max_tasks_per_child=None):
        from . import _hub
        self._on_ranks = mp_context is None or mp_context.get_start_method() == 'mpi'
        if self._on_ranks:
            import multiprocessing
            mp_context = multiprocessing.get_context('mpi')
            if max_workers is None:
                hub = _hub.current()
                max_workers = hub.default_workers() if hub is not None else None
                if not max_workers:
                    raise ValueError('a cluster executor needs worker ranks: run the program '
                                     'with mpiexec -n 2 or more (rank 0 runs the program itself)')
        super().__init__(max_workers, mp_context, initializer, initargs,
                         max_tasks_per_child=max_tasks_per_child)

    def _pool_type(self):
        if not self._on_ranks:
            return super()._pool_type()
        from ._pool import ClusterPool
        return ClusterPool
