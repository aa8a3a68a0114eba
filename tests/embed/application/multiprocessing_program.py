"""Run by application_test.cpp inside an embedding executable: usual
multiprocessing work under the start method given as argv[1]."""
import multiprocessing
import os
import sys

import embed_helper


def double(n):
    # Defined in the main script: a spawned child finds it in __mp_main__.
    return 2 * n


def report(queue):
    queue.put((embed_helper.where_am_i(), sys.path[:]))


def main():
    method = sys.argv[1]
    application = os.path.realpath('/proc/self/exe')
    assert multiprocessing.get_start_method() == method, multiprocessing.get_start_method()

    with multiprocessing.Pool(2) as pool:
        assert pool.map(embed_helper.cube, range(20)) == [n ** 3 for n in range(20)]
        assert pool.map(double, range(20), chunksize=3) == [2 * n for n in range(20)]
        workers = set(pool.map(embed_helper.where_am_i, range(8)))

    queue = multiprocessing.Queue()
    child = multiprocessing.Process(target=report, args=(queue,))
    child.start()
    (pid, exe, child_executable), child_path = queue.get(timeout=60)
    child.join(60)
    assert child.exitcode == 0, child.exitcode
    assert pid == child.pid

    with multiprocessing.Manager() as manager:
        shared = manager.dict()
        worker = multiprocessing.Process(target=shared.__setitem__, args=('answer', 42))
        worker.start()
        worker.join(60)
        assert dict(shared) == {'answer': 42}

    # spawn and forkserver children are the mphost executable; fork ones are
    # copies of this application.
    expected = application if method == 'fork' else os.path.realpath(sys.executable)
    assert exe == expected, (exe, expected)
    assert {w[1] for w in workers} == {expected}, workers
    assert child_executable == sys.executable
    helper_dir = os.path.dirname(embed_helper.__file__)
    assert helper_dir in child_path, (helper_dir, child_path)
    print(f'OK {method}: {len(workers)} pool workers and a process, children run {os.path.basename(exe)}')


if __name__ == '__main__':
    main()
