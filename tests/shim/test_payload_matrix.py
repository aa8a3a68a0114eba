"""Every payload real programs send, through every transport of
multiprocessing, under every start method: what each receiver gets under
mphost must be what it gets under stock /usr/bin/python3.

_matrix_runner.py runs the whole matrix of one start method in one process;
it runs once per (start method, interpreter), all six at once, each with a
timeout. Each cell is described by its receivers in canonical text
(_matrix_payloads.describe: value digest, type, dtype with byte order, shape,
strides and order flags, writability, DataFrame dtypes and values, the
protocols a custom __reduce_ex__ was called with, the error a sender got).
There is one test per (transport, start method); it fails with every payload
whose description differs from stock's.
"""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import _matrix_payloads  # noqa: E402
import _matrix_runner  # noqa: E402

STOCK = '/usr/bin/python3'
MPHOST = sys.executable
METHODS = ['fork', 'spawn', 'forkserver']
TRANSPORTS = _matrix_runner.TRANSPORTS
PAYLOADS = list(_matrix_payloads.PAYLOADS)
RUN_TIMEOUT = 240  # one runner, one start method, every transport
MAX_SHOWN = 12  # differing payloads shown in full in one failure
EXIT_TIMEOUT = 30  # from its last cell to its exit

pytestmark = pytest.mark.skipif(not os.path.exists(STOCK), reason='stock python3 is not installed')


def _kill_group(proc):
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _finished_writing(path):
    try:
        with open(path, 'rb') as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 64))
            return f.read().endswith(b'["end", "", {}]\n')
    except OSError:
        return False


def _run_all(workdir):
    """Start the six runners together; wait for all of them, each bounded."""
    runs = {}
    for interp, exe in (('stock', STOCK), ('mphost', MPHOST)):
        for method in METHODS:
            out = os.path.join(workdir, '%s-%s.jsonl' % (interp, method))
            log = open(os.path.join(workdir, '%s-%s.log' % (interp, method)), 'w+b')
            proc = subprocess.Popen([exe, os.path.join(HERE, '_matrix_runner.py'), method, out],
                                    cwd=workdir, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                    start_new_session=True)
            runs[interp, method] = dict(proc=proc, out=out, log=log, started=time.monotonic())
    deadline = time.monotonic() + RUN_TIMEOUT
    waiting = dict(runs)
    while waiting:
        now = time.monotonic()
        for key, run in list(waiting.items()):
            proc = run['proc']
            if proc.poll() is not None:
                run['status'] = proc.returncode
            elif now > deadline:
                run['status'] = 'killed: no end within %d s' % RUN_TIMEOUT
            elif 'ended' not in run and _finished_writing(run['out']):
                run['ended'] = now
                continue
            elif 'ended' in run and now - run['ended'] > EXIT_TIMEOUT:
                run['status'] = 'killed: did not exit within %d s of its last cell' % EXIT_TIMEOUT
            else:
                continue
            run['seconds'] = now - run['started']
            _kill_group(proc)  # what is left of a run that ended badly
            proc.wait()
            del waiting[key]
        time.sleep(0.2)
    results = {}
    for key, run in runs.items():
        cells = {}
        if os.path.exists(run['out']):
            with open(run['out']) as f:
                for line in f:
                    try:
                        transport, payload, desc = json.loads(line)
                    except ValueError:
                        continue  # the last line of a killed run
                    cells[transport, payload] = desc
        run['log'].seek(0)
        log = run['log'].read().decode(errors='replace')
        run['log'].close()
        results[key] = dict(cells=cells, status=run['status'], seconds=run['seconds'], log=log)
    return results


class _Summary:
    """Prints the matrix's size and run times at the end of the session."""

    def __init__(self, lines):
        self.lines = lines

    def pytest_terminal_summary(self, terminalreporter):
        terminalreporter.section('payload matrix')
        for line in self.lines:
            terminalreporter.write_line(line)


@pytest.fixture(scope='module')
def matrix(request, tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp('payload_matrix'))
    results = _run_all(workdir)
    cells = [(t, p) for t in TRANSPORTS for p in PAYLOADS]
    # every cell, and the checks some transports add (JoinableQueue.join, the shutdowns)
    checked = {m: set(cells) | {c for c in results['stock', m]['cells'] if c[0] != 'end'}
               for m in METHODS}
    differing = sum(results['stock', m]['cells'].get(c) != results['mphost', m]['cells'].get(c)
                    for m in METHODS for c in checked[m] if c not in KNOWN_STOCK_HANGS)
    lines = ['payload matrix: %d payloads x %d transports x %d start methods = %d cells; '
             '%d further checks; %d differ from stock (and %d checks where stock deadlocks and mphost, by choice, does not)'
             % (len(PAYLOADS), len(TRANSPORTS), len(METHODS), len(cells) * len(METHODS),
                sum(len(checked[m]) - len(cells) for m in METHODS), differing,
                sum(c in KNOWN_STOCK_HANGS for m in METHODS for c in checked[m]))]
    lines += ['  %-10s stock %5.1fs (exit %s)   mphost %5.1fs (exit %s)'
              % (m, results['stock', m]['seconds'], results['stock', m]['status'],
                 results['mphost', m]['seconds'], results['mphost', m]['status']) for m in METHODS]
    request.config.pluginmanager.register(_Summary(lines), 'payload-matrix-summary')
    return results


def _log_tail(run, lines=15):
    return '\n'.join(run['log'].splitlines()[-lines:])


def test_matrix_size_and_stock_complete(matrix):
    """Stock answers every cell: the matrix itself is sound."""
    for method in METHODS:
        run = matrix['stock', method]
        assert run['status'] == 0, 'stock %s runner: %s\n%s' % (method, run['status'], _log_tail(run))
        missing = [(t, p) for t in TRANSPORTS for p in PAYLOADS if (t, p) not in run['cells']]
        assert not missing, 'stock %s gave no result for %s' % (method, missing[:10])


@pytest.mark.parametrize('method', METHODS)
def test_shutdown_and_exit(matrix, method):
    """Closing the pool, the executor and the manager, then exiting, go as on stock."""
    stock, mine = matrix['stock', method], matrix['mphost', method]
    want = {p: d for (t, p), d in stock['cells'].items() if t == 'shutdown'}
    got = {p: d for (t, p), d in mine['cells'].items() if t == 'shutdown'}
    if (mine['status'], got) != (stock['status'], want):
        pytest.fail('runner exit: stock %s, mphost %s\nshutdown stock:  %s\nshutdown mphost: %s\n'
                    'mphost runner, last lines:\n%s'
                    % (stock['status'], mine['status'], want, got, _log_tail(mine)), pytrace=False)


def _short(desc, width=400):
    text = 'there: %s | back: %s' % (desc.get('there'), desc.get('back'))
    return text if len(text) <= width else text[:width] + '...'


# Where stock deadlocks and mphost deliberately does not (docs/BEHAVIOUR.md):
# (transport, check) -> (what stock's cell says, what mphost's must say).
# An item JoinableQueue.put could not pickle was reported and never queued,
# yet stock counts it as an unfinished task, so its join() never returns.
KNOWN_STOCK_HANGS = {
    ('joinable_queue', '(JoinableQueue.join)'): ('join hung', 'joined'),
}


@pytest.mark.parametrize('method', METHODS)
@pytest.mark.parametrize('transport', TRANSPORTS)
def test_same_as_stock(matrix, transport, method):
    stock, mine = matrix['stock', method], matrix['mphost', method]
    names = PAYLOADS + sorted({p for (t, p) in stock['cells'] if t == transport and p not in PAYLOADS})
    missing_note = 'no result (the mphost runner ended: %s)' % (mine['status'],)
    diffs = []
    for name in names:
        want = stock['cells'].get((transport, name))
        got = mine['cells'].get((transport, name))
        if want is None:
            continue  # reported by test_matrix_size_and_stock_complete
        if (transport, name) in KNOWN_STOCK_HANGS:
            stock_says, mphost_says = KNOWN_STOCK_HANGS[transport, name]
            if want.get('there') != stock_says or got is None or got.get('there') != mphost_says:
                diffs.append('  %s (stock hangs here; mphost must say %r)\n    stock:  %s\n    mphost: %s'
                             % (name, mphost_says, _short(want),
                                _short(got) if got is not None else missing_note))
            continue
        if got != want:
            diffs.append('  %s\n    stock:  %s\n    mphost: %s'
                         % (name, _short(want), _short(got) if got is not None else missing_note))
    if diffs:
        shown = diffs[:MAX_SHOWN]
        if len(diffs) > MAX_SHOWN:
            shown.append('  ... and %d more: %s' % (len(diffs) - MAX_SHOWN, ', '.join(
                d.split('\n', 1)[0].strip() for d in diffs[MAX_SHOWN:])))
        message = '%d of %d payloads differ from stock through %s under %s:\n%s' % (
            len(diffs), len(names), transport, method, '\n'.join(shown))
        if mine['status'] != 0:
            message += '\nmphost runner (%s), last lines:\n%s' % (mine['status'], _log_tail(mine))
        pytest.fail(message, pytrace=False)
