"""Errors that people search for keep their key phrase.

Users, answers and tools find the cause of a failure by the words of its
message ("bootstrapping phase", "Can't pickle local object", "Pool not
running"...). mphost words some messages its own way; each must still
carry the stdlib's key phrase and be of the stdlib's type. Every mistake
below is made by the same program under stock python3 and under mphost,
and the key phrase is checked in both (so the list also checks itself
against the stdlib)."""

import json
import subprocess
import sys
import textwrap

import pytest

TIMEOUT = 120

# case -> (exception type, key phrase)
EXPECTED = {
    'start twice': ('AssertionError', 'cannot start a process twice'),
    'join unstarted': ('AssertionError', 'can only join a started process'),
    'join from another process': ('AssertionError', 'can only join a child process'),
    'test from another process': ('AssertionError', 'can only test a child process'),
    'start from another process': ('AssertionError', 'can only start a process object created by current process'),
    'daemonic children': ('AssertionError', 'daemonic processes are not allowed to have children'),
    'process not started': ('ValueError', 'process not started'),
    'daemon after start': ('AssertionError', 'process has already started'),
    'name must be a string': ('AssertionError', 'name must be a string'),
    'group must be None': ('AssertionError', 'group argument must be None'),
    'process object is closed': ('ValueError', 'process object is closed'),
    'close running': ('ValueError', 'Cannot close a process while it is still running'),
    'pickle local object (spawn start)': ('AttributeError', "Can't pickle local object"),
    'pickle local object (Pipe)': ('AttributeError', "Can't pickle local object"),
    'pickle local object (SimpleQueue)': ('AttributeError', "Can't pickle local object"),
    'cannot find context': ('ValueError', 'cannot find context for'),
    'concrete context': ('ValueError', 'cannot set start method of concrete context'),
    'context already set': ('RuntimeError', 'context has already been set'),
    'queue inheritance': ('RuntimeError', 'should only be shared between processes through inheritance'),
    'lock inheritance': ('RuntimeError', 'should only be shared between processes through inheritance'),
    'authkey pickling': ('TypeError', 'Pickling an AuthenticationString object is disallowed'),
    'pool not running': ('ValueError', 'Pool not running'),
    'pool processes': ('ValueError', 'Number of processes must be at least 1'),
    'pool initializer': ('TypeError', 'initializer must be a callable'),
    'pool maxtasksperchild': ('ValueError', 'maxtasksperchild must be a positive int or None'),
    'pool still running': ('ValueError', 'Pool is still running'),
    'pool chunksize': ('ValueError', 'Chunksize must be 1+'),
    'result not ready': ('ValueError', 'not ready'),
    'connection read-only': ('OSError', 'connection is read-only'),
    'connection write-only': ('OSError', 'connection is write-only'),
    'send_bytes offset': ('ValueError', 'offset is negative'),
    'send_bytes size': ('ValueError', 'buffer length < offset + size'),
    'handle is closed': ('OSError', 'handle is closed'),
    'released too many times': ('ValueError', 'released too many times'),
    'condition wait unlocked': ('AssertionError', 'must acquire() condition before using wait()'),
    'queue closed': ('ValueError', 'is closed'),
    'manager started twice': ('ProcessError', 'Already started server'),
    'manager after shutdown': ('ProcessError', 'Manager has shut down'),
    'shared memory size': ('ValueError', "'size' must be a positive"),
    'shared memory name': ('ValueError', "'name' can only be None if create=True"),
    'already synchronized': ('AssertionError', 'object already synchronized'),
}

MISTAKES = textwrap.dedent('''
    import json, multiprocessing as mp, pickle, time
    from multiprocessing import managers, shared_memory, sharedctypes

    def err(fn):
        try:
            fn()
        except BaseException as e:
            return [type(e).__name__, str(e)]
        return ['none', '']

    def nothing():
        pass

    def sleeper():
        time.sleep(30)

    def in_fork_child(fn):
        ctx = mp.get_context('fork')
        r, w = ctx.Pipe(duplex=False)
        p = ctx.Process(target=lambda: w.send(err(fn)))
        p.start()
        out = r.recv() if r.poll(30) else ['timeout', '']
        p.join(30)
        return out

    def daemon_child_starts(conn):
        conn.send(err(lambda: mp.get_context('fork').Process(target=nothing).start()))

    def mistakes():
        def local():
            pass
        out = {}
        fork = mp.get_context('fork')
        p = fork.Process(target=nothing); p.start(); p.join()
        out['start twice'] = err(p.start)
        out['join unstarted'] = err(fork.Process(target=nothing).join)
        out['process not started'] = err(lambda: fork.Process(target=nothing).sentinel)
        out['daemon after start'] = err(lambda: setattr(p, 'daemon', True))
        out['name must be a string'] = err(lambda: setattr(fork.Process(target=nothing), 'name', 3))
        out['group must be None'] = err(lambda: fork.Process(group=1))
        p.close()
        out['process object is closed'] = err(p.is_alive)
        s = fork.Process(target=sleeper); s.start()
        out['close running'] = err(s.close)
        out['join from another process'] = in_fork_child(s.join)
        out['test from another process'] = in_fork_child(s.is_alive)
        out['start from another process'] = in_fork_child(fork.Process(target=nothing).start)
        s.terminate(); s.join()
        r, w = fork.Pipe(duplex=False)
        d = fork.Process(target=daemon_child_starts, args=(w,), daemon=True); d.start()
        out['daemonic children'] = r.recv() if r.poll(30) else ['timeout', '']
        d.join()
        out['pickle local object (spawn start)'] = err(mp.get_context('spawn').Process(target=local).start)
        out['pickle local object (Pipe)'] = err(lambda: fork.Pipe()[0].send(local))
        out['pickle local object (SimpleQueue)'] = err(lambda: fork.SimpleQueue().put(local))
        out['cannot find context'] = err(lambda: mp.get_context('nope'))
        out['concrete context'] = err(lambda: fork.set_start_method('spawn'))
        def twice():
            mp.set_start_method('fork')
            mp.set_start_method('spawn')
        out['context already set'] = err(twice)
        out['queue inheritance'] = err(lambda: pickle.dumps(fork.Queue()))
        out['lock inheritance'] = err(lambda: pickle.dumps(fork.Lock()))
        out['authkey pickling'] = err(lambda: pickle.dumps(mp.current_process().authkey))
        pool = fork.Pool(1); pool.close()
        out['pool not running'] = err(lambda: pool.apply_async(nothing))
        pool.join()
        out['pool processes'] = err(lambda: fork.Pool(0))
        out['pool initializer'] = err(lambda: fork.Pool(1, initializer=3))
        out['pool maxtasksperchild'] = err(lambda: fork.Pool(1, maxtasksperchild=0))
        pool = fork.Pool(1)
        out['pool still running'] = err(pool.join)
        out['pool chunksize'] = err(lambda: pool.imap(abs, [1], chunksize=0))
        res = pool.apply_async(time.sleep, (0.5,))
        out['result not ready'] = err(res.successful)
        pool.terminate(); pool.join()
        a, b = fork.Pipe(duplex=False)
        out['connection read-only'] = err(lambda: a.send(1))
        out['connection write-only'] = err(b.recv)
        out['send_bytes offset'] = err(lambda: b.send_bytes(b'abc', -1))
        out['send_bytes size'] = err(lambda: b.send_bytes(b'abc', 1, 5))
        a.close()
        out['handle is closed'] = err(a.recv)
        out['released too many times'] = err(fork.BoundedSemaphore(1).release)
        out['condition wait unlocked'] = err(lambda: fork.Condition().wait(0.01))
        q = fork.Queue(); q.close()
        out['queue closed'] = err(lambda: q.put(1))
        m = managers.BaseManager(ctx=fork); m.start()
        out['manager started twice'] = err(m.start)
        m.shutdown()
        out['manager after shutdown'] = err(m.start)
        out['shared memory size'] = err(lambda: shared_memory.SharedMemory(create=True, size=0))
        out['shared memory name'] = err(lambda: shared_memory.SharedMemory())
        v = fork.Value('i', 1)
        out['already synchronized'] = err(lambda: sharedctypes.synchronized(v))
        return out

    if __name__ == '__main__':
        print(json.dumps(mistakes()))
''')

# Starting a process while a spawned child imports the parent's main module.
BOOTSTRAP = textwrap.dedent('''
    import multiprocessing as mp
    ctx = mp.get_context(METHOD)
    p = ctx.Process(target=print, args=('child ran',))
    p.start()
    p.join()
    print('exitcode', p.exitcode)
''')


def run(interpreter, path, *args):
    return subprocess.run([interpreter, str(path), *args], capture_output=True, text=True,
                          timeout=TIMEOUT, cwd=path.parent)


@pytest.fixture(scope='module')
def outcomes(tmp_path_factory, request):
    stock = request.getfixturevalue('stock_python')
    path = tmp_path_factory.mktemp('mistakes') / 'mistakes.py'
    path.write_text(MISTAKES)
    results = {}
    for name, interpreter in (('stock', stock), ('mphost', sys.executable)):
        proc = run(interpreter, path)
        assert proc.returncode == 0, (name, proc.stderr)
        results[name] = json.loads(proc.stdout)
    return results


@pytest.fixture(scope='module')
def stock_python():
    import os
    if not os.path.exists('/usr/bin/python3'):
        pytest.skip('stock python3 is not installed')
    return '/usr/bin/python3'


@pytest.mark.parametrize('case', sorted(EXPECTED))
def test_key_phrase_and_type_as_stock(outcomes, case):
    kind, phrase = EXPECTED[case]
    for name in ('stock', 'mphost'):
        got_kind, message = outcomes[name][case]
        assert got_kind == kind, (name, case, got_kind, message)
        assert phrase in message, (name, case, message)


@pytest.mark.parametrize('method', ['spawn', 'forkserver'])
def test_bootstrapping_phase(tmp_path, stock_python, method):
    path = tmp_path / 'unguarded.py'
    path.write_text('METHOD = %r\n' % method + BOOTSTRAP)
    for interpreter in (stock_python, sys.executable):
        proc = run(interpreter, path)
        # The child fails while importing the main module; the parent goes on.
        assert 'RuntimeError' in proc.stderr, (interpreter, proc.stderr)
        assert 'bootstrapping phase' in proc.stderr, (interpreter, proc.stderr)
        assert 'exitcode 1' in proc.stdout, (interpreter, proc.stdout)
