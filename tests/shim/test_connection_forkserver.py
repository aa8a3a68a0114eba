"""Connections between processes under the forkserver start method."""

from _suite_connection import ConnectionSuite


class TestConnectionForkServer(ConnectionSuite):
    START_METHOD = 'forkserver'
