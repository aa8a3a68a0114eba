"""numpy arrays both ways through a Pool: 1 MiB and 64 MiB, echoed and
computed, results writable and equal, with dtype and shape kept for
non-contiguous, Fortran-ordered, structured and 0-d arrays."""
import multiprocessing

import numpy as np

MIB = 1 << 20


def echo(a):
    return a


def doubled(a):
    return a * 2


def make(n_bytes, seed):
    rng = np.random.default_rng(seed)
    return rng.standard_normal(n_bytes // 8)


def digest(a):
    return a.dtype.str, a.shape, float(np.asarray(a, dtype=np.float64).sum())


def bump_in_place(a):
    a += 1
    return a


def show(label, r, expected):
    print(label, 'equal', np.array_equal(r, expected), 'dtype', r.dtype, 'shape', r.shape,
          'writeable', r.flags.writeable, 'c-contiguous', r.flags.c_contiguous)


def main():
    small = np.arange(MIB // 8, dtype=np.float64)
    big = np.arange(64 * MIB // 8, dtype=np.float64)
    with multiprocessing.Pool(2) as pool:
        show('echo 1 MiB', pool.apply(echo, (small,)), small)
        show('echo 64 MiB', pool.apply(echo, (big,)), big)
        show('doubled 64 MiB', pool.apply(doubled, (big,)), big * 2)
        r = pool.apply(echo, (small,))
        r[0] = -1.0
        print('result can be written', r[0], 'argument unchanged', small[0])
        show('bumped in the worker', pool.apply(bump_in_place, (small,)), small + 1)
        print('argument unchanged after bump', small[:3].tolist())
        show('made in the worker 1 MiB', pool.apply(make, (MIB, 1)), make(MIB, 1))
        show('made in the worker 64 MiB', pool.apply(make, (64 * MIB, 2)), make(64 * MIB, 2))
        print('digests', pool.map(digest, [small, small[::3], big[:1000].reshape(10, 100)]))

        grid = np.arange(600, dtype=np.int32).reshape(20, 30)
        show('non-contiguous column slice', pool.apply(echo, (grid[:, ::4],)), grid[:, ::4])
        show('transposed', pool.apply(echo, (grid.T,)), grid.T)
        fortran = np.asfortranarray(np.arange(24, dtype=np.int16).reshape(2, 3, 4))
        r = pool.apply(echo, (fortran,))
        show('fortran', r, fortran)
        print('fortran flag', r.flags.f_contiguous)
        show('reversed', pool.apply(echo, (small[::-1],)), small[::-1])

        record = np.dtype([('id', '<i4'), ('pos', '<f8', (3,)), ('name', 'S8')])
        rows = np.zeros(5000, dtype=record)
        rows['id'] = np.arange(5000)
        rows['pos'] = np.arange(15000, dtype=np.float64).reshape(5000, 3)
        rows['name'] = [b'r%d' % i for i in range(5000)]
        r = pool.apply(echo, (rows,))
        show('structured', r, rows)
        print('structured fields', r.dtype.names, r['name'][:3].tolist(), r['pos'][4999].tolist())
        show('structured every other row', pool.apply(echo, (rows[::2],)), rows[::2])

        for dt in ('u1', 'i8', 'c16', 'bool', '>f4'):
            a = (np.arange(1000) % 7).astype(dt)
            show(f'dtype {dt}', pool.apply(doubled, (a,)), a * 2)
        swapped = np.arange(1000, dtype='>f4')
        r = pool.apply(echo, (swapped,))
        # Stock pickles with protocol 4, where numpy 1.24 gives the values
        # back in native byte order; protocol 5 keeps '>f4'. Equal either way.
        print('echo big-endian equal', np.array_equal(r, swapped), 'float32', r.dtype.newbyteorder('=') == np.float32,
              'shape', r.shape, 'writeable', r.flags.writeable)
        show('0-d', pool.apply(echo, (np.array(3.5),)), np.array(3.5))
        show('empty', pool.apply(echo, (np.empty((0, 4)),)), np.empty((0, 4)))

        many = pool.map(doubled, [np.full(MIB // 8, i, dtype=np.float64) for i in range(8)], chunksize=2)
        print('map of 8 x 1 MiB', [float(m[0]) for m in many], all(m.flags.writeable for m in many))
        print('imap of 4 x 1 MiB', [float(m.sum()) for m in pool.imap(echo, (small + i for i in range(4)))])


if __name__ == '__main__':
    main()
