"""A program killed as a whole (root, forkserver zygote, tracker) leaves
directories under the temporary root: the forkserver's socket directory and
the pymp- directory of listener and manager sockets. The next mphost program
to start removes them with the tree's other leftovers (one sweep for all)."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

PROGRAM = textwrap.dedent('''
    import multiprocessing as mp, os, sys, time
    from multiprocessing import connection, forkserver, managers

    def noop():
        pass

    if __name__ == '__main__':
        ctx = mp.get_context('forkserver')
        p = ctx.Process(target=noop)
        p.start()
        p.join()
        listener = connection.Listener(family='AF_UNIX')
        manager = managers.BaseManager(address=None, authkey=b'k' * 32, ctx=ctx)
        manager.start()
        zygote = forkserver._forkserver._zygote
        print(zygote.directory, os.path.dirname(listener.address), flush=True)
        time.sleep(120)
''')


def _own_root_environment():
    # A root of its own, not a member of the tree running these tests.
    env = dict(os.environ)
    env.pop('MPHOST_REGISTRY', None)
    return env


def _wait_line(proc, timeout):
    deadline = time.monotonic() + timeout
    import selectors
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    while time.monotonic() < deadline:
        if sel.select(timeout=0.5):
            return proc.stdout.readline()
        if proc.poll() is not None:
            break
    return ''


def test_killed_tree_directories_swept_by_next_start(tmp_path):
    script = tmp_path / 'prog.py'
    script.write_text(PROGRAM)
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True, env=_own_root_environment())
    try:
        line = _wait_line(proc, 60)
        assert line, proc.stderr.read() if proc.poll() is not None else 'no output in 60 s'
        dirs = line.split()
        assert len(dirs) == 2
        for d in dirs:
            assert os.path.isdir(d), d
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=30)
        proc.stdout.close()
        proc.stderr.close()
    # Every process of the group is gone before the next program starts.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    # Another mphost program starting meanwhile on a busy machine may sweep
    # them first: either way they must be gone once the next one started.
    subprocess.run([sys.executable, '-c', 'pass'], check=True, timeout=60, env=_own_root_environment())
    left = [d for d in dirs if os.path.exists(d)]
    assert left == []
