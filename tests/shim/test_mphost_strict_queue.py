"""mphost.Queue(strict=True) and mphost.JoinableQueue(strict=True): put() of an
item that cannot be pickled raises in the caller, with the error the stdlib's
feeder thread would have printed; nothing is sent, no slot or task is taken.
Without strict=True the factories return the stdlib's queues, whose put()
reports through _on_queue_feeder_error and returns, as under /usr/bin/python3
(test_plain_queue_as_stock)."""

import os
import pickle
import subprocess
import sys
import threading

import multiprocessing
import multiprocessing.queues
import pytest

import mphost

WAIT = 60
METHODS = ['fork', 'spawn', 'forkserver']


def _unpicklables(ctx):
    """(name, item, the exception type pickling it raises)."""
    return [
        ('lambda', lambda: 1, (pickle.PicklingError, AttributeError)),
        ('lock', ctx.Lock(), RuntimeError),
        ('open file', open(os.devnull), TypeError),
    ]


@pytest.fixture(params=METHODS)
def ctx(request):
    return multiprocessing.get_context(request.param)


def _child_puts(queue, report):
    # In a child: a strict queue stays strict.
    try:
        queue.put(lambda: 2)
    except Exception as exc:
        report.put(('raised', type(exc).__name__))
    else:
        report.put(('returned', None))
    queue.put('after')


@pytest.mark.parametrize('joinable', [False, True])
def test_strict_put_raises_in_the_caller(ctx, joinable):
    make = mphost.JoinableQueue if joinable else mphost.Queue
    q = make(strict=True, ctx=ctx)
    assert isinstance(q, multiprocessing.queues.JoinableQueue if joinable else multiprocessing.queues.Queue)
    for name, item, error in _unpicklables(ctx):
        with pytest.raises(error):
            q.put(item)
    q.put({'ok': [1, 2]})
    assert q.get(timeout=WAIT) == {'ok': [1, 2]}
    assert q.empty() and q.qsize() == 0
    if joinable:
        q.task_done()
        # The refused items were never counted as tasks.
        waiter = threading.Thread(target=q.join, daemon=True)
        waiter.start()
        waiter.join(WAIT)
        assert not waiter.is_alive()
    q.close()


def test_refused_item_keeps_no_slot(ctx):
    q = mphost.Queue(1, strict=True, ctx=ctx)
    for _ in range(5):
        with pytest.raises((pickle.PicklingError, AttributeError)):
            q.put(lambda: 0, timeout=1)
    q.put_nowait('only')
    assert q.full()
    assert q.get(timeout=WAIT) == 'only'


def test_strict_queue_in_a_child(ctx):
    q = mphost.Queue(strict=True, ctx=ctx)
    report = ctx.Queue()
    child = ctx.Process(target=_child_puts, args=(q, report))
    child.start()
    assert report.get(timeout=WAIT)[0] == 'raised'
    assert q.get(timeout=WAIT) == 'after'
    child.join(WAIT)
    assert child.exitcode == 0


def test_numpy_through_a_strict_queue(ctx):
    numpy = pytest.importorskip('numpy')
    q = mphost.Queue(strict=True, ctx=ctx)
    data = numpy.arange(1_000_000, dtype=numpy.int64)
    q.put(data)
    numpy.testing.assert_array_equal(q.get(timeout=WAIT), data)


def test_without_strict_the_stdlib_queues(ctx, capfd):
    q = mphost.Queue(ctx=ctx)
    assert type(q) is multiprocessing.queues.Queue
    assert type(mphost.JoinableQueue(3, ctx=ctx)) is multiprocessing.queues.JoinableQueue
    # put() returns; the error goes through the hook, printed on stderr.
    assert q.put(lambda: 1) is None
    q.put('next')
    assert q.get(timeout=WAIT) == 'next'
    assert "Can't pickle" in capfd.readouterr().err


def test_context_by_name():
    q = mphost.Queue(strict=True, ctx='spawn')
    assert isinstance(q, multiprocessing.queues.Queue)
    q.put(1)
    assert q.get(timeout=WAIT) == 1


PLAIN_PROGRAM = r'''
import multiprocessing, os, sys
if __name__ == '__main__':
    q = multiprocessing.Queue()
    for item in (lambda: 1, multiprocessing.Lock(), open(os.devnull)):
        print('returned', q.put(item))
    q.put('kept')
    print(q.get(timeout=60))
    s = multiprocessing.SimpleQueue()
    try:
        s.put(lambda: 1)
    except Exception as exc:
        print('SimpleQueue raised', type(exc).__name__)
'''


def test_plain_queue_as_stock(stock_python, tmp_path):
    prog = tmp_path / 'plain_queue.py'
    prog.write_text(PLAIN_PROGRAM)
    runs = [subprocess.run([exe, str(prog)], capture_output=True, text=True, timeout=120)
            for exe in (stock_python, sys.executable)]
    assert runs[0].returncode == runs[1].returncode == 0
    assert runs[1].stdout == runs[0].stdout
    for run in runs:
        assert run.stderr.count('Traceback') == 3
