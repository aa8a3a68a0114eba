"""Warm spawn: spare children started ahead of time, observed through whole
programs. Several spares after a burst, back to one when idle, the limit
from MPHOST_WARM_SPARES, the cold start when the parent's state changed
(compared with stock python3), and the exit of a spawned child (atexit,
buffered output, exit codes) compared with stock python3."""

import os
import subprocess
import sys
import textwrap

import pytest

TIMEOUT = 90
STOCK = '/usr/bin/python3'


def run(interpreter, source, tmp_path, env=None):
    script = tmp_path / 'prog.py'
    script.write_text(textwrap.dedent(source))
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run([interpreter, str(script)], cwd=tmp_path, capture_output=True,
                          text=True, timeout=TIMEOUT, env=full_env)


def run_mphost(source, tmp_path, env=None):
    proc = run(sys.executable, source, tmp_path, env)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


needs_stock = pytest.mark.skipif(not os.path.exists(STOCK), reason='no stock python3 to compare with')

# Polls the number of waiting spares until `done(count)` or the deadline.
POLL = '''
import time, _mphost
def wait_for_spares(done, seconds):
    deadline = time.monotonic() + seconds
    count = _mphost.warm_pool_spare_count()
    while not done(count) and time.monotonic() < deadline:
        time.sleep(0.02)
        count = _mphost.warm_pool_spare_count()
    return count
'''

BURST = POLL + '''
import multiprocessing as mp, os

def child(i):
    pass

def burst(ctx, n):
    procs = [ctx.Process(target=child, args=(i,)) for i in range(n)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    return [p.exitcode for p in procs], len({p.pid for p in procs})
'''


def test_a_burst_of_eight_leaves_several_spares_up_to_the_limit(tmp_path):
    out = run_mphost(BURST + '''
if __name__ == '__main__':
    ctx = mp.get_context('spawn')
    print(burst(ctx, 8))
    # A second burst finds the spares the first one asked for.
    print(burst(ctx, 8))
    count = wait_for_spares(lambda c: c >= 3, 30)
    print('spares', count)
''', tmp_path, {'MPHOST_WARM_SPARES': '3', 'MPHOST_WARM_BURST_MS': '2000'})
    lines = out.splitlines()
    assert lines[0] == lines[1] == '([0, 0, 0, 0, 0, 0, 0, 0], 8)'
    assert lines[2] == 'spares 3'


def test_the_limit_of_one_keeps_a_single_spare(tmp_path):
    out = run_mphost(BURST + '''
if __name__ == '__main__':
    ctx = mp.get_context('spawn')
    print(burst(ctx, 8))
    wait_for_spares(lambda c: c >= 1, 30)
    time.sleep(0.5)
    print('spares', _mphost.warm_pool_spare_count())
''', tmp_path, {'MPHOST_WARM_SPARES': '1', 'MPHOST_WARM_BURST_MS': '2000'})
    assert out.splitlines() == ['([0, 0, 0, 0, 0, 0, 0, 0], 8)', 'spares 1']


def test_spares_go_back_to_one_when_the_program_is_idle(tmp_path):
    out = run_mphost(BURST + '''
if __name__ == '__main__':
    ctx = mp.get_context('spawn')
    burst(ctx, 6)
    print('after burst', wait_for_spares(lambda c: c >= 4, 30) >= 4)
    # No child taken for a few seconds: the extra spares are stopped.
    print('when idle', wait_for_spares(lambda c: c == 1, 30))
''', tmp_path, {'MPHOST_WARM_SPARES': '4', 'MPHOST_WARM_BURST_MS': '2000'})
    assert out.splitlines() == ['after burst True', 'when idle 1']


def test_a_pool_of_eight_spawn_workers_made_twice(tmp_path):
    out = run_mphost('''
import multiprocessing as mp, os

def square(x):
    return x * x, os.getpid()

if __name__ == '__main__':
    ctx = mp.get_context('spawn')
    for _ in range(2):
        with ctx.Pool(8) as pool:
            pairs = pool.map(square, range(64))
            workers = list(pool._pool)
            print([v for v, _ in pairs] == [x * x for x in range(64)],
                  {pid for _, pid in pairs} <= {w.pid for w in workers}, len({w.pid for w in workers}))
''', tmp_path)
    assert out.splitlines() == ['True True 8'] * 2


# What a spawned child sees of its parent, after the parent changed its
# state since the spare was started: each change must reach the child.
FALLBACK = '''
import multiprocessing as mp, os, sys

def report(tag):
    print(tag, os.getcwd() == os.environ['EXPECTED_CWD'], sys.path[-1], sys.flags.optimize,
          os.environ.get('PLAIN_VARIABLE'), oct(os.umask(0o22)), flush=True)

def start(ctx, tag):
    p = ctx.Process(target=report, args=(tag,))
    p.start()
    p.join(60)
    print(tag, 'exit', p.exitcode, flush=True)

if __name__ == '__main__':
    ctx = mp.get_context('spawn')
    os.environ['EXPECTED_CWD'] = os.getcwd()
    start(ctx, 'first')
    start(ctx, 'second')
    os.mkdir('elsewhere')
    os.chdir('elsewhere')
    os.environ['EXPECTED_CWD'] = os.getcwd()
    start(ctx, 'cwd')
    sys.path.append('/nonexistent/extra')
    start(ctx, 'path')
    os.environ['PLAIN_VARIABLE'] = 'set'
    start(ctx, 'environ')
    os.environ['PYTHONOPTIMIZE'] = '1'
    start(ctx, 'startup-variable')
    del os.environ['PYTHONOPTIMIZE']
    os.umask(0o077)
    start(ctx, 'umask')
    start(ctx, 'again')
'''


@needs_stock
def test_a_changed_parent_reaches_the_child_as_with_stock(tmp_path):
    env = {'PYTHONOPTIMIZE': ''}
    mine = run(sys.executable, FALLBACK, tmp_path, env)
    assert mine.returncode == 0, mine.stderr
    (tmp_path / 'elsewhere').rmdir()
    stock = run(STOCK, FALLBACK, tmp_path, env)
    assert stock.returncode == 0, stock.stderr
    assert mine.stdout == stock.stdout
    assert 'umask True /nonexistent/extra 0 set 0o77' in mine.stdout


def test_warm_spawn_off_still_starts_children(tmp_path):
    out = run_mphost(BURST + '''
if __name__ == '__main__':
    print(burst(mp.get_context('spawn'), 3), _mphost.warm_pool_spare_count())
''', tmp_path, {'MPHOST_WARM_SPAWN': '0'})
    assert out.splitlines() == ['([0, 0, 0], 3) 0']


# The end of a spawned child: atexit handlers, output left in buffers,
# exit codes from every way of ending.
EXITS = '''
import atexit, multiprocessing as mp, os, sys

def buffered_then_exit(code):
    atexit.register(lambda: print('atexit ran in', code, flush=False))
    sys.stdout.write('no newline, not flushed ')
    sys.exit(code)

def raises():
    atexit.register(lambda: print('atexit after an exception'))
    raise ValueError('boom')

def exits_with_text():
    sys.exit('leaving with a message')

def hard_exit():
    atexit.register(lambda: print('never printed'))
    sys.stdout.write('lost with os._exit? ')
    sys.stdout.flush()
    os._exit(7)

def returns():
    print('returned normally', end='')

if __name__ == '__main__':
    ctx = mp.get_context('spawn')
    for target, args in [(buffered_then_exit, (0,)), (buffered_then_exit, (3,)), (raises, ()),
                         (exits_with_text, ()), (hard_exit, ()), (returns, ()),
                         (buffered_then_exit, (None,))]:
        p = ctx.Process(target=target, args=args)
        p.start()
        p.join(60)
        print('|', target.__name__, p.exitcode, flush=True)
'''


@needs_stock
def test_the_end_of_a_spawned_child_matches_stock(tmp_path):
    mine = run(sys.executable, EXITS, tmp_path)
    stock = run(STOCK, EXITS, tmp_path)
    assert mine.returncode == stock.returncode == 0, mine.stderr
    assert mine.stdout == stock.stdout
    # Tracebacks and messages on stderr: the same lines, apart from paths.
    def last_lines(text):
        return [line for line in text.splitlines() if not line.startswith('  ')]
    assert last_lines(mine.stderr) == last_lines(stock.stderr)
