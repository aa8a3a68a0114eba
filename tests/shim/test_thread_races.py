"""Threads racing the package's own machinery: first use of a factory from
many threads at once, and forks while other threads watch Pipe descriptors.
Each runs in a fresh process with a timeout, so a deadlock fails."""

import subprocess
import sys

TIMEOUT = 60

FIRST_USE = r'''
import threading, multiprocessing as mp
errors = []
gate = threading.Barrier(8)
def use():
    gate.wait()
    try:
        r, w = mp.Pipe(duplex=False)
        w.send(1); assert r.recv() == 1
        q = mp.Queue(); q.put(1); assert q.get(timeout=10) == 1
    except BaseException as exc:
        errors.append(repr(exc))
threads = [threading.Thread(target=use) for _ in range(8)]
for t in threads: t.start()
for t in threads: t.join()
print(errors)
'''

FORK_WHILE_WATCHING = r'''
import multiprocessing as mp, os, threading, time
stop = False
def churn():
    while not stop:
        r, w = mp.Pipe(duplex=False)
        w.send(1); r.fileno(); r.recv(); r.close(); w.close()
threads = [threading.Thread(target=churn) for _ in range(2)]
for t in threads: t.start()
end = time.monotonic() + 3
while time.monotonic() < end:
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
stop = True
for t in threads: t.join()
print('done')
'''


def run(code):
    done = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=TIMEOUT)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_first_use_of_factories_from_many_threads():
    assert run(FIRST_USE) == '[]'


def test_forks_while_threads_arm_pipe_descriptors():
    assert run(FORK_WHILE_WATCHING) == 'done'
