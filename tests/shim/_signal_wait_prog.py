"""Signals at random moments of blocking multiprocessing calls. Run by
test_signal_during_wait.py under mphost and under stock python3, with a
random seed as argument; prints one JSON object.

For each kind of wait, ROUNDS times: SIGALRM is armed (setitimer) with a
jittered delay and the call is made with a long timeout; the handler
raises. Recorded: the worst lateness of the exception, counted from the
moment the timer was due (a signal whose handler ran late shows here, not
in the handler's own clock), and whether every exception was the
handler's. Then once with a handler that returns: what the call gives and
whether it waited as long as it was asked (a timeout, or an item that
comes later)."""
import json
import multiprocessing as mp
import os
import signal
import sys
import threading
import time
from queue import Empty

ROUNDS = 50
LONG = 5.0        # the timeout of the calls that must be cut short
QUIET_AFTER = 0.05
QUIET_TIMEOUT = 0.3


class Alarm(Exception):
    pass


def _raise(signum, frame):
    raise Alarm


def _quiet(signum, frame):
    pass


def _later(delay, fn, *args):
    t = threading.Timer(delay, fn, args)
    t.daemon = True
    t.start()
    return t


def _hold(lock, held, release):
    with lock:
        held.set()
        release.wait(60)


def kinds(pool):
    """name -> (the call cut short, the call of the quiet round), each
    taking a timeout (which calls without one ignore)."""
    lock = mp.Lock()
    lock.acquire()

    rlock = mp.RLock()
    held, release = threading.Event(), threading.Event()
    threading.Thread(target=_hold, args=(rlock, held, release), daemon=True).start()
    held.wait(10)

    sem = mp.Semaphore(0)
    cond = mp.Condition()
    event = mp.Event()
    barrier = mp.Barrier(2)
    queue = mp.Queue()
    simple = mp.SimpleQueue()
    reader, writer = mp.Pipe(duplex=False)
    busy = pool.apply_async(time.sleep, (120,))

    def cond_wait(timeout):
        with cond:
            return cond.wait(timeout)

    def barrier_wait(timeout):
        try:
            return barrier.wait(timeout)
        except threading.BrokenBarrierError:
            return 'broken'
        finally:
            barrier.reset()

    def queue_get(timeout):
        try:
            return queue.get(timeout=timeout)
        except Empty:
            return 'Empty'

    def fed(get, put, item):
        # The quiet round of a call without a timeout: the item comes later.
        def call(_timeout):
            _later(QUIET_TIMEOUT, put, item)
            return get()
        return call

    def result_get(timeout):
        try:
            return busy.get(timeout)
        except mp.TimeoutError:
            return 'TimeoutError'

    table = {
        'Lock.acquire': lambda t: lock.acquire(True, t),
        'RLock.acquire': lambda t: rlock.acquire(True, t),
        'Semaphore.acquire': lambda t: sem.acquire(True, t),
        'Condition.wait': cond_wait,
        'Event.wait': lambda t: event.wait(t),
        'Barrier.wait': barrier_wait,
        'Queue.get': queue_get,
        'SimpleQueue.get': (lambda t: simple.get(), fed(simple.get, simple.put, 'item')),
        'Connection.recv': (lambda t: reader.recv(), fed(reader.recv, writer.send, 'message')),
        'Connection.poll': lambda t: reader.poll(t),
        'AsyncResult.get': result_get,
    }
    table = {name: calls if isinstance(calls, tuple) else (calls, calls) for name, calls in table.items()}
    return table, release


def worst_lateness(call, rng):
    signal.signal(signal.SIGALRM, _raise)
    worst = 0.0
    foreign = []
    for _ in range(ROUNDS):
        delay = 0.001 + rng.random() * 0.03
        due = time.monotonic() + delay
        signal.setitimer(signal.ITIMER_REAL, delay)
        try:
            call(LONG)
            caught = None
        except Alarm:
            caught = time.monotonic()
        except BaseException as e:  # noqa: B902 - reported, not swallowed silently
            foreign.append(type(e).__name__)
            caught = time.monotonic()
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        if caught is None:
            foreign.append('returned')
            caught = time.monotonic()
        worst = max(worst, caught - due)
    return worst, foreign


def quiet_round(call):
    signal.signal(signal.SIGALRM, _quiet)
    start = time.monotonic()
    signal.setitimer(signal.ITIMER_REAL, QUIET_AFTER)
    try:
        result = call(QUIET_TIMEOUT)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    took = time.monotonic() - start
    return repr(result), QUIET_TIMEOUT - 0.02 <= took < QUIET_TIMEOUT + 2.0


def ctrl_c_lateness(lock_call):
    """Ctrl-C (SIGINT to the process, default handler) during a Lock wait."""
    worst, kinds_seen = 0.0, set()
    # As under a terminal: a program started in the background of a
    # non-interactive shell inherits SIGINT ignored, and Python keeps that.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for i in range(10):
        delay = 0.005 + i * 0.003
        due = time.monotonic() + delay
        t = _later(delay, os.kill, os.getpid(), signal.SIGINT)
        try:
            lock_call(LONG)
            kinds_seen.add('returned')
        except KeyboardInterrupt:
            kinds_seen.add('KeyboardInterrupt')
        t.join()
        worst = max(worst, time.monotonic() - due)
    return worst, sorted(kinds_seen)


def main():
    import random
    rng = random.Random(int(sys.argv[1]) if len(sys.argv) > 1 else 0)
    report = {}
    with mp.get_context('fork').Pool(1) as pool:
        table, release = kinds(pool)
        for name, (call, quiet_call) in table.items():
            worst, foreign = worst_lateness(call, rng)
            result, waited = quiet_round(quiet_call)
            report[name] = {'worst': worst, 'foreign': foreign, 'quiet': result, 'waited': waited}
        report['ctrl-c'] = ctrl_c_lateness(table['Lock.acquire'][0])
        release.set()
        pool.terminate()
    signal.signal(signal.SIGALRM, signal.SIG_DFL)
    print(json.dumps(report))


if __name__ == '__main__':
    main()
