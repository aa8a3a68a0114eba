"""The work of bench_cpp_pool.py, run in the workers of both columns."""

import numpy


def double(x):
    return 2 * x


def ends(array):
    """Hands the array to numpy and reads both ends (the hand-off, not a
    pass over the data)."""
    a = numpy.asarray(array)
    return float(a[0]) + float(a[-1])
