"""Connections between processes under the spawn start method."""

from _suite_connection import ConnectionSuite


class TestConnectionSpawn(ConnectionSuite):
    START_METHOD = 'spawn'
