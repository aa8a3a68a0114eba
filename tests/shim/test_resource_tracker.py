"""resource_tracker: one tracker per program tree over the tree's registry;
what is still registered when the tree ends is removed with the stdlib's
warning; what a tree killed as a whole left is swept by the next root."""

import os
import re
import signal
import warnings

import pytest

import _mphost
import multiprocessing
from multiprocessing import resource_tracker
from multiprocessing import shared_memory

from _helpers_shared import (TIMEOUT, run_program, shm_exists, start_program, unique_prefix,
                             wait_until)

LEAK_WARNING = 'resource_tracker: There appear to be %d leaked shared_memory objects to clean up at shutdown'


def make_segment(name):
    shm = shared_memory.SharedMemory(name, create=True, size=16)
    shm.close()
    return shm


# -- targets of children --

def report_tracker(conn, parent_tracker_pid):
    tracker = resource_tracker._resource_tracker
    had_fd = tracker._fd is not None
    tracker.ensure_running()
    conn.send((had_fd, tracker._pid in (None, parent_tracker_pid), tracker._check_alive()))
    conn.close()


class TestClientSide:

    def test_api_names(self):
        assert resource_tracker.__all__ == ['ensure_running', 'register', 'unregister']
        for name in ('ensure_running', 'register', 'unregister', 'getfd', 'main'):
            assert callable(getattr(resource_tracker, name))
        assert set(resource_tracker._CLEANUP_FUNCS) == {'noop', 'semaphore', 'shared_memory'}
        assert resource_tracker.getfd() == resource_tracker._resource_tracker._fd

    def test_message_too_long(self):
        with pytest.raises(ValueError, match='msg too long'):
            resource_tracker.register('x' * 600, 'shared_memory')

    def test_non_ascii_name_is_refused(self):
        with pytest.raises(UnicodeEncodeError):
            resource_tracker.register('é', 'shared_memory')

    @pytest.mark.parametrize('method', ['fork', 'spawn', 'forkserver'])
    def test_children_use_the_parents_tracker(self, method):
        resource_tracker.ensure_running()
        pid = resource_tracker._resource_tracker._pid
        ctx = multiprocessing.get_context(method)
        reader, writer = ctx.Pipe(duplex=False)
        p = ctx.Process(target=report_tracker, args=(writer, pid))
        p.start()
        writer.close()
        assert reader.poll(TIMEOUT)
        had_fd, reused, alive = reader.recv()
        p.join(TIMEOUT)
        assert p.exitcode == 0
        assert had_fd and reused and alive


class TestProgramEnd:

    def test_unlinked_segments_leave_no_warning(self):
        proc = run_program('''
            from multiprocessing import shared_memory
            a = shared_memory.SharedMemory(create=True, size=100)
            b = shared_memory.SharedMemory(a.name)
            b.close()
            a.close()
            a.unlink()
            print(a.name)
        ''')
        assert proc.returncode == 0, proc.stderr
        assert 'resource_tracker' not in proc.stderr
        assert not shm_exists(proc.stdout.strip())

    def test_leaked_segments_removed_with_stdlib_warning(self):
        proc = run_program('''
            import os
            from multiprocessing import shared_memory
            a = shared_memory.SharedMemory(create=True, size=10)
            b = shared_memory.SharedMemory(create=True, size=10)
            print(a.name, b.name)
            # Gone behind the tracker's back: its removal fails, and says so.
            import _posixshmem
            _posixshmem.shm_unlink(a._name)
        ''')
        assert proc.returncode == 0, proc.stderr
        a, b = proc.stdout.split()
        assert LEAK_WARNING % 2 in proc.stderr
        assert "resource_tracker: '/%s': [Errno 2]" % a in proc.stderr
        assert not shm_exists(b)

    def test_children_killed_holding_locks(self):
        # Named semaphores of children killed while holding them: the tracker
        # reports and removes them before the root of the program clears
        # what is left, so each is reported once, as leaked, as with the
        # stdlib (never as already gone).
        proc = run_program('''
            import multiprocessing, os, signal

            def hold(lock, conn):
                lock.acquire()
                mine = multiprocessing.Lock()
                mine.acquire()
                conn.send(mine._semlock.name)
                signal.pause()

            if __name__ == '__main__':
                for method in ('spawn', 'forkserver'):
                    ctx = multiprocessing.get_context(method)
                    lock = ctx.Lock()
                    r, w = ctx.Pipe(duplex=False)
                    p = ctx.Process(target=hold, args=(lock, w))
                    p.start()
                    print(r.recv(), flush=True)
                    p.kill()
                    p.join(30)
                    assert p.exitcode == -signal.SIGKILL
        ''')
        assert proc.returncode == 0, proc.stderr
        names = proc.stdout.split()
        assert len(names) == 2
        assert 'There appear to be 2 leaked semaphore objects' in proc.stderr, proc.stderr
        assert '[Errno' not in proc.stderr, proc.stderr
        assert not [n for n in names if os.path.exists('/dev/shm/' + n.lstrip('/'))]

    def test_child_killed_holding_segments(self):
        # The program ends normally; its child was SIGKILLed while holding
        # segments it never unlinked: the tracker removes them.
        proc = run_program('''
            import multiprocessing, os, signal
            from multiprocessing import shared_memory

            def hold(conn):
                segs = [shared_memory.SharedMemory(create=True, size=4096) for _ in range(3)]
                conn.send([s.name for s in segs])
                signal.pause()

            if __name__ == '__main__':
                for method in ('fork', 'spawn', 'forkserver'):
                    ctx = multiprocessing.get_context(method)
                    r, w = ctx.Pipe(duplex=False)
                    p = ctx.Process(target=hold, args=(w,))
                    p.start()
                    print(' '.join(r.recv()), flush=True)
                    p.kill()
                    p.join(30)
                    assert p.exitcode == -signal.SIGKILL
        ''')
        assert proc.returncode == 0, proc.stderr
        names = proc.stdout.split()
        assert len(names) == 9
        # The fork child started before the program used the tracker, so it
        # started its own (as with the stdlib), which cleaned up its three
        # when the child died; the spawn and forkserver children use the
        # root's tracker, which cleans up their six at the end.
        counts = [int(n) for n in re.findall(
            r'There appear to be (\d+) leaked shared_memory objects', proc.stderr)]
        assert sorted(counts) == [3, 6], proc.stderr
        assert not [n for n in names if shm_exists(n)]

    @pytest.mark.parametrize('method', ['spawn', 'forkserver'])
    def test_registered_while_importing_main_moves_to_the_trees_tracker(self, method):
        # The child (and the forkserver) import this main module, which
        # registers a segment at import: before the child knows the tree's
        # tracker. The registration must end up there, not in a tracker of
        # the child's own that would remove the segment when the child ends.
        proc = run_program('''
            import multiprocessing, os, sys
            from multiprocessing import shared_memory
            PREFIX = os.environ['MPHOST_TEST_PREFIX']
            mine = shared_memory.SharedMemory(PREFIX + str(os.getpid()), create=True, size=64)

            def child(conn):
                conn.send(mine.name)

            if __name__ == '__main__':
                ctx = multiprocessing.get_context(sys.argv[1])
                r, w = ctx.Pipe(duplex=False)
                p = ctx.Process(target=child, args=(w,))
                p.start()
                name = r.recv()
                p.join(30)
                assert p.exitcode == 0 and name != mine.name
                still_there = shared_memory.SharedMemory(name)
                print(name, flush=True)
                still_there.close()
                mine.close()
                mine.unlink()
        ''', args=[method], env={'MPHOST_TEST_PREFIX': unique_prefix()})
        assert proc.returncode == 0, proc.stderr
        name = proc.stdout.split()[-1]
        # Only the tree's tracker speaks, once, about the child's segment
        # (with forkserver: the forkserver's, which the child inherited).
        counts = [int(n) for n in re.findall(
            r'There appear to be (\d+) leaked shared_memory objects', proc.stderr)]
        assert counts == [1], proc.stderr
        assert not shm_exists(name)

    def test_tracker_survives_sigint_and_sigterm_and_is_relaunched_after_sigkill(self):
        proc = run_program('''
            import os, signal, time, warnings
            from multiprocessing import resource_tracker
            tracker = resource_tracker._resource_tracker
            tracker.ensure_running()
            pid = tracker._pid
            for sig in (signal.SIGINT, signal.SIGTERM):
                os.kill(pid, sig)
            time.sleep(1.0)
            assert tracker._check_alive()
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter('always')
                tracker.ensure_running()
            assert not caught and tracker._pid == pid
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            tracker._pid = None  # reaped here already
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter('always')
                tracker.ensure_running()
            assert len(caught) == 1, caught
            assert 'resource_tracker: process died unexpectedly' in str(caught[0].message)
            assert tracker._pid not in (None, pid) and tracker._check_alive()
            print('ok')
        ''')
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip() == 'ok'

    def test_unknown_type_is_reported_and_tracker_keeps_working(self):
        proc = run_program('''
            from multiprocessing import resource_tracker, shared_memory
            resource_tracker.register('x', 'no-such-type')
            s = shared_memory.SharedMemory(create=True, size=10)
            print(s.name)
        ''')
        assert proc.returncode == 0
        assert 'unknown resource type no-such-type' in proc.stderr
        assert LEAK_WARNING % 1 in proc.stderr
        assert not shm_exists(proc.stdout.strip())

    def test_folder_type_removes_directories(self, tmp_path):
        target = tmp_path / 'private'
        (target / 'sub').mkdir(parents=True)
        (target / 'sub' / 'file').write_text('x')
        proc = run_program('''
            import sys
            from multiprocessing import resource_tracker
            resource_tracker.register(sys.argv[1], 'folder')
        ''', args=[str(target)])
        assert proc.returncode == 0, proc.stderr
        assert 'There appear to be 1 leaked folder objects' in proc.stderr
        assert not target.exists()


# The environment of a program that is a root of its own, not a member of
# this test process's tree.
ROOT_ENV = {'MPHOST_REGISTRY': ''}


def group_alive(pgid):
    """Whether a process of group `pgid` still runs (zombies do not)."""
    for entry in os.listdir('/proc'):
        if not entry.isdigit():
            continue
        try:
            with open('/proc/%s/stat' % entry) as f:
                fields = f.read().rsplit(')', 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] not in ('Z', 'X'):
            return True
    return False


def registries_of(pid):
    return [n for n in os.listdir('/dev/shm') if n.startswith('mphost-reg-%d-' % pid)]


class TestRegistry:
    """Registrations live in the tree's registry, tagged with the pipe of
    the tracker they were made through."""

    def test_registrations_are_the_trackers_own(self):
        proc = run_program('''
            import os, _mphost
            from multiprocessing import resource_tracker, shared_memory
            a = shared_memory.SharedMemory(create=True, size=10)
            b = shared_memory.SharedMemory(create=True, size=10)
            a.close(); a.unlink()
            watcher = os.fstat(resource_tracker.getfd()).st_ino
            print(_mphost.registry_entries(watcher) == [('shared_memory', b._name)])
            b.close(); b.unlink()
            print(_mphost.registry_entries(watcher))
        ''')
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.split() == ['True', '[]']
        assert 'resource_tracker' not in proc.stderr

    def test_killed_tree_is_swept_by_next_root(self, tmp_path):
        folder = tmp_path / 'left-behind'
        program = start_program('''
            import multiprocessing, os, signal, sys
            from multiprocessing import shared_memory, resource_tracker

            def hold(conn):
                s = shared_memory.SharedMemory(create=True, size=4096)
                conn.send(s.name)
                signal.pause()

            if __name__ == '__main__':
                folder = os.environ['MPHOST_TEST_FOLDER']
                os.mkdir(folder)
                resource_tracker.register(folder, 'folder')
                ctx = multiprocessing.get_context('spawn')
                mine = shared_memory.SharedMemory(create=True, size=4096)
                r, w = ctx.Pipe(duplex=False)
                p = ctx.Process(target=hold, args=(w,))
                p.start()
                print(mine.name, r.recv(), resource_tracker._resource_tracker._pid, flush=True)
                signal.pause()
        ''', tmp_path / 'victim.py', env=dict(ROOT_ENV, MPHOST_TEST_FOLDER=str(folder)), new_session=True)
        try:
            line = program.stdout.readline().split()
            assert len(line) == 3, program.stderr.read()
            names = line[:2]
            assert registries_of(program.pid)
        finally:
            os.killpg(program.pid, signal.SIGKILL)
            program.wait(TIMEOUT)
            program.stdout.close()
            program.stderr.close()
        # Root, child and tracker died together: nobody cleaned up.
        assert wait_until(lambda: not group_alive(program.pid), timeout=30)
        assert all(shm_exists(n) for n in names) and folder.exists()
        try:
            proc = run_program('''
                print('hello')
            ''', env=ROOT_ENV)
            assert proc.returncode == 0, proc.stderr
            # Another program's leftovers are removed quietly.
            assert 'leaked' not in proc.stderr
            assert not [n for n in names if shm_exists(n)]
            assert not folder.exists()
            assert not registries_of(program.pid)
        finally:
            for n in names:
                if shm_exists(n):
                    os.unlink('/dev/shm/' + n)

    def test_tracker_of_a_killed_root_cleans_up_and_removes_the_registry(self, tmp_path):
        # What CPython's test_resource_tracker does: the root ends by
        # SIGTERM; its tracker reports, removes and takes the registry along.
        program = start_program('''
            import multiprocessing, time
            from multiprocessing import shared_memory
            lock = multiprocessing.get_context("spawn").Lock()
            a = shared_memory.SharedMemory(create=True, size=10)
            b = shared_memory.SharedMemory(create=True, size=10)
            print(a.name, b.name, lock._semlock.name, flush=True)
            time.sleep(60)
        ''', tmp_path / 'victim.py', env=ROOT_ENV)
        try:
            names = program.stdout.readline().split()
            assert len(names) == 3, program.stderr.read()
            program.terminate()
            program.wait(TIMEOUT)
            assert wait_until(lambda: not registries_of(program.pid), timeout=30)
            err = program.stderr.read()
        finally:
            program.stdout.close()
            program.stderr.close()
        assert LEAK_WARNING % 2 in err, err
        assert 'There appear to be 1 leaked semaphore objects' in err, err
        assert not [n for n in names if shm_exists(n)]

    def test_relaunched_tracker_takes_the_dead_ones_registrations(self):
        proc = run_program('''
            import os, signal, warnings, _mphost
            from multiprocessing import resource_tracker, shared_memory
            tracker = resource_tracker._resource_tracker
            a = shared_memory.SharedMemory(create=True, size=10)
            old = os.fstat(tracker._fd).st_ino
            os.kill(tracker._pid, signal.SIGKILL)
            os.waitpid(tracker._pid, 0)
            tracker._pid = None
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter('always')
                b = shared_memory.SharedMemory(create=True, size=10)
            assert len(caught) == 1 and 'process died unexpectedly' in str(caught[0].message)
            new = os.fstat(tracker._fd).st_ino
            assert _mphost.registry_entries(old) == []
            assert sorted(_mphost.registry_entries(new)) == sorted(
                [('shared_memory', a._name), ('shared_memory', b._name)])
            print(a.name, b.name, flush=True)
        ''')
        assert proc.returncode == 0, proc.stderr
        a, b = proc.stdout.split()
        assert LEAK_WARNING % 2 in proc.stderr
        assert not shm_exists(a) and not shm_exists(b)


class TestTrackerSide:
    """The tracker's handling of the stdlib's messages and of its end, run
    here in-process over this process's registry."""

    WATCHER = 2 ** 62 + 12345

    def test_messages_record_and_forget(self):
        kept = {}
        take = resource_tracker._take
        take(b'PROBE:0:noop\n', self.WATCHER, kept)
        take(b'REGISTER:/psm_x:y:shared_memory\n', self.WATCHER, kept)
        assert _mphost.registry_entries(self.WATCHER) == [('shared_memory', '/psm_x:y')]
        take(b'UNREGISTER:/psm_x:y:shared_memory\n', self.WATCHER, kept)
        assert _mphost.registry_entries(self.WATCHER) == [] and kept == {}
        with pytest.raises(ValueError, match='unknown resource type no-such-type'):
            take(b'REGISTER:x:no-such-type\n', self.WATCHER, kept)
        with pytest.raises(RuntimeError, match='unrecognized command'):
            take(b'FROB:x:noop\n', self.WATCHER, kept)

    def test_end_reports_each_type_once_and_removes(self, tmp_path):
        prefix = unique_prefix()
        present = make_segment(prefix + 'present')
        folder = tmp_path / 'folder'
        (folder / 'sub').mkdir(parents=True)
        kept = {'file': {str(tmp_path / 'kept-but-missing')}}
        assert _mphost.registry_add('shared_memory', present._name, self.WATCHER)
        assert _mphost.registry_add('shared_memory', '/' + prefix + 'gone', self.WATCHER)
        assert _mphost.registry_add('folder', str(folder), self.WATCHER)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter('always')
            resource_tracker._clean_up(self.WATCHER, kept)
        messages = [str(w.message) for w in caught]
        assert 'resource_tracker: There appear to be 2 leaked shared_memory objects to clean up at shutdown' in messages
        assert 'resource_tracker: There appear to be 1 leaked folder objects to clean up at shutdown' in messages
        assert 'resource_tracker: There appear to be 1 leaked file objects to clean up at shutdown' in messages
        assert sum('[Errno 2]' in m for m in messages) == 2, messages
        assert not shm_exists(present.name) and not folder.exists()
        assert _mphost.registry_entries(self.WATCHER) == []


class TestExitWait:
    """The root's last exit step waits, within a bound, for the tracker it
    started to end: woken by that end, not by a polling sleep."""

    @staticmethod
    def start_sleeper(seconds):
        import subprocess
        import sys
        return subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(%r)' % seconds])

    def test_reaps_a_child_soon_after_it_ends(self):
        import time
        child = self.start_sleeper(0.3)
        started = time.monotonic()
        resource_tracker._reap_within(child.pid, TIMEOUT)
        waited = time.monotonic() - started
        assert 0.2 < waited < TIMEOUT / 2, waited
        with pytest.raises(ChildProcessError):
            os.waitpid(child.pid, os.WNOHANG)
        child.returncode = 0  # (reaped here, not by Popen)

    def test_gives_up_after_the_patience_and_leaves_the_child(self):
        import time
        child = self.start_sleeper(TIMEOUT)
        try:
            started = time.monotonic()
            resource_tracker._reap_within(child.pid, 0.2)
            waited = time.monotonic() - started
            assert 0.15 < waited < TIMEOUT / 2, waited
            assert child.poll() is None
        finally:
            child.kill()
            child.wait(TIMEOUT)

    def test_a_child_reaped_elsewhere_ends_the_wait_at_once(self):
        import time
        child = self.start_sleeper(0)
        child.wait(TIMEOUT)
        started = time.monotonic()
        resource_tracker._reap_within(child.pid, TIMEOUT)
        assert time.monotonic() - started < 1.0

    def test_program_using_the_tracker_exits_promptly(self):
        import time
        started = time.monotonic()
        proc = run_program('''
            from multiprocessing import resource_tracker
            resource_tracker.ensure_running()
            print(resource_tracker._resource_tracker._pid)
        ''')
        assert proc.returncode == 0, proc.stderr
        assert time.monotonic() - started < TIMEOUT / 2
        tracker = int(proc.stdout.strip())
        assert not os.path.exists('/proc/%d' % tracker) or \
            open('/proc/%d/stat' % tracker).read().split(')')[1].split()[0] in 'ZX'
