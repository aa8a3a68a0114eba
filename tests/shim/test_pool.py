"""multiprocessing.pool's module-level pieces: names, exceptions that cross
from workers, the worker() loop and the helpers tasks are made of."""

import pickle
import queue
import signal
import threading
import traceback
import types

import pytest

import multiprocessing
from multiprocessing import pool as mpool

import _helpers_pool as h

TIMEOUT = 30


def test_names():
    assert 'share/mphost/python' in mpool.__file__
    assert mpool.__all__ == ['Pool', 'ThreadPool']
    states = (mpool.INIT, mpool.RUN, mpool.CLOSE, mpool.TERMINATE)
    assert states == ('INIT', 'RUN', 'CLOSE', 'TERMINATE')
    assert mpool.AsyncResult is mpool.ApplyResult
    assert isinstance(mpool.ApplyResult[int], types.GenericAlias)
    assert issubclass(mpool.MapResult, mpool.ApplyResult)
    assert issubclass(mpool.IMapUnorderedIterator, mpool.IMapIterator)
    # mphost's extra error is reachable here but not exported.
    assert 'WorkerLostError' not in mpool.__all__
    assert 'WorkerLostError' not in dir(multiprocessing)


def test_context_pool_is_this_pool():
    p = multiprocessing.get_context('fork').Pool(1)
    try:
        assert type(p) is mpool.Pool and p._ctx.get_start_method() == 'fork'
    finally:
        p.terminate()
        p.join()


def test_mapstar_and_starmapstar():
    assert mpool.mapstar((h.sqr, (1, 2, 3))) == [1, 4, 9]
    assert mpool.starmapstar((h.mul, ((2, 3), (4, 5)))) == [6, 20]
    chunks = list(mpool.Pool._get_tasks(h.sqr, range(7), 3))
    assert chunks == [(h.sqr, (0, 1, 2)), (h.sqr, (3, 4, 5)), (h.sqr, (6,))]


def test_maybe_encoding_error_format():
    e = mpool.MaybeEncodingError(TypeError('no pickle'), [1, 2])
    assert e.exc == "TypeError('no pickle')" and e.value == '[1, 2]'
    assert str(e) == "Error sending result: '[1, 2]'. Reason: 'TypeError('no pickle')'"
    assert repr(e) == f'<MaybeEncodingError: {e}>'
    assert e.args == (e.exc, e.value)


def test_exception_with_traceback_rebuilds_with_remote_cause():
    try:
        h.raise_runtime_error('boom')
    except RuntimeError as exc:
        wrapped = mpool.ExceptionWithTraceback(exc, exc.__traceback__)
    assert wrapped.tb.startswith('\n"""\nTraceback (most recent call last):')
    assert wrapped.tb.endswith('RuntimeError: boom\n"""')
    rebuilt = pickle.loads(pickle.dumps(wrapped))
    assert type(rebuilt) is RuntimeError and rebuilt.args == ('boom',)
    cause = rebuilt.__cause__
    assert type(cause) is mpool.RemoteTraceback and str(cause) == wrapped.tb
    text = ''.join(traceback.format_exception(rebuilt))
    assert 'raise RuntimeError(value)' in text
    assert 'The above exception was the direct cause of the following exception' in text


def test_worker_lost_error():
    e = mpool.WorkerLostError(1234, -signal.SIGKILL)
    assert isinstance(e, multiprocessing.ProcessError)
    assert str(e) == 'worker 1234 died with SIGKILL while running a task'
    assert (e.pid, e.exitcode) == (1234, -signal.SIGKILL)
    assert str(mpool.WorkerLostError(7, 3)) == 'worker 7 exited with code 3 while running a task'
    assert str(mpool.WorkerLostError(7, -signal.SIGSEGV, 5)) == \
        'worker 7 died with SIGSEGV while running a batch of 5 tasks'
    back = pickle.loads(pickle.dumps(e))
    assert type(back) is mpool.WorkerLostError and str(back) == str(e) and back.pid == 1234
    with pytest.raises(multiprocessing.ProcessError):
        raise e


def _run_worker(tasks, **kwds):
    """Run worker() in a thread over in-process queues; return what it put."""
    inq, outq = queue.SimpleQueue(), queue.SimpleQueue()
    for t in tasks:
        inq.put(t)
    t = threading.Thread(target=mpool.worker, args=(inq, outq), kwargs=kwds, daemon=True)
    t.start()
    t.join(TIMEOUT)
    assert not t.is_alive(), 'worker did not return'
    out = []
    while not outq.empty():
        out.append(outq.get())
    return out


def test_worker_runs_tasks_until_sentinel():
    out = _run_worker([(1, 0, h.sqr, (3,), {}), (1, 1, h.add_kw, (1,), {'plus': 5}),
                       (2, 0, h.raise_key_error, (), {}), None, (3, 0, h.sqr, (9,), {})])
    assert len(out) == 3                      # nothing after the sentinel ran
    results = [m[-1] for m in out]
    assert results[0] == (True, 9) and results[1] == (True, 6)
    assert results[2][0] is False and isinstance(results[2][1], KeyError)


def test_worker_wraps_exceptions_for_processes():
    out = _run_worker([(1, 0, h.raise_runtime_error, ('r',), {}), None], wrap_exception=True)
    success, value = out[0][-1]
    assert success is False and isinstance(value, mpool.ExceptionWithTraceback)


def test_worker_maxtasks_and_initializer():
    seen = []
    tasks = [(1, i, h.sqr, (i,), {}) for i in range(10)]
    out = _run_worker(tasks, initializer=seen.append, initargs=('init',), maxtasks=4)
    assert seen == ['init'] and len(out) == 4
    with pytest.raises(AssertionError, match='Maxtasks'):
        mpool.worker(queue.SimpleQueue(), queue.SimpleQueue(), maxtasks=0)


def test_worker_batches_answer_in_one_message():
    batch = [(5, i, h.sqr, (i,), {}) for i in range(3, 8)]
    out = _run_worker([batch, None])
    assert len(out) == 1
    assert out[0][-1] == [(True, i * i) for i in range(3, 8)]


class _FlakyStartPool(mpool.Pool):
    """A Pool whose replacement workers fail to start a few times (as when
    a channel has no endpoint place left for a while)."""

    failures = 0

    @staticmethod
    def Process(ctx, *args, **kwds):
        if _FlakyStartPool.failures > 0:
            _FlakyStartPool.failures -= 1
            raise OSError(24, 'too many endpoints on channel')
        return ctx.Process(*args, **kwds)


def test_worker_handler_survives_a_failed_start():
    p = _FlakyStartPool(1, context=multiprocessing.get_context('fork'))
    try:
        assert p.apply_async(h.sqr, (3,)).get(TIMEOUT) == 9
        _FlakyStartPool.failures = 3
        victim = p._pool[0]
        victim.kill()
        victim.join(TIMEOUT)
        # The replacement fails three times, then starts; the pool goes on.
        assert p.apply_async(h.sqr, (4,)).get(TIMEOUT) == 16
        assert _FlakyStartPool.failures == 0
        assert p._worker_handler.is_alive()
    finally:
        p.terminate()
        p.join()


def test_settings_are_checked_in_the_stdlib_words():
    ctx = multiprocessing.get_context('fork')
    with pytest.raises(ValueError, match='Number of processes must be at least 1'):
        mpool.Pool(0, context=ctx)
    with pytest.raises(ValueError, match='maxtasksperchild must be a positive int or None'):
        mpool.Pool(1, maxtasksperchild=0, context=ctx)
    with pytest.raises(ValueError, match='maxtasksperchild must be a positive int or None'):
        mpool.Pool(1, maxtasksperchild=1.5, context=ctx)
    with pytest.raises(TypeError, match='initializer must be a callable'):
        mpool.Pool(1, initializer=3, context=ctx)
    p = mpool.Pool(2, context=ctx)
    try:
        assert p._processes == 2 and p._maxtasksperchild is None
        assert repr(p) == '<multiprocessing.pool.Pool state=RUN pool_size=2>'
        with p:
            pass
        with pytest.raises(ValueError, match='Pool not running'):
            p.apply_async(h.sqr, (1,))
        with pytest.raises(ValueError, match='Pool not running'):
            p.imap(h.sqr, [1], chunksize=0)
        with pytest.raises(ValueError, match='Pool not running'):
            p.__enter__()
    finally:
        p.join()


def test_map_chunk_edge_cases():
    with mpool.ThreadPool(2) as p:
        assert p.map(h.sqr, []) == []
        r = p.map_async(h.sqr, [], callback=lambda v: None)
        assert r.ready() and r.successful() and r.get(0) == []
        assert p.map(h.sqr, range(7), chunksize=3) == [i * i for i in range(7)]
        assert list(p.imap(h.sqr, range(7), chunksize=3)) == [i * i for i in range(7)]
        assert sorted(p.imap_unordered(h.sqr, range(7), chunksize=2)) == [i * i for i in range(7)]
        with pytest.raises(ValueError, match='Chunksize must be 1\\+, not 0'):
            p.imap(h.sqr, range(3), chunksize=0)
        assert list(mpool.Pool._get_tasks(len, range(5), 2)) == [
            (len, (0, 1)), (len, (2, 3)), (len, (4,))]
