"""Helpers shared by the connection, listener and manager tests: stock
python3 peers run with subprocess, with bounded timeouts."""

import os
import subprocess
import sys
import textwrap

import pytest

STOCK_PYTHON = '/usr/bin/python3'
TIMEOUT = 60

# Prepended to every stock peer: prove it runs the stdlib's multiprocessing.
_STOCK_PRELUDE = '''
import multiprocessing, multiprocessing.connection, sys
assert multiprocessing.__file__.startswith('/usr/lib/python3'), multiprocessing.__file__
'''


def require_stock():
    if not os.path.exists(STOCK_PYTHON):
        pytest.skip('stock python3 is not installed')


class StockPeer:
    """A stock python3 process running `code`; lines it prints are read
    with readline() (each with the global timeout as a safety net)."""

    def __init__(self, code, *args):
        require_stock()
        source = _STOCK_PRELUDE + textwrap.dedent(code)
        # -I: no PYTHONPATH, no user site: the stdlib's multiprocessing for sure.
        self.proc = subprocess.Popen(
            [STOCK_PYTHON, '-I', '-c', source] + [str(a) for a in args],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def readline(self):
        import selectors
        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stdout, selectors.EVENT_READ)
            if not sel.select(TIMEOUT):
                self.proc.kill()
                raise AssertionError('stock peer printed nothing within %ss' % TIMEOUT)
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait(TIMEOUT)
            raise AssertionError('stock peer ended early: %s' % self.proc.stderr.read())
        return line.rstrip('\n')

    def write(self, text):
        self.proc.stdin.write(text + '\n')
        self.proc.stdin.flush()

    def finish(self):
        """(returncode, stdout rest, stderr) once the peer ends."""
        try:
            out, err = self.proc.communicate(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate()
            raise AssertionError('stock peer did not finish: %s' % err)
        return self.proc.returncode, out, err

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.communicate()


def run_stock(code, *args):
    """Run a stock python3 snippet to the end; returns CompletedProcess."""
    require_stock()
    source = _STOCK_PRELUDE + textwrap.dedent(code)
    return subprocess.run([STOCK_PYTHON, '-I', '-c', source] + [str(a) for a in args],
                          capture_output=True, text=True, timeout=TIMEOUT)


def run_mphost(code, *args, cwd=None):
    """Run a snippet under this mphost executable to the end."""
    env = dict(os.environ)
    env['PYTHONPATH'] = os.pathsep.join(
        [os.path.dirname(os.path.abspath(__file__))] +
        ([env['PYTHONPATH']] if env.get('PYTHONPATH') else []))
    return subprocess.run([sys.executable, '-c', textwrap.dedent(code)] + [str(a) for a in args],
                          capture_output=True, text=True, timeout=TIMEOUT, env=env, cwd=cwd)
