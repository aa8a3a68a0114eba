"""The native MPI link (the `_mphost_mpi` extension module), loaded from
the installation's lib/mphost only when a cluster job asks for it."""

import importlib.machinery
import importlib.util
import os
import sys


def module_directory():
    exe = os.path.realpath(sys.executable)
    return os.path.join(os.path.dirname(os.path.dirname(exe)), 'lib', 'mphost')


def load():
    """The `_mphost_mpi` module; ImportError saying why when it is absent."""
    loaded = sys.modules.get('_mphost_mpi')
    if loaded is not None:
        return loaded
    where = module_directory()
    spec = importlib.machinery.PathFinder.find_spec('_mphost_mpi', [where])
    if spec is None:
        raise ImportError(f'mphost was built without its MPI backend ({where} has no '
                          f'_mphost_mpi module): install MPI (Debian: openmpi-bin '
                          f'libopenmpi-dev) and build mphost again', name='_mphost_mpi')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules['_mphost_mpi'] = module
    return module
