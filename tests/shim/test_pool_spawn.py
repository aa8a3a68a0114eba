"""Pool with worker processes started by spawn."""

from _suite_pool import PoolSuite


class TestPoolSpawn(PoolSuite):
    START_METHOD = 'spawn'
