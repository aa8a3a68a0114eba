"""Shared fixtures of the shim's tests. These tests run under mphost itself
(`mphost -m pytest tests/shim`)."""

import os
import shutil
import sys

import pytest

START_METHODS = ['fork', 'spawn', 'forkserver']
STOCK_PYTHON = '/usr/bin/python3'


def pytest_configure(config):
    config.addinivalue_line('markers', 'start_method(name): test instantiated for one start method')


@pytest.fixture
def mphost_executable():
    """The mphost binary running these tests."""
    return sys.executable


@pytest.fixture
def stock_python():
    if not os.path.exists(STOCK_PYTHON):
        pytest.skip('stock python3 is not installed')
    return STOCK_PYTHON


@pytest.fixture(scope='session', autouse=True)
def _not_stock_multiprocessing():
    """Every test here must exercise mphost's multiprocessing, never the stdlib's."""
    import multiprocessing
    assert 'share/mphost/python' in multiprocessing.__file__, multiprocessing.__file__
    yield


@pytest.fixture
def shm_snapshot():
    """Names in /dev/shm before the test; lets a test check for leaks."""
    before = set(os.listdir('/dev/shm')) if os.path.isdir('/dev/shm') else set()
    return before


def which(name):
    return shutil.which(name)


@pytest.fixture
def make_mphost_pool():
    """make_mphost_pool(method, *args, **options): an mphost.Pool under a start
    method; each pool made is terminated and joined (bounded) at the end."""
    import multiprocessing
    import mphost
    from _suite_pool import bounded_join
    made = []

    def make(method, *args, **kwds):
        made.append(mphost.Pool(*args, context=multiprocessing.get_context(method), **kwds))
        return made[-1]
    yield make
    for pool in made:
        pool.terminate()
        bounded_join(pool)
