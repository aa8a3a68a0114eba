"""Process behaviour, written once and instantiated per start method by
test_process_{fork,spawn,forkserver}.py (each sets START_METHOD)."""

import os
import random
import signal
import subprocess
import sys
import textwrap
import time

import pytest

import multiprocessing
from multiprocessing import util
from multiprocessing.connection import wait

from _start_method import StartMethodSuite

TIMEOUT = 60


# -- targets run in children: module level so that spawn can import them --

def exit_with(code):
    sys.exit(code)


def raise_value_error():
    raise ValueError('raised in the child')


def sleep_forever():
    while True:
        time.sleep(1)


def write_file(path, text):
    with open(path, 'w') as f:
        f.write(text)


def report_identity(path):
    parent = multiprocessing.parent_process()
    me = multiprocessing.current_process()
    write_file(path, repr((me.name, me.pid == os.getpid(), me.daemon, bytes(me.authkey).hex(),
                           parent.pid, parent.is_alive(), sys.executable,
                           multiprocessing.__file__, multiprocessing.get_start_method())))


def report_random(path):
    write_file(path, repr(random.random()))


def start_grandchild():
    p = multiprocessing.Process(target=exit_with, args=(0,))
    p.start()
    p.join()


def print_lines(count):
    for i in range(count):
        print('line', i)
    print('no newline at the end', end='')


def wait_for_parent_then_write(path):
    parent = multiprocessing.parent_process()
    parent.join(TIMEOUT)
    write_file(path, 'parent gone' if not parent.is_alive() else 'parent alive')


class Squarer(multiprocessing.Process):
    def __init__(self, value, path):
        super().__init__()
        self.value = value
        self.path = path

    def run(self):
        write_file(self.path, str(self.value ** 2))


# One subclass per start method, at module level so that it pickles.
SQUARERS = {}
for _method in ('fork', 'spawn', 'forkserver'):
    _cls = type('Squarer_' + _method, (Squarer,), {
        '_start_method': _method,
        '_Popen': staticmethod(multiprocessing.get_context(_method).Process._Popen)})
    globals()[_cls.__name__] = SQUARERS[_method] = _cls
del _method, _cls


# -- the suite --

class ProcessSuite(StartMethodSuite):
    def finish(self, p):
        p.join(TIMEOUT)
        assert not p.is_alive(), 'child did not end'
        return p.exitcode

    def test_exit_codes(self):
        assert self.finish(self.start(exit_with, 0)) == 0
        assert self.finish(self.start(exit_with, 7)) == 7
        assert self.finish(self.start(exit_with, None)) == 0
        assert self.finish(self.start(exit_with, 'a message')) == 1
        assert self.finish(self.start(raise_value_error)) == 1

    def test_terminate_and_kill_give_minus_signum(self):
        p = self.start(sleep_forever)
        assert p.is_alive()
        p.terminate()
        assert self.finish(p) == -signal.SIGTERM
        p = self.start(sleep_forever)
        p.kill()
        assert self.finish(p) == -signal.SIGKILL
        assert 'exitcode=-SIGKILL' in repr(p)

    def test_exit_code_read_by_several_threads_at_once(self):
        # join() in threads, and start() of other processes (which polls
        # every child), may read a child's end together: all see its code.
        import threading
        for _ in range(5):
            victims = [self.start(sleep_forever) for _ in range(2)]
            seen = []
            barrier = threading.Barrier(5)

            def reader(p):
                barrier.wait()
                p.join(TIMEOUT)
                seen.append(p.exitcode)

            threads = [threading.Thread(target=reader, args=(p,)) for p in victims for _ in range(2)]
            for t in threads:
                t.start()
            for p in victims:
                p.kill()
            barrier.wait()
            extra = self.start(exit_with, 0)  # polls the children
            for t in threads:
                t.join(TIMEOUT)
            assert extra.join(TIMEOUT) is None and extra.exitcode == 0
            assert seen == [-signal.SIGKILL] * 4, seen
            assert [p.exitcode for p in victims] == [-signal.SIGKILL] * 2

    def test_identity_in_child(self, tmp_path):
        out = tmp_path / 'identity'
        p = self.start(report_identity, str(out), name='worker-x')
        assert self.finish(p) == 0
        name, pid_ok, daemon, key, parent_pid, parent_alive, exe, mp_file, method = eval(out.read_text())
        assert name == 'worker-x' and pid_ok and daemon is False
        assert key == bytes(multiprocessing.current_process().authkey).hex()
        assert parent_pid == os.getpid() and parent_alive
        assert exe == sys.executable
        assert 'share/mphost/python' in mp_file
        assert method == self.START_METHOD

    def test_attributes_before_and_after(self):
        p = self.ctx.Process(target=exit_with, args=(0,))
        assert p.pid is None and p.exitcode is None and not p.is_alive()
        assert 'initial' in repr(p)
        with pytest.raises(ValueError):
            p.sentinel
        p.start()
        assert isinstance(p.pid, int) and p.pid == p.ident
        assert isinstance(p.sentinel, int)
        assert self.finish(p) == 0
        assert 'stopped' in repr(p)
        p.close()
        with pytest.raises(ValueError):
            p.is_alive()
        assert 'closed' in repr(p)

    def test_misuse_raises_stdlib_errors(self):
        p = self.ctx.Process(target=sleep_forever)
        with pytest.raises(AssertionError):
            p.join()
        p.start()
        with pytest.raises(AssertionError):
            p.start()
        with pytest.raises(ValueError):
            p.close()
        with pytest.raises(AssertionError):
            p.daemon = True
        p.kill()
        self.finish(p)
        with pytest.raises(AssertionError):
            multiprocessing.current_process().join()

    def test_join_timeout_returns_while_running(self):
        p = self.start(sleep_forever)
        p.join(0.05)
        assert p.exitcode is None and p.is_alive()
        p.kill()
        self.finish(p)

    def test_sentinel_works_with_wait(self):
        p = self.start(exit_with, 0)
        assert wait([p.sentinel], TIMEOUT) == [p.sentinel]
        self.finish(p)

    def test_active_children(self):
        p = self.start(sleep_forever)
        assert p in multiprocessing.active_children()
        p.kill()
        self.finish(p)
        assert p not in multiprocessing.active_children()

    def test_subclass_run(self, tmp_path):
        out = tmp_path / 'square'
        proc = SQUARERS[self.START_METHOD](12, str(out))
        proc.start()
        assert self.finish(proc) == 0
        assert out.read_text() == '144'

    def test_many_children_at_once(self):
        children = [self.start(exit_with, i) for i in range(12)]
        assert [self.finish(p) for p in children] == list(range(12))

    def test_daemon_cannot_have_children(self):
        p = self.start(start_grandchild, daemon=True)
        assert self.finish(p) == 1

    def test_child_output_reaches_parent(self, mphost_executable, tmp_path):
        script = tmp_path / 'out.py'
        script.write_text(textwrap.dedent(f'''
            import multiprocessing as mp
            import _suite_process as s
            if __name__ == '__main__':
                ctx = mp.get_context({self.START_METHOD!r})
                print('parent before', flush=False)
                p = ctx.Process(target=s.print_lines, args=(3,))
                p.start(); p.join()
                print()
                print('parent after')
        '''))
        env = dict(os.environ, PYTHONPATH=os.path.dirname(__file__))
        proc = subprocess.run([mphost_executable, str(script)], capture_output=True, text=True,
                              timeout=TIMEOUT, env=env)
        assert proc.returncode == 0, proc.stderr
        assert [line for line in proc.stdout.splitlines() if line.startswith('line ')] == \
            ['line 0', 'line 1', 'line 2']
        assert 'no newline at the end' in proc.stdout
        assert proc.stdout.startswith('parent before') and proc.stdout.endswith('parent after\n')

    def test_unpicklable_target_fails_at_start(self):
        if self.START_METHOD == 'fork':
            pytest.skip('fork does not pickle the process object')
        p = self.ctx.Process(target=lambda: None)
        with pytest.raises((AttributeError, TypeError, Exception)) as info:
            p.start()
        assert 'pickle' in str(info.value).lower()
        assert p.pid is None

    def test_unpicklable_argument_fails_at_start(self):
        if self.START_METHOD == 'fork':
            pytest.skip('fork does not pickle the process object')
        import threading
        p = self.ctx.Process(target=exit_with, args=(threading.Lock(),))
        with pytest.raises(TypeError, match='pickle'):
            p.start()

    def test_authkey_is_not_picklable_outside_spawning(self):
        import pickle
        with pytest.raises(TypeError, match='disallowed'):
            pickle.dumps(multiprocessing.current_process().authkey)

    def test_daemon_children_end_with_parent(self, mphost_executable, tmp_path):
        marker = tmp_path / 'daemon-pid'
        script = tmp_path / 'daemon.py'
        script.write_text(textwrap.dedent(f'''
            import multiprocessing as mp, time
            import _suite_process as s
            if __name__ == '__main__':
                ctx = mp.get_context({self.START_METHOD!r})
                p = ctx.Process(target=s.sleep_forever, daemon=True)
                p.start()
                open({str(marker)!r}, 'w').write(str(p.pid))
        '''))
        env = dict(os.environ, PYTHONPATH=os.path.dirname(__file__))
        proc = subprocess.run([mphost_executable, str(script)], capture_output=True, text=True,
                              timeout=TIMEOUT, env=env)
        assert proc.returncode == 0, proc.stderr
        pid = int(marker.read_text())
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)
        else:
            pytest.fail('daemon child outlived its parent')

    def test_non_daemon_children_are_joined_at_exit(self, mphost_executable, tmp_path):
        out = tmp_path / 'late'
        script = tmp_path / 'nondaemon.py'
        script.write_text(textwrap.dedent(f'''
            import multiprocessing as mp
            import _suite_process as s
            if __name__ == '__main__':
                ctx = mp.get_context({self.START_METHOD!r})
                ctx.Process(target=s.wait_then_write, args=({str(out)!r},)).start()
        '''))
        env = dict(os.environ, PYTHONPATH=os.path.dirname(__file__))
        proc = subprocess.run([mphost_executable, str(script)], capture_output=True, text=True,
                              timeout=TIMEOUT, env=env)
        assert proc.returncode == 0, proc.stderr
        assert out.read_text() == 'done'

    def test_parent_process_sentinel_reports_parent_exit(self, mphost_executable, tmp_path):
        out = tmp_path / 'parent'
        script = tmp_path / 'orphan.py'
        script.write_text(textwrap.dedent(f'''
            import multiprocessing as mp
            import _suite_process as s
            if __name__ == '__main__':
                ctx = mp.get_context({self.START_METHOD!r})
                p = ctx.Process(target=s.wait_for_parent_then_write, args=({str(out)!r},), daemon=False)
                p.start()
                # Leave without joining: util's exit function joins it, so
                # end abruptly instead.
                import os; os._exit(0)
        '''))
        env = dict(os.environ, PYTHONPATH=os.path.dirname(__file__))
        subprocess.run([mphost_executable, str(script)], timeout=TIMEOUT, env=env)
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline and not (out.exists() and out.read_text()):
            time.sleep(0.05)
        assert out.read_text() == 'parent gone'


def wait_then_write(path):
    time.sleep(0.3)
    write_file(path, 'done')
