"""A process ends its multiprocessing work before it joins its non-daemon
threads, as the stdlib's children do: those threads keep using their
connections and queues until they are done."""

import threading
import time

import pytest

import multiprocessing

TIMEOUT = 30


def late_user(q, r):
    time.sleep(0.3)
    q.put(('late', r.recv()))


def child(q, r):
    threading.Thread(target=late_user, args=(q, r)).start()


@pytest.mark.parametrize('method', ['fork', 'spawn', 'forkserver'])
def test_a_thread_outliving_the_target_keeps_its_connections(method):
    ctx = multiprocessing.get_context(method)
    q = ctx.Queue()
    r, w = ctx.Pipe(duplex=False)
    p = ctx.Process(target=child, args=(q, r))
    p.start()
    w.send('hello')
    assert q.get(timeout=TIMEOUT) == ('late', 'hello')
    p.join(TIMEOUT)
    assert p.exitcode == 0
