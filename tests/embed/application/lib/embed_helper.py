"""A module found only through the application's python_path setting: a
child that imports it has the application's sys.path."""
import os
import sys


def cube(n):
    return n ** 3


def where_am_i(_=None):
    return os.getpid(), os.path.realpath('/proc/self/exe'), sys.executable
