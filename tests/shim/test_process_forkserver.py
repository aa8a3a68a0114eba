"""Process behaviour under the forkserver start method."""

from _suite_process import ProcessSuite


class TestProcessForkserver(ProcessSuite):
    START_METHOD = 'forkserver'
