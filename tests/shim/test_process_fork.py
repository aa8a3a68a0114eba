"""Process behaviour under the fork start method."""

import random

import multiprocessing
from multiprocessing import util

from _suite_process import ProcessSuite, TIMEOUT, write_file


class TestProcessFork(ProcessSuite):
    START_METHOD = 'fork'


def _write_calls(path, calls):
    write_file(path, repr(calls))


def test_register_after_fork_runs_in_children_only(tmp_path):
    calls = []

    class Holder:
        pass

    holder = Holder()
    util.register_after_fork(holder, lambda obj: calls.append('after'))
    out = tmp_path / 'calls'
    p = multiprocessing.get_context('fork').Process(target=_write_calls, args=(str(out), calls))
    p.start()
    p.join(TIMEOUT)
    assert p.exitcode == 0
    assert eval(out.read_text()) == ['after']
    assert calls == []


def _draw(path):
    write_file(path, repr(random.random()))


def test_forked_children_get_fresh_random_state(tmp_path):
    random.seed(1234)
    ctx = multiprocessing.get_context('fork')
    outs = [tmp_path / f'r{i}' for i in range(3)]
    children = [ctx.Process(target=_draw, args=(str(o),)) for o in outs]
    for p in children:
        p.start()
    for p in children:
        p.join(TIMEOUT)
        assert p.exitcode == 0
    draws = {o.read_text() for o in outs}
    assert len(draws) == 3
    assert repr(random.random()) not in draws


def test_the_child_opens_its_parent_sentinel_and_sees_a_parent_gone_already():
    import os
    import select
    from multiprocessing import popen_fork

    # The parent of this process runs: a pidfd that is not readable.
    alive = popen_fork._parent_sentinel(os.getppid())
    # A process that is not this one's parent (one that has ended, and any
    # other): taken as a parent gone before the child looked, readable.
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    gone = popen_fork._parent_sentinel(pid)
    try:
        assert select.select([alive], [], [], 0)[0] == []
        assert select.select([gone], [], [], TIMEOUT)[0] == [gone]
    finally:
        os.close(alive)
        os.close(gone)
