"""The multiprocessing chapter's examples, as whole programs, under every
start method: each runs under mphost and under stock python3, and both must
print the expected output and end with the same status."""

import os
import subprocess
import sys
import textwrap

import pytest

STOCK_PYTHON = '/usr/bin/python3'
TIMEOUT = 120
METHODS = ('fork', 'spawn', 'forkserver')

# Every program defines main(); the footer picks the start method first.
_FOOTER = '''

if __name__ == "__main__":
    import multiprocessing as _mp
    _mp.set_start_method(sys.argv[1])
    main()
'''

# name: (program, expected stdout)
EXAMPLES = {
    'process': ('''
        import sys
        from multiprocessing import Process

        def greet(who):
            print("hello", who, flush=True)

        def main():
            p = Process(target=greet, args=("worker-1",))
            p.start()
            p.join()
            print(p.exitcode)
        ''', 'hello worker-1\n0\n'),
    'exit_code': ('''
        import sys
        from multiprocessing import Process

        def leave():
            sys.exit(3)

        def main():
            p = Process(target=leave)
            p.start()
            p.join()
            print(p.exitcode)
        ''', '3\n'),
    'queue': ('''
        import sys
        from multiprocessing import Process, Queue

        def report(q):
            q.put("done")

        def main():
            q = Queue()
            p = Process(target=report, args=(q,))
            p.start()
            print(q.get())
            p.join()
        ''', 'done\n'),
    'pipe': ('''
        import sys
        from multiprocessing import Process, Pipe

        def say(conn):
            conn.send("hello")
            conn.close()

        def main():
            mine, theirs = Pipe()
            p = Process(target=say, args=(theirs,))
            p.start()
            print(mine.recv())
            p.join()
        ''', 'hello\n'),
    'pool': ('''
        import sys
        from multiprocessing import Pool

        def square(x):
            return x * x

        def main():
            with Pool(processes=4) as pool:
                print(pool.map(square, range(10)))
            with Pool(4) as pool:
                big = pool.map(square, range(1000), chunksize=50)
            print(len(big), sum(big))
        ''', '[0, 1, 4, 9, 16, 25, 36, 49, 64, 81]\n1000 332833500\n'),
    'pool_errors_and_initializer': ('''
        import sys
        from multiprocessing import Pool

        _state = None

        def init_worker(value):
            global _state
            _state = value

        def work(x):
            return _state + x

        def fail(x):
            raise ValueError(x)

        def main():
            with Pool(2) as pool:
                try:
                    pool.map(fail, [1, 2, 3])
                except ValueError as exc:
                    print("caught:", type(exc).__name__, exc.args[0] in (1, 2, 3))
                try:
                    pool.apply_async(fail, (1,)).get()
                except ValueError as exc:
                    print("caught:", exc)
            with Pool(initializer=init_worker, initargs=(10,)) as pool:
                print(pool.map(work, [1, 2, 3]))
        ''', 'caught: ValueError True\ncaught: 1\n[11, 12, 13]\n'),
    'value_and_array': ('''
        import sys
        from multiprocessing import Array, Process, Value

        def bump(counter):
            with counter.get_lock():
                counter.value += 1

        def fill(a):
            for i in range(len(a)):
                a[i] = i * i / 2

        def main():
            counter = Value("i", 0)
            procs = [Process(target=bump, args=(counter,)) for _ in range(4)]
            for p in procs:
                p.start()
            for p in procs:
                p.join()
            print(counter.value)
            a = Array("d", 5)
            p = Process(target=fill, args=(a,))
            p.start()
            p.join()
            print(a[:])
        ''', '4\n[0.0, 0.5, 2.0, 4.5, 8.0]\n'),
    'shared_memory': ('''
        import sys
        from multiprocessing import Process, shared_memory

        def shout(name):
            shm = shared_memory.SharedMemory(name=name)
            shm.buf[:5] = bytes(shm.buf[:5]).upper()
            shm.close()

        def main():
            shm = shared_memory.SharedMemory(create=True, size=10)
            try:
                shm.buf[:5] = b"hello"
                print(bytes(shm.buf[:5]))
                p = Process(target=shout, args=(shm.name,))
                p.start()
                p.join()
                print(bytes(shm.buf[:5]))
            finally:
                shm.close()
                shm.unlink()
        ''', "b'hello'\nb'HELLO'\n"),
    'manager': ('''
        import sys
        from multiprocessing import Manager, Process

        def add(shared_list):
            shared_list.append("x")

        def main():
            with Manager() as manager:
                xs = manager.list()
                p = Process(target=add, args=(xs,))
                p.start()
                p.join()
                print(list(xs))
        ''', "['x']\n"),
    'synchronization': ('''
        import sys, time
        from multiprocessing import (Barrier, BoundedSemaphore, Condition, Event, Lock,
                                     Process, Queue, Value)

        def critical(lock, inside, worst):
            with lock:
                inside.value += 1
                worst.value = max(worst.value, inside.value)
                time.sleep(0.01)
                inside.value -= 1

        def loop_until(stop, q):
            q.put("started")
            rounds = 0
            while not stop.is_set():
                rounds += 1
                time.sleep(0.001)
            q.put(rounds > 0)

        def meet(barrier, q):
            q.put(barrier.wait(10) in range(3))

        def wait_for_ready(cond, ready, q):
            with cond:
                q.put(cond.wait_for(lambda: ready.value == 1, 10))

        def main():
            lock, inside, worst = Lock(), Value("i", 0, lock=False), Value("i", 0, lock=False)
            procs = [Process(target=critical, args=(lock, inside, worst)) for _ in range(4)]
            for p in procs:
                p.start()
            for p in procs:
                p.join()
            print("most inside at once:", worst.value)

            q, stop = Queue(), Event()
            p = Process(target=loop_until, args=(stop, q))
            p.start()
            q.get(timeout=30)
            time.sleep(0.05)
            stop.set()
            print("worker looped:", q.get(timeout=30))
            p.join()

            barrier = Barrier(3)
            procs = [Process(target=meet, args=(barrier, q)) for _ in range(2)]
            for p in procs:
                p.start()
            mine = barrier.wait(10)
            print("barrier:", sorted([q.get(timeout=30), q.get(timeout=30)]), mine in range(3))
            for p in procs:
                p.join()

            cond, ready = Condition(), Value("i", 0)
            p = Process(target=wait_for_ready, args=(cond, ready, q))
            p.start()
            time.sleep(0.05)
            with cond:
                ready.value = 1
                cond.notify_all()
            print("condition:", q.get(timeout=30))
            p.join()

            sem = BoundedSemaphore(2)
            sem.acquire()
            sem.release()
            try:
                sem.release()
            except ValueError:
                print("over-release refused")
        ''', 'most inside at once: 1\nworker looped: True\nbarrier: [True, True] True\n'
             'condition: True\nover-release refused\n'),
}


def _write(tmp_path, name):
    program, _ = EXAMPLES[name]
    path = tmp_path / f'example_{name}.py'  # never a stdlib module's name
    path.write_text(textwrap.dedent(program) + _FOOTER)
    return path


def _run(interpreter, path, method):
    return subprocess.run([interpreter, str(path), method], cwd=path.parent, capture_output=True,
                          text=True, timeout=TIMEOUT)


@pytest.mark.parametrize('method', METHODS)
@pytest.mark.parametrize('name', sorted(EXAMPLES))
def test_chapter_example(tmp_path, name, method):
    path = _write(tmp_path, name)
    expected = EXAMPLES[name][1]
    ours = _run(sys.executable, path, method)
    assert (ours.stdout, ours.returncode) == (expected, 0), ours.stderr
    if os.path.exists(STOCK_PYTHON):
        stock = _run(STOCK_PYTHON, path, method)
        assert (stock.stdout, stock.returncode) == (ours.stdout, ours.returncode), stock.stderr
