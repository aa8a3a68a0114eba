"""mphost extras: what mphost offers beyond the stdlib's multiprocessing.

shared_array(format, count or shape) makes a block of shared memory that a worker of
a C++ host_pool can return to the application without a copy (see
``mphost._shared``). The worker loop of host_pool is ``mphost._worker``.
"""

from ._shared import shared_array

__all__ = ['shared_array']
