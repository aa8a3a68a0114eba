"""What starting the interpreter and importing multiprocessing loads, beside
stock python3: no module of the standard library that stock's import does
not load too (hashlib and libcrypto, traceback...), and the native module
only once a child is started. These are start-up and idle-child costs the
benchmarks measure; the tests keep them from coming back."""

import os
import subprocess
import sys
import textwrap

import pytest

MPHOST = sys.executable
STOCK = '/usr/bin/python3'

pytestmark = pytest.mark.skipif(not os.path.exists(STOCK), reason='stock python3 is not installed')

LOADED = textwrap.dedent('''
    import sys
    before = set(sys.modules)
    {code}
    print(' '.join(sorted(set(sys.modules) - before)))
''')


def modules_loaded_by(executable, code):
    done = subprocess.run([executable, '-c', LOADED.format(code=code)], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return set(done.stdout.split())


def ours(name):
    return name == 'multiprocessing' or name.startswith('multiprocessing.')


@pytest.mark.parametrize('code', [
    'import multiprocessing',
    'import multiprocessing.connection',
    'import multiprocessing.synchronize, multiprocessing.queues',
])
def test_importing_loads_no_module_stock_does_not(code):
    stock = modules_loaded_by(STOCK, code)
    mine = modules_loaded_by(MPHOST, code)
    extra = {name for name in mine - stock if not ours(name) and not name.startswith('_mphost')}
    assert extra == set()


def test_the_native_module_comes_with_the_first_child():
    code = textwrap.dedent('''
        import multiprocessing, sys
        print('_mphost' in sys.modules, multiprocessing.active_children())
        p = multiprocessing.get_context('fork').Process(target=sys.exit, args=(3,))
        p.start()
        p.join(30)
        print('_mphost' in sys.modules, p.exitcode, multiprocessing.active_children())
    ''')
    outputs = [subprocess.run([python, '-c', code], capture_output=True, text=True, timeout=60)
               for python in (MPHOST, STOCK)]
    assert [o.returncode for o in outputs] == [0, 0], [o.stderr for o in outputs]
    assert outputs[0].stdout == 'False []\nTrue 3 []\n'
    assert outputs[1].stdout == 'False []\nFalse 3 []\n'


def test_a_handshake_still_loads_hmac_when_it_needs_it():
    code = textwrap.dedent('''
        import sys
        from multiprocessing import connection
        a, b = connection.Pipe()
        import threading
        t = threading.Thread(target=connection.answer_challenge, args=(b, b'key'))
        t.start()
        connection.deliver_challenge(a, b'key')
        t.join(30)
        print('hmac' in sys.modules, not t.is_alive())
    ''')
    done = subprocess.run([MPHOST, '-c', code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout == 'True True\n'
