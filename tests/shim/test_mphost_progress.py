"""progress= on mphost.Pool's map family: a tqdm bar (or a callable) that
counts completed items, not chunks, with chunksize 1 and > 1, with lists
and with lazy iterables of unknown length; closed when the call completes
or fails; the pool's results are those of the stdlib's Pool."""

import io
import os
import subprocess
import sys
import textwrap
import threading
import time

import pytest
from tqdm import tqdm

import multiprocessing
from multiprocessing.pool import RemoteTraceback

from mphost._pool import Pool

TIMEOUT = 60
N = 60

METHODS = ['fork', 'spawn', 'forkserver']


def square(x):
    return x * x


def slow_square(x):
    time.sleep(0.002)
    return x * x


def multiply(x, y):
    return x * y


def block(x):
    import numpy as np
    return np.full((256, 256), x, dtype=np.float64)     # 512 KiB each


def fail_at_30(x):
    if x == 30:
        raise ValueError(f'bad item {x}')
    time.sleep(0.001)
    return x


@pytest.fixture(scope='module', params=METHODS)
def pool(request):
    p = Pool(2, context=multiprocessing.get_context(request.param))
    yield p
    p.terminate()
    p.join()


def _bar():
    out = io.StringIO()
    return tqdm(file=out, mininterval=0), out


def _generator(n):
    yield from range(n)


@pytest.mark.parametrize('chunksize', [1, 7])
def test_map_counts_items(pool, chunksize):
    bar, out = _bar()
    assert pool.map(slow_square, range(N), chunksize, progress=bar) == [x * x for x in range(N)]
    assert (bar.n, bar.total) == (N, N)
    assert bar.disable                      # closed before map() returned
    assert f'{N}/{N}' in out.getvalue()


@pytest.mark.parametrize('chunksize', [1, 7])
def test_map_of_a_generator_knows_its_length(pool, chunksize):
    bar, _ = _bar()
    assert pool.map(square, _generator(N), chunksize, progress=bar) == [x * x for x in range(N)]
    assert (bar.n, bar.total) == (N, N)


@pytest.mark.parametrize('chunksize', [1, 7])
@pytest.mark.parametrize('kind', ['imap', 'imap_unordered'])
def test_imap_of_a_generator(pool, kind, chunksize):
    bar, out = _bar()
    results = getattr(pool, kind)(square, _generator(N + 3), chunksize, progress=bar)
    got = list(results)
    assert sorted(got) == [x * x for x in range(N + 3)]
    if kind == 'imap':
        assert got == [x * x for x in range(N + 3)]
    deadline = time.monotonic() + TIMEOUT
    while not bar.disable and time.monotonic() < deadline:
        time.sleep(0.01)
    assert bar.disable
    assert (bar.n, bar.total) == (N + 3, None)      # unknown length
    assert f'{N + 3}it' in out.getvalue()


@pytest.mark.parametrize('chunksize', [1, 7])
def test_imap_of_a_sized_iterable_has_a_total(pool, chunksize):
    bar, _ = _bar()
    assert list(pool.imap(square, range(N), chunksize, progress=bar)) == [x * x for x in range(N)]
    assert bar.total == N
    deadline = time.monotonic() + TIMEOUT
    while not bar.disable and time.monotonic() < deadline:
        time.sleep(0.01)
    assert bar.n == N


def test_large_numpy_results(pool):
    bar, _ = _bar()
    blocks = pool.map(block, range(24), 5, progress=bar)
    assert [float(b[0, 0]) for b in blocks] == [float(x) for x in range(24)]
    assert blocks[7].shape == (256, 256) and float(blocks[7].sum()) == 7 * 256 * 256
    assert (bar.n, bar.total, bar.disable) == (24, 24, True)
    bar, _ = _bar()
    assert sum(float(b[1, 1]) for b in pool.imap_unordered(block, range(24), 4, progress=bar)) \
        == sum(range(24))
    deadline = time.monotonic() + TIMEOUT
    while not bar.disable and time.monotonic() < deadline:
        time.sleep(0.01)
    assert (bar.n, bar.total) == (24, 24)


def test_starmap_async_with_a_callable(pool):
    seen = []
    order = []
    result = pool.starmap_async(multiply, [(x, 2) for x in range(N)], 5,
                                callback=lambda value: order.append(('callback', seen[-1])),
                                progress=lambda done, total: seen.append((done, total)))
    assert result.get(TIMEOUT) == [2 * x for x in range(N)]
    deadline = time.monotonic() + TIMEOUT
    while not order and time.monotonic() < deadline:
        time.sleep(0.01)
    assert seen[-1] == (N, N)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)   # never goes back
    assert all(total == N for _, total in seen)
    assert order == [('callback', (N, N))]            # progress finished first


def test_starmap_and_map_async(pool):
    bar, _ = _bar()
    assert pool.starmap(multiply, zip(range(N), range(N)), 4, progress=bar) == \
        [x * x for x in range(N)]
    assert (bar.n, bar.total, bar.disable) == (N, N, True)
    bar, _ = _bar()
    assert pool.map_async(square, range(N), progress=bar).get(TIMEOUT) == [x * x for x in range(N)]
    assert (bar.n, bar.total, bar.disable) == (N, N, True)


@pytest.mark.parametrize('chunksize', [1, 7])
def test_failure_mid_map_closes_the_bar(pool, chunksize):
    bar, _ = _bar()
    with pytest.raises(ValueError, match='bad item 30') as info:
        pool.map(fail_at_30, range(N), chunksize, progress=bar)
    assert isinstance(info.value.__cause__, RemoteTraceback)
    assert 'fail_at_30' in str(info.value.__cause__)
    assert bar.disable                      # closed, showing how far it got
    assert bar.n < N and bar.total == N
    assert pool.map(square, range(3), progress=bar) == [0, 1, 4]   # pool still fine


def test_failures_in_imap_count_as_done(pool):
    seen = []
    it = pool.imap(fail_at_30, range(N), progress=lambda d, t: seen.append(d))
    outcomes = []
    for _ in range(N):
        try:
            outcomes.append(it.next(TIMEOUT))
        except ValueError as e:
            outcomes.append(str(e))
    assert outcomes[30] == 'bad item 30'
    deadline = time.monotonic() + TIMEOUT
    while (not seen or seen[-1] != N) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert seen[-1] == N


def test_empty_map(pool):
    bar, _ = _bar()
    assert pool.map(square, [], progress=bar) == []
    assert (bar.n, bar.total, bar.disable) == (0, 0, True)
    seen = []
    assert list(pool.imap(square, [], progress=lambda d, t: seen.append((d, t)))) == []
    deadline = time.monotonic() + TIMEOUT
    while not seen and time.monotonic() < deadline:
        time.sleep(0.01)
    assert seen == [(0, 0)]


def test_a_bar_with_its_own_total_keeps_it(pool):
    out = io.StringIO()
    bar = tqdm(total=1000, file=out)
    pool.map(square, range(N), progress=bar)
    assert (bar.n, bar.total) == (N, 1000)


def test_the_callable_runs_outside_the_pool(pool):
    # A progress callable may use the pool (it is never called with the
    # pool's lock held).
    inner = []

    def report(done, total):
        if len(inner) < 3:
            inner.append(pool.apply_async(square, (done,)).get(TIMEOUT))
    assert pool.map(slow_square, range(N), 1, progress=report) == [x * x for x in range(N)]
    assert inner


def test_bad_progress_is_a_type_error(pool):
    with pytest.raises(TypeError, match='progress must be True, a tqdm bar'):
        pool.map(square, range(3), progress=3)
    with pytest.raises(TypeError, match='progress must be True'):
        pool.imap(square, range(3), progress='yes')
    assert pool.map(square, range(3)) == [0, 1, 4]


def test_plain_calls_take_no_progress():
    # The stdlib's Pool is unchanged: progress is mphost.Pool's option.
    with multiprocessing.get_context('fork').Pool(1) as p:
        with pytest.raises(TypeError):
            p.map(square, range(3), progress=True)


@pytest.mark.parametrize('method', METHODS)
def test_progress_true_draws_a_tqdm_bar_on_stderr(method, tmp_path):
    prog = textwrap.dedent(f"""
        import multiprocessing
        from mphost._pool import Pool

        def square(x):
            return x * x

        if __name__ == '__main__':
            with Pool(2, context=multiprocessing.get_context({method!r})) as p:
                print(sum(p.map(square, range(40), chunksize=3, progress=True)))
                print(sum(p.imap_unordered(square, range(25), progress=True)))
    """)
    script = tmp_path / 'bar.py'
    script.write_text(prog)
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=TIMEOUT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(sum(x * x for x in range(40))),
                                   str(sum(x * x for x in range(25)))]
    assert '100%' in done.stderr and '40/40' in done.stderr and '25/25' in done.stderr


def test_terminate_closes_open_bars():
    p = Pool(1, context=multiprocessing.get_context('fork'))
    bar, _ = _bar()
    p.map_async(time.sleep, [0.2] * 50, 1, progress=bar)
    time.sleep(0.3)
    p.terminate()
    p.join()
    assert bar.disable and bar.n < 50
