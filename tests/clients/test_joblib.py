"""joblib: lambdas and closures through loky (cloudpickle), the multiprocessing
backend, and large arrays memory-mapped to the workers."""


def test_lambdas_through_loky(client_program):
    client_program('''
        from joblib import Parallel, delayed

        if __name__ == '__main__':
            square = lambda x: x * x
            offset = 10
            shifted = lambda x: x + offset
            print(Parallel(n_jobs=2)(delayed(square)(i) for i in range(10)))
            print(Parallel(n_jobs=2, backend='loky')(delayed(shifted)(i) for i in range(5)))
    ''')


def test_multiprocessing_backend_and_memmap(client_program):
    client_program('''
        import numpy as np
        from joblib import Parallel, delayed

        def column_sum(a, j):
            return float(a[:, j].sum()), type(a).__name__, a.flags.writeable

        def negate(x):
            return -x

        if __name__ == '__main__':
            print(Parallel(n_jobs=2, backend='multiprocessing')(delayed(negate)(i) for i in range(8)))
            big = np.arange(400000, dtype=np.float64).reshape(1000, 400)
            for backend in ('loky', 'multiprocessing'):
                out = Parallel(n_jobs=2, backend=backend, max_nbytes='1M')(
                    delayed(column_sum)(big, j) for j in range(4))
                print(backend, out)
    ''')
