"""One fault-injection trial, run as the root program of the interpreter under test.

    INTERPRETER faults_trials.py ROW SEED [METHOD]

runs the trial of ROW with the random kill point drawn from SEED, in fresh
processes of start method METHOD (default fork), and prints one line
`FAULTS-RESULT {json}` with:

  outcome   ok | hang | lost | duplicated | torn | error
            (`leftover` is judged by the caller, after this process ended)
  recover   seconds from the SIGKILL to the survivors' first success (or null)
  note      what happened, in a few words (aggregated into the table)
  names     /dev/shm names this tree used, to be checked after the root exits
  pid       this root's pid

Rules every trial applies: a wait that should end ends within its timeout
plus one second (else `hang`; a wait that only a dead process could end,
e.g. a lock its dead holder keeps, is a `hang` too, seen at its timeout);
every message whose put()/send() returned is delivered exactly once and
intact (sequence numbers and CRC-32); one whose put was interrupted by the
kill may be missing, never torn or duplicated; the survivors keep working
(a follow-up round trip). The same program runs under stock python3.
"""
import json
import multiprocessing as mp
import os
import random
import sys
import threading
import time
import zlib

from faults_common import (EXIT_BLOCKED, EXIT_LIMIT, LARGE, SMALL, WAIT, Outcome, bounded,
                           follow_up_child, kill, kill_spinner, wait_for)
from faults_services import trial_forkserver_zygote, trial_manager, trial_pool, trial_warm_spawn


# ---------------------------------------------------------------- messages

def message(seq, size):
    body = seq.to_bytes(4, 'little') * (size // 4)
    return (seq, zlib.crc32(body), body)


def check(msg):
    """The message's sequence number; Outcome('torn') if it is not intact."""
    try:
        seq, crc, body = msg
    except Exception:
        raise Outcome('torn', 'malformed message %r' % (type(msg),))
    if zlib.crc32(body) != crc or body[:4] != seq.to_bytes(4, 'little'):
        raise Outcome('torn', 'message %d fails its checksum' % seq)
    return seq


class Endpoints:
    """The two ends of one kind of channel, with a uniform face."""

    def __init__(self, ctx, kind):
        self.kind = kind
        if kind == 'pipe':
            self.rx, self.tx = ctx.Pipe(duplex=False)
        else:
            self.q = {'queue': ctx.Queue, 'simplequeue': ctx.SimpleQueue,
                      'joinablequeue': ctx.JoinableQueue}[kind]()

    def put(self, obj):
        if self.kind == 'pipe':
            self.tx.send(obj)
        else:
            self.q.put(obj)

    def get(self, timeout):
        """A message, or None when none came within timeout (or EOF)."""
        if self.kind == 'pipe':
            try:
                return self.rx.recv() if self.rx.poll(timeout) else None
            except EOFError:
                return None
        if self.kind == 'simplequeue':
            end = time.monotonic() + timeout
            while self.q.empty():
                if time.monotonic() > end:
                    return None
                time.sleep(0.001)
            return self.q.get()
        try:
            return self.q.get(timeout=timeout)
        except Exception as exc:
            if type(exc).__name__ == 'Empty':
                return None
            raise

    def done(self):
        if self.kind == 'joinablequeue':
            self.q.task_done()


def _writer(ends, size, attempted, returned):
    if ends.kind == 'pipe':
        ends.rx.close()
    seq = 0
    while True:
        attempted.value = seq + 1
        ends.put(message(seq, size))
        returned.value = seq + 1
        seq += 1


def _reader(ends, consumed, first):
    if ends.kind == 'pipe':
        ends.tx.close()
    while True:
        msg = ends.get(30)
        if msg is None:
            return
        seq = check(msg)
        if first.value < 0:
            first.value = seq
        ends.done()
        consumed.value = seq + 1


def _drain(ends, start, returned_box, idle, state):
    """Messages from `start` on until none came for `idle` s; returns the
    next expected seq (state['last']: when the last one came)."""
    expect = start
    while True:
        msg = ends.get(idle)
        if msg is None:
            return expect
        state['last'] = time.monotonic()
        seq = check(msg)
        ends.done()
        if seq < expect:
            raise Outcome('duplicated', 'message %d delivered twice' % seq)
        if seq > expect:
            raise Outcome('lost', 'messages %d..%d lost (put returned)' % (expect, seq - 1))
        expect += 1


def trial_channel_writer(ctx, rng, kind, size):
    """A writer SIGKILLed at a random moment of its put()/send() loop; the
    root reads meanwhile and drains afterwards."""
    ends = Endpoints(ctx, kind)
    attempted, returned = ctx.RawValue('q', 0), ctx.RawValue('q', 0)
    w = ctx.Process(target=_writer, args=(ends, size, attempted, returned))
    w.start()
    if kind == 'pipe':
        ends.tx.close()
    delay = rng.uniform(0.005, 0.25)
    state = {'expect': 0, 'killed': None}

    def killer():
        time.sleep(delay)
        state['killed'] = kill(w)

    k = threading.Thread(target=killer, daemon=True)
    k.start()

    def read_all():
        # Reads while the writer runs, then what is left once it is dead.
        while state['killed'] is None:
            msg = ends.get(0.02)
            if msg is None:
                continue
            seq = check(msg)
            ends.done()
            if seq != state['expect']:
                raise Outcome('duplicated' if seq < state['expect'] else 'lost',
                              'got %d, expected %d' % (seq, state['expect']))
            state['expect'] += 1
        w.join(WAIT)
        return _drain(ends, state['expect'], lambda: returned.value, 0.3, state)

    got = bounded(read_all, delay + WAIT + 2, 'reader after the writer died')
    # Recovered once the last returned message was in (or at the kill).
    recover = max(state.get('last', 0.0), state['killed']) - state['killed']
    if got < returned.value:
        raise Outcome('lost', '%d of %d returned puts delivered' % (got, returned.value))
    interrupted = attempted.value > returned.value
    note = 'interrupted put delivered' if interrupted and got == attempted.value else (
        'interrupted put lost' if interrupted else 'killed between puts')
    # The survivors keep working: a round trip on the same queue (a pipe's
    # writer is gone: a fresh pipe to a fresh child instead).
    t0 = time.monotonic()
    if kind == 'pipe':
        follow_up_child(ctx)
    else:
        def round_trip():
            ends.put(message(99999, size))
            msg = ends.get(WAIT)
            if msg is None or check(msg) != 99999:
                raise Outcome('lost', 'follow-up message not delivered')
            ends.done()
            if kind == 'joinablequeue' and not interrupted:
                ends.q.join()
        bounded(round_trip, WAIT, 'follow-up round trip on the queue')
    return recover + (time.monotonic() - t0), note


def trial_channel_reader(ctx, rng, kind, size):
    """A reader SIGKILLed at a random moment of its get()/recv() loop; the
    root keeps writing, and a new reader takes the rest."""
    ends = Endpoints(ctx, kind)
    consumed, first = ctx.RawValue('q', 0), ctx.RawValue('q', -1)
    r = ctx.Process(target=_reader, args=(ends, consumed, first))
    r.start()
    if kind == 'pipe':
        ends.rx.close()
    delay = rng.uniform(0.005, 0.25)
    end = time.monotonic() + delay
    sent = [0]

    def write_until_kill():
        while time.monotonic() < end:
            if sent[0] - consumed.value >= 3:   # keep at most 3 in flight
                time.sleep(0.0005)
                continue
            ends.put(message(sent[0], size))
            sent[0] += 1

    bounded(write_until_kill, delay + WAIT, 'put while the reader runs')
    killed = kill(r)
    r.join(WAIT)
    dead_got = consumed.value
    if kind == 'pipe':
        # No reader is left (and the channel had 150 ms to notice): a send
        # must fail with BrokenPipeError at once, as a pipe's does; one
        # that returns has handed its message to nobody.
        time.sleep(0.15)

        def send_more():
            try:
                ends.put(message(sent[0], size))
            except (BrokenPipeError, ConnectionError, EOFError, OSError) as exc:
                return type(exc).__name__
        raised = bounded(send_more, WAIT, 'send to a dead reader')
        if raised is None:
            raise Outcome('lost', 'send() to a dead reader returned (no BrokenPipeError)')
        follow_up_child(ctx)
        return time.monotonic() - killed, 'send raised ' + raised

    def put_more():
        for _ in range(3):
            ends.put(message(sent[0], size))
            sent[0] += 1
    bounded(put_more, WAIT, 'put after the reader died')
    consumed2, first2 = ctx.RawValue('q', 0), ctx.RawValue('q', -1)
    r2 = ctx.Process(target=_reader, args=(ends, consumed2, first2))
    r2.start()
    wait_for(lambda: consumed2.value >= sent[0] or not r2.is_alive(), WAIT + 1,
             'new reader after the dead one (got %d..%d of %d, dead one took %d)'
             % (first2.value, consumed2.value, sent[0], dead_got))
    if not r2.is_alive():
        raise Outcome('error', 'new reader failed (exit %s)' % r2.exitcode)
    recover = time.monotonic() - killed
    kill(r2)
    r2.join(WAIT)
    start = first2.value
    if start < dead_got:
        raise Outcome('duplicated', 'message %d read by both readers' % start)
    if start > dead_got + 1:
        raise Outcome('lost', 'messages %d..%d lost' % (dead_got, start - 1))
    note = 'one in the dead reader\'s hands' if start == dead_got + 1 else 'none in flight'
    return recover, note


# ---------------------------------------------------------------- primitives

def _spin_holder(lock, counter, depth):
    while True:
        for _ in range(depth):
            lock.acquire()
        counter.value += 1
        for _ in range(depth):
            lock.release()


def trial_lock_holder(ctx, rng, kind):
    """A process taking and releasing the lock in a loop, SIGKILLed at a
    random point (often while holding it); the root must get the lock."""
    lock = {'lock': ctx.Lock, 'rlock': ctx.RLock}[kind]()
    counter = ctx.RawValue('q', 0)
    killed = kill_spinner(ctx, rng, _spin_holder, (lock, counter, 2 if kind == 'rlock' else 1), counter, 'holder')
    if not lock.acquire(timeout=WAIT):
        raise Outcome('hang', 'lock of the dead holder never given back')
    recover = time.monotonic() - killed
    lock.release()
    follow_up_lock(ctx, lock)
    return recover, 'recovered'


def _take_and_report(lock, flag):
    if lock.acquire(timeout=WAIT):
        flag.value = 1
        lock.release()


def follow_up_lock(ctx, lock):
    flag = ctx.RawValue('i', 0)
    p = ctx.Process(target=_take_and_report, args=(lock, flag))
    p.start()
    p.join(WAIT + 3)
    if flag.value != 1:
        raise Outcome('hang', 'a new process could not take the lock')


def _waiter_on(lock, started):
    started.value = 1
    lock.acquire(timeout=30)


def trial_lock_waiter(ctx, rng, kind):
    """A process blocked in acquire(), SIGKILLed; the lock still works."""
    lock = {'lock': ctx.Lock, 'rlock': ctx.RLock, 'semaphore': lambda: ctx.Semaphore(1),
            'boundedsemaphore': lambda: ctx.BoundedSemaphore(1)}[kind]()
    lock.acquire()
    started = ctx.RawValue('i', 0)
    p = ctx.Process(target=_waiter_on, args=(lock, started))
    p.start()
    wait_for(lambda: started.value, 10, 'waiter did not start')
    time.sleep(rng.uniform(0, 0.05))
    killed = kill(p)
    p.join(WAIT)
    lock.release()
    follow_up_lock(ctx, lock)
    return time.monotonic() - killed, 'lock works'


def _spin_semaphore(sem, counter):
    while True:
        sem.acquire()
        counter.value += 1
        sem.release()


def trial_semaphore_holder(ctx, rng, kind):
    """A Semaphore(2)'s holder SIGKILLed at a random point: whatever the
    rule for a dead holder's unit, the other unit works, nothing blocks
    beyond its timeout and the count is 'taken' (1) or 'given back' (2)."""
    sem = (ctx.Semaphore if kind == 'semaphore' else ctx.BoundedSemaphore)(2)
    counter = ctx.RawValue('q', 0)
    killed = kill_spinner(ctx, rng, _spin_semaphore, (sem, counter), counter, 'holder')
    if not sem.acquire(timeout=WAIT):
        raise Outcome('hang', 'the live unit could not be taken')
    recover = time.monotonic() - killed
    second = sem.acquire(timeout=0.2)
    note = 'unit given back' if second else 'unit stays taken'
    sem.release()
    if second:
        sem.release()
    value = sem.get_value()
    if value not in (1, 2) or (second and value != 2):
        raise Outcome('error', 'count %d after the survivors released' % value)
    return recover, note


def _cond_waiter(cond, ready, woke):
    with cond:
        ready.value += 1
        if cond.wait(timeout=20):
            woke.value += 1


def trial_condition_waiter(ctx, rng):
    """Two processes inside cond.wait(); one is SIGKILLed; notify() and
    notify_all() never block and the survivor is woken."""
    cond = ctx.Condition()
    ready, woke = ctx.Value('i', 0), ctx.Value('i', 0)
    ps = [ctx.Process(target=_cond_waiter, args=(cond, ready, woke)) for _ in range(2)]
    for p in ps:
        p.start()
    wait_for(lambda: ready.value == 2, 10, 'waiters did not start')
    time.sleep(rng.uniform(0, 0.05))
    victim = rng.randrange(2)
    killed = kill(ps[victim])
    ps[victim].join(WAIT)

    def notify(n):
        if not cond.acquire(timeout=WAIT):
            raise Outcome('hang', 'condition lock kept by the dead waiter')
        try:
            cond.notify(n) if n else cond.notify_all()
        finally:
            cond.release()
    bounded(lambda: notify(1), WAIT, 'notify() after a waiter died')
    survivor = ps[1 - victim]
    survivor.join(0.5)
    note = 'notify(1) woke the survivor'
    if survivor.is_alive():
        note = 'notify(1) went to the dead waiter'
        bounded(lambda: notify(0), WAIT, 'notify_all() after a waiter died')
        survivor.join(WAIT)
    if survivor.is_alive() or woke.value != 1:
        raise Outcome('hang', 'the live waiter was never woken')
    return time.monotonic() - killed, note


def _notifier(cond, counter):
    while True:
        with cond:
            counter.value += 1
            cond.notify()


def trial_condition_notifier(ctx, rng):
    """A process notifying in a loop, SIGKILLed at a random point (often
    while holding the condition's lock); the root's wait() ends and the
    condition works after."""
    cond = ctx.Condition()
    counter = ctx.RawValue('q', 0)
    killed = kill_spinner(ctx, rng, _notifier, (cond, counter), counter, 'notifier')

    def wait_once():
        if not cond.acquire(timeout=WAIT):
            raise Outcome('hang', 'condition lock kept by the dead notifier')
        try:
            cond.wait(0.05)
            cond.notify_all()
        finally:
            cond.release()
    bounded(wait_once, WAIT + 0.1, 'wait() after the notifier died')
    return time.monotonic() - killed, 'condition works'


def _event_waiter(ev, ready, woke):
    ready.value += 1
    if ev.wait(20):
        woke.value += 1


def trial_event_waiter(ctx, rng):
    """Two processes in event.wait(); one is SIGKILLed; set() wakes the other."""
    ev = ctx.Event()
    ready, woke = ctx.Value('i', 0), ctx.Value('i', 0)
    ps = [ctx.Process(target=_event_waiter, args=(ev, ready, woke)) for _ in range(2)]
    for p in ps:
        p.start()
    wait_for(lambda: ready.value == 2, 10, 'waiters did not start')
    time.sleep(rng.uniform(0.005, 0.05))
    killed = kill(ps[0])
    ps[0].join(WAIT)
    bounded(ev.set, WAIT, 'set() after a waiter died')
    ps[1].join(WAIT)
    if ps[1].is_alive() or woke.value != 1:
        raise Outcome('hang', 'the live waiter was not woken')
    return time.monotonic() - killed, 'woken'


def _barrier_party(b, ready, report):
    ready.value += 1
    start = time.monotonic()
    try:
        b.wait(8)
        report.put(('passed', time.monotonic() - start))
    except threading.BrokenBarrierError:
        report.put(('broken', time.monotonic() - start))


def trial_barrier_inside(ctx, rng):
    """Barrier(3): two parties inside wait(8), one is SIGKILLed there; the
    other's wait() must end with BrokenBarrierError well before its 8 s."""
    b = ctx.Barrier(3)
    ready, report = ctx.Value('i', 0), ctx.Queue()
    ps = [ctx.Process(target=_barrier_party, args=(b, ready, report)) for _ in range(2)]
    for p in ps:
        p.start()
    wait_for(lambda: b.n_waiting == 2, 10, 'parties did not arrive')
    time.sleep(rng.uniform(0, 0.05))
    killed = kill(ps[0])
    try:
        what, took = report.get(timeout=WAIT)
    except Exception:
        raise Outcome('hang', "the live party's wait(8) did not end within %s s of the kill" % WAIT)
    recover = time.monotonic() - killed
    if what != 'broken':
        raise Outcome('error', 'the live party passed a barrier with a dead party')
    ps[0].join(WAIT)
    ps[1].join(WAIT)
    # The survivors keep working: reset, then a full round of 3.
    bounded(b.reset, WAIT, 'reset() after a party died')
    ready.value = 0
    ps = [ctx.Process(target=_barrier_party, args=(b, ready, report)) for _ in range(2)]
    for p in ps:
        p.start()
    bounded(lambda: b.wait(WAIT + 3), WAIT + 3, 'a new round of the barrier')
    for p in ps:
        p.join(WAIT)
    return recover, 'broken for the others'


def _barrier_cycler(b, counter):
    while True:
        b.wait(20)
        counter.value += 1


def trial_barrier_outside(ctx, rng):
    """Barrier(2) cycled by the root and a child; the child is SIGKILLed at a
    random point (inside or outside wait()); the root's next wait() ends."""
    b = ctx.Barrier(2)
    counter = ctx.RawValue('q', 0)
    p = ctx.Process(target=_barrier_cycler, args=(b, counter))
    p.start()
    end = time.monotonic() + rng.uniform(0.01, 0.1)
    killed = None

    def cycle():
        nonlocal killed
        while True:
            if killed is None and time.monotonic() > end:
                killed = kill(p)
            b.wait(WAIT)
    try:
        bounded(cycle, WAIT * 3, 'root cycling the barrier')
    except threading.BrokenBarrierError:
        pass
    recover = time.monotonic() - killed
    note = 'broken at %s' % ('once' if recover < 0.5 else 'the timeout')
    p.join(WAIT)
    bounded(b.reset, WAIT, 'reset()')
    return recover, note


# ---------------------------------------------------------------- rows

def _rows():
    rows = {}
    for kind in ('queue', 'simplequeue', 'joinablequeue', 'pipe'):
        for size_name, size in (('small', SMALL), ('large', LARGE)):
            rows['%s-writer-%s' % (kind, size_name)] = (trial_channel_writer, (kind, size))
            rows['%s-reader-%s' % (kind, size_name)] = (trial_channel_reader, (kind, size))
    for kind in ('lock', 'rlock'):
        rows[kind + '-holder'] = (trial_lock_holder, (kind,))
    for kind in ('semaphore', 'boundedsemaphore'):
        rows[kind + '-holder'] = (trial_semaphore_holder, (kind,))
    for kind in ('lock', 'rlock', 'semaphore', 'boundedsemaphore'):
        rows[kind + '-waiter'] = (trial_lock_waiter, (kind,))
    rows['condition-waiter'] = (trial_condition_waiter, ())
    rows['condition-notifier'] = (trial_condition_notifier, ())
    rows['event-waiter'] = (trial_event_waiter, ())
    rows['barrier-inside-wait'] = (trial_barrier_inside, ())
    rows['barrier-outside-wait'] = (trial_barrier_outside, ())
    for api in ('pool', 'executor'):
        for stage in ('queued', 'transit', 'running', 'returning'):
            rows['%s-%s' % (api, stage)] = (trial_pool, (api, stage))
    rows['manager-server'] = (trial_manager, ('server',))
    rows['manager-client'] = (trial_manager, ('client',))
    rows['forkserver-zygote'] = (trial_forkserver_zygote, ())
    rows['warm-spawn'] = (trial_warm_spawn, ())
    return rows


ROWS = _rows()


def tree_names():
    """/dev/shm names this process maps, plus every name its registry
    (mphost's record of the tree's names) holds."""
    names = set()
    try:
        with open('/proc/self/maps') as f:
            for line in f:
                path = line.split(None, 5)[-1].strip()
                if path.startswith('/dev/shm/') and not path.endswith('(deleted)'):
                    names.add(path[len('/dev/shm/'):])
    except OSError:
        pass
    try:
        import _mphost
        reg = _mphost.registry_name()
    except (ImportError, AttributeError):
        reg = None
    if reg:
        import re
        names.add(reg)
        try:
            with open('/dev/shm/' + reg, 'rb') as f:
                data = f.read()
            names.update(m.decode() for m in re.findall(rb'mphost-[a-z]+-[0-9a-f-]{8,}', data))
        except OSError:
            pass
    return sorted(names)


def main(argv):
    row, seed = argv[1], int(argv[2])
    method = argv[3] if len(argv) > 3 else 'fork'
    fn, args = ROWS[row]
    ctx = mp.get_context(method)
    rng = random.Random('%s/%d' % (row, seed))
    result = {'row': row, 'seed': seed, 'pid': os.getpid(), 'recover': None}
    try:
        recover, note = fn(ctx, rng, *args)
        result.update(outcome='ok', recover=recover, note=note)
    except Outcome as o:
        result.update(outcome=o.outcome, note=o.note)
    except Exception as exc:
        result.update(outcome='error', note='%s: %s' % (type(exc).__name__, str(exc)[:200]))
    for p in mp.active_children():
        p.kill()
    result['names'] = tree_names()
    sys.stdout.write('FAULTS-RESULT ' + json.dumps(result) + '\n')
    sys.stdout.flush()
    # A normal exit: the root's own clean-up is part of what is tested. One
    # that blocks (stock joins a queue's feeder thread that can never write)
    # is cut short after EXIT_LIMIT s, its threads' stacks on stderr, with status EXIT_BLOCKED.
    def watchdog():
        time.sleep(EXIT_LIMIT)
        import faulthandler
        faulthandler.dump_traceback(all_threads=True)   # where it blocked, on stderr
        os._exit(EXIT_BLOCKED)
    threading.Thread(target=watchdog, daemon=True).start()


if __name__ == '__main__':
    main(sys.argv)
