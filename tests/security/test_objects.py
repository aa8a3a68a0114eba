"""What a running program's tree exposes: every /dev/shm name is 0600,
every directory 0700, every socket in a 0700 directory, no abstract unix
socket, every name in a shared namespace carries >= 96 random bits, and a
process of another user can open or connect to none of it.

The program (_program.py) makes one of everything under the three start
methods; the objects are found from the outside, through /proc: the maps and
descriptors of every process of the program's session."""

import errno
import json
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import own_root_environment

HERE = Path(__file__).resolve().parent
TIMEOUT = 120


def _session_pids(sid):
    pids = []
    for entry in os.listdir('/proc'):
        if not entry.isdigit():
            continue
        try:
            text = Path(f'/proc/{entry}/stat').read_text()
        except OSError:
            continue
        fields = text[text.rindex(')') + 2:].split()
        if int(fields[3]) == sid:
            pids.append(int(entry))
    return pids


def _unix_socket_paths():
    paths = {}
    with open('/proc/net/unix') as f:
        next(f)
        for line in f:
            fields = line.split()
            if len(fields) >= 8:
                paths[int(fields[6])] = fields[7]
    return paths


def _inventory(pids):
    shm, inodes = set(), set()
    for pid in pids:
        try:
            for line in Path(f'/proc/{pid}/maps').read_text().splitlines():
                path = line.split(None, 5)[5] if len(line.split(None, 5)) == 6 else ''
                if path.startswith('/dev/shm/') and not path.endswith('(deleted)'):
                    shm.add(path)
            for fd in os.listdir(f'/proc/{pid}/fd'):
                try:
                    target = os.readlink(f'/proc/{pid}/fd/{fd}')
                except OSError:
                    continue
                if target.startswith('/dev/shm/') and not target.endswith('(deleted)'):
                    shm.add(target)
                elif target.startswith('socket:['):
                    inodes.add(int(target[8:-1]))
        except OSError:
            continue  # ended meanwhile
    named = _unix_socket_paths()
    sockets = sorted({named[i] for i in inodes if i in named})
    return sorted(shm), sockets


@pytest.fixture(scope='module')
def tree():
    """(program info, pids, /dev/shm paths, socket paths) of a running program."""
    proc = subprocess.Popen([sys.executable, str(HERE / '_program.py')], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, env=own_root_environment(), cwd=HERE)
    try:
        import selectors
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ)
            line = ''
            for _ in range(TIMEOUT * 4):
                if sel.select(0.25):
                    line = proc.stdout.readline()
                    break
                if proc.poll() is not None:
                    break
        if not line:
            os.killpg(proc.pid, 9)
            pytest.fail('the program failed: ' + proc.stderr.read()[-3000:])
        info = json.loads(line)
        pids = _session_pids(proc.pid)
        shm, sockets = _inventory(pids)
        yield info, pids, shm, sockets
    finally:
        try:
            proc.stdin.write('\n')
            proc.stdin.flush()
            proc.wait(TIMEOUT)
        except (OSError, subprocess.TimeoutExpired):
            os.killpg(proc.pid, 9)
            proc.wait(TIMEOUT)
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            stream.close()


def test_the_tree_is_what_the_program_made(tree):
    info, pids, shm, sockets = tree
    assert info['root'] in pids and all(c in pids for c in info['children'])
    assert len(pids) >= 8  # root, 3 children, zygote, tracker, manager, pool workers
    assert '/dev/shm/' + info['shared_memory'].lstrip('/') in shm
    assert any(os.path.basename(p).startswith('mphost-reg-') for p in shm)
    for address in (info['listener'], info['manager'], info['forkserver']):
        assert address in sockets
    assert len(shm) >= 20
    print(f'\n{len(pids)} processes, {len(shm)} /dev/shm names, {len(sockets)} named sockets')


def test_shared_memory_names_are_owner_only(tree):
    _, _, shm, _ = tree
    wrong = {}
    for path in shm:
        st = os.stat(path)
        if stat.S_IMODE(st.st_mode) != 0o600 or st.st_uid != os.getuid():
            wrong[path] = oct(stat.S_IMODE(st.st_mode))
    assert wrong == {}


def _directories(info, sockets):
    return sorted({os.path.dirname(p) for p in sockets if p and not p.startswith('@')} | {info['forkserver_dir']})


def test_sockets_live_in_owner_only_directories(tree):
    info, _, _, sockets = tree
    wrong = {}
    for directory in _directories(info, sockets):
        st = os.lstat(directory)
        if not stat.S_ISDIR(st.st_mode) or stat.S_IMODE(st.st_mode) != 0o700 or st.st_uid != os.getuid():
            wrong[directory] = oct(st.st_mode)
    assert wrong == {}
    assert all(os.path.dirname(p) != '/tmp' for p in sockets), sockets


def test_no_abstract_unix_sockets(tree):
    _, _, _, sockets = tree
    assert [p for p in sockets if p.startswith('@')] == []


def _random_hex_digits(name):
    return max((len(run) for run in re.findall(r'[0-9a-f]+', name)), default=0)


def test_names_carry_96_random_bits(tree):
    info, _, shm, sockets = tree
    names = [os.path.basename(p) for p in shm] + [os.path.basename(d) for d in _directories(info, sockets)]
    weak = {n: _random_hex_digits(n) for n in names if _random_hex_digits(n) < 24}
    assert weak == {}
    kinds = {re.sub(r'[0-9a-f]{24,}.*', '', n) for n in names}
    print('\nkinds:', {k: min(_random_hex_digits(n) for n in names if n.startswith(k)) * 4 for k in sorted(kinds)})
    assert len(kinds) >= 4, kinds  # registry, segments, semaphores, directories...


PROBE = r'''
import errno, json, os, socket, sys
todo = json.load(sys.stdin)
opened, refused = [], {}
def attempt(kind, path, fn):
    try:
        fn(path)
        opened.append([kind, path])
    except OSError as e:
        refused[errno.errorcode.get(e.errno, str(e.errno))] = refused.get(errno.errorcode.get(e.errno, str(e.errno)), 0) + 1
def connect(path):
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(5)
    try:
        s.connect(path)
    finally:
        s.close()
def open_fd(flags):
    return lambda path: os.close(os.open(path, flags))
for path in todo['shm']:
    attempt('read', path, open_fd(os.O_RDONLY))
    attempt('write', path, open_fd(os.O_RDWR))
for path in todo['sockets']:
    attempt('connect', path, connect)
for path in todo['dirs']:
    attempt('list', path, os.listdir)
    attempt('create', os.path.join(path, 'intruder'), open_fd(os.O_CREAT | os.O_WRONLY))
attempt('control', '/etc/hostname', open_fd(os.O_RDONLY))
print(json.dumps({'uid': os.getuid(), 'opened': opened, 'refused': refused}))
'''


def _as_nobody():
    if shutil.which('setpriv'):
        return ['setpriv', '--reuid=nobody', '--regid=nogroup', '--clear-groups']
    if shutil.which('runuser'):
        return ['runuser', '-u', 'nobody', '--']
    return None


def test_another_user_opens_and_connects_to_nothing(tree):
    if os.geteuid() != 0:
        pytest.skip('needs root to act as another user (setpriv/runuser to nobody)')
    prefix = _as_nobody()
    if prefix is None:
        pytest.skip('neither setpriv nor runuser is installed')
    info, _, shm, sockets = tree
    todo = {'shm': shm, 'sockets': [p for p in sockets if p], 'dirs': _directories(info, sockets)}
    done = subprocess.run(prefix + ['/usr/bin/python3', '-I', '-c', PROBE], input=json.dumps(todo),
                          capture_output=True, text=True, timeout=TIMEOUT, cwd='/')
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result['uid'] != 0
    # The control (a world-readable file) shows the probe itself works.
    assert result['opened'] == [['control', '/etc/hostname']]
    # Every refusal is a permission refusal, not a path that was not there.
    assert set(result['refused']) <= {'EACCES', 'EPERM'}, result['refused']
    assert sum(result['refused'].values()) == 2 * len(shm) + len(todo['sockets']) + 2 * len(todo['dirs'])
