"""Connections between processes under the fork start method."""

from _suite_connection import ConnectionSuite


class TestConnectionFork(ConnectionSuite):
    START_METHOD = 'fork'
