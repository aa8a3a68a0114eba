"""Managers across processes under the fork start method."""

from _suite_managers import ManagerSuite


class TestManagersFork(ManagerSuite):
    START_METHOD = 'fork'
