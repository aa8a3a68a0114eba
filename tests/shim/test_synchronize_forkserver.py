"""Synchronization under the forkserver start method."""

from _suite_synchronize import SynchronizeSuite


class TestSynchronizeForkserver(SynchronizeSuite):
    START_METHOD = 'forkserver'
