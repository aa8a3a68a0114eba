"""multiprocessing.util: finalizers, exit sweep, after-fork hooks, logging,
the temporary directory and descriptor helpers. Programs whose output says
what happened run under stock python and mphost; the outputs must match."""

import gc
import os
import subprocess
import sys
import textwrap

import pytest

from multiprocessing import util

TIMEOUT = 60


def _run(interpreter, source, tmp_path):
    prog = tmp_path / 'prog.py'
    prog.write_text(textwrap.dedent(source))
    done = subprocess.run([interpreter, str(prog)], capture_output=True, text=True,
                          timeout=TIMEOUT, cwd=str(tmp_path))
    return done.returncode, done.stdout, done.stderr


def _same_as_stock(stock_python, tmp_path, source):
    stock = _run(stock_python, source, tmp_path)
    ours = _run(sys.executable, source, tmp_path)
    assert stock[0] == 0, stock[2]
    assert ours[:2] == stock[:2], ours[2]
    return ours[1]


EXIT_ORDER = '''
import gc, os, sys
from multiprocessing import util

class Obj: pass

out = []
def note(x):
    out.append(x)
    return x.upper()

a = Obj(); util.Finalize(a, note, args=('a',)); del a; gc.collect()
b = Obj(); fb = util.Finalize(b, note, args=('b',))
print('first call', fb(), 'second call', fb(), fb.still_active())
keep = [Obj() for _ in range(6)]
util.Finalize(keep[0], note, args=('c',))                   # no priority: not at exit
util.Finalize(keep[1], note, args=('p1',), exitpriority=1)
for i, name in enumerate(('p0a', 'p0b', 'p0c')):
    util.Finalize(keep[2 + i], note, args=(name,), exitpriority=0)
util.Finalize(None, note, args=('neg',), exitpriority=-10)
gone = util.Finalize(None, note, args=('cancelled',), exitpriority=5)
print('active', gone.still_active()); gone.cancel(); print('active', gone.still_active())
gone.cancel()
print(repr(gone))
kw = util.Finalize(keep[5], note, args=('kw',), kwargs={'x': 1} and {}, exitpriority=3)
print(repr(kw))
util._run_finalizers(2)        # only priority >= 2
print(out)
util._exit_function()
print(out)
print(util.is_exiting())
util._exit_function()          # a second call does nothing
print(len(out))
for bad in (1.5, 'x'):
    try:
        util.Finalize(None, note, exitpriority=bad)
    except TypeError as e:
        print('TypeError', e)
try:
    util.Finalize(None, note)
except ValueError as e:
    print('ValueError', e)
sys.stdout.flush()
os._exit(0)
'''


def test_finalizer_order_and_exit_sweep_as_stock(stock_python, tmp_path):
    out = _same_as_stock(stock_python, tmp_path, EXIT_ORDER)
    assert "['a', 'b', 'kw', 'p1', 'p0c', 'p0b', 'p0a', 'neg']" in out


FORKED_CHILD = '''
import multiprocessing as mp, os, sys
from multiprocessing import util

class Obj: pass
keep = Obj()
util.Finalize(keep, print, args=('parent finalizer',), exitpriority=1)
inherited = util.Finalize(None, print, args=('not in child',), exitpriority=2)
util.register_after_fork(keep, lambda obj: print('hook 1', type(obj).__name__, flush=True))
util.register_after_fork(keep, lambda obj: print('hook 2', flush=True))
def boom(obj): raise RuntimeError('hook fails')
util.register_after_fork(keep, boom)
util.register_after_fork(keep, lambda obj: print('hook 4 runs anyway', flush=True))

def child():
    print('child registry', len(util._finalizer_registry), flush=True)
    print('child inherited call', inherited(), flush=True)

if __name__ == '__main__':
    p = mp.get_context('fork').Process(target=child)
    p.start(); p.join()
    print('exit', p.exitcode, 'hooks', len(util._afterfork_registry) >= 4, flush=True)
'''


def test_forked_child_hooks_and_finalizers_as_stock(stock_python, tmp_path):
    out = _same_as_stock(stock_python, tmp_path, FORKED_CHILD)
    assert 'hook 4 runs anyway' in out
    assert out.rstrip().endswith('parent finalizer')


LOGGING = '''
import logging, multiprocessing as mp, sys
from multiprocessing import util
print(util._logger is None, util._log_to_stderr)
logger = util.log_to_stderr(logging.INFO)
print(logger is util.get_logger(), logger.name, logger.propagate, logger.level)
print(util._log_to_stderr, len(logger.handlers))
print(logger.handlers[0].formatter._fmt == util.DEFAULT_LOGGING_FORMAT)
util.info('an info %s', 42)
util.debug('a debug line, filtered')
util.sub_warning('a sub warning')
sys.stderr.flush()
'''


def test_logging_as_stock(stock_python, tmp_path):
    stock = _run(stock_python, LOGGING, tmp_path)
    ours = _run(sys.executable, LOGGING, tmp_path)
    assert ours[:2] == stock[:2]
    def records(text):
        return [line for line in text.splitlines() if 'an info' in line or 'sub warning' in line]

    assert records(stock[2])[0] == '[INFO/MainProcess] an info 42'
    assert records(ours[2]) == records(stock[2])
    assert 'process shutting down' in ours[2]


def test_temp_dir_private_and_removed_at_exit(tmp_path):
    source = '''
    import os, stat
    from multiprocessing import util
    path = util.get_temp_dir()
    assert util.get_temp_dir() == path
    print(path)
    print(oct(stat.S_IMODE(os.stat(path).st_mode)), os.path.basename(path).startswith('pymp-'))
    '''
    code, out, err = _run(sys.executable, source, tmp_path)
    assert code == 0, err
    path, mode = out.splitlines()
    assert mode == '0o700 True'
    assert not os.path.exists(path)


def test_finalizer_runs_once_across_threads():
    import threading

    class Obj:
        pass

    calls = []
    objs = [Obj() for _ in range(200)]
    fins = [util.Finalize(o, calls.append, args=(i,)) for i, o in enumerate(objs)]
    start = threading.Barrier(4)

    def hit():
        start.wait(TIMEOUT)
        for f in fins:
            f()

    threads = [threading.Thread(target=hit) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(TIMEOUT)
    del objs
    gc.collect()
    assert sorted(calls) == list(range(200))
    assert not any(f.still_active() for f in fins)


def test_finalizer_repr():
    class Obj:
        pass

    obj = Obj()

    def cleanup():
        pass

    fin = util.Finalize(obj, cleanup, args=(1,), kwargs={'k': 2}, exitpriority=4)
    assert repr(fin) == "<Finalize object, callback=cleanup, args=(1,), kwargs={'k': 2}, exitpriority=4>"
    fin.cancel()
    assert repr(fin) == '<Finalize object, dead>'
    assert not fin.still_active()


def test_fork_aware_lock_and_local():
    lock = util.ForkAwareThreadLock()
    with lock:
        assert not lock.acquire(False)
    assert lock.acquire(timeout=1)
    lock.release()
    local = util.ForkAwareLocal()
    local.x = 1
    assert type(local).__reduce__(local) == (util.ForkAwareLocal, ())


def test_abstract_socket_namespace():
    assert util.is_abstract_socket_namespace('\0name')
    assert util.is_abstract_socket_namespace(b'\0name')
    assert not util.is_abstract_socket_namespace('/tmp/sock')
    assert not util.is_abstract_socket_namespace(b'')
    assert not util.is_abstract_socket_namespace(None)
    with pytest.raises(TypeError, match='unrecognized'):
        util.is_abstract_socket_namespace(('localhost', 0))


def test_close_all_fds_except(tmp_path):
    # Keeping adjacent descriptors (0, 1, 2) must not close everything:
    # os.closerange(n, n) does on CPython 3.11 (and so the stdlib's helper).
    source = '''
    import os
    from multiprocessing import util
    r, w = os.pipe()
    r2, w2 = os.pipe()
    util.close_all_fds_except([0, 1, 2, r, w])
    os.write(w, b'still open')
    assert os.read(r, 100) == b'still open'
    for fd in (r2, w2):
        try:
            os.fstat(fd)
            print('open', fd)
        except OSError:
            pass
    try:
        util.close_all_fds_except([util.MAXFD + 1])
    except AssertionError as e:
        print('refused', e)
    '''
    code, out, err = _run(sys.executable, source, tmp_path)
    assert code == 0, err
    assert out.strip() == 'refused fd too large'


def test_failing_finalizer_is_reported_and_the_others_run(stock_python, tmp_path):
    source = '''
    from multiprocessing import util
    def bad():
        raise KeyError('from a finalizer')
    util.Finalize(None, print, args=('after',), exitpriority=0)
    util.Finalize(None, bad, exitpriority=1)
    util.Finalize(None, print, args=('before',), exitpriority=2)
    '''
    for interpreter in (stock_python, sys.executable):
        code, out, err = _run(interpreter, source, tmp_path)
        assert (code, out) == (0, 'before\nafter\n')
        assert "KeyError: 'from a finalizer'" in err
