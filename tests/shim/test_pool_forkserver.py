"""Pool with worker processes started by forkserver."""

from _suite_pool import PoolSuite


class TestPoolForkServer(PoolSuite):
    START_METHOD = 'forkserver'
