"""mphost.state(): the live state of a program tree from the native registry.

Each test builds a program with known processes and objects -- named
children of each start method, a Lock held by a child, a full Queue, a
shared memory segment mapped by two processes -- and checks what state()
reports against what the program knows. The last ones read a program stuck
on purpose from another process, by its root pid."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

import multiprocessing as mp
from multiprocessing import shared_memory

import mphost

METHODS = ['fork', 'spawn', 'forkserver']
WAIT = 20


def _rows(snap, key, **match):
    return [row for row in snap[key] if all(row.get(k) == v for k, v in match.items())]


def _until(predicate, timeout=WAIT):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        got = predicate()
        if got:
            return got
        time.sleep(0.02)
    return predicate()


def _wait_for(event, flag):
    event.set()
    flag.wait(WAIT)


def _hold(lock, held, release):
    with lock:
        held.set()
        release.wait(WAIT)


def _attach_and_wait(name, attached, release):
    seg = shared_memory.SharedMemory(name=name)
    attached.set()
    release.wait(WAIT)
    seg.close()


@pytest.mark.parametrize('method', METHODS)
def test_named_children_are_listed_with_role_method_parent_and_exit_code(method):
    ctx = mp.get_context(method)
    started, release = ctx.Event(), ctx.Event()
    child = ctx.Process(target=_wait_for, args=(started, release), name='named-child')
    child.start()
    try:
        assert started.wait(WAIT)
        row = _until(lambda: next(iter(_rows(mphost.state(), 'processes', pid=child.pid, state='running')), None))
        assert row is not None
        assert row['name'] == 'named-child'
        assert row['role'] == 'child'
        assert row['start_method'] == method
        assert row['ppid'] == os.getpid()
        assert row['exitcode'] is None
        assert row['rss_bytes'] > 0 and row['cpu_seconds'] >= 0
        assert row['started_at'] <= time.time()
        me = _rows(mphost.state(), 'processes', pid=os.getpid())
        assert me and me[0]['role'] == 'main'
    finally:
        release.set()
        child.join(WAIT)
    assert child.exitcode == 0
    row = _rows(mphost.state(), 'processes', pid=child.pid)[0]
    assert row['state'] == 'exited' and row['exitcode'] == 0


def test_killed_child_reports_its_signal_exit_code():
    ctx = mp.get_context('fork')
    child = ctx.Process(target=time.sleep, args=(WAIT,), name='victim')
    child.start()
    child.kill()
    child.join(WAIT)
    row = _rows(mphost.state(), 'processes', pid=child.pid)[0]
    assert row['name'] == 'victim'
    assert row['exitcode'] == -signal.SIGKILL == child.exitcode


@pytest.mark.parametrize('method', METHODS)
def test_lock_held_by_a_named_child_names_the_child(method):
    ctx = mp.get_context(method)
    lock, held, release = ctx.Lock(), ctx.Event(), ctx.Event()
    child = ctx.Process(target=_hold, args=(lock, held, release), name='holder')
    child.start()
    try:
        assert held.wait(WAIT)
        snap = mphost.state()
        holders = [row for row in snap['locks'] if row['kind'] == 'Lock' and row['holder_pid'] == child.pid]
        assert len(holders) == 1
        assert holders[0]['value'] == 0 and holders[0]['maxvalue'] == 1
        assert holders[0]['holder_alive'] is True
        names = {row['pid']: row['name'] for row in snap['processes']}
        assert names[holders[0]['holder_pid']] == 'holder'
    finally:
        release.set()
        child.join(WAIT)
    assert not [row for row in mphost.state()['locks'] if row['holder_pid'] == child.pid]


def test_kinds_of_locks_and_primitives():
    ctx = mp.get_context('fork')
    rlock, sem, bsem = ctx.RLock(), ctx.Semaphore(2), ctx.BoundedSemaphore(4)
    event, barrier, cond = ctx.Event(), ctx.Barrier(3), ctx.Condition()
    rlock.acquire()
    rlock.acquire()
    bsem.acquire()
    event.set()
    snap = mphost.state()
    mine = [row for row in snap['locks'] if row['kind'] == 'RLock' and row['holder_pid'] == os.getpid()]
    assert mine and mine[0]['recursion'] == 2
    assert any(row['kind'] == 'Semaphore' and row['value'] == 2 for row in snap['locks'])
    assert any(row['kind'] == 'BoundedSemaphore' and row['value'] == 3 and row['maxvalue'] == 4
               for row in snap['locks'])
    assert any(row['kind'] == 'Event' and row['is_set'] for row in snap['locks'])
    assert any(row['kind'] == 'Barrier' and row['parties'] == 3 and row['waiters'] == 0 for row in snap['locks'])
    assert any(row['kind'] == 'Condition' and row['waiters'] == 0 for row in snap['locks'])
    rlock.release()
    rlock.release()
    del sem, barrier, cond


def test_full_queue_shows_depth_three():
    q = mp.Queue(maxsize=3)
    payloads = [b'x' * 1000, list(range(100)), 'three']
    for item in payloads:
        q.put(item)
    assert q.full()
    snap = mphost.state()
    queues = [row for row in snap['channels'] if row['kind'] == 'Queue' and row['depth'] == 3]
    assert len(queues) == 1
    row = queues[0]
    assert row['messages_total'] == 3
    assert row['bytes_in_flight'] >= 1000
    assert row['creator_pid'] == os.getpid()
    # Its slot semaphore is spent.
    assert any(lock['kind'] == 'BoundedSemaphore' and lock['maxvalue'] == 3 and lock['value'] == 0
               for lock in snap['locks'])
    assert [q.get(timeout=WAIT) for _ in payloads] == payloads
    after = [c for c in mphost.state()['channels'] if c['name'] == row['name']][0]
    assert after['depth'] == 0 and after['messages_total'] == 3 and after['bytes_in_flight'] == 0


def test_pipe_and_queue_kinds_and_a_blocked_reader():
    ctx = mp.get_context('fork')
    reader, writer = ctx.Pipe(duplex=False)
    sq, jq = ctx.SimpleQueue(), ctx.JoinableQueue()
    kinds = {row['kind'] for row in mphost.state()['channels']}
    assert {'Pipe', 'SimpleQueue', 'JoinableQueue'} <= kinds
    got = []
    waiter = threading.Thread(target=lambda: got.append(reader.recv()))
    waiter.start()
    name = reader._inbound.name.lstrip('/')
    row = _until(lambda: next((c for c in mphost.state()['channels']
                               if c['name'] == name and c['readers_waiting'] == 1), None))
    assert row is not None and row['kind'] == 'Pipe'
    writer.send('wake')
    waiter.join(WAIT)
    assert got == ['wake']
    del sq, jq


@pytest.mark.parametrize('method', ['fork', 'spawn'])
def test_shared_memory_segment_mapped_by_two_processes(method):
    ctx = mp.get_context(method)
    seg = shared_memory.SharedMemory(create=True, size=1 << 20)
    attached, release = ctx.Event(), ctx.Event()
    child = ctx.Process(target=_attach_and_wait, args=(seg.name, attached, release))
    child.start()
    try:
        assert attached.wait(WAIT)
        rows = _rows(mphost.state(), 'segments', name=seg.name.lstrip('/'))
        assert len(rows) == 1
        assert rows[0]['size'] == 1 << 20
        assert sorted(rows[0]['mapped_by']) == sorted([os.getpid(), child.pid])
    finally:
        release.set()
        child.join(WAIT)
        seg.close()
        seg.unlink()


def test_forkserver_and_warm_spares_are_reported():
    ctx = mp.get_context('forkserver')
    child = ctx.Process(target=time.sleep, args=(0,))
    child.start()
    child.join(WAIT)
    spawn = mphost.state()['spawn']
    assert spawn['forkserver_pid'] is not None and spawn['forkserver_alive'] is True
    server = _rows(mphost.state(), 'processes', pid=spawn['forkserver_pid'])[0]
    assert server['role'] == 'forkserver'
    assert isinstance(spawn['warm_spares'], int)


def test_schema_is_plain_data_and_prints_as_a_tree():
    q = mp.Queue()
    q.put(1)
    snap = mphost.state()
    assert isinstance(snap, dict)
    assert set(snap) >= {'root', 'registry', 'taken_at', 'processes', 'channels', 'locks', 'segments', 'spawn'}
    assert snap['root'] == os.getpid() and snap['registry'].startswith('mphost-reg-%d-' % os.getpid())
    assert abs(snap['taken_at'] - time.time()) < 60
    for row in snap['processes']:
        assert set(row) >= {'pid', 'ppid', 'name', 'role', 'start_method', 'state', 'exitcode',
                            'cpu_seconds', 'rss_bytes', 'started_at'}
    for row in snap['channels']:
        assert set(row) >= {'name', 'kind', 'label', 'depth', 'bytes_in_flight', 'capacity',
                            'messages_total', 'readers_waiting', 'writers_waiting', 'creator_pid'}
    for row in snap['locks']:
        assert set(row) >= {'name', 'kind', 'value', 'maxvalue', 'holder_pid', 'waiters', 'creator_pid'}
    assert set(snap['spawn']) >= {'forkserver_pid', 'forkserver_alive', 'warm_spares'}
    assert json.loads(json.dumps(snap)) == snap
    text = str(snap)
    assert 'MainProcess' in text and 'Queue' in text and 'processes:' in text
    q.get(timeout=WAIT)


def test_interval_adds_messages_per_second():
    q = mp.SimpleQueue()
    stop = threading.Event()

    def pump():
        while not stop.is_set():
            q.put(0)
            q.get()
            time.sleep(0.001)

    t = threading.Thread(target=pump)
    t.start()
    try:
        snap = mphost.state(interval=0.3)
    finally:
        stop.set()
        t.join(WAIT)
    # Only this queue's channel: earlier tests may leave other SimpleQueues.
    name = q._reader._inbound.name
    rates = [row['messages_per_second'] for row in snap['channels'] if row['name'] == name]
    assert len(rates) == 1 and rates[0] > 10, snap['channels']
    with pytest.raises(ValueError):
        mphost.state(interval=-1)


def test_unknown_pid_is_a_process_lookup_error():
    with pytest.raises(ProcessLookupError):
        mphost.state(2 ** 22 + 12345)


STUCK = textwrap.dedent('''
    import multiprocessing as mp, sys, time

    def waiter(lock):
        lock.acquire()      # blocks: the root holds it for good

    if __name__ == '__main__':
        mp.set_start_method(sys.argv[1])
        lock = mp.Lock()
        lock.acquire()
        q = mp.Queue(maxsize=3)
        for i in range(3):
            q.put(i)
        child = mp.Process(target=waiter, args=(lock,), name='stuck-waiter', daemon=True)
        child.start()
        print(child.pid, flush=True)
        time.sleep(120)
''')


@pytest.mark.parametrize('method', ['fork', 'spawn'])
def test_a_stuck_program_is_read_from_another_process_quickly(tmp_path, method):
    script = tmp_path / 'stuck.py'
    script.write_text(STUCK)
    env = {k: v for k, v in os.environ.items() if k != 'MPHOST_REGISTRY'}  # its own tree
    # (Its tracker warns of the semaphores left when it is terminated.)
    proc = subprocess.Popen([sys.executable, str(script), method], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, env=env, text=True)
    try:
        waiter = int(proc.stdout.readline())

        def waiting():
            snap = mphost.state(proc.pid)
            rows = _rows(snap, 'processes', pid=waiter)
            lock = [row for row in snap['locks'] if row['kind'] == 'Lock' and row['holder_pid'] == proc.pid]
            return snap if rows and rows[0]['os_state'] == 'S' and lock and lock[0]['may_have_waiters'] else None

        snap = _until(waiting)
        assert snap is not None
        from mphost._state import programs
        assert proc.pid in programs() and os.getpid() in programs()
        started = time.monotonic()
        snap = mphost.state(proc.pid)
        assert time.monotonic() - started < 2
        assert snap['root'] == proc.pid
        rows = _rows(snap, 'processes', pid=waiter)
        assert rows[0]['name'] == 'stuck-waiter' and rows[0]['state'] == 'running'
        assert rows[0]['ppid'] == proc.pid and rows[0]['start_method'] == method
        held = [row for row in snap['locks'] if row['kind'] == 'Lock' and row['holder_pid'] == proc.pid]
        assert len(held) == 1
        full = [row for row in snap['channels'] if row['kind'] == 'Queue']
        assert len(full) == 1 and full[0]['depth'] == 3
        # Reading it disturbed nothing: still stuck, still alive, the lock
        # still held by the root and waited for.
        assert proc.poll() is None
        again = mphost.state(proc.pid)
        assert [row['holder_pid'] for row in again['locks'] if row['kind'] == 'Lock'] == [proc.pid]
        assert _rows(again, 'processes', pid=waiter)[0]['os_state'] == 'S'
    finally:
        proc.terminate()
        proc.wait(WAIT)
        proc.stdout.close()
