"""Semaphores and the death of a process.

The rule: Lock and RLock have an owner and are recovered when it dies (see
_suite_synchronize). Semaphore and BoundedSemaphore are counters with no
owner: what a dead process acquired stays taken, as on stock python3 --
unless the semaphore was made with undo (mphost.Semaphore,
mphost.BoundedSemaphore), which gives back each dead process's net
acquisitions, SIGKILL included."""

import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time

import pytest

import multiprocessing
import mphost
from multiprocessing import synchronize

TIMEOUT = 30
METHODS = ['fork', 'spawn', 'forkserver']


def take_and_wait(sem, count, gives, ready):
    for _ in range(count):
        if not sem.acquire(timeout=TIMEOUT):
            os._exit(3)
    for _ in range(gives):
        sem.release()
    ready.set()
    time.sleep(TIMEOUT * 4)


def _killed_holder(ctx, sem, count=1, gives=0):
    ready = ctx.Event()
    p = ctx.Process(target=take_and_wait, args=(sem, count, gives, ready))
    p.start()
    try:
        assert ready.wait(TIMEOUT), 'the holder never got its units'
    except BaseException:
        p.kill()
        raise
    return p


@pytest.fixture(params=METHODS)
def ctx(request):
    context = multiprocessing.get_context(request.param)
    yield context
    for child in multiprocessing.active_children():
        child.kill()
        child.join(TIMEOUT)


@pytest.mark.parametrize('factory', ['Semaphore', 'BoundedSemaphore'])
def test_a_killed_holders_units_come_back_to_a_waiter(ctx, factory):
    sem = getattr(mphost, factory)(2, ctx=ctx)
    assert isinstance(sem, getattr(synchronize, factory))
    assert sem._semlock.undo
    p = _killed_holder(ctx, sem, count=2)
    assert sem.get_value() == 0
    assert not sem.acquire(timeout=0.1)
    os.kill(p.pid, signal.SIGKILL)
    killed = time.monotonic()
    assert sem.acquire(timeout=TIMEOUT)
    waited = time.monotonic() - killed
    p.join(TIMEOUT)
    assert p.exitcode == -signal.SIGKILL
    assert waited < 1.0, waited  # noticed within ~50 ms; generous for a loaded machine
    assert sem.get_value() == 1
    sem.release()
    assert sem.get_value() == 2


def test_only_the_net_acquisitions_are_given_back(ctx):
    sem = mphost.Semaphore(3, ctx=ctx)
    p = _killed_holder(ctx, sem, count=3, gives=2)
    assert sem.get_value() == 2
    p.kill()
    p.join(TIMEOUT)
    assert sem.get_value() == 3


def test_the_bound_is_still_enforced(ctx):
    sem = mphost.BoundedSemaphore(1, ctx=ctx)
    p = _killed_holder(ctx, sem)
    sem.release()  # on the holder's behalf: any process may release
    with pytest.raises(ValueError):
        sem.release()
    p.kill()
    p.join(TIMEOUT)
    # The dead holder's unit is not given back past the bound.
    assert sem.get_value() == 1
    with pytest.raises(ValueError):
        sem.release()
    assert sem.acquire(False)
    assert not sem.acquire(False)


def test_repr_and_defaults():
    sem = mphost.Semaphore()
    assert repr(sem) == '<Semaphore(value=1, undo=True)>'
    plain = mphost.BoundedSemaphore(2, undo=False)
    assert repr(plain) == '<BoundedSemaphore(value=2, maxvalue=2)>'
    assert not plain._semlock.undo
    assert not multiprocessing.Semaphore()._semlock.undo
    with pytest.raises(ValueError):
        mphost.Semaphore(-1)


def test_pickled_outside_a_start_fails_as_every_semaphore_does():
    sem = mphost.Semaphore(1, ctx='spawn')
    with pytest.raises(RuntimeError):
        pickle.dumps(sem)


# What a plain Semaphore/BoundedSemaphore does when its holder is killed,
# printed the same way under mphost and stock python3.
PLAIN = textwrap.dedent('''
    import multiprocessing as mp, os, signal, sys, time

    def hold(sem, ready):
        sem.acquire()
        ready.set()
        time.sleep(60)

    if __name__ == '__main__':
        ctx = mp.get_context(sys.argv[1])
        for name, make in [('Semaphore', lambda: ctx.Semaphore(1)),
                           ('BoundedSemaphore', lambda: ctx.BoundedSemaphore(1)),
                           ('Semaphore(2)', lambda: ctx.Semaphore(2))]:
            sem, ready = make(), ctx.Event()
            p = ctx.Process(target=hold, args=(sem, ready))
            p.start()
            assert ready.wait(30)
            os.kill(p.pid, signal.SIGKILL)
            p.join(30)
            taken = [sem.acquire(timeout=0.3) for _ in range(2)]
            print(name, p.exitcode, taken, sem.get_value(), flush=True)
''')


@pytest.mark.parametrize('method', METHODS)
def test_plain_semaphores_stay_taken_as_on_stock(tmp_path, stock_python, method):
    script = tmp_path / 'plain.py'
    script.write_text(PLAIN)
    env = dict(os.environ)
    env.pop('MPHOST_REGISTRY', None)
    outputs = []
    for interpreter in (sys.executable, stock_python):
        done = subprocess.run([interpreter, str(script), method], capture_output=True, text=True,
                              timeout=120, env=env, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        outputs.append(done.stdout)
    assert outputs[0] == outputs[1]
    assert 'Semaphore -9 [False, False] 0' in outputs[0]
