"""forkserver's client side and the popen faces: the zygote record, its
restart after a death, the stdlib's helpers, and one wait path for all."""

import os
import signal
import threading
import time

import pytest

import multiprocessing
from multiprocessing import forkserver, popen_fork

TIMEOUT = 60


def sleep_then_exit(seconds, code):
    time.sleep(seconds)
    os._exit(code)


def test_zygote_attributes_and_restart_after_sigkill():
    ctx = multiprocessing.get_context('forkserver')
    forkserver.ensure_running()
    fs = forkserver._forkserver
    pid = fs._forkserver_pid
    assert pid and fs._forkserver_address and fs._forkserver_alive_fd is not None
    forkserver.ensure_running()
    assert fs._forkserver_pid == pid  # still the same zygote
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + TIMEOUT
    while os.path.exists('/proc/%d/stat' % pid) and time.monotonic() < deadline:
        with open('/proc/%d/stat' % pid) as f:
            if f.read().split(')')[-1].split()[0] == 'Z':
                break
        time.sleep(0.01)
    p = ctx.Process(target=sleep_then_exit, args=(0, 3))
    p.start()
    p.join(TIMEOUT)
    assert p.exitcode == 3
    assert fs._forkserver_pid not in (None, pid)


def test_too_many_fds_are_refused():
    with pytest.raises(ValueError, match='too many fds'):
        forkserver.connect_to_new_process(list(range(forkserver.MAXFDS_TO_SEND)))


def test_signed_helpers_round_trip():
    r, w = os.pipe()
    try:
        for n in (0, -1, 2 ** 40, -(2 ** 63)):
            forkserver.write_signed(w, n)
            assert forkserver.read_signed(r) == n
        os.write(w, b'\x01\x02')
        os.close(w)
        w = None
        with pytest.raises(EOFError):
            forkserver.read_signed(r)
    finally:
        os.close(r)
        if w is not None:
            os.close(w)
    assert forkserver.SIGNED_STRUCT.size == 8


def test_preload_must_be_strings():
    with pytest.raises(TypeError, match='module_names must be a list of strings'):
        forkserver.set_forkserver_preload(['os', 3])


@pytest.mark.parametrize('method', ['fork', 'spawn', 'forkserver'])
def test_wait_poll_and_concurrent_joins_see_one_code(method):
    ctx = multiprocessing.get_context(method)
    p = ctx.Process(target=sleep_then_exit, args=(0.5, 7))
    p.start()
    popen = p._popen
    assert popen.poll() is None and popen.wait(0) is None and popen.wait(0.01) is None
    seen = []
    threads = [threading.Thread(target=lambda: seen.append(popen.wait())) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(TIMEOUT)
    assert seen == [7] * 4 and popen.poll() == 7 and popen.returncode == 7
    p.join(TIMEOUT)
    assert p.exitcode == 7


@pytest.mark.parametrize('method', ['fork', 'spawn', 'forkserver'])
def test_terminate_and_kill_after_the_end_are_harmless(method):
    ctx = multiprocessing.get_context(method)
    p = ctx.Process(target=sleep_then_exit, args=(TIMEOUT, 0))
    p.start()
    p.terminate()
    p.join(TIMEOUT)
    assert p.exitcode == -signal.SIGTERM
    p.terminate()
    p.kill()  # collected: nothing is signalled any more
    assert p.exitcode == -signal.SIGTERM


def test_fork_children_are_signalled_through_their_pidfd(monkeypatch):
    # A pid can be reused once its child is reaped elsewhere; the pidfd
    # names only this child, so os.kill is never used for it.
    ctx = multiprocessing.get_context('fork')
    p = ctx.Process(target=sleep_then_exit, args=(TIMEOUT, 0))
    p.start()
    calls = []
    monkeypatch.setattr(os, 'kill', lambda *a: calls.append(a))
    p.kill()
    p.join(TIMEOUT)
    assert p.exitcode == -signal.SIGKILL and calls == []


def test_fd_transport_of_each_start_method():
    assert popen_fork.Popen._fd_transport is None
    from multiprocessing import popen_forkserver, popen_spawn_posix
    assert popen_spawn_posix.Popen._fd_transport == 'number'
    assert popen_forkserver.Popen._fd_transport == 'index'
    assert (popen_fork.Popen.method, popen_spawn_posix.Popen.method,
            popen_forkserver.Popen.method) == ('fork', 'spawn', 'forkserver')
