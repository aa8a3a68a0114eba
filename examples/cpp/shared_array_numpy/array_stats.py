"""The Python side of the example: numpy work on an array the C++
application shares with the worker (no copy is made)."""

import numpy


def summary(values):
    a = numpy.asarray(values)          # float64, shape (n,), the same memory
    return {'sum': float(a.sum()), 'mean': float(a.mean()), 'std': float(a.std()),
            'dtype': str(a.dtype), 'shape': list(a.shape)}


def normalize(values):
    """Scales the application's array in place to unit norm."""
    a = numpy.asarray(values)
    a /= numpy.linalg.norm(a)
