"""mphost extras: what mphost offers beyond the stdlib's multiprocessing.

shared_array(format, count or shape) makes a block of shared memory that a worker of
a C++ host_pool can return to the application without a copy (see
``mphost._shared``). The worker loop of host_pool is ``mphost._worker``.

Semaphore(value, undo=True) and BoundedSemaphore(value, undo=True) are
multiprocessing semaphores that give back what a dead process held, as
System V's SEM_UNDO does (see ``mphost._semaphore``).
"""

from ._semaphore import BoundedSemaphore, Semaphore
from ._shared import shared_array
from ._state import TreeState, state

__all__ = ['shared_array', 'Semaphore', 'BoundedSemaphore', 'state', 'TreeState']
