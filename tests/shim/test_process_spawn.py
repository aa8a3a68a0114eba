"""Process behaviour under the spawn start method."""

from _suite_process import ProcessSuite


class TestProcessSpawn(ProcessSuite):
    START_METHOD = 'spawn'
