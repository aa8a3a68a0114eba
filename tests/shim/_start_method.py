"""The base of the suites written once and instantiated per start method."""

import multiprocessing

import pytest

TIMEOUT = 60


class StartMethodSuite:
    """self.ctx is the context of START_METHOD (set by each instantiation);
    children still running when a test ends are killed."""

    START_METHOD = None

    @pytest.fixture(autouse=True)
    def _context(self):
        self.ctx = multiprocessing.get_context(self.START_METHOD)
        yield
        for child in multiprocessing.active_children():
            child.kill()
            child.join(TIMEOUT)

    def start(self, target, *args, **kwargs):
        """Start target(*args) in a child of this suite's start method."""
        p = self.ctx.Process(target=target, args=args, **kwargs)
        p.start()
        return p
