"""The Windows spawn Popen of the stdlib's layout.

mphost runs on Linux, where processes start with fork, spawn (see
popen_spawn_posix) or forkserver; there is no Windows start method.
"""

__all__ = ['Popen']


class Popen(object):
    method = 'spawn'

    def __init__(self, process_obj):
        raise NotImplementedError(
            'the Windows spawn start method is not available: mphost runs on Linux, '
            'where spawn uses popen_spawn_posix')
