"""The child table under the process objects (``_mphost.supervisor``), per
start method: a child reaped behind our back reports as it does on stock,
a dropped Popen's child is reaped (no zombie), dropped daemon children are
terminated by the exit path, a forked process starts with no children, and
the rows follow the process objects."""

import gc
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

import multiprocessing
from _mphost import supervisor as table

from _start_method import StartMethodSuite

TIMEOUT = 60
STOCK_PYTHON = '/usr/bin/python3'


def exit_with(code):
    sys.exit(code)


def sleep_a_while():
    time.sleep(0.3)


def note_sigterm(path):
    def noted(signo, frame):
        with open(path, 'w') as f:
            f.write('terminated')
        os._exit(0)
    signal.signal(signal.SIGTERM, noted)
    with open(path + '.ready', 'w'):
        pass
    while True:
        time.sleep(0.05)


def eventually(check, what):
    deadline = time.monotonic() + TIMEOUT
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(what)
        time.sleep(0.02)


def zombie_or_child(pid):
    try:
        return os.waitpid(pid, os.WNOHANG) is not None
    except ChildProcessError:
        return False


LOST_CODE_SCRIPT = '''
import multiprocessing as mp, os, sys, time
def work(): pass
if __name__ == '__main__':
    ctx = mp.get_context(sys.argv[1])
    p = ctx.Process(target=work)
    p.start()
    pid, status = os.waitpid(p.pid, 0)   # user code reaps the child itself
    p.join(5)
    print(pid == p.pid, status, p.exitcode, p.is_alive(), p in mp.active_children())
'''


class SupervisorSuite(StartMethodSuite):
    def dropped_popen(self, target, *args, daemon=False):
        """A child started with a Popen that nobody keeps: its pid and row."""
        proc = self.ctx.Process(target=target, args=args, daemon=daemon)
        popen = proc._Popen(proc)
        pid, ticket = popen.pid, popen._ticket
        assert table.view(ticket)['method'] == self.START_METHOD
        del popen
        gc.collect()
        return pid, ticket

    def test_rows_follow_the_process_objects(self):
        p = self.ctx.Process(target=sleep_a_while, daemon=True)
        p.start()
        row = table.view(p._popen._ticket)
        assert (row['pid'], row['sentinel'], row['daemon'], row['method']) == \
            (p.pid, p.sentinel, True, self.START_METHOD)
        assert p._popen._ticket in table.running()
        p.join(TIMEOUT)
        assert p.exitcode == 0 and p not in multiprocessing.active_children()
        ticket = p._popen._ticket
        p.close()
        assert table.view(ticket) is None

    def test_a_child_reaped_behind_our_back_reports_as_on_stock(self, mphost_executable, tmp_path):
        if self.START_METHOD == 'forkserver':
            pytest.skip("a forkserver child is the server's child, not ours to waitpid")
        script = tmp_path / 'lost.py'
        script.write_text(LOST_CODE_SCRIPT)
        outputs = [subprocess.run([python, str(script), self.START_METHOD], capture_output=True,
                                  text=True, timeout=TIMEOUT)
                   for python in (STOCK_PYTHON, mphost_executable)]
        assert [o.returncode for o in outputs] == [0, 0], [o.stderr for o in outputs]
        assert outputs[1].stdout == outputs[0].stdout == 'True 0 None True True\n'

    def test_a_dropped_popen_is_reaped_without_a_zombie(self):
        pid, ticket = self.dropped_popen(exit_with, 0)
        assert table.view(ticket) is None or table.view(ticket)['orphan']

        def reaped():
            multiprocessing.active_children()   # reaps the orphans that ended
            return table.view(ticket) is None
        eventually(reaped, 'the dropped child stayed in the table')
        assert not zombie_or_child(pid)

    def test_the_exit_path_terminates_dropped_daemons(self, tmp_path):
        marker = str(tmp_path / 'term')
        pid, ticket = self.dropped_popen(note_sigterm, marker, daemon=True)
        eventually(lambda: os.path.exists(marker + '.ready'), 'the child never got ready')
        assert table.view(ticket)['orphan']
        multiprocessing.process._end_orphans()
        eventually(lambda: os.path.exists(marker) and open(marker).read() == 'terminated',
                   'the dropped daemon got no SIGTERM')
        eventually(lambda: table.reap_orphans() == 0 and table.view(ticket) is None,
                   'the terminated child stayed in the table')
        assert not zombie_or_child(pid)

    def test_a_forked_process_starts_with_no_children(self):
        p = self.ctx.Process(target=sleep_a_while)
        p.start()
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:
            seen = (table.size(), multiprocessing.active_children())
            os.write(write_end, repr(seen).encode())
            os._exit(0)
        os.close(write_end)
        with os.fdopen(read_end) as f:
            assert f.read() == '(0, [])'
        os.waitpid(pid, 0)
        assert p in multiprocessing.active_children()
        p.join(TIMEOUT)
        assert p.exitcode == 0

    def test_join_in_threads_while_start_reaps(self):
        import threading
        victims = [self.start(sleep_a_while) for _ in range(3)]
        codes = []
        threads = [threading.Thread(target=lambda p=p: (p.join(TIMEOUT), codes.append(p.exitcode)))
                   for p in victims for _ in range(3)]
        for t in threads:
            t.start()
        extra = [self.start(exit_with, 2) for _ in range(3)]   # start() reaps the ended ones
        for t in threads:
            t.join(TIMEOUT)
        assert codes == [0] * 9
        for p in extra:
            p.join(TIMEOUT)
            assert p.exitcode == 2

    def start(self, target, *args, **kwargs):
        p = self.ctx.Process(target=target, args=args, **kwargs)
        p.start()
        return p


class TestSupervisorFork(SupervisorSuite):
    START_METHOD = 'fork'


class TestSupervisorSpawn(SupervisorSuite):
    START_METHOD = 'spawn'


class TestSupervisorForkserver(SupervisorSuite):
    START_METHOD = 'forkserver'
