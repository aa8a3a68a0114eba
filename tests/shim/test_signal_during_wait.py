"""A signal at any moment of a blocking call runs its handler at once.

_signal_wait_prog.py arms SIGALRM at 50 random moments of each kind of
wait (Lock, RLock, Semaphore, Condition.wait, Event.wait, Barrier.wait,
Queue.get, SimpleQueue.get, Connection.recv/poll, a pool's
AsyncResult.get) with a handler that raises: the handler's exception must
arrive within 0.5 s of the timer every time, also when the signal lands
between two of the core's sleeps or is run by another thread (before,
such a signal was seen only when the wait ended, up to its timeout later).
With a handler that returns, each call finishes as stock python3's does.
Ctrl-C (SIGINT, default handler) raises KeyboardInterrupt as promptly."""

import json
import os
import random
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
PROG = os.path.join(HERE, '_signal_wait_prog.py')
TIMEOUT = 300
LATE = 0.5


def _run(interpreter, seed):
    out = subprocess.run([interpreter, PROG, str(seed)], capture_output=True, text=True, timeout=TIMEOUT)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


@pytest.fixture(scope='module')
def seed():
    return random.randrange(1 << 30)


@pytest.fixture(scope='module')
def ours(seed):
    return _run(sys.executable, seed)


def test_every_raising_handler_ends_its_wait_at_once(ours, seed):
    late = {name: r['worst'] for name, r in ours.items() if name != 'ctrl-c' and r['worst'] >= LATE}
    assert not late, f'seed {seed}: the exception came late: {late}'
    strays = {name: r['foreign'] for name, r in ours.items() if name != 'ctrl-c' and r['foreign']}
    assert not strays, f'seed {seed}: not the handler\'s exception: {strays}'


def test_ctrl_c_raises_keyboard_interrupt_at_once(ours):
    worst, seen = ours['ctrl-c']
    assert seen == ['KeyboardInterrupt']
    assert worst < LATE


def test_a_returning_handler_lets_each_call_finish_as_stock(ours, stock_python, seed):
    stock = _run(stock_python, seed)
    assert {name: r['quiet'] for name, r in ours.items() if name != 'ctrl-c'} == \
        {name: r['quiet'] for name, r in stock.items() if name != 'ctrl-c'}
    assert all(r['waited'] for name, r in ours.items() if name != 'ctrl-c'), ours
