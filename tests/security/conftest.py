"""Security tests: run under mphost (`mphost -m pytest tests/security`)."""

import os
import sys

import pytest


@pytest.fixture(scope='session', autouse=True)
def _under_mphost():
    import multiprocessing
    assert 'share/mphost/python' in multiprocessing.__file__, multiprocessing.__file__
    yield


def own_root_environment():
    """The environment of a program that is a root of its own, not a member
    of the tree running the tests."""
    env = dict(os.environ)
    env.pop('MPHOST_REGISTRY', None)
    return env


@pytest.fixture
def mphost_executable():
    return sys.executable
