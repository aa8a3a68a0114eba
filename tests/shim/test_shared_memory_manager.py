"""SharedMemoryManager: segments made by clients, unlinked by the manager's
server when it shuts down, under the three start methods."""

import os
import signal

import pytest

import multiprocessing
from multiprocessing import managers
from multiprocessing import shared_memory
from multiprocessing.managers import SharedMemoryManager

from _helpers_shared import run_program, shm_exists

METHODS = ['fork', 'spawn', 'forkserver']


def test_names_and_identity():
    assert managers.SharedMemoryManager is shared_memory.SharedMemoryManager
    assert managers.SharedMemoryServer is shared_memory.SharedMemoryServer
    assert issubclass(SharedMemoryManager, managers.BaseManager)
    assert issubclass(managers.SharedMemoryServer, managers.Server)
    assert repr(SharedMemoryManager) == "<class 'multiprocessing.managers.SharedMemoryManager'>"
    assert 'SharedMemoryManager' in managers.__all__
    assert shared_memory.__all__ == ['SharedMemory', 'ShareableList']
    with pytest.raises(AttributeError):
        shared_memory.NoSuchThing


@pytest.mark.parametrize('method', METHODS)
def test_basics(method):
    ctx = multiprocessing.get_context(method)
    smm = SharedMemoryManager(ctx=ctx)
    with pytest.raises(ValueError):
        smm.SharedMemory(size=9)  # not started
    smm.start()
    try:
        lol = [smm.ShareableList(range(i)) for i in range(5, 10)]
        lom = [smm.SharedMemory(size=j) for j in range(32, 128, 16)]
        twin = shared_memory.ShareableList(name=lol[0].shm.name)
        assert len(twin) == 5 and list(twin) == list(range(5))
        twin.shm.close()
        names = [sl.shm.name for sl in lol] + [s.name for s in lom]
        # One request per connection, as with the stdlib's server.
        with smm._Client(smm.address, authkey=smm._authkey) as conn:
            assert sorted(managers.dispatch(conn, None, 'list_segments')) == sorted(names)
        with smm._Client(smm.address, authkey=smm._authkey) as conn:
            managers.dispatch(conn, None, 'release_segment', (lom[0].name,))
        assert not shm_exists(lom[0].name)
        assert all(shm_exists(n) for n in names[1:] if n != lom[0].name)
        with pytest.raises(multiprocessing.ProcessError, match='Already started SharedMemoryServer'):
            smm.get_server()
    finally:
        smm.shutdown()
    assert not [n for n in names if shm_exists(n)]
    with pytest.raises(FileNotFoundError):
        shared_memory.SharedMemory(name=names[-1])
    with pytest.raises(multiprocessing.ProcessError, match='SharedMemoryManager has shut down'):
        smm.get_server()
    for x in lol:
        x.shm.close()
    for x in lom:
        x.close()


@pytest.mark.parametrize('method', METHODS)
def test_context_manager(method):
    with SharedMemoryManager(ctx=multiprocessing.get_context(method)) as smm:
        sl = smm.ShareableList('howdy')
        shm = smm.SharedMemory(size=128)
        held = [sl.shm.name, shm.name]
        assert list(sl) == list('howdy') and shm.size == 128
    assert not [n for n in held if shm_exists(n)]
    with pytest.raises(FileNotFoundError):
        shared_memory.ShareableList(name=held[0])
    sl.shm.close()
    shm.close()


@pytest.mark.parametrize('method', METHODS)
def test_server_ignores_sigint(method):
    smm = SharedMemoryManager(ctx=multiprocessing.get_context(method))
    smm.start()
    try:
        sl = smm.ShareableList(range(10))
        os.kill(smm._process.pid, signal.SIGINT)
        sl2 = smm.ShareableList(range(10))
        assert list(sl2) == list(range(10)) and smm._process.is_alive()
        sl.shm.close()
        sl2.shm.close()
    finally:
        smm.shutdown()


@pytest.mark.parametrize('method', METHODS)
def test_program_reuses_the_tracker(method):
    # The server shares the program's tracker: what it unlinks is not
    # reported as leaked at the end.
    proc = run_program('''
        import sys, multiprocessing
        from multiprocessing.managers import SharedMemoryManager
        if __name__ == '__main__':
            smm = SharedMemoryManager(ctx=multiprocessing.get_context(sys.argv[1]))
            smm.start()
            sl = smm.ShareableList(range(10))
            seg = smm.SharedMemory(100)
            print(sl.shm.name, seg.name)
            smm.shutdown()
    ''', args=[method])
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ''
    assert not [n for n in proc.stdout.split() if shm_exists(n)]
