"""Native objects closed, collected or forked while another thread is
blocked in them: the blocked thread ends with the error the stdlib names
(OSError('handle is closed') for a closed connection end), or keeps waiting
where the stdlib keeps waiting; the process never crashes (channel.hpp,
Threads)."""

import gc
import multiprocessing
import subprocess
import sys
import textwrap
import threading
import time

import pytest

import _mphost
from conftest import START_METHODS

TIMEOUT = 30


class Blocked:
    """Runs fn in a daemon thread and records how it ended."""

    def __init__(self, fn, *args):
        self.result = self.error = None
        self.thread = threading.Thread(target=self._run, args=(fn,) + args, daemon=True)
        self.thread.start()
        time.sleep(0.3)
        assert self.thread.is_alive(), 'it should be blocked'

    def _run(self, fn, *args):
        try:
            self.result = fn(*args)
        except BaseException as exc:  # noqa: B902 - recorded for the test
            self.error = exc

    def ended(self, timeout=10):
        self.thread.join(timeout)
        return not self.thread.is_alive()


def assert_handle_closed(blocked):
    assert blocked.ended(), 'the blocked thread was not woken'
    assert type(blocked.error) is OSError, repr(blocked.error)
    assert str(blocked.error) == 'handle is closed'


@pytest.mark.parametrize('duplex', [False, True])
@pytest.mark.parametrize('call', ['recv', 'recv_bytes', 'poll'])
def test_closing_a_pipe_end_wakes_its_blocked_reader(duplex, call):
    r, w = multiprocessing.Pipe(duplex=duplex)
    fn = getattr(r, call)
    blocked = Blocked(fn, None) if call == 'poll' else Blocked(fn)
    r.close()
    assert_handle_closed(blocked)
    with pytest.raises(OSError):
        r.recv()
    # The other end sees this one gone.
    with pytest.raises(BrokenPipeError):
        w.send('x')
    w.close()


def test_the_issue_reproduction_does_not_crash(monkeypatch):
    seen = []
    monkeypatch.setattr(threading, 'excepthook', lambda args: seen.append(args.exc_value))
    r, w = multiprocessing.Pipe(duplex=False)
    t = threading.Thread(target=r.recv, daemon=True)
    t.start()
    time.sleep(0.5)
    r.close()
    t.join(10)
    assert not t.is_alive()
    assert [type(e) for e in seen] == [OSError] and str(seen[0]) == 'handle is closed'
    w.close()


@pytest.mark.parametrize('kind', ['Queue', 'SimpleQueue', 'JoinableQueue'])
def test_closing_a_queue_wakes_its_blocked_getter(kind):
    q = getattr(multiprocessing, kind)()
    blocked = Blocked(q.get)
    q.close()
    assert_handle_closed(blocked)
    if kind != 'SimpleQueue':
        q.join_thread()


def test_closing_a_bounded_channel_wakes_its_blocked_sender():
    ch = _mphost.Channel.create(capacity=4096, unbounded=False, role='both')
    while ch.send(b's' * 500, 0) is not False:
        pass
    blocked = Blocked(ch.send, b's' * 500)
    ch.close()
    assert_handle_closed(blocked)


def test_a_put_blocked_on_a_full_queue_keeps_waiting_after_close_as_on_stock():
    # The stdlib's put waits on the queue's slot semaphore, which close()
    # leaves alone: the thread keeps waiting; nothing crashes.
    q = multiprocessing.Queue(1)
    q.put(1)
    blocked = Blocked(q.put, 2)
    q.close()
    assert not blocked.ended(0.5)
    assert blocked.error is None


@pytest.mark.parametrize('kind', ['Pipe', 'Queue'])
def test_dropping_the_object_under_a_waiter_leaves_it_usable(kind):
    if kind == 'Pipe':
        r, w = multiprocessing.Pipe(duplex=False)
        blocked = Blocked(r.recv)
        send = w.send
        del r
    else:
        q = multiprocessing.Queue()
        blocked = Blocked(q.get)
        send = q.put
        del q
    gc.collect()
    time.sleep(0.1)
    assert blocked.thread.is_alive()
    send('after del')
    assert blocked.ended()
    assert blocked.error is None and blocked.result == 'after del'


def test_dropping_a_semlock_under_a_waiter():
    sem = multiprocessing.Semaphore(0)
    blocked = Blocked(sem.acquire, True, 1.0)
    del sem
    gc.collect()
    assert blocked.ended()
    assert blocked.error is None and blocked.result is False


def test_closing_a_listener_under_a_blocked_accept():
    from multiprocessing.connection import Client, Listener
    listener = Listener()
    address = listener.address
    blocked = Blocked(listener.accept)
    listener.close()
    # As on stock, the accept may stay blocked (the kernel does not wake it);
    # new clients are refused and the process carries on.
    with pytest.raises(OSError):
        Client(address)
    time.sleep(0.1)
    assert blocked.error is None or isinstance(blocked.error, OSError)


def _send_after(w, delay):
    time.sleep(delay)
    w.send('from child')


def _put_after(q, delay):
    time.sleep(delay)
    q.put('from child')


def _close_and_send(r, w):
    r.close()   # the child's copy: the parent's reader is not affected
    w.send('from child')


@pytest.mark.parametrize('method', START_METHODS)
def test_close_under_a_waiter_while_a_child_writes(method):
    ctx = multiprocessing.get_context(method)
    r, w = ctx.Pipe(duplex=False)
    blocked = Blocked(r.recv)
    p = ctx.Process(target=_send_after, args=(w, 0.5))
    p.start()
    r.close()
    assert_handle_closed(blocked)
    p.join(TIMEOUT)
    assert p.exitcode in (0, 1)   # 1: the child's send saw no reader left
    w.close()


@pytest.mark.parametrize('method', START_METHODS)
def test_a_child_started_while_a_thread_waits(method):
    ctx = multiprocessing.get_context(method)
    r, w = ctx.Pipe(duplex=False)
    blocked = Blocked(r.recv)
    p = ctx.Process(target=_close_and_send, args=(r, w))
    p.start()
    p.join(TIMEOUT)
    assert p.exitcode == 0
    assert blocked.ended()
    assert blocked.error is None and blocked.result == 'from child'
    r.close()
    w.close()


@pytest.mark.parametrize('method', START_METHODS)
def test_a_child_started_while_a_thread_waits_on_a_queue(method):
    ctx = multiprocessing.get_context(method)
    q = ctx.Queue()
    blocked = Blocked(q.get)
    p = ctx.Process(target=_put_after, args=(q, 0))
    p.start()
    p.join(TIMEOUT)
    assert p.exitcode == 0
    assert blocked.ended()
    assert blocked.error is None and blocked.result == 'from child'
    q.close()
    q.join_thread()


@pytest.mark.parametrize('method', START_METHODS)
def test_queue_close_under_a_getter_with_a_child_putting(method):
    ctx = multiprocessing.get_context(method)
    q = ctx.Queue()
    blocked = Blocked(q.get)
    p = ctx.Process(target=_put_after, args=(q, 0.3))
    p.start()
    q.close()
    assert_handle_closed(blocked)
    p.join(TIMEOUT)
    assert p.exitcode == 0
    q.join_thread()


def _sleep(x):
    time.sleep(x)
    return x


@pytest.mark.parametrize('method', START_METHODS)
def test_pebble_pool_shutdown(method):
    pebble = pytest.importorskip('pebble')
    ctx = multiprocessing.get_context(method)
    start = time.monotonic()
    pool = pebble.ProcessPool(max_workers=2, context=ctx)
    done = pool.schedule(_sleep, args=(0.01,))
    assert done.result(timeout=TIMEOUT) == 0.01
    for _ in range(3):
        pool.schedule(_sleep, args=(20,))
    time.sleep(0.3)
    pool.stop()
    pool.join(TIMEOUT)
    assert not pool.active
    pool = pebble.ProcessPool(max_workers=2, context=ctx)
    assert list(pool.map(_sleep, [0.01] * 4).result()) == [0.01] * 4
    pool.close()
    pool.join(TIMEOUT)
    assert time.monotonic() - start < TIMEOUT


def test_exit_with_threads_blocked_in_native_calls():
    """A program that exits while daemon threads wait in recv, get, a
    bounded send and poll exits cleanly and silently, as on stock."""
    prog = textwrap.dedent('''
        import multiprocessing as mp, threading, time
        import _mphost
        r, w = mp.Pipe(duplex=False)
        q = mp.Queue()
        sq = mp.SimpleQueue()
        a, b = mp.Pipe()
        ch = _mphost.Channel.create(capacity=4096, unbounded=False, role='both')
        while ch.send(b'x' * 500, 0) is not False:
            pass
        for fn, args in ((r.recv, ()), (q.get, ()), (sq.get, ()), (a.poll, (None,)), (ch.send, (b'y' * 500,))):
            threading.Thread(target=fn, args=args, daemon=True).start()
        time.sleep(0.3)
        print('bye')
    ''')
    out = subprocess.run([sys.executable, '-c', prog], capture_output=True, text=True, timeout=TIMEOUT)
    assert out.returncode == 0, out.stderr
    assert out.stdout == 'bye\n'
    assert out.stderr == ''


def _late_reader(r, got):
    def worker():
        got.value = r.recv()
    threading.Thread(target=worker).start()   # non-daemon: the child waits for it


@pytest.mark.parametrize('method', START_METHODS)
def test_a_non_daemon_thread_still_waiting_at_child_exit_gets_its_message(method):
    # The child's exit closes its connections before it joins its threads:
    # the thread goes on waiting and receives what comes, as on stock.
    ctx = multiprocessing.get_context(method)
    r, w = ctx.Pipe(duplex=False)
    got = ctx.Value('i', 0)
    p = ctx.Process(target=_late_reader, args=(r, got))
    p.start()
    time.sleep(1.0)
    assert p.is_alive()
    w.send(42)
    p.join(TIMEOUT)
    assert p.exitcode == 0
    assert got.value == 42
