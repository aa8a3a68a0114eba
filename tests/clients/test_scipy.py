"""scipy's workers=: differential_evolution maps through a multiprocessing Pool."""


def test_differential_evolution_workers(client_program):
    client_program('''
        import numpy as np
        from scipy.optimize import differential_evolution, rosen

        def shifted_sphere(x):
            return float(np.sum((x - 0.5) ** 2))

        if __name__ == '__main__':
            bounds = [(-2, 2)] * 3
            for f in (rosen, shifted_sphere):
                r = differential_evolution(f, bounds, workers=2, updating='deferred', seed=3,
                                           maxiter=30, polish=False, tol=0)
                print(f.__name__, np.round(r.x, 8).tolist(), round(float(r.fun), 10), r.nfev, r.nit)
    ''')


def test_fft_workers(client_program):
    client_program('''
        import numpy as np
        import scipy.fft

        if __name__ == '__main__':
            x = np.random.default_rng(0).standard_normal((64, 1024))
            y = scipy.fft.fft(x, workers=2)
            z = scipy.fft.ifft(y, workers=2)
            print(np.allclose(x, z.real), y.shape, round(float(np.abs(y).sum()), 4))
    ''')
