"""mphost's multiprocessing: the stdlib's API over mphost's native runtime.

Every process is an mphost host process; queues, pipes, locks and shared
values live in shared memory managed by mphost. The public names are those
of the default context (see context.py).
"""

import sys

from . import context

__all__ = [name for name in dir(context._default_context) if not name.startswith('_')]
globals().update((name, getattr(context._default_context, name)) for name in __all__)

SUBDEBUG = 5
SUBWARNING = 25

# A spawned child imports the parent's main module as __mp_main__; make the
# name resolve in the parent too, so objects pickle the same way.
if '__main__' in sys.modules:
    sys.modules['__mp_main__'] = sys.modules['__main__']
