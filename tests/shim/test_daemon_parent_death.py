"""A daemon child dies with its parent, however the parent died.

The stdlib terminates daemon children when their parent exits normally; a
parent killed outright (SIGKILL) runs nothing, and a daemon child would go
on alone. mphost ties daemon children to their parent under every start
method (docs/BEHAVIOUR.md): the child is killed (SIGKILL) within moments of
its parent's death. Non-daemon children keep the stdlib's behaviour and
outlive the parent.

Each test runs a parent program (an mphost process of its own), which
starts a sleeping child and reports the child's pid; the test SIGKILLs the
parent and watches the child."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

TIMEOUT = 60

PARENT = textwrap.dedent('''
    import multiprocessing as mp
    import sys
    import threading
    import time

    def sleeper():
        time.sleep(120)

    if __name__ == '__main__':
        method, daemon, where = sys.argv[1], sys.argv[2] == 'daemon', sys.argv[3]
        ctx = mp.get_context(method)
        child = ctx.Process(target=sleeper, daemon=daemon)
        if where == 'thread':
            # Started from a thread that ends at once: the child must not
            # die with that thread, only with the process.
            t = threading.Thread(target=child.start)
            t.start()
            t.join()
        else:
            child.start()
        print(child.pid, flush=True)
        time.sleep(120)
''')


def state(pid):
    """'gone', 'zombie' or 'running'."""
    try:
        with open('/proc/%d/stat' % pid) as f:
            letter = f.read().rpartition(')')[2].split()[0]
    except (OSError, IndexError):
        return 'gone'
    return 'zombie' if letter in ('Z', 'X') else 'running'


def running_after(pid, seconds):
    """Whether pid still runs after `seconds` (returns early once it ended)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if state(pid) != 'running':
            return False
        time.sleep(0.02)
    return state(pid) == 'running'


@pytest.fixture
def parent_program(tmp_path):
    path = tmp_path / 'parent.py'
    path.write_text(PARENT)
    return path


def start_parent(program, method, kind, where='main'):
    proc = subprocess.Popen([sys.executable, str(program), method, kind, where],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=program.parent)
    line = proc.stdout.readline()
    if not line.strip():
        proc.kill()
        proc.wait(TIMEOUT)
        pytest.fail('parent did not start its child: %s' % proc.stderr.read())
    return proc, int(line)


def kill_parent(proc):
    proc.send_signal(signal.SIGKILL)
    proc.wait(TIMEOUT)
    proc.stdout.close()
    proc.stderr.close()


@pytest.mark.parametrize('method', ['fork', 'spawn', 'forkserver'])
def test_daemon_child_dies_with_its_killed_parent(parent_program, method):
    proc, child = start_parent(parent_program, method, 'daemon')
    try:
        assert running_after(child, 0.2)
        kill_parent(proc)
        assert not running_after(child, 2.0), 'daemon child %d outlived its parent' % child
    finally:
        if state(child) == 'running':
            os.kill(child, signal.SIGKILL)


@pytest.mark.parametrize('method', ['fork', 'spawn', 'forkserver'])
def test_daemon_child_started_from_an_ended_thread(parent_program, method):
    proc, child = start_parent(parent_program, method, 'daemon', 'thread')
    try:
        # The starting thread has ended and the parent lives: so does the child.
        assert running_after(child, 0.5)
        kill_parent(proc)
        assert not running_after(child, 2.0), 'daemon child %d outlived its parent' % child
    finally:
        if state(child) == 'running':
            os.kill(child, signal.SIGKILL)


@pytest.mark.parametrize('method', ['fork', 'spawn', 'forkserver'])
def test_non_daemon_child_outlives_its_killed_parent(parent_program, method):
    # As with the stdlib: only daemon children are tied to their parent.
    proc, child = start_parent(parent_program, method, 'non-daemon')
    try:
        kill_parent(proc)
        assert running_after(child, 1.0)
    finally:
        if state(child) == 'running':
            os.kill(child, signal.SIGKILL)
