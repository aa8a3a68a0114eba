"""`import mphost` works in programs run by mphost (and their children of
every start method) and fails at once, saying why, under another
interpreter."""

import os
import subprocess
import sys

import pytest

import mphost

SHIM = os.path.dirname(os.path.dirname(os.path.abspath(mphost.__file__)))
MESSAGE = 'mphost can only be imported in a program run by the mphost launcher'


def test_refused_under_stock_python(stock_python):
    env = dict(os.environ, PYTHONPATH=SHIM)
    done = subprocess.run([stock_python, '-c', 'import mphost'], capture_output=True, text=True,
                          env=env, timeout=60)
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith('ImportError: ' + MESSAGE), done.stderr
    # Nothing else of the package was imported first.
    assert 'Traceback' in done.stderr and '_semaphore' not in done.stderr


def test_refused_error_is_an_import_error(stock_python):
    env = dict(os.environ, PYTHONPATH=SHIM)
    code = ('try:\n import mphost\nexcept ImportError as e:\n print(type(e).__name__, e.name)\n'
            'else:\n print("imported")')
    done = subprocess.run([stock_python, '-c', code], capture_output=True, text=True, env=env,
                          timeout=60)
    assert done.stdout.split() == ['ImportError', 'mphost']


def test_imported_under_mphost():
    done = subprocess.run([sys.executable, '-c', 'import mphost; print(sorted(mphost.__all__))'],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    names = eval(done.stdout)
    for name in ('ProcessPoolExecutor', 'Queue', 'JoinableQueue', 'Semaphore', 'shared_array'):
        assert name in names


def _import_in_child(report):
    import mphost as package
    report.put(package.ProcessPoolExecutor.__name__)


@pytest.mark.parametrize('method', ['fork', 'spawn', 'forkserver'])
def test_imported_in_children(method):
    import multiprocessing
    ctx = multiprocessing.get_context(method)
    report = ctx.Queue()
    child = ctx.Process(target=_import_in_child, args=(report,))
    child.start()
    assert report.get(timeout=60) == 'ProcessPoolExecutor'
    child.join(60)
    assert child.exitcode == 0


def test_lazy_names():
    # The executor and queue modules load on first use of their names.
    code = ('import sys, mphost\n'
            'print("mphost._executor" in sys.modules, "concurrent.futures" in sys.modules)\n'
            'mphost.ProcessPoolExecutor\n'
            'print("mphost._executor" in sys.modules)\n'
            'print("ProcessPoolExecutor" in dir(mphost))\n'
            'try:\n mphost.no_such_name\nexcept AttributeError as e:\n print(e)\n')
    done = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=60)
    assert done.stdout.splitlines() == [
        'False False', 'True', 'True', "module 'mphost' has no attribute 'no_such_name'"], done.stderr
