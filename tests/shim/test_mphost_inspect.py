"""The live inspector: `mphost -m mphost inspect PID` and `mphost-inspect`.

Rendering is checked on recorded snapshots (the schema of mphost.state());
the command is checked against real programs: one stuck on purpose (a child
holds a Lock the parent waits for, a writer blocks on a full Queue) under
each start method, one that runs and ends, and targets that cannot be
inspected. The --watch mode is checked in a real terminal under tmux."""

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from mphost import _inspect

TIMEOUT = 30
METHODS = ['fork', 'spawn', 'forkserver']
BIN = os.path.dirname(os.path.abspath(sys.executable))
SHORTCUT = os.path.join(BIN, 'mphost-inspect')


def _snapshot(taken_at=1764895512.25, total=2):
    return {
        'root': 4240, 'registry': 'mphost-reg-4240-0123456789abcdef01234567', 'taken_at': taken_at,
        'processes': [
            {'pid': 4240, 'ppid': 100, 'name': 'MainProcess', 'role': 'root', 'start_method': None,
             'state': 'sleeping', 'exitcode': None, 'cpu_seconds': 0.41, 'rss_bytes': 29_000_000,
             'started_at': 1764895500.0},
            {'pid': 4243, 'ppid': 4240, 'name': 'Writer', 'role': 'process', 'start_method': 'spawn',
             'state': 'sleeping', 'exitcode': None, 'cpu_seconds': 0.05, 'rss_bytes': 15_500_000,
             'started_at': 1764895501.0},
            {'pid': 4242, 'ppid': 4240, 'name': 'Worker-1', 'role': 'process', 'start_method': 'fork',
             'state': 'sleeping', 'exitcode': None, 'cpu_seconds': 0.02, 'rss_bytes': 14_000_000,
             'started_at': 1764895501.0},
            {'pid': 4250, 'ppid': 4243, 'name': 'Grandchild', 'role': 'process', 'start_method': 'fork',
             'state': 'running', 'exitcode': None, 'cpu_seconds': 75.0, 'rss_bytes': 2_000_000_000,
             'started_at': 1764895501.0},
            {'pid': 4244, 'ppid': 4240, 'name': 'Done', 'role': 'process', 'start_method': 'fork',
             'state': None, 'exitcode': -9, 'cpu_seconds': None, 'rss_bytes': None, 'started_at': None}],
        'channels': [
            {'name': 'mphost-ch-1', 'kind': 'Queue', 'label': 'Queue', 'depth': 2,
             'bytes_in_flight': 2100, 'capacity': None, 'messages_total': total, 'readers_waiting': 0, 'writers_waiting': 0,
             'creator_pid': 4240},
            {'name': 'mphost-ch-2', 'kind': 'channel', 'label': None, 'depth': 0, 'bytes_in_flight': 0,
             'capacity': None, 'messages_total': 1000 + total, 'readers_waiting': 1, 'writers_waiting': 0,
             'creator_pid': 4243}],
        'locks': [
            {'name': 'mphost-lk-1', 'kind': 'Lock', 'value': 0, 'maxvalue': 1, 'holder_pid': 4242,
             'waiters': [4240, 4243], 'creator_pid': 4240},
            {'name': 'mphost-sem-2', 'kind': 'Semaphore', 'value': 2, 'maxvalue': 3, 'holder_pid': None,
             'waiters': 0, 'creator_pid': 9999},
            # The free slots of the bounded Queue mphost-ch-1, and of an unbounded one.
            {'name': 'mphost-sem-4', 'kind': 'BoundedSemaphore', 'value': 0, 'maxvalue': 2, 'holder_pid': None,
             'waiters': 1, 'creator_pid': 4240},
            {'name': 'mphost-sem-5', 'kind': 'BoundedSemaphore', 'value': 2 ** 31 - 1, 'maxvalue': 2 ** 31 - 1,
             'holder_pid': None, 'waiters': 0, 'creator_pid': 4240}],
        'segments': [{'name': 'psm_abc', 'size': 1048576, 'mapped_by': [4240, 4242], 'creator_pid': 4240}],
        'spawn': {'forkserver_pid': None, 'forkserver_alive': False, 'warm_spares': 1}}


# ---------------------------------------------------------------- rendering

def test_the_tree_puts_the_root_first_and_children_under_their_parent():
    lines = _inspect.render(_snapshot(), width=120).splitlines()
    rows = [line for line in lines if any(f'{pid} ' in line for pid in (4240, 4242, 4243, 4244, 4250))
            and ('process' in line or 'root' in line)]
    order = [next(pid for pid in (4240, 4242, 4243, 4244, 4250) if str(pid) in row) for row in rows]
    assert order == [4240, 4242, 4243, 4250, 4244]
    assert rows[0].startswith('4240')
    grandchild = rows[3]
    assert grandchild.index('4250') > rows[2].index('4243'), 'the grandchild is indented under its parent'
    assert 'killed (SIGKILL)' in rows[4]


def test_a_held_lock_names_its_holder_and_waiters_and_is_called_out():
    text = _inspect.render(_snapshot(), width=160)
    assert 'held by 4242 Worker-1' in text
    assert '2 waiting: 4240 MainProcess, 4243 Writer' in text
    attention = text[text.index('attention:'):]
    assert 'Lock mphost-lk-1 is held by 4242 Worker-1' in attention


def test_a_full_queue_shows_depth_over_capacity_and_its_blocked_writer():
    text = _inspect.render(_snapshot(), width=160)
    assert '2/2 FULL' in text and '1 writer waiting for room' in text and '2.1 KiB in flight' in text
    assert 'Queue mphost-ch-1 is full (2/2): 1 writer waiting for room' in text
    assert 'BoundedSemaphore mphost-sem-4 (free slots of mphost-ch-1)  value 0/2, 1 waiting' in text
    assert 'mphost-sem-4 (free slots of mphost-ch-1) has no unit free' not in text, 'said once, by the queue'
    assert '1 reader waiting' in text


def test_a_ring_full_of_bytes_is_full_too():
    snap = _snapshot()
    snap['channels'][1].update(capacity=4096, bytes_in_flight=4096, depth=3)
    text = _inspect.render(snap, width=160)
    assert 'depth 3, 4.0 KiB of 4.0 KiB in flight FULL' in text
    assert 'channel mphost-ch-2 is full (its ring has no room)' in text


def test_json_carries_the_maxsize_of_a_bounded_queue_from_its_slots():
    out = io.StringIO()
    assert _inspect.run(os.getpid(), as_json=True, out=out, err=io.StringIO(), source=_recorded([1.0])) == 0
    chans = json.loads(out.getvalue())['channels']
    assert [(c['kind'], c['maxsize'], c['capacity']) for c in chans] == [('Queue', 2, None),
                                                                       ('channel', None, None)]
    assert chans[0]['slots'] == 'mphost-sem-4' and chans[0]['writers_blocked'] == 1


def test_resources_sit_under_their_creator():
    lines = _inspect.render(_snapshot(), width=160).splitlines()
    at = {key: next(i for i, line in enumerate(lines) if key in line)
          for key in ('4240  ', 'mphost-ch-1', 'psm_abc', '4242  ', '4243  ', 'mphost-ch-2', '4250  ')}
    assert at['4240  '] < at['mphost-ch-1'] < at['4242  ']
    assert at['4240  '] < at['psm_abc'] < at['4242  ']
    assert at['4243  '] < at['mphost-ch-2'] < at['4250  ']
    # A creator that is not a process of the tree: listed apart.
    orphan_head = next(i for i, line in enumerate(lines) if 'no longer in the tree' in line)
    assert orphan_head < next(i for i, line in enumerate(lines) if 'mphost-sem-2' in line)


def test_a_semaphore_at_zero_with_waiters_is_called_out():
    # A bounded Queue's free slots are a semaphore: its writers wait there.
    snap = _snapshot()
    snap['locks'].append({'name': 'mphost-sem-3', 'kind': 'BoundedSemaphore', 'value': 0, 'maxvalue': 2,
                          'holder_pid': None, 'waiters': 1, 'creator_pid': 4243})
    text = _inspect.render(snap, width=160)
    assert 'BoundedSemaphore mphost-sem-3 has no unit free (value 0/2); 1 waiting' in text
    # A free one with nobody waiting is not.
    snap['locks'][-1].update(value=2, waiters=0)
    assert 'mphost-sem-3 has' not in _inspect.render(snap, width=160)


def test_a_held_lock_whose_waiters_are_not_counted():
    snap = _snapshot()
    snap['locks'][0].update(waiters=None, may_have_waiters=True)
    text = _inspect.render(snap, width=160)
    assert 'Lock mphost-lk-1 is held by 4242 Worker-1; others waiting' in text
    assert '4 locks (1 held, 2 with waiters)' in text


def test_the_state_column_says_whether_a_process_computes_or_waits():
    snap = _snapshot()
    snap['processes'][0].update(state='running', os_state='S')
    snap['processes'][1].update(state='running', os_state='R')
    snap['processes'][2].update(state='ready', os_state='S')
    snap['processes'][3].update(alive=False)
    lines = _inspect.render(snap, width=160).splitlines()

    def row(pid, name):
        return next(line for line in lines if str(pid) in line and name in line and 'iB' in line[-8:])
    assert ' sleeping ' in row(4240, 'MainProcess')
    assert ' running ' in row(4243, 'Writer')
    assert ' ready ' in row(4242, 'Worker-1')
    assert ' gone ' in row(4250, 'Grandchild')


def test_resources_of_an_unknown_creator_and_a_dead_holder():
    snap = _snapshot()
    snap['locks'][0].update(creator_pid=None, holder_alive=False)
    text = _inspect.render(snap, width=160)
    tail = text[text.index('creator not recorded'):]
    assert 'held by 4242 Worker-1 (dead: the next acquirer recovers it)' in tail


def test_sizes_are_humanised():
    assert _inspect.human_size(512) == '512 B'
    assert _inspect.human_size(2100) == '2.1 KiB'
    assert _inspect.human_size(1048576) == '1.0 MiB'
    assert _inspect.human_size(2_000_000_000) == '1.9 GiB'
    text = _inspect.render(_snapshot(), width=160)
    assert '27.7 MiB' in text and '1.0 MiB, mapped by 2 (4240, 4242)' in text


def test_the_summary_counts_what_holds_the_program_up():
    text = _inspect.render(_snapshot(), width=200)
    assert '5 processes (4 running)' in text
    assert '2 channels (1 full, 1 with readers waiting)' in text
    assert '4 locks (1 held, 2 with waiters)' in text
    assert '1 segment (1.0 MiB)' in text


@pytest.mark.parametrize('width', [40, 60, 80, 132])
def test_every_line_fits_the_width(width):
    for encoding in ('utf-8', 'ascii'):
        text = _inspect.render(_snapshot(), width=width, encoding=encoding)
        assert max(len(line) for line in text.splitlines()) <= width
        if encoding == 'ascii':
            text.encode('ascii')
    assert 'held by' in _inspect.render(_snapshot(), width=80)


def test_colour_only_when_asked():
    assert '\x1b[' not in _inspect.render(_snapshot(), width=120, colour=False)
    assert '\x1b[1;31m' in _inspect.render(_snapshot(), width=120, colour=True)


def test_rates_come_from_two_samples():
    rates = _inspect.rates_between(_snapshot(100.0, total=10), _snapshot(102.0, total=30))
    assert rates == {'mphost-ch-1': 10.0, 'mphost-ch-2': 10.0}
    text = _inspect.render(_snapshot(), width=160, rates=rates)
    assert '10 msg/s' in text
    assert _inspect.rates_between(None, _snapshot()) == {}


def test_unknown_fields_are_rendered_as_unknown():
    snap = {'root': 1, 'registry': None, 'taken_at': None, 'spawn': None,
            'processes': [{'pid': 1, 'ppid': None, 'name': None, 'role': None, 'start_method': None,
                           'state': None, 'exitcode': None, 'cpu_seconds': None, 'rss_bytes': None,
                           'started_at': None}],
            'channels': [{'name': 'c', 'kind': None, 'label': None, 'depth': None, 'bytes_in_flight': None,
                          'capacity': None, 'messages_total': None, 'readers_waiting': None,
                          'writers_waiting': None, 'creator_pid': None}],
            'locks': [{'name': 'l', 'kind': None, 'value': None, 'maxvalue': None, 'holder_pid': None,
                       'waiters': None, 'creator_pid': 1}],
            'segments': [{'name': 's', 'size': None, 'mapped_by': None, 'creator_pid': 1}]}
    text = _inspect.render(snap, width=100)
    assert '1 process (1 running)' in text


# ---------------------------------------------------------------- the command, in process

def _recorded(times):
    it = iter(times)

    def source(root):
        t = next(it)
        snap = _snapshot(t, total=int(t * 10))
        snap['root'] = root
        return snap
    return source


def test_json_prints_the_snapshot_as_is():
    out, err = io.StringIO(), io.StringIO()
    me = os.getpid()   # these tests run under mphost: this process is an mphost root
    status = _inspect.run(me, as_json=True, out=out, err=err, source=_recorded([5.0]))
    assert status == 0, err.getvalue()
    doc = json.loads(out.getvalue())
    assert doc == _inspect.with_bounds(dict(_snapshot(5.0, total=50), root=me))
    assert [{k: v for k, v in lk.items() if k != 'slots_of'} for lk in doc['locks']] == _snapshot()['locks']


def test_watch_json_is_one_object_per_line_with_rates():
    out, err = io.StringIO(), io.StringIO()
    frames = []

    def sleep(seconds):
        frames.append(seconds)
        if len(frames) == 3:
            raise KeyboardInterrupt
    status = _inspect.run(os.getpid(), watch=0.5, as_json=True, out=out, err=err,
                          source=_recorded([1.0, 2.0, 3.0, 4.0]), sleep=sleep)
    assert status == 0, err.getvalue()
    docs = [json.loads(line) for line in out.getvalue().splitlines()]
    assert len(docs) == 3 and frames == [0.5] * 3
    assert docs[0]['channels'][0]['messages_per_second'] is None
    assert docs[1]['channels'][0]['messages_per_second'] == pytest.approx(10.0)


def test_watch_off_a_terminal_prints_plain_blocks():
    out, err = io.StringIO(), io.StringIO()
    count = []

    def sleep(seconds):
        count.append(seconds)
        if len(count) == 2:
            raise KeyboardInterrupt
    status = _inspect.run(os.getpid(), watch=1.0, out=out, err=err, source=_recorded([1.0, 2.0, 3.0]),
                          sleep=sleep)
    assert status == 0
    text = out.getvalue()
    assert '\x1b' not in text
    assert 'refresh #1' in text and 'refresh #2' in text
    assert '10 msg/s' in text.split('refresh #2')[1]


def test_watch_once_shows_one_frame_with_rates():
    out = io.StringIO()
    status = _inspect.run(os.getpid(), watch=0.25, once=True, out=out, err=io.StringIO(),
                          source=_recorded([1.0, 3.0]), sleep=lambda s: None)
    assert status == 0
    assert out.getvalue().count('mphost program') == 1 and '10 msg/s' in out.getvalue()


# ---------------------------------------------------------------- the command, as users run it

def _inspect_cmd(*args, shortcut=False, **kw):
    cmd = [SHORTCUT] if shortcut else [sys.executable, '-m', 'mphost', 'inspect']
    env = dict(os.environ, COLUMNS='200')
    env.pop('MPHOST_REGISTRY', None)
    return subprocess.run(cmd + [str(a) for a in args], capture_output=True, text=True,
                          timeout=TIMEOUT, env=env, **kw)


def _dead_pid():
    p = subprocess.Popen(['true'])
    p.wait()
    return p.pid


def test_help_lists_the_tools():
    r = subprocess.run([sys.executable, '-m', 'mphost', '--help'], capture_output=True, text=True,
                       timeout=TIMEOUT)
    assert r.returncode == 0 and 'inspect' in r.stdout and 'mphost -m mphost' in r.stdout
    r = subprocess.run([sys.executable, '-m', 'mphost', 'inspect', '--help'], capture_output=True, text=True,
                       timeout=TIMEOUT)
    assert r.returncode == 0 and '--watch' in r.stdout and '--json' in r.stdout


def test_the_shortcut_is_beside_the_launcher():
    assert os.access(SHORTCUT, os.X_OK), SHORTCUT
    r = subprocess.run([SHORTCUT, '--help'], capture_output=True, text=True, timeout=TIMEOUT)
    assert r.returncode == 0 and r.stdout.startswith('usage: mphost-inspect')
    # Through a symlink elsewhere too, as a user links it into ~/bin.
    link = os.path.join(os.environ.get('TMPDIR', '/tmp'), f'mphost-inspect-link-{os.getpid()}')
    os.symlink(SHORTCUT, link)
    try:
        r = subprocess.run([link, '--help'], capture_output=True, text=True, timeout=TIMEOUT)
    finally:
        os.unlink(link)
    assert r.returncode == 0 and 'PID' in r.stdout


@pytest.mark.parametrize('args', [[], ['abc'], ['0'], ['1', '--watch', '0'], ['1', '--watch', 'x'],
                                  ['1', '--bogus']])
def test_usage_errors_exit_2(args):
    r = _inspect_cmd(*args)
    assert r.returncode == 2 and 'usage:' in r.stderr and r.stdout == ''


def test_no_such_pid():
    pid = _dead_pid()
    for shortcut in (False, True):
        r = _inspect_cmd(pid, shortcut=shortcut)
        assert r.returncode == 1 and r.stdout == ''
        assert r.stderr == f'mphost inspect: no process with pid {pid}\n'


def test_a_program_that_is_not_mphost():
    with subprocess.Popen(['/usr/bin/python3', '-c', 'import time; time.sleep(60)']) as p:
        try:
            r = _inspect_cmd(p.pid)
        finally:
            p.kill()
    assert r.returncode == 1 and r.stdout == ''
    assert r.stderr.startswith(f'mphost inspect: process {p.pid} (python3) is not an mphost program')


def test_another_users_program():
    if os.geteuid() == 0:
        user = 65534
        preexec = lambda: os.setuid(user)  # noqa: E731
    else:
        pytest.skip('needs root to start a process as another user')
    with subprocess.Popen(['sleep', '60'], preexec_fn=preexec) as p:
        try:
            r = _inspect_cmd(p.pid)
        finally:
            p.kill()
    assert r.returncode == 1 and r.stdout == ''
    assert r.stderr.startswith(f'mphost inspect: process {p.pid} belongs to another user (uid {user})')


STUCK = textwrap.dedent('''
    import multiprocessing as mp, sys, time

    def hold(lock, ready):
        lock.acquire()
        ready.set()
        time.sleep(600)

    def fill(q):
        for i in range(10):
            q.put(b'x' * 1000)

    if __name__ == '__main__':
        ctx = mp.get_context(sys.argv[1])
        lock, ready, q = ctx.Lock(), ctx.Event(), ctx.Queue(maxsize=2)
        holder = ctx.Process(target=hold, args=(lock, ready), name='Holder', daemon=True)
        writer = ctx.Process(target=fill, args=(q,), name='Writer', daemon=True)
        holder.start()
        writer.start()
        assert ready.wait(60)
        while q.qsize() < 2:
            time.sleep(0.01)
        print(holder.pid, writer.pid, flush=True)
        lock.acquire()   # stuck here for good
''')


@pytest.fixture
def stuck(request, tmp_path):
    """A program stuck on purpose: (root pid, holder pid, writer pid)."""
    method = getattr(request, 'param', 'fork')
    prog = tmp_path / 'stuck.py'
    prog.write_text(STUCK)
    env = dict(os.environ)
    env.pop('MPHOST_REGISTRY', None)
    p = subprocess.Popen([sys.executable, str(prog), method], stdout=subprocess.PIPE, text=True, env=env)
    children = []
    try:
        line = _readline(p, TIMEOUT)
        holder, writer = (int(x) for x in line.split())
        children = [holder, writer]
        time.sleep(0.3)   # the parent is now in acquire(), the writer in put()
        yield p.pid, holder, writer
    finally:
        p.kill()
        p.wait(TIMEOUT)
        for pid in children:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _readline(p, timeout):
    import selectors
    sel = selectors.DefaultSelector()
    sel.register(p.stdout, selectors.EVENT_READ)
    if not sel.select(timeout):
        raise AssertionError('the program never became ready')
    return p.stdout.readline()


@pytest.mark.parametrize('stuck', METHODS, indirect=True)
def test_a_stuck_program_shows_who_holds_the_lock_and_the_full_queue(stuck):
    root, holder, writer = stuck
    started = time.monotonic()
    r = _inspect_cmd(root)
    elapsed = time.monotonic() - started
    assert r.returncode == 0, r.stderr
    assert elapsed < 2.0, f'the inspector took {elapsed:.2f}s'
    text = r.stdout
    assert f'held by {holder} Holder' in text, text
    assert 'FULL' in text, text
    assert f'mphost program {root}' in text
    for pid in (root, holder, writer):
        assert str(pid) in text
    assert 'attention:' in text
    # The target is untouched: still stuck, every process still there.
    for pid in (root, holder, writer):
        assert _inspect.is_alive(pid)


def test_any_process_of_the_tree_leads_to_its_root(stuck):
    root, holder, writer = stuck
    r = _inspect_cmd(writer, shortcut=True)
    assert r.returncode == 0, r.stderr
    assert f'mphost program {root} (root of {writer})' in r.stdout


def test_json_of_a_stuck_program(stuck):
    root, holder, writer = stuck
    r = _inspect_cmd(root, '--json')
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert set(doc) >= {'root', 'registry', 'taken_at', 'processes', 'channels', 'locks', 'segments', 'spawn'}
    assert doc['root'] == root
    procs = {p['pid']: p for p in doc['processes']}
    assert procs[holder]['name'] == 'Holder' and procs[writer]['name'] == 'Writer'
    assert procs[holder]['ppid'] == root
    assert any(lk['holder_pid'] == holder for lk in doc['locks'])
    assert any(c['maxsize'] == 2 and c['depth'] == 2 and c['writers_blocked'] == 1 for c in doc['channels'])


BUSY = textwrap.dedent('''
    import multiprocessing as mp, sys, time

    def produce(q, n):
        for i in range(n):
            q.put(i)
            time.sleep(0.001)
        q.put(None)

    if __name__ == '__main__':
        q = mp.Queue()
        p = mp.Process(target=produce, args=(q, int(sys.argv[1])), name='Producer')
        p.start()
        total = 0
        for item in iter(q.get, None):
            total += item
        p.join()
        print('total', total, flush=True)
''')


def test_watch_shows_throughput_and_ends_with_the_program(tmp_path):
    prog = tmp_path / 'busy.py'
    prog.write_text(BUSY)
    n = 1500
    env = dict(os.environ)
    env.pop('MPHOST_REGISTRY', None)
    p = subprocess.Popen([sys.executable, str(prog), str(n)], stdout=subprocess.PIPE, text=True, env=env)
    try:
        time.sleep(0.3)
        r = _inspect_cmd(p.pid, '--watch', '0.3', '--json')
        out, _ = p.communicate(timeout=TIMEOUT)
    finally:
        p.kill()
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[-1] == f'mphost inspect: program {p.pid} has ended'
    docs = [json.loads(line) for line in lines[:-1]]
    assert len(docs) >= 2
    rates = [c.get('messages_per_second') or 0 for d in docs for c in d['channels']]
    assert max(rates) > 50, rates
    # Watched, the program ran as it does alone.
    assert p.returncode == 0 and out == f'total {n * (n - 1) // 2}\n'


@pytest.mark.skipif(shutil.which('tmux') is None, reason='tmux is not installed')
def test_watch_in_a_terminal_refreshes_and_quits_on_ctrl_c(stuck):
    root, holder, _ = stuck
    server = f'mphost-inspect-test-{os.getpid()}'

    def tmux(*args):
        return subprocess.run(['tmux', '-L', server, *args], capture_output=True, text=True, timeout=TIMEOUT)

    # The shell traps SIGINT (so it outlives the inspector) without passing SIG_IGN on.
    command = f"trap true INT; {SHORTCUT} --watch 0.3 {root}; echo INSPECT-EXIT=$?; sleep 60"
    r = tmux('new-session', '-d', '-s', 'watch', '-x', '160', '-y', '50', 'sh', '-c', command)
    assert r.returncode == 0, r.stderr
    try:
        def screen():
            return tmux('capture-pane', '-p', '-t', 'watch').stdout

        def wait_for(predicate, what):
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                text = screen()
                if predicate(text):
                    return text
                time.sleep(0.1)
            raise AssertionError(f'{what}; the screen:\n{screen()}')

        first = wait_for(lambda s: 'refresh #2' in s, 'no second frame')
        assert f'held by {holder} Holder' in first
        assert first.count('mphost program') == 1, 'frames are drawn in place'
        assert tmux('display', '-p', '-t', 'watch', '#{cursor_flag}').stdout.strip() == '0'
        second = wait_for(lambda s: 'refresh #2' not in s and 'refresh #' in s, 'the frame never refreshed')
        assert second != first
        tmux('send-keys', '-t', 'watch', 'C-c')
        final = wait_for(lambda s: 'INSPECT-EXIT=' in s, 'Ctrl-C did not end the inspector')
        assert 'INSPECT-EXIT=0' in final
        assert 'Traceback' not in final
        assert tmux('display', '-p', '-t', 'watch', '#{cursor_flag}').stdout.strip() == '1', 'cursor restored'
    finally:
        tmux('kill-server')
