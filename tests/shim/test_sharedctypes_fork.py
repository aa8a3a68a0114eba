"""Value, Array and raw shared ctypes with children under the fork start method."""

from _suite_sharedctypes import SharedCTypesSuite


class TestSharedCTypesFork(SharedCTypesSuite):
    START_METHOD = 'fork'
