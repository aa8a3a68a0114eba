"""spawn: the preparation data, how a child applies it, the main module
fix-ups and the command-line helpers, compared with stock where it shows."""

import json
import os
import subprocess
import sys
import textwrap
import types

import pytest

from multiprocessing import process, spawn

TIMEOUT = 60
STOCK_PYTHON = '/usr/bin/python3'

# Printed by both interpreters: what get_preparation_data() holds for a
# script parent, with the values that must not depend on the interpreter.
PREPARATION_PROGRAM = '''
import json, os, sys
import multiprocessing as mp
from multiprocessing import spawn, util
if __name__ == '__main__':
    mp.set_start_method('spawn')
    util.log_to_stderr(5)
    data = spawn.get_preparation_data('worker-7')
    data.pop('mphost_environ', None)
    print(json.dumps({
        'keys': sorted(data),
        'name': data['name'],
        'log_to_stderr': data['log_to_stderr'],
        'log_level': data['log_level'],
        'main': data.get('init_main_from_path'),
        'argv': data['sys_argv'],
        'dir': data['dir'] == os.getcwd(),
        'orig_dir': data['orig_dir'] == os.getcwd(),
        'no_empty_path': '' not in data['sys_path'],
        'start_method': data['start_method'],
        'authkey': data['authkey'] == bytes(mp.current_process().authkey),
    }))
'''


@pytest.mark.skipif(not os.path.exists(STOCK_PYTHON), reason='stock python3 is not installed')
def test_preparation_data_matches_stock(tmp_path):
    script = tmp_path / 'prep.py'
    script.write_text(PREPARATION_PROGRAM)
    seen = []
    for exe in (STOCK_PYTHON, sys.executable):
        done = subprocess.run([exe, 'prep.py', 'a', 'b'], cwd=tmp_path, capture_output=True, text=True,
                              timeout=TIMEOUT)
        assert done.returncode == 0, done.stderr
        seen.append(json.loads(done.stdout))
    stock, mine = seen
    assert mine == stock
    assert mine['main'] == str(script) and mine['argv'] == ['prep.py', 'a', 'b']


def test_preparation_data_by_name_for_a_module_parent(tmp_path):
    (tmp_path / 'modparent.py').write_text(textwrap.dedent('''
        from multiprocessing import spawn
        data = spawn.get_preparation_data('x')
        print(data.get('init_main_from_name'), 'init_main_from_path' in data)
    '''))
    done = subprocess.run([sys.executable, '-m', 'modparent'], cwd=tmp_path, capture_output=True,
                          text=True, timeout=TIMEOUT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ['modparent', 'False']


def test_no_main_entry_for_a_command_line_parent():
    done = subprocess.run(
        [sys.executable, '-c', 'from multiprocessing import spawn; d = spawn.get_preparation_data("x");'
         'print(sorted(k for k in d if k.startswith("init_main")))'],
        capture_output=True, text=True, timeout=TIMEOUT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == '[]'


PREPARE_PROGRAM = '''
import os, sys
import multiprocessing as mp
from multiprocessing import process, spawn
target = sys.argv[1]
spawn.prepare({
    'name': 'renamed', 'authkey': b'k' * 32, 'sys_argv': ['prog', 'x'],
    'dir': target, 'orig_dir': target, 'start_method': 'forkserver',
    'sys_path': ['/nowhere'] + sys.path, 'mphost_environ': {b'ONLY': b'this'},
})
me = mp.current_process()
print(me.name, bytes(me.authkey) == b'k' * 32, sys.argv, os.getcwd() == target,
      process.ORIGINAL_DIR == target, mp.get_start_method(), '/nowhere' in sys.path,
      dict(os.environb) == {b'ONLY': b'this'})
'''


def test_prepare_applies_every_field(tmp_path):
    done = subprocess.run([sys.executable, '-c', PREPARE_PROGRAM, str(tmp_path)], capture_output=True,
                          text=True, timeout=TIMEOUT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ['renamed', 'True', "['prog',", "'x']", 'True', 'True', 'forkserver',
                                   'True', 'True']


def test_prepare_ignores_what_it_does_not_know():
    spawn.prepare({'some_future_key': object()})


@pytest.fixture
def restore_main():
    saved = sys.modules['__main__'], sys.modules.get('__mp_main__'), list(spawn.old_main_modules)
    yield
    sys.modules['__main__'] = saved[0]
    if saved[1] is None:
        sys.modules.pop('__mp_main__', None)
    else:
        sys.modules['__mp_main__'] = saved[1]
    spawn.old_main_modules[:] = saved[2]


def test_fixup_from_path_runs_the_script_as_mp_main(tmp_path, restore_main):
    script = tmp_path / 'parent_script.py'
    script.write_text('NAME_SEEN = __name__\nif __name__ == "__main__":\n    raise SystemExit("guarded")\n')
    previous = sys.modules['__main__']
    spawn.import_main_path(str(script))
    main = sys.modules['__main__']
    assert main is sys.modules['__mp_main__'] and main.__name__ == '__mp_main__'
    assert main.NAME_SEEN == '__mp_main__'
    assert spawn.old_main_modules[-1] is previous
    # The same script again: nothing is run or replaced.
    count = len(spawn.old_main_modules)
    main.__file__ = str(script)
    spawn._fixup_main_from_path(str(script))
    assert sys.modules['__main__'] is main and len(spawn.old_main_modules) == count


def test_fixup_from_path_leaves_ipython_alone(restore_main):
    previous = sys.modules['__main__']
    spawn._fixup_main_from_path('/usr/bin/ipython')
    assert sys.modules['__main__'] is previous


def test_fixup_from_name_imports_the_module_and_skips_package_mains(tmp_path, restore_main, monkeypatch):
    (tmp_path / 'named_parent.py').write_text('VALUE = 41 + 1\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    previous = sys.modules['__main__']
    spawn._fixup_main_from_name('pkg.__main__')
    spawn._fixup_main_from_name('__main__')
    assert sys.modules['__main__'] is previous
    spawn._fixup_main_from_name('named_parent')
    assert sys.modules['__main__'].VALUE == 42
    assert sys.modules['__mp_main__'] is sys.modules['__main__']


def test_check_not_importing_main():
    me = process.current_process()
    me._inheriting = True
    try:
        with pytest.raises(RuntimeError, match='bootstrapping phase'):
            spawn.get_preparation_data('x')
    finally:
        del me._inheriting


def test_command_line_helpers():
    line = spawn.get_command_line(pipe_handle=5, parent_pid=None)
    assert line[0] == spawn.get_executable()
    assert line[-3:] == ['-c', 'from multiprocessing.spawn import spawn_main; '
                               'spawn_main(pipe_handle=5, parent_pid=None)', '--multiprocessing-fork']
    assert spawn.is_forking(['x', '--multiprocessing-fork'])
    assert not spawn.is_forking(['x']) and not spawn.is_forking(['x', '-c'])
    spawn.freeze_support()  # not a child: nothing happens
    old = spawn.get_executable()
    try:
        spawn.set_executable(b'/bin/some-python')
        assert spawn.get_executable() == '/bin/some-python'
    finally:
        spawn.set_executable(old)
    assert (spawn.WINEXE, spawn.WINSERVICE) == (False, False)


def test_a_module_object_is_kept_for_each_replaced_main():
    assert isinstance(spawn.old_main_modules, list)
    assert all(isinstance(m, types.ModuleType) for m in spawn.old_main_modules)
