"""Managers across processes under the forkserver start method."""

from _suite_managers import ManagerSuite


class TestManagersForkServer(ManagerSuite):
    START_METHOD = 'forkserver'
