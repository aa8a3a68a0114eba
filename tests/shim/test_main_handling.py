"""The main-module rules of spawn and forkserver (script, -m and -c
parents; the main guard), observed through whole mphost programs."""

import os
import subprocess
import sys
import textwrap

import pytest

TIMEOUT = 60
METHODS = ['fork', 'spawn', 'forkserver']


def run(args, cwd, **kwargs):
    return subprocess.run([sys.executable] + args, cwd=cwd, capture_output=True, text=True,
                          timeout=TIMEOUT, **kwargs)


@pytest.mark.parametrize('method', METHODS)
def test_script_parent(tmp_path, method):
    (tmp_path / 'prog.py').write_text(textwrap.dedent(f'''
        import multiprocessing as mp
        print('imported as', __name__)
        def child(x):
            print('child got', x, __name__)
        if __name__ == '__main__':
            mp.set_start_method({method!r})
            p = mp.Process(target=child, args=(5,))
            p.start(); p.join()
            print('exit', p.exitcode)
    '''))
    proc = run(['prog.py'], tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[-1] == 'exit 0'
    # Under spawn the child imports the script again, as __mp_main__.
    expected_imports = ['imported as __main__'] + \
        (['imported as __mp_main__'] if method == 'spawn' else [])
    assert [l for l in lines if l.startswith('imported')] == expected_imports \
        or method == 'forkserver'
    child_name = '__main__' if method == 'fork' else '__mp_main__'
    assert f'child got 5 {child_name}' in lines


@pytest.mark.parametrize('method', METHODS)
def test_module_parent(tmp_path, method):
    pkg = tmp_path / 'app'
    pkg.mkdir()
    (pkg / '__init__.py').write_text('')
    (pkg / 'run.py').write_text(textwrap.dedent(f'''
        import multiprocessing as mp
        def child():
            print('child in', __name__)
        if __name__ == '__main__':
            mp.set_start_method({method!r})
            p = mp.Process(target=child)
            p.start(); p.join()
            print('exit', p.exitcode)
    '''))
    proc = run(['-m', 'app.run'], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1] == 'exit 0'


@pytest.mark.parametrize('method', METHODS)
def test_command_parent_with_importable_target(tmp_path, method):
    (tmp_path / 'helpers.py').write_text('def child(x):\n    print("child", x)\n')
    code = (f'import multiprocessing as mp, helpers; mp.set_start_method({method!r}); '
            'p = mp.Process(target=helpers.child, args=(9,)); p.start(); p.join(); print("exit", p.exitcode)')
    proc = run(['-c', code], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ['child 9', 'exit 0']


@pytest.mark.parametrize('method', ['spawn', 'forkserver'])
def test_missing_main_guard_is_reported(tmp_path, method):
    (tmp_path / 'unguarded.py').write_text(textwrap.dedent(f'''
        import multiprocessing as mp
        def child():
            pass
        mp.set_start_method({method!r}, force=True)
        p = mp.Process(target=child)
        p.start(); p.join()
        print('exit', p.exitcode)
    '''))
    proc = run(['unguarded.py'], tmp_path)
    assert 'RuntimeError' in proc.stderr
    assert "__name__ == '__main__'" in proc.stderr
    assert 'exit 1' in proc.stdout


def test_stock_multiprocessing_is_never_loaded(tmp_path):
    code = textwrap.dedent('''
        import sys, multiprocessing, concurrent.futures.process
        import multiprocessing.pool, multiprocessing.connection
        stock = [m.__file__ for name, m in sys.modules.items()
                 if name.startswith('multiprocessing') and getattr(m, '__file__', None)
                 and 'share/mphost/python' not in m.__file__]
        print(stock)
        print(concurrent.futures.process.mp is multiprocessing)
    ''')
    proc = run(['-c', code], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ['[]', 'True']


def test_isolated_mode_still_gets_mphost_multiprocessing(tmp_path):
    proc = run(['-I', '-c', 'import multiprocessing; print(multiprocessing.__file__)'], tmp_path)
    assert proc.returncode == 0
    assert 'share/mphost/python' in proc.stdout
