"""Connections, Listener/Client and waiting on several objects at once."""

import os
import selectors
import time

__all__ = ['wait']


def wait(object_list, timeout=None):
    """Wait until some objects in object_list are ready; return those.

    The objects are connections, queue readers, sockets, process sentinels
    (descriptors) or anything with fileno(). An empty list is returned
    when `timeout` seconds pass first.
    """
    with selectors.DefaultSelector() as selector:
        for obj in object_list:
            selector.register(obj, selectors.EVENT_READ)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            ready = selector.select(timeout)
            if ready:
                return [key.fileobj for key, _events in ready]
            if deadline is not None:
                timeout = deadline - time.monotonic()
                if timeout <= 0:
                    return []
