"""Synchronization under the fork start method."""

from _suite_synchronize import SynchronizeSuite


class TestSynchronizeFork(SynchronizeSuite):
    START_METHOD = 'fork'
