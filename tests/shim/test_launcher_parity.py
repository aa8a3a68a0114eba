"""The launcher is python3: the same invocation under mphost and under
/usr/bin/python3 gives the same output and exit status."""

import os
import subprocess
import sys
import textwrap

import pytest

MPHOST = sys.executable
STOCK = '/usr/bin/python3'

pytestmark = pytest.mark.skipif(not os.path.exists(STOCK), reason='stock python3 is not installed')


def run(executable, args, cwd, stdin=None, env=None):
    proc = subprocess.run([executable] + args, cwd=cwd, input=stdin, capture_output=True,
                          timeout=60, env=env)
    return proc.returncode, proc.stdout, proc.stderr


def normalized(output, executable):
    # Only the interpreter's own path may differ between the two runs.
    return output.replace(os.fsencode(executable), b'<python>')


@pytest.fixture
def workdir(tmp_path):
    (tmp_path / 'script.py').write_text(textwrap.dedent('''
        import sys, os
        print('argv', sys.argv)
        print('path0', sys.path[0] == os.path.dirname(os.path.abspath(__file__)))
        print('name', __name__, __file__)
        print('flags', tuple(sys.flags))
        print('debug', __debug__)
    '''))
    pkg = tmp_path / 'pkg'
    pkg.mkdir()
    (pkg / '__init__.py').write_text('')
    (pkg / 'mod.py').write_text('import sys\nprint("mod", __name__, sys.argv[1:], sys.argv[0].endswith("mod.py"))\n')
    (pkg / '__main__.py').write_text('import sys\nprint("pkgmain", __name__, sys.argv[1:])\n')
    (tmp_path / 'exit3.py').write_text('import sys\nsys.exit(3)\n')
    (tmp_path / 'exitmsg.py').write_text('import sys\nsys.exit("fatal: bad things")\n')
    (tmp_path / 'raises.py').write_text('def f():\n    raise ValueError("boom")\nf()\n')
    (tmp_path / 'interrupt.py').write_text('raise KeyboardInterrupt\n')
    (tmp_path / 'sigterm.py').write_text('import os, signal\nos.kill(os.getpid(), signal.SIGTERM)\n')
    (tmp_path / 'noflush.py').write_text('import sys\nsys.stdout.write("partial line")\nsys.stderr.write("err tail")\n')
    (tmp_path / 'docs.py').write_text('def f():\n    "doc"\nprint(f.__doc__, __debug__)\nassert False, "asserted"\n')
    (tmp_path / 'warn.py').write_text('import warnings\nwarnings.warn("careful")\nprint("after")\n')
    return tmp_path


CASES = {
    'script with args': ['script.py', 'a', '-b', '--c'],
    'command': ['-c', 'import sys; print(sys.argv); print(__name__)', 'x', 'y'],
    'module': ['-m', 'pkg.mod', 'one', 'two'],
    'package main': ['-m', 'pkg', 'three'],
    'exit code': ['exit3.py'],
    'exit message': ['exitmsg.py'],
    'uncaught exception': ['raises.py'],
    'keyboard interrupt': ['interrupt.py'],
    'death by signal': ['sigterm.py'],
    'flush at exit': ['noflush.py'],
    'unbuffered': ['-u', 'script.py'],
    'optimize': ['-O', 'docs.py'],
    'optimize twice': ['-OO', 'docs.py'],
    'assert without -O': ['docs.py'],
    'no bytecode, no env, no user site': ['-B', '-E', '-s', 'script.py'],
    'isolated': ['-I', 'script.py'],
    'no site': ['-S', '-c', 'import sys; print("site" in sys.modules, sys.flags.no_site)'],
    'quiet': ['-q', 'script.py'],
    'warnings option': ['-W', 'error', 'warn.py'],
    'warnings default': ['warn.py'],
    'x option': ['-X', 'utf8', '-c', 'import sys; print(sys.flags.utf8_mode, sys._xoptions)'],
    'version short': ['-V'],
    'version long': ['--version'],
    'missing script': ['does_not_exist.py'],
    'unknown option': ['-Z'],
    'missing module': ['-m', 'no_such_module_anywhere'],
    'stdin script': ['-', 'arg'],
}


@pytest.mark.parametrize('name', sorted(CASES))
def test_same_as_python3(workdir, name):
    args = CASES[name]
    stdin = b'import sys\nprint("from stdin", sys.argv)\n' if name == 'stdin script' else None
    mine = run(MPHOST, args, workdir, stdin)
    stock = run(STOCK, args, workdir, stdin)
    assert mine[0] == stock[0], (mine, stock)
    assert normalized(mine[1], MPHOST) == normalized(stock[1], STOCK)
    assert normalized(mine[2], MPHOST) == normalized(stock[2], STOCK)


def test_help_matches_apart_from_program_name(workdir):
    mine = run(MPHOST, ['-h'], workdir)
    stock = run(STOCK, ['-h'], workdir)
    assert mine[0] == stock[0] == 0
    assert normalized(mine[1], MPHOST) == normalized(stock[1], STOCK)


def test_verbose_prints_imports_and_succeeds(workdir):
    code, out, err = run(MPHOST, ['-v', '-c', 'print("ok")'], workdir)
    assert code == 0 and out == b'ok\n'
    assert b'import ' in err


def test_interactive_prompt_reads_stdin(workdir):
    # With no arguments and stdin not a terminal, python3 runs stdin as a script.
    mine = run(MPHOST, [], workdir, b'print(6 * 7)\n')
    stock = run(STOCK, [], workdir, b'print(6 * 7)\n')
    assert mine == (0, b'42\n', b'') == stock


def test_interactive_inspect_flag(workdir):
    mine = run(MPHOST, ['-i', '-c', 'x = 5'], workdir, b'print(x * 2)\n')
    stock = run(STOCK, ['-i', '-c', 'x = 5'], workdir, b'print(x * 2)\n')
    assert mine[0] == stock[0] == 0
    assert mine[1] == stock[1]


def test_sys_executable_is_mphost(workdir):
    code, out, _ = run(MPHOST, ['-c', 'import sys; print(sys.executable)'], workdir)
    assert code == 0
    assert out.decode().strip() == os.path.realpath(MPHOST)


def test_site_packages_match_python3(workdir):
    probe = ['-c', 'import sys; print([p for p in sys.path if "packages" in p])']
    assert run(MPHOST, probe, workdir)[1] == run(STOCK, probe, workdir)[1]
