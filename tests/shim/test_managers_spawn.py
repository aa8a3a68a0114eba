"""Managers across processes under the spawn start method."""

from _suite_managers import ManagerSuite


class TestManagersSpawn(ManagerSuite):
    START_METHOD = 'spawn'
