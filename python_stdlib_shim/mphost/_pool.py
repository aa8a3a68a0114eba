"""mphost.Pool: multiprocessing.pool.Pool with opt-in extras.

A subclass of the stdlib's Pool, so every stdlib method, every isinstance
check and every ``except`` clause keeps working. The bases cooperate: each
__init__ and each call takes its own keyword options and passes the rest on
with super()."""

import multiprocessing.pool

from ._pool_calls import PoolCalls

__all__ = ['Pool']


class Pool(PoolCalls, multiprocessing.pool.Pool):
    """A process pool with mphost's extras; without them, the stdlib's Pool."""
