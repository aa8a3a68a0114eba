"""Contexts, start methods and the module-level API."""

import os
import pickle

import pytest

import multiprocessing
from multiprocessing import context, process


def test_all_start_methods_available():
    assert multiprocessing.get_all_start_methods() == ['fork', 'spawn', 'forkserver']
    for method in multiprocessing.get_all_start_methods():
        ctx = multiprocessing.get_context(method)
        assert ctx.get_start_method() == method
        assert ctx.Process._start_method == method


def test_unknown_method_is_a_value_error():
    with pytest.raises(ValueError):
        multiprocessing.get_context('teleport')


def test_set_start_method_once():
    default = context.DefaultContext(context._concrete_contexts['fork'])
    assert default.get_start_method(allow_none=True) is None
    default.set_start_method('spawn')
    assert default.get_start_method() == 'spawn'
    with pytest.raises(RuntimeError, match='already been set'):
        default.set_start_method('fork')
    default.set_start_method('forkserver', force=True)
    assert default.get_start_method() == 'forkserver'
    default.set_start_method(None, force=True)
    assert default.get_start_method(allow_none=True) is None


def test_concrete_context_refuses_set_start_method():
    with pytest.raises(ValueError):
        multiprocessing.get_context('spawn').set_start_method('fork')


def test_cpu_count():
    assert multiprocessing.cpu_count() == os.cpu_count() >= 1


def test_public_names_match_the_stdlib_list():
    expected = {
        'Array', 'AuthenticationError', 'Barrier', 'BoundedSemaphore', 'BufferTooShort', 'Condition',
        'Event', 'JoinableQueue', 'Lock', 'Manager', 'Pipe', 'Pool', 'Process', 'ProcessError', 'Queue',
        'RLock', 'RawArray', 'RawValue', 'Semaphore', 'SimpleQueue', 'TimeoutError', 'Value',
        'active_children', 'allow_connection_pickling', 'cpu_count', 'current_process',
        'freeze_support', 'get_all_start_methods', 'get_context', 'get_logger', 'get_start_method',
        'log_to_stderr', 'parent_process', 'reducer', 'set_executable', 'set_forkserver_preload',
        'set_start_method',
    }
    assert expected <= set(multiprocessing.__all__)


def test_exception_hierarchy():
    for name in ('BufferTooShort', 'TimeoutError', 'AuthenticationError'):
        assert issubclass(getattr(multiprocessing, name), multiprocessing.ProcessError)


def test_main_process():
    me = multiprocessing.current_process()
    assert me.name == 'MainProcess' and me.pid == os.getpid() and me.is_alive()
    assert multiprocessing.parent_process() is None
    assert isinstance(me.authkey, process.AuthenticationString) and len(me.authkey) == 32


def test_assert_spawning_outside_start():
    with pytest.raises(RuntimeError, match='through inheritance'):
        context.assert_spawning(object())


def test_forkserver_preload_wants_strings():
    with pytest.raises(TypeError):
        multiprocessing.set_forkserver_preload(['os', 3])


def test_logging_helpers():
    import logging
    logger = multiprocessing.get_logger()
    assert logger.name == 'multiprocessing'
    assert multiprocessing.log_to_stderr(logging.WARNING) is logger
    assert logger.level == logging.WARNING
    logger.handlers.clear()


def test_freeze_support_is_harmless_when_not_frozen():
    multiprocessing.freeze_support()


def test_reducer_is_the_reduction_module():
    from multiprocessing import reduction
    assert multiprocessing.reducer is reduction
    data = reduction.ForkingPickler.dumps([1, 2])
    assert pickle.loads(data) == [1, 2]
