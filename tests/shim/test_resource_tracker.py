"""resource_tracker: one tracker per program tree; what is still registered
when the tree ends is removed with the stdlib's warning; journals of trees
killed as a whole are swept by the next tracker."""

import logging
import os
import re
import signal
import subprocess
import time
import warnings

import pytest

import multiprocessing
from multiprocessing import resource_tracker, util
from multiprocessing import shared_memory

from _helpers_shared import (MPHOST, TIMEOUT, process_identity, run_program, shm_exists,
                             start_program, unique_prefix, wait_until)

LEAK_WARNING = 'resource_tracker: There appear to be %d leaked shared_memory objects to clean up at shutdown'


@pytest.fixture
def registry(tmp_path, monkeypatch):
    """A private journal directory for the programs a test runs."""
    path = tmp_path / 'registry'
    path.mkdir(mode=0o700)
    monkeypatch.setenv(resource_tracker.REGISTRY_DIR_ENV, str(path))
    return path


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


class TestJournals:

    def test_journal_follows_registrations(self, registry):
        proc = run_program('''
            import os, time
            from multiprocessing import resource_tracker, shared_memory
            a = shared_memory.SharedMemory(create=True, size=10)
            b = shared_memory.SharedMemory(create=True, size=10)
            a.close(); a.unlink()
            d = os.environ[resource_tracker.REGISTRY_DIR_ENV]

            def journal():
                names = os.listdir(d)
                assert len(names) <= 1, names
                if not names:
                    return set()  # the tracker is still starting
                return resource_tracker._read_journal(os.path.join(d, names[0]))[1]

            deadline = time.monotonic() + 30
            while journal() != {('shared_memory', b._name)} and time.monotonic() < deadline:
                time.sleep(0.05)
            assert journal() == {('shared_memory', b._name)}, journal()
            st = os.stat(os.path.join(d, os.listdir(d)[0]))
            print(oct(st.st_mode & 0o777))
            b.close(); b.unlink()
        ''')
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip() == '0o600'
        # A clean end removes the journal.
        assert wait_until(lambda: not os.listdir(registry), timeout=30)

    def test_killed_tree_is_swept_by_next_tracker(self, registry, tmp_path):
        program = start_program('''
            import multiprocessing, signal, sys
            from multiprocessing import shared_memory, resource_tracker

            def hold(conn):
                s = shared_memory.SharedMemory(create=True, size=4096)
                conn.send(s.name)
                signal.pause()

            if __name__ == '__main__':
                ctx = multiprocessing.get_context('spawn')
                mine = shared_memory.SharedMemory(create=True, size=4096)
                value = ctx.Value('i', 5, lock=False)
                r, w = ctx.Pipe(duplex=False)
                p = ctx.Process(target=hold, args=(w,))
                p.start()
                print(mine.name, r.recv(), resource_tracker._resource_tracker._pid, flush=True)
                signal.pause()
        ''', tmp_path / 'victim.py', new_session=True)
        try:
            line = program.stdout.readline().split()
            assert len(line) == 3, program.stderr.read()
            names, tracker_pid = line[:2], int(line[2])
            # The journal has both segments before the tree is killed.
            def journaled():
                found = set()
                for entry in os.listdir(registry):
                    found |= {n for _t, n in resource_tracker._read_journal(registry / entry)[1]}
                return found
            assert wait_until(lambda: {'/' + n for n in names} <= journaled(), timeout=30)
        finally:
            os.killpg(program.pid, signal.SIGKILL)
            program.wait(TIMEOUT)
            program.stdout.close()
            program.stderr.close()
        # Root, child and tracker died together: nobody cleaned up.
        assert wait_until(lambda: not os.path.exists('/proc/%d' % tracker_pid) or
                          open('/proc/%d/stat' % tracker_pid).read().split(') ')[1][0] == 'Z',
                          timeout=30)
        assert all(shm_exists(n) for n in names)
        assert len(os.listdir(registry)) == 1
        try:
            proc = run_program('''
                import time
                from multiprocessing import resource_tracker
                resource_tracker.ensure_running()
            ''')
            assert proc.returncode == 0, proc.stderr
            # Another program's leftovers are removed quietly (no noise on this one's stderr).
            assert 'leaked' not in proc.stderr
            assert not [n for n in names if shm_exists(n)]
            assert os.listdir(registry) == []
        finally:
            for n in names:
                if shm_exists(n):
                    os.unlink('/dev/shm/' + n)

    def test_relaunched_tracker_adopts_the_dead_ones_entries(self, registry):
        proc = run_program('''
            import os, signal, time, warnings
            from multiprocessing import resource_tracker, shared_memory
            tracker = resource_tracker._resource_tracker
            a = shared_memory.SharedMemory(create=True, size=10)
            d = os.environ[resource_tracker.REGISTRY_DIR_ENV]

            def journaled():
                out = set()
                for e in os.listdir(d):
                    if e.endswith('.log'):
                        out |= resource_tracker._read_journal(os.path.join(d, e))[1]
                return out

            while ('shared_memory', a._name) not in journaled():
                time.sleep(0.05)
            os.kill(tracker._pid, signal.SIGKILL)
            os.waitpid(tracker._pid, 0)
            tracker._pid = None
            with warnings.catch_warnings():
                warnings.simplefilter('ignore')
                b = shared_memory.SharedMemory(create=True, size=10)
            # The new tracker took the dead one's entries over (while this
            # root still runs: otherwise it would sweep them as a killed
            # tree's, with another warning).
            while journaled() != {('shared_memory', a._name), ('shared_memory', b._name)}:
                time.sleep(0.05)
            assert len(os.listdir(d)) == 1, os.listdir(d)
            print(a.name, b.name, flush=True)
        ''')
        assert proc.returncode == 0, proc.stderr
        a, b = proc.stdout.split()
        # The new tracker cleaned up the dead tracker's segment too.
        assert LEAK_WARNING % 2 in proc.stderr
        assert not shm_exists(a) and not shm_exists(b)
        assert wait_until(lambda: not os.listdir(registry), timeout=30)


class TestSweepRules:
    """_sweep_journals on hand-made journals."""

    @staticmethod
    def dead_identity():
        p = subprocess.Popen(['/bin/sleep', '10'])
        identity = process_identity(p.pid)
        p.kill()
        p.wait()
        return identity

    @staticmethod
    def write_journal(directory, tracker, root, entries, boot=None):
        path = directory / resource_tracker._journal_name(tracker, root)
        lines = [resource_tracker._JOURNAL_HEADER + (boot or resource_tracker._boot_id())]
        lines += ['+\t%s\t%s' % e for e in entries]
        path.write_text('\n'.join(lines) + '\n')
        return path

    def test_rules(self, tmp_path):
        prefix = unique_prefix()
        segs = {key: make_segment(prefix + key) for key in ('dead', 'live', 'boot', 'adopt', 'gone')}
        try:
            dead = self.dead_identity()
            me = process_identity(os.getpid())
            live_other = process_identity(os.getppid())
            d = tmp_path
            removed_later = self.write_journal(d, dead, dead, [
                ('shared_memory', segs['dead']._name),
                ('shared_memory', segs['gone']._name),
                ('shared_memory', segs['gone']._name)])
            segs['gone'].unlink()
            kept = self.write_journal(d, dead, live_other, [('shared_memory', segs['live']._name)])
            (d / 'x').write_text('not a journal')
            old_boot = self.write_journal(d, (dead[0], dead[1] + 1), dead,
                                          [('shared_memory', segs['boot']._name)], boot='another-boot')
            adopted = self.write_journal(d, (dead[0], dead[1] + 2), me,
                                         [('shared_memory', segs['adopt']._name)])
            logged = []

            class Collect(logging.Handler):
                def emit(self, record):
                    logged.append(record.getMessage())

            logger = util.get_logger()
            handler, old_level = Collect(), logger.level
            logger.addHandler(handler)
            logger.setLevel(logging.INFO)
            try:
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter('always')
                    got, paths = resource_tracker._sweep_journals(str(d), (os.getpid(), 1), me)
            finally:
                logger.removeHandler(handler)
                logger.setLevel(old_level)
            # Tracker and root dead: removed, logged (not warned), journal gone.
            assert not shm_exists(segs['dead'].name) and not removed_later.exists()
            assert [str(w.message) for w in caught] == []
            assert logged == [
                'resource_tracker: removed 1 leaked shared_memory objects left by a killed '
                'program (root pid %d)' % dead[0]]
            # Root alive elsewhere: left alone.
            assert shm_exists(segs['live'].name) and kept.exists()
            # Journal of an earlier boot: deleted, nothing touched.
            assert shm_exists(segs['boot'].name) and not old_boot.exists()
            # Our own root's dead tracker: adopted, not removed.
            assert got == {('shared_memory', segs['adopt']._name)}
            assert shm_exists(segs['adopt'].name)
            assert len(paths) == 1 and not adopted.exists() and os.path.exists(paths[0])
            assert (d / 'x').exists()
        finally:
            for key, seg in segs.items():
                if shm_exists(seg.name):
                    seg.unlink()
                else:
                    resource_tracker.unregister(seg._name, 'shared_memory')

    def test_live_sweeper_claim_is_respected(self, tmp_path):
        prefix = unique_prefix()
        seg = make_segment(prefix + 'claimed')
        try:
            dead = self.dead_identity()
            path = self.write_journal(tmp_path, dead, dead, [('shared_memory', seg._name)])
            claimed = path.with_name(path.name + '.sweep-%d-%d' % process_identity(os.getppid()))
            path.rename(claimed)
            resource_tracker._sweep_journals(str(tmp_path), (os.getpid(), 1), (1, 1))
            assert shm_exists(seg.name) and claimed.exists()
            # A dead sweeper's claim is taken over.
            dead_claim = path.with_name(path.name + '.sweep-%d-%d' % self.dead_identity())
            claimed.rename(dead_claim)
            with warnings.catch_warnings():
                warnings.simplefilter('ignore')
                resource_tracker._sweep_journals(str(tmp_path), (os.getpid(), 1), (1, 1))
            assert not shm_exists(seg.name) and os.listdir(tmp_path) == []
        finally:
            if shm_exists(seg.name):
                seg.unlink()
            else:
                resource_tracker.unregister(seg._name, 'shared_memory')

    def test_untrusted_directory_is_refused(self, tmp_path, monkeypatch):
        open_dir = tmp_path / 'open'
        open_dir.mkdir()
        os.chmod(open_dir, 0o777)
        monkeypatch.setenv(resource_tracker.REGISTRY_DIR_ENV, str(open_dir))
        assert resource_tracker._registry_dir() is None
        link = tmp_path / 'link'
        private = tmp_path / 'private'
        private.mkdir(mode=0o700)
        link.symlink_to(private)
        monkeypatch.setenv(resource_tracker.REGISTRY_DIR_ENV, str(link))
        assert resource_tracker._registry_dir() is None
        monkeypatch.setenv(resource_tracker.REGISTRY_DIR_ENV, str(private))
        assert resource_tracker._registry_dir() == str(private)
