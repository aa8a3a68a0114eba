"""Pool with worker processes started by fork."""

from _suite_pool import PoolSuite


class TestPoolFork(PoolSuite):
    START_METHOD = 'fork'
