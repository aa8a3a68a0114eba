"""pebble: ProcessPool with per-task timeouts, and @concurrent.process."""

import pytest


@pytest.mark.parametrize('method', ['fork', 'spawn', 'forkserver'])
def test_process_pool_timeouts(client_program, method):
    client_program('''
        import multiprocessing
        import time
        from concurrent.futures import TimeoutError
        from pebble import ProcessPool

        def nap(seconds):
            time.sleep(seconds)
            return seconds

        if __name__ == '__main__':
            with ProcessPool(max_workers=2, context=multiprocessing.get_context(METHOD)) as pool:
                futures = [pool.schedule(nap, args=(d,), timeout=1.0) for d in (0.1, 5, 0.2, 0.3)]
                for f in futures:
                    try:
                        print('ok', f.result(timeout=20))
                    except TimeoutError as e:
                        print('TimeoutError', e.args)
                mapped = pool.map(nap, [0.05, 0.1, 0.15], timeout=5)
                print('map', list(mapped.result()))
            print('pool closed')
    '''.replace('METHOD', repr(method)))


def test_concurrent_process_decorator(client_program):
    client_program('''
        import time
        from concurrent.futures import TimeoutError
        from pebble import concurrent

        @concurrent.process(timeout=1)
        def square(x):
            return x * x

        @concurrent.process(timeout=1)
        def stuck():
            time.sleep(10)

        @concurrent.process
        def fails():
            raise ValueError('boom')

        if __name__ == '__main__':
            print(square(7).result(timeout=20))
            try:
                stuck().result(timeout=20)
            except TimeoutError as e:
                print('TimeoutError', e.args)
            try:
                fails().result(timeout=20)
            except ValueError as e:
                print('ValueError', e)
    ''')
