"""The task board of a process pool (multiprocessing.pool): one slot of
shared memory per worker, where the worker's receipt lands. See
multiprocessing.pool for the overview."""

# A private module: `from multiprocessing._pool_* import *` exports nothing.
__all__ = []

from ._pool_worker import _MARK_CELLS, _SLOT_CELLS


class _TaskBoard:
    """A ctx.RawArray of _SLOT_CELLS cells per slot, and which worker has
    which slot. Cell 0 of a slot holds the identity of the inqueue message
    its worker took (stored by the channel, the receipt); cells 1 to 3,
    when the pool's workers mark tasks themselves, the (job, first, count)
    of the task being run; the rest belong to a supervised pool's workers
    (see _pool_worker._SLOT_CELLS). The parent reads a slot once its worker
    died. Callers serialise access (the engine's worker-list lock)."""

    def __init__(self, ctx, nslots):
        self.array = ctx.RawArray('Q', nslots * _SLOT_CELLS)
        self._cells = memoryview(self.array).cast('B').cast('Q')
        self._free = list(range(nslots - 1, -1, -1))
        self._slot_of = {}
        # Called as retire(slot, worker) when a worker's slot is given back,
        # before it can be cleared (a supervised pool keeps its counters).
        self.retire = None

    def claim(self):
        """A cleared slot for a worker about to start, or None if every
        slot is taken (the worker then runs untracked)."""
        if not self._free:
            return None
        slot = self._free.pop()
        base = slot * _SLOT_CELLS
        for cell in range(base, base + _SLOT_CELLS):
            self._cells[cell] = 0
        return slot

    def unclaim(self, slot):
        """Give back a slot whose worker did not start."""
        self._free.append(slot)

    def assign(self, worker, slot):
        self._slot_of[worker] = slot

    def vacate(self, worker, with_marks):
        """Free the slot of a worker that exited and return what it says:
        (receipt identity, the marked (job, first, count) or None); (0,
        None) for a worker that had no slot."""
        slot = self._slot_of.pop(worker, None)
        if slot is None:
            return 0, None
        base = slot * _SLOT_CELLS
        ident = self._cells[base]
        marks = tuple(self._cells[base + 1:base + _MARK_CELLS]) if with_marks else None
        if self.retire is not None:
            self.retire(slot, worker)
        self._free.append(slot)
        return ident, marks
