"""The base of the suites written once and instantiated per start method."""

import multiprocessing

import pytest

TIMEOUT = 60


class StartMethodSuite:
    """self.ctx is the context of START_METHOD (set by each instantiation);
    children still running when a test ends are killed. A suite adds its own
    set-up and checks in _before_test and _after_test (run once the children
    are gone)."""

    START_METHOD = None

    @pytest.fixture(autouse=True)
    def _context(self):
        self.ctx = multiprocessing.get_context(self.START_METHOD)
        self._before_test()
        yield
        for child in multiprocessing.active_children():
            child.kill()
            child.join(TIMEOUT)
        self._after_test()

    def _before_test(self):
        pass

    def _after_test(self):
        pass

    def run_child(self, target, *args):
        """Run target(*args) in a child to its end; its exit code."""
        p = self.ctx.Process(target=target, args=args)
        p.start()
        p.join(TIMEOUT)
        assert not p.is_alive(), 'child did not end'
        return p.exitcode

    def start(self, target, *args, **kwargs):
        """Start target(*args) in a child of this suite's start method."""
        p = self.ctx.Process(target=target, args=args, **kwargs)
        p.start()
        return p
