"""mphost.ProcessPoolExecutor: concurrent.futures' executor over an
mphost.Pool. The same program runs under the stdlib's executor and under
mphost's with the same output (test_same_as_stock, per start method); the
other tests check what only mphost's does (a lost worker is replaced, the
pool's options, progress) and its own bookkeeping."""

import io
import os
import subprocess
import sys
import threading
import time

import concurrent.futures as cf
from concurrent.futures.process import BrokenProcessPool

import multiprocessing
import pytest

import mphost
import _executor_parity_prog as prog

HERE = os.path.dirname(os.path.abspath(__file__))
WAIT = 60
METHODS = ['fork', 'spawn', 'forkserver']


@pytest.fixture(scope='module', params=METHODS)
def method(request):
    return request.param


@pytest.fixture(scope='module')
def ex(method):
    executor = mphost.ProcessPoolExecutor(2, mp_context=multiprocessing.get_context(method))
    yield executor
    executor.shutdown(wait=False, cancel_futures=True)
    pool = executor._pool
    if pool is not None:
        pool.terminate()


def _run_prog(interpreter, kind, method, tmp_path):
    path = tmp_path / f'{kind}.txt'
    done = subprocess.run([interpreter, os.path.join(HERE, '_executor_parity_prog.py'), kind, method,
                           str(path)], capture_output=True, text=True, timeout=240, cwd=HERE)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout, path.read_text()


def test_same_as_stock(method, stock_python, tmp_path):
    stock, stock_file = _run_prog(stock_python, 'stock', method, tmp_path)
    ours, our_file = _run_prog(sys.executable, 'mphost', method, tmp_path)
    assert ours == stock
    # The call left running at exit was finished by both.
    assert our_file == stock_file == 'written'
    assert 'numpy 9999900000.0' in ours and 'lost BrokenProcessPool' in ours


def test_is_the_stdlib_executor(ex):
    assert isinstance(ex, cf.ProcessPoolExecutor) and isinstance(ex, cf.Executor)
    assert mphost.ProcessPoolExecutor.__module__ == 'mphost._executor'
    assert ex.submit(prog.square, 5).result(WAIT) == 25
    assert isinstance(ex._pool, multiprocessing.pool.Pool)
    assert set(ex._processes) == {p.pid for p in ex._pool._pool}


def test_numpy_results(ex):
    numpy = pytest.importorskip('numpy')
    arrays = list(ex.map(prog.arange_times, [10, 200_000, 3], [1, 2, 3]))
    assert [a.shape for a in arrays] == [(10,), (200_000,), (3,)]
    numpy.testing.assert_array_equal(arrays[1], numpy.arange(200_000, dtype=numpy.float64) * 2)
    big = ex.submit(prog.arange_times, 4_000_000, 1).result(WAIT)
    assert big.dtype == numpy.float64 and big[-1] == 3_999_999.0


def test_lost_worker_fails_its_future_only(ex):
    victim = ex.submit(prog.kill_me)
    error = victim.exception(WAIT)
    assert isinstance(error, BrokenProcessPool)
    assert str(error).startswith('A process in the process pool was terminated abruptly')
    assert isinstance(error.__cause__, multiprocessing.pool.WorkerLostError)
    assert 'SIGKILL' in str(error.__cause__)
    # The pool replaced the worker: the executor goes on.
    assert list(ex.map(prog.square, range(10))) == [x * x for x in range(10)]
    with pytest.raises(BrokenProcessPool):
        ex.submit(prog.kill_me).result(WAIT)
    assert ex.submit(prog.square, 9).result(WAIT) == 81


def test_exception_carries_remote_traceback(ex):
    with pytest.raises(ValueError, match='refused 4') as info:
        ex.submit(prog.fail_on, 4, 4).result(WAIT)
    cause = info.value.__cause__
    assert type(cause) is cf.process._RemoteTraceback
    assert 'Traceback (most recent call last)' in str(cause) and 'fail_on' in str(cause)


def test_pending_calls_can_be_cancelled(method):
    ex = mphost.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context(method))
    try:
        calls = [ex.submit(prog.nap, 0.8)] + [ex.submit(prog.square, i) for i in range(8)]
        # One worker plus one call ahead are out; the rest wait in the parent.
        assert [f.cancel() for f in calls] == [False, False] + [True] * 7
        assert calls[1].result(WAIT) == 0 and all(f.cancelled() for f in calls[2:])
        assert ex._out == 0 and not ex._waiting
    finally:
        ex.shutdown()


def test_leaving_map_early_cancels_what_has_not_started(method):
    ex = mphost.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context(method))
    try:
        results = ex.map(prog.nap, [0.3] + [0.0] * 20)
        assert next(results) == 0.3
        results.close()
        pending = list(ex._waiting)
        assert all(call[0].cancelled() for call in pending)
    finally:
        ex.shutdown()
    assert ex._out == 0 and ex._processes is None


def test_shutdown_without_wait_still_finishes_the_calls(method):
    ex = mphost.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context(method))
    calls = [ex.submit(prog.nap, 0.2) for _ in range(4)]
    ex.shutdown(wait=False)
    assert [f.result(WAIT) for f in calls] == [0.2] * 4
    pool = ex._pool
    deadline = time.monotonic() + WAIT
    while pool._state == 'RUN' and time.monotonic() < deadline:
        time.sleep(0.01)
    assert pool._state != 'RUN'     # the last call closed it
    pool.join()


def test_initializer_failure_breaks_the_executor(method):
    ex = mphost.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context(method),
                                    initializer=prog.refuse_to_start)
    try:
        calls = [ex.submit(prog.square, i) for i in range(4)]
        errors = [f.exception(WAIT) for f in calls]
        assert all(isinstance(e, BrokenProcessPool) for e in errors), errors
        assert 'this initializer fails' in str(errors[0].__cause__)
        with pytest.raises(BrokenProcessPool, match='not usable anymore'):
            ex.submit(prog.square, 1)
    finally:
        ex.shutdown()


def test_pool_options_are_checked_when_made(method):
    ctx = multiprocessing.get_context(method)
    with pytest.raises(TypeError, match="unexpected keyword argument 'no_such_option'"):
        mphost.ProcessPoolExecutor(2, mp_context=ctx, no_such_option=1)
    with pytest.raises(ValueError, match='task_timeout must be positive'):
        mphost.ProcessPoolExecutor(2, mp_context=ctx, task_timeout=-1)
    with pytest.raises(TypeError, match='worker_state'):
        mphost.ProcessPoolExecutor(2, mp_context=ctx, worker_state='yes')


def test_task_timeout_fails_only_the_late_future(method):
    ctx = multiprocessing.get_context(method)
    with mphost.ProcessPoolExecutor(2, mp_context=ctx, task_timeout=1) as ex:
        late = ex.submit(time.sleep, 30)
        quick = [ex.submit(prog.square, i) for i in range(20)]
        with pytest.raises(mphost.TaskTimeoutError) as caught:
            late.result(WAIT)
        assert isinstance(caught.value, TimeoutError)
        assert [f.result(WAIT) for f in quick] == [i * i for i in range(20)]
        assert ex.submit(prog.square, 7).result(WAIT) == 49


def test_cloudpickle_serializer_carries_lambdas(method):
    ctx = multiprocessing.get_context(method)
    offset = 3
    with mphost.ProcessPoolExecutor(2, mp_context=ctx, serializer='cloudpickle') as ex:
        assert list(ex.map(lambda x: x + offset, range(10), chunksize=3)) == [
            x + offset for x in range(10)]
        assert ex.submit(lambda: offset * 2).result(WAIT) == 6


def test_refused_call_options_fail_each_future(ex):
    # The pool refuses the option at each call: every future fails with
    # its TypeError, the executor goes on (no recursion over the line).
    results = ex.map(prog.square, range(3000), no_such_option=1)
    with pytest.raises(TypeError, match='no_such_option'):
        next(results)
    assert ex.submit(prog.square, 3).result(WAIT) == 9
    assert ex._out == 0 and not ex._waiting


def test_map_call_options_go_to_each_call(ex):
    seen = []
    ex.submit(prog.square, 1).result(WAIT)     # the pool exists
    pool = ex._pool
    plain = pool.apply_async

    def recording(func, args=(), kwds={}, callback=None, error_callback=None, **options):
        seen.append(options)
        return plain(func, args, kwds, callback, error_callback)
    pool.apply_async = recording
    try:
        assert list(ex.map(prog.square, range(10), chunksize=4, extra_option=7)) == [
            x * x for x in range(10)]
    finally:
        del pool.apply_async
    assert seen == [{'extra_option': 7}] * 3


def test_worker_state_like_arguments_reach_each_item():
    # A pool option such as worker_state passes leading arguments to the
    # task; a map chunk hands them to every call of its items.
    chunk = mphost._executor._Chunk(prog.power)
    assert chunk(((2, 3), (3, 2))) == [8, 9]
    assert mphost._executor._Chunk(lambda *a: a)('state', ((1,), (2,))) == [('state', 1), ('state', 2)]


@pytest.mark.parametrize('chunksize', [1, 7])
def test_progress_callable_counts_items(ex, chunksize):
    reports = []
    lock = threading.Lock()

    def progress(done, total):
        with lock:
            reports.append((done, total))
    values = list(ex.map(prog.square, range(50), chunksize=chunksize, progress=progress))
    assert values == [x * x for x in range(50)]
    deadline = time.monotonic() + WAIT
    while (not reports or reports[-1][0] != 50) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert reports[-1] == (50, 50)
    assert [d for d, _ in reports] == sorted(d for d, _ in reports)
    assert len(reports) == -(-50 // chunksize)


def test_progress_on_a_tqdm_bar(ex):
    tqdm = pytest.importorskip('tqdm')
    out = io.StringIO()
    bar = tqdm.tqdm(file=out, mininterval=0)
    assert list(ex.map(prog.square, range(30), chunksize=7, progress=bar)) == [x * x for x in range(30)]
    deadline = time.monotonic() + WAIT
    while not bar.disable and time.monotonic() < deadline:
        time.sleep(0.01)
    # Counted to the end, then closed (a closed tqdm bar is disabled).
    assert bar.n == 30 and bar.total == 30 and bar.disable
    assert '30/30' in out.getvalue()


def test_progress_true_draws_on_stderr(ex, capsys):
    pytest.importorskip('tqdm')
    assert list(ex.map(prog.square, range(12), progress=True)) == [x * x for x in range(12)]
    deadline = time.monotonic() + WAIT
    while '12/12' not in capsys.readouterr().err and time.monotonic() < deadline:
        time.sleep(0.05)


def test_progress_refuses_other_values(ex):
    with pytest.raises(TypeError, match='progress'):
        ex.map(prog.square, range(3), progress='yes')


def test_max_tasks_per_child_defaults_to_spawn():
    ex = mphost.ProcessPoolExecutor(1, max_tasks_per_child=2)
    try:
        assert ex._mp_context.get_start_method() == 'spawn'
        pids = [ex.submit(prog.my_pid).result(WAIT) for _ in range(4)]
        assert len(set(pids)) == 2
    finally:
        ex.shutdown()
