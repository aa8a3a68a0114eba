"""Synchronization under the spawn start method."""

from _suite_synchronize import SynchronizeSuite


class TestSynchronizeSpawn(SynchronizeSuite):
    START_METHOD = 'spawn'
